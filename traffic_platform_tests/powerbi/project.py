"""Load the PBIP project in ``powerbi/`` into plain objects the rule checks read.

``load_project(root)`` reads the semantic model (TMDL, with :mod:`.tmdl`) and the report (PBIR
JSON). It raises on unreadable files; everything else is left to the rules in :mod:`.rules`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import tmdl

REPO = Path(__file__).resolve().parents[2]
POWERBI = REPO / "powerbi"
NAME = "TrafficPlatform"


@dataclass
class Column:
    table: str
    name: str
    data_type: str | None
    source_column: str | None
    is_key: bool
    format_string: str | None
    sort_by: str | None
    line: int


@dataclass
class Measure:
    table: str
    name: str
    expression: str
    format_string: str | None
    display_folder: str | None


@dataclass
class Partition:
    name: str
    kind: str  # m | calculated | ...
    mode: str | None
    source: str | None


@dataclass
class Table:
    name: str
    file: Path
    data_category: str | None
    columns: dict[str, Column] = field(default_factory=dict)
    measures: dict[str, Measure] = field(default_factory=dict)
    partitions: list[Partition] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)

    def m_source(self) -> str | None:
        """The M of the table's (single) M partition, if it has one."""
        sources = [p.source for p in self.partitions if p.kind == "m"]
        return sources[0] if len(sources) == 1 else None

    def view(self) -> str | None:
        """The reporting view its M partition navigates to (``Item = "v_..."``)."""
        found = re.findall(r'Item\s*=\s*"(\w+)"', self.m_source() or "")
        return found[0] if len(found) == 1 else None


@dataclass
class Relationship:
    name: str
    from_table: str
    from_column: str
    to_table: str
    to_column: str
    properties: dict[str, str | bool]


@dataclass
class SemanticModel:
    root: Path
    database: tmdl.Node
    model: tmdl.Node
    tables: dict[str, Table]
    relationships: list[Relationship]
    expressions: dict[str, str]
    table_refs: list[str]

    def measures(self) -> list[Measure]:
        return [m for t in self.tables.values() for m in t.measures.values()]


@dataclass
class Report:
    root: Path
    json_files: dict[Path, object]  # every JSON document of the project (.pbip, .pbir, .pbism too)
    pages_meta: dict
    pages: dict[str, dict]  # page folder -> page.json
    visuals: dict[tuple[str, str], dict]  # (page folder, visual folder) -> visual.json


@dataclass
class Project:
    root: Path
    model: SemanticModel
    report: Report


def _read_tmdl(path: Path) -> tmdl.Node:
    return tmdl.parse(path.read_text(encoding="utf-8"), str(path))


def _only(root: tmdl.Node, kind: str, path: Path) -> tmdl.Node:
    nodes = root.all(kind)
    if len(nodes) != 1 or len(root.children) != 1:
        raise tmdl.TmdlError(f"{path}: expected exactly one {kind} declaration")
    return nodes[0]


def _table(node: tmdl.Node, path: Path) -> Table:
    table = Table(
        name=node.name or "",
        file=path,
        data_category=node.properties.get("dataCategory"),
        annotations=node.annotations,
    )
    for c in node.all("column"):
        p = c.properties
        if c.name in table.columns:
            raise tmdl.TmdlError(f"{path}:{c.line}: column {c.name!r} defined twice")
        table.columns[c.name] = Column(
            table=table.name,
            name=c.name,
            data_type=p.get("dataType"),
            source_column=p.get("sourceColumn"),
            is_key=p.get("isKey") is True,
            format_string=p.get("formatString"),
            sort_by=p.get("sortByColumn"),
            line=c.line,
        )
    for m in node.all("measure"):
        if m.name in table.measures:
            raise tmdl.TmdlError(f"{path}:{m.line}: measure {m.name!r} defined twice")
        table.measures[m.name] = Measure(
            table=table.name,
            name=m.name,
            expression=m.expression or "",
            format_string=m.properties.get("formatString"),
            display_folder=m.properties.get("displayFolder"),
        )
    for p in node.all("partition"):
        table.partitions.append(
            Partition(
                name=p.name,
                kind=p.expression or "",
                mode=p.properties.get("mode"),
                source=p.properties.get("source"),
            )
        )
    return table


def load_model(root: Path) -> SemanticModel:
    definition = root / "definition"
    database = _only(
        _read_tmdl(definition / "database.tmdl"), "database", definition / "database.tmdl"
    )
    model_root = _read_tmdl(definition / "model.tmdl")
    models = model_root.all("model")
    if len(models) != 1:
        raise tmdl.TmdlError(f"{definition / 'model.tmdl'}: expected one model declaration")
    for node in model_root.children:
        if node.kind not in ("model", "ref", "queryGroup", "annotation"):
            raise tmdl.TmdlError(
                f"{definition / 'model.tmdl'}:{node.line}: {node.kind} belongs elsewhere"
            )
    tables: dict[str, Table] = {}
    for path in sorted((definition / "tables").glob("*.tmdl")):
        table = _table(_only(_read_tmdl(path), "table", path), path)
        if table.name in tables:
            raise tmdl.TmdlError(f"{path}: table {table.name!r} defined twice")
        tables[table.name] = table
    relationships = []
    rel_path = definition / "relationships.tmdl"
    rel_root = _read_tmdl(rel_path) if rel_path.exists() else tmdl.Node(kind="", name=None, line=0)
    for node in rel_root.children:
        if node.kind != "relationship":
            raise tmdl.TmdlError(f"{rel_path}:{node.line}: only relationships belong here")
        try:
            ft, fc = tmdl.split_reference(str(node.properties["fromColumn"]))
            tt, tc = tmdl.split_reference(str(node.properties["toColumn"]))
        except KeyError as exc:
            raise tmdl.TmdlError(f"{rel_path}:{node.line}: relationship without {exc}") from None
        relationships.append(Relationship(node.name or "", ft, fc, tt, tc, node.properties))
    expr_root = _read_tmdl(definition / "expressions.tmdl")
    expressions = {}
    for node in expr_root.children:
        if node.kind != "expression":
            raise tmdl.TmdlError(
                f"{definition / 'expressions.tmdl'}:{node.line}: only expressions belong here"
            )
        expressions[node.name] = node.expression
    refs = [n.name for n in model_root.all("ref") if n.properties.get("type") == "table"]
    return SemanticModel(root, database, models[0], tables, relationships, expressions, refs)


def _json(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))


def load_report(project_root: Path, report_root: Path) -> Report:
    json_files = {
        p: _json(p)
        for p in sorted(project_root.rglob("*"))
        if p.is_file()
        and (p.suffix in (".json", ".pbip", ".pbir", ".pbism"))
        and ".pbi" not in p.relative_to(project_root).parts
    }
    pages_dir = report_root / "definition" / "pages"
    pages = {p.parent.name: json_files[p] for p in sorted(pages_dir.glob("*/page.json"))}
    visuals = {
        (p.parents[2].name, p.parent.name): json_files[p]
        for p in sorted(pages_dir.glob("*/visuals/*/visual.json"))
    }
    return Report(
        report_root, json_files, json_files.get(pages_dir / "pages.json", {}), pages, visuals
    )


def load_project(root: Path = POWERBI) -> Project:
    return Project(
        root, load_model(root / f"{NAME}.SemanticModel"), load_report(root, root / f"{NAME}.Report")
    )
