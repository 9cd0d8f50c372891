"""A small, strict reader of TMDL (the text format of a Power BI semantic model).

It reads the subset this project writes, as Power BI Desktop saves it: tab indentation, one
object per declaration line (``table Name``, ``column 'A name'``, ``measure X = <DAX>``,
``partition X = m``, ``relationship <id>``, ``expression Name = <M>``, ``annotation K = V``,
``ref table X``), ``key: value`` properties and bare flags (``isKey``), ``///`` descriptions and
multi-line expressions (indented two levels below the line that opens them, or fenced with
```` ``` ````). Anything else — an unknown keyword or property, an object where its parent cannot
hold it, an indentation jump, spaces for indentation, an empty expression, an unknown
``dataType`` — raises :class:`TmdlError` with the file and line. It does not check DAX or M.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FENCE = "```"

# object keyword -> the object keywords it may hold
CHILDREN: dict[str, set[str]] = {
    "": {
        "database",
        "model",
        "table",
        "relationship",
        "expression",
        "queryGroup",
        "annotation",
        "ref",
    },
    "database": {"annotation"},
    "model": {"annotation"},
    "table": {"column", "measure", "partition", "hierarchy", "annotation"},
    "column": {"annotation", "variation"},
    "measure": {"annotation"},
    "partition": {"annotation"},
    "hierarchy": {"level", "annotation"},
    "level": {"annotation"},
    "variation": {"annotation"},
    "relationship": {"annotation"},
    "expression": {"annotation"},
    "queryGroup": {"annotation"},
    "annotation": set(),
    "ref": set(),
}
# object keyword -> the properties (key: value, key = expression, or bare flags) it may have
PROPERTIES: dict[str, set[str]] = {
    "database": {"compatibilityLevel", "compatibilityMode", "language", "collation"},
    "model": {
        "culture",
        "defaultPowerBIDataSourceVersion",
        "sourceQueryCulture",
        "dataAccessOptions",
        "discourageImplicitMeasures",
        "defaultMode",
    },
    "dataAccessOptions": {"legacyRedirects", "returnErrorValuesAsNull", "fastCombine"},
    "table": {
        "lineageTag",
        "sourceLineageTag",
        "dataCategory",
        "isHidden",
        "isPrivate",
        "excludeFromModelRefresh",
        "showAsVariationsOnly",
    },
    "column": {
        "dataType",
        "isKey",
        "isHidden",
        "isUnique",
        "isNullable",
        "formatString",
        "lineageTag",
        "sourceLineageTag",
        "summarizeBy",
        "sourceColumn",
        "sortByColumn",
        "dataCategory",
        "displayFolder",
        "isNameInferred",
        "isDataTypeInferred",
        "isAvailableInMdx",
        "changedProperty",
    },
    "measure": {
        "formatString",
        "displayFolder",
        "lineageTag",
        "sourceLineageTag",
        "isHidden",
        "dataCategory",
        "changedProperty",
    },
    "partition": {"mode", "source", "queryGroup", "dataView"},
    "hierarchy": {"lineageTag", "isHidden", "displayFolder"},
    "level": {"lineageTag", "column", "ordinal"},
    "variation": {"isDefault", "relationship", "defaultHierarchy"},
    "relationship": {
        "fromColumn",
        "toColumn",
        "fromCardinality",
        "toCardinality",
        "isActive",
        "crossFilteringBehavior",
        "joinOnDateBehavior",
        "relyOnReferentialIntegrity",
        "securityFilteringBehavior",
    },
    "expression": {"lineageTag", "queryGroup", "kind", "mAttributes"},
    "queryGroup": set(),
}
# properties that hold a nested group of flags rather than a value
GROUPS = {"dataAccessOptions"}
# properties whose value is an expression (``source =`` followed by an M or DAX block)
EXPRESSION_PROPERTIES = {"source"}
ENUMS: dict[str, set[str]] = {
    "dataType": {
        "int64",
        "double",
        "decimal",
        "string",
        "dateTime",
        "boolean",
        "binary",
        "variant",
    },
    "summarizeBy": {"none", "sum", "min", "max", "count", "average", "distinctCount"},
    "mode": {"import", "directQuery", "dual", "default"},
    "crossFilteringBehavior": {"oneDirection", "bothDirections", "automatic"},
    "fromCardinality": {"one", "many", "none"},
    "toCardinality": {"one", "many", "none"},
}
# partition kinds after ``partition Name =``
PARTITION_KINDS = {"m", "calculated", "entity", "query"}

_NAME = r"(?:'(?:[^']|'')*'|[^\s'=.][^\s=]*)"
_DECL = re.compile(rf"^(?P<kw>[A-Za-z]+)(?:\s+(?P<name>{_NAME}))?\s*(?:=\s*(?P<rest>.*))?$")
_PROP = re.compile(r"^(?P<key>[A-Za-z_]+)\s*(?:(?P<sep>[:=])\s*(?P<value>.*))?$")


class TmdlError(ValueError):
    """A line the strict reader does not accept."""


@dataclass
class Node:
    kind: str
    name: str | None
    line: int
    expression: str | None = None  # the default expression (after ``=``), if any
    properties: dict[str, str | bool] = field(default_factory=dict)
    groups: dict[str, dict[str, str | bool]] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)
    description: str | None = None

    def all(self, kind: str) -> list[Node]:
        return [c for c in self.children if c.kind == kind]

    @property
    def annotations(self) -> dict[str, str]:
        return {c.name: c.expression or "" for c in self.all("annotation") if c.name}


def unquote(name: str) -> str:
    """``'A ''b'''`` -> ``A 'b'``; bare names as they are."""
    if name.startswith("'"):
        if len(name) < 2 or not name.endswith("'"):
            raise TmdlError(f"unterminated quoted name {name!r}")
        return name[1:-1].replace("''", "'")
    return name


def split_reference(ref: str) -> tuple[str, str]:
    """``'Hourly counts'.date`` -> ``("Hourly counts", "date")`` (a column of a table)."""
    part = r"'(?:[^']|'')*'|[^\s'.=]+"
    m = re.fullmatch(rf"({part})\.({part})", ref.strip())
    if not m:
        raise TmdlError(f"not a Table.column reference: {ref!r}")
    return unquote(m.group(1)), unquote(m.group(2))


def _indent(raw: str, where: str) -> tuple[int, str]:
    stripped = raw.lstrip("\t")
    depth = len(raw) - len(stripped)
    if stripped[:1] in (" ", "\u00a0"):
        raise TmdlError(f"{where}: indent with tabs, not spaces")
    return depth, stripped


def _block(lines: list[str], start: int, depth: int, where: str) -> tuple[str, int]:
    """The expression block after line ``start - 1``: lines indented ``depth`` tabs or more."""
    body: list[str] = []
    i = start
    while i < len(lines):
        raw = lines[i]
        if raw.strip() and not raw.startswith("\t" * depth):
            break
        body.append(raw[depth:] if raw.strip() else "")
        i += 1
    while body and not body[-1].strip():
        body.pop()
    while body and not body[0].strip():
        body.pop(0)
    if not body:
        raise TmdlError(f"{where}: an expression must follow '='")
    return "\n".join(body), i


def _fenced(lines: list[str], start: int, where: str) -> tuple[str, int]:
    body: list[str] = []
    for i in range(start, len(lines)):
        if lines[i].strip() == FENCE:
            text = "\n".join(body).strip("\n")
            if not text.strip():
                raise TmdlError(f"{where}: empty fenced expression")
            indent = min((len(x) - len(x.lstrip("\t")) for x in body if x.strip()), default=0)
            return "\n".join(x[indent:] for x in text.split("\n")), i + 1
        body.append(lines[i])
    raise TmdlError(f"{where}: ``` not closed")


def _expression(rest: str, lines: list[str], i: int, depth: int, where: str) -> tuple[str, int]:
    """The expression after ``=``: on the same line, fenced, or the block below (depth + 2)."""
    rest = rest.strip()
    if rest == FENCE:
        return _fenced(lines, i, where)
    if rest:
        return rest, i
    return _block(lines, i, depth + 2, where)


def parse(text: str, source: str = "<tmdl>") -> Node:
    """The root node (kind ``""``) of one TMDL file; :class:`TmdlError` on anything unknown."""
    lines = text.replace("\r\n", "\n").split("\n")
    root = Node(kind="", name=None, line=0)
    stack: list[tuple[int, Node]] = [(-1, root)]
    group: tuple[int, dict[str, str | bool]] | None = None
    description: list[str] = []
    i = 0
    while i < len(lines):
        raw, lineno = lines[i], i + 1
        where = f"{source}:{lineno}"
        i += 1
        if not raw.strip():
            continue
        depth, body = _indent(raw, where)
        if body.startswith("///"):
            description.append(body[3:].strip())
            continue
        while stack[-1][0] >= depth:
            stack.pop()
        parent_depth, parent = stack[-1]
        if group and depth <= group[0]:
            group = None
        if group:
            if depth != group[0] + 1 or not re.fullmatch(r"[A-Za-z]+", body):
                raise TmdlError(f"{where}: expected a flag of the option group")
            if body not in PROPERTIES["dataAccessOptions"]:
                raise TmdlError(f"{where}: unknown option {body!r}")
            group[1][body] = True
            continue
        if depth != parent_depth + 1:
            raise TmdlError(f"{where}: indentation jumps from {parent_depth} to {depth} tabs")
        decl = _DECL.match(body)
        kw = body.split(maxsplit=1)[0]
        if kw in CHILDREN and kw not in PROPERTIES.get(parent.kind, set()):
            if kw not in CHILDREN[parent.kind]:
                raise TmdlError(f"{where}: {kw!r} cannot appear in {parent.kind or 'a file'}")
            if kw == "ref":
                m = re.fullmatch(rf"ref\s+(\w+)\s+({_NAME})", body)
                if not m:
                    raise TmdlError(f"{where}: expected 'ref <type> <name>'")
                node = Node(
                    kind="ref",
                    name=unquote(m.group(2)),
                    line=lineno,
                    properties={"type": m.group(1)},
                )
            else:
                if not decl or not decl.group("name"):
                    raise TmdlError(f"{where}: {kw} needs a name")
                node = Node(kind=kw, name=unquote(decl.group("name")), line=lineno)
                if decl.group("rest") is not None:
                    if kw == "annotation":
                        node.expression = decl.group("rest").strip()
                    else:
                        node.expression, i = _expression(decl.group("rest"), lines, i, depth, where)
                if kw == "partition":
                    if (node.expression or "") not in PARTITION_KINDS:
                        raise TmdlError(
                            f"{where}: partition kind must be one of {sorted(PARTITION_KINDS)}"
                        )
                elif kw in ("measure", "expression") and node.expression is None:
                    raise TmdlError(f"{where}: {kw} {node.name!r} has no expression")
            node.description = "\n".join(description) or None
            description = []
            parent.children.append(node)
            stack.append((depth, node))
            continue
        if description:
            raise TmdlError(f"{where}: a /// description must precede an object")
        prop = _PROP.match(body)
        allowed = PROPERTIES.get(parent.kind)
        if not prop or allowed is None:
            raise TmdlError(f"{where}: cannot read {body!r} in {parent.kind or 'a file'}")
        key, sep, value = prop.group("key"), prop.group("sep"), prop.group("value")
        if key not in allowed:
            raise TmdlError(f"{where}: unknown property {key!r} of {parent.kind}")
        if key in parent.properties or key in parent.groups:
            raise TmdlError(f"{where}: {key!r} given twice")
        if key in GROUPS:
            if sep:
                raise TmdlError(f"{where}: {key} holds flags on the lines below")
            parent.groups[key] = {}
            group = (depth, parent.groups[key])
        elif sep is None:
            parent.properties[key] = True
        elif key in EXPRESSION_PROPERTIES:
            if sep != "=":
                raise TmdlError(f"{where}: write '{key} =' before the expression")
            parent.properties[key], i = _expression(value, lines, i, depth, where)
        else:
            if sep != ":" or not value.strip():
                raise TmdlError(f"{where}: write '{key}: <value>'")
            if key in ENUMS and value.strip() not in ENUMS[key]:
                raise TmdlError(
                    f"{where}: {key} {value.strip()!r} is not one of {sorted(ENUMS[key])}"
                )
            parent.properties[key] = value.strip()
    if description:
        raise TmdlError(f"{source}: a /// description at the end of the file")
    return root
