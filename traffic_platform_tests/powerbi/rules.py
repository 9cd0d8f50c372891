"""Rule checks on a loaded PBIP project: each takes a :class:`Project` and returns its problems.

An empty list means the rule holds; every problem names the object it is about. The tests run
each rule on ``powerbi/`` and on a broken copy (the negative tests), so the rules stay honest.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from pbi_parsers import dax, pq
from pbi_parsers.dax import exprs as dax_exprs

from .project import REPO, Project
from .tmdl import unquote

SQL_README = REPO / "sql" / "README.md"
VIEWS_DIR = REPO / "sql" / "views"
VERSION_TABLE, VERSION_COLUMN, VERSION_MEASURE = (
    "Model versions",
    "model_version",
    "Model version in use",
)
# sql/README.md types -> the TMDL data type a column of that type must have
README_TO_TMDL = {
    "integer": "int64",
    "double": "double",
    "text": "string",
    "date": "dateTime",
    "datetime": "dateTime",
}


# --- parsing -------------------------------------------------------------------------------------


@cache
def _parse(language: str, expression: str) -> tuple[object | None, str | None]:
    """(AST, None) or (None, why); cached: pbi-parsers' backtracking takes a second on long M."""
    try:
        ast = (dax if language == "DAX" else pq).to_ast(expression)
    except (ValueError, AssertionError, IndexError) as exc:  # what pbi-parsers raises on bad syntax
        return None, f"{language} does not parse: {str(exc) or type(exc).__name__}"
    return (ast, None) if ast is not None else (None, f"{language} does not parse")


def parse_dax(expression: str) -> dax_exprs.Expression:
    """The DAX AST; raises ValueError on broken syntax."""
    ast, error = _parse("DAX", expression)
    if error:
        raise ValueError(error)
    return ast


def parse_m(expression: str) -> object:
    """The M AST; raises ValueError on broken syntax."""
    ast, error = _parse("M", expression)
    if error:
        raise ValueError(error)
    return ast


def parsed_dax(expression: str) -> dax_exprs.Expression | None:
    """The AST, or None where it does not parse (syntax_problems reports those)."""
    try:
        return parse_dax(expression)
    except ValueError:
        return None


def dax_expressions(project: Project) -> dict[str, str]:
    """Every DAX expression of the model: measures and calculated partitions, by a readable name."""
    found = {f"measure {m.table}[{m.name}]": m.expression for m in project.model.measures()}
    for t in project.model.tables.values():
        for p in t.partitions:
            if p.kind == "calculated":
                found[f"partition {t.name}/{p.name}"] = p.source or ""
    return found


def m_expressions(project: Project) -> dict[str, str]:
    """Every M expression: the M partitions and the shared expressions (parameters)."""
    found = {f"expression {n}": e for n, e in project.model.expressions.items()}
    for t in project.model.tables.values():
        for p in t.partitions:
            if p.kind == "m":
                found[f"partition {t.name}/{p.name}"] = p.source or ""
    return found


def readme_column_types(readme: Path = SQL_README) -> dict[str, dict[str, str]]:
    """View -> column -> documented type, from the column tables of sql/README.md."""
    from traffic_platform.orchestration.windows import WINDOWS

    views: dict[str, dict[str, str]] = {}
    names: list[str] = []
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            names = re.findall(r"`(v_[a-z0-9_<>]+)`", line)
            names = (
                [n.replace("<window>", w.name) for n in names for w in WINDOWS]
                if any("<window>" in n for n in names)
                else names
            )
            for name in names:
                views[name] = {}
        elif (m := re.match(r"\| `([a-z0-9_]+)` \| (\w+) \|", line)) and names:
            for name in names:
                views[name][m.group(1)] = m.group(2)
    return views


# --- rules ---------------------------------------------------------------------------------------


def syntax_problems(project: Project) -> list[str]:
    """Every DAX and M expression parses."""
    problems = []
    for name, text in dax_expressions(project).items():
        try:
            parse_dax(text)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    for name, text in m_expressions(project).items():
        try:
            parse_m(text)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    return problems


def divide_problems(project: Project) -> list[str]:
    """No measure divides with ``/``: DIVIDE handles a zero or blank denominator."""
    problems = []
    for m in project.model.measures():
        ast = parsed_dax(m.expression)
        for node in ast.find_all(dax_exprs.DivMulExpression) if ast else []:
            if node.operator.text == "/":
                problems.append(f"measure {m.table}[{m.name}] divides with '/': use DIVIDE")
    return problems


def measure_metadata_problems(project: Project) -> list[str]:
    """Every measure has a formatString and a displayFolder."""
    problems = []
    for m in project.model.measures():
        if not (m.format_string or "").strip():
            problems.append(f"measure {m.table}[{m.name}] has no formatString")
        if not (m.display_folder or "").strip():
            problems.append(f"measure {m.table}[{m.name}] has no displayFolder")
    return problems


def date_table_problems(project: Project) -> list[str]:
    """Exactly one table is marked as date table (dataCategory Time, a dateTime key column) and
    the facts relate to that key."""
    marked = [t for t in project.model.tables.values() if t.data_category == "Time"]
    if len(marked) != 1:
        return [f"{len(marked)} tables have dataCategory: Time; mark exactly one date table"]
    table = marked[0]
    keys = [c for c in table.columns.values() if c.is_key]
    if len(keys) != 1 or keys[0].data_type != "dateTime":
        return [f"date table {table.name} needs exactly one isKey column of dataType dateTime"]
    if not any(
        r.to_table == table.name and r.to_column == keys[0].name
        for r in project.model.relationships
    ):
        return [f"no relationship reaches {table.name}[{keys[0].name}]"]
    return []


def column_type_problems(
    project: Project, readme: dict[str, dict[str, str]] | None = None
) -> list[str]:
    """Each imported column has the type sql/README.md documents for its view column (integer ->
    int64, so counts are never floating point; double -> double; date/datetime -> dateTime;
    text -> string), and its sourceColumn is a documented column."""
    readme = readme_column_types() if readme is None else readme
    problems = []
    for t in project.model.tables.values():
        view = t.view()
        if view is None:
            continue
        documented = readme.get(view)
        if documented is None:
            problems.append(f"table {t.name}: view {view} is not documented in sql/README.md")
            continue
        for c in t.columns.values():
            kind = documented.get(c.source_column or "")
            if kind is None:
                problems.append(
                    f"{t.name}[{c.name}]: {view} documents no column {c.source_column!r}"
                )
            elif c.data_type != README_TO_TMDL[kind]:
                problems.append(
                    f"{t.name}[{c.name}] is {c.data_type}; {view}.{c.source_column} is {kind}"
                    f" -> {README_TO_TMDL[kind]}"
                )
    return problems


def _dax_references(expression: str) -> tuple[set[tuple[str, str]], set[str], set[str], set[str]]:
    """(table, column) pairs, measure names, table names and names the expression itself defines
    (string literals such as ADDCOLUMNS' "@first")."""
    ast = parsed_dax(expression)
    if ast is None:
        return set(), set(), set(), set()
    columns = {
        (unquote(n.table.text), n.column.text[1:-1])
        for n in ast.find_all(dax_exprs.ColumnExpression)
    }
    measures = {n.name.text[1:-1] for n in ast.find_all(dax_exprs.MeasureExpression)}
    tables = {unquote(n.name.text) for n in ast.find_all(dax_exprs.TableExpression)}
    local = {n.value.text.strip('"') for n in ast.find_all(dax_exprs.LiteralStringExpression)}
    return columns, measures, tables, local


def _visual_fields(node: object) -> list[tuple[str, str, str]]:
    """Every (kind, table, name) a visual refers to: Column/Measure with a SourceRef Entity."""
    found = []
    if isinstance(node, dict):
        for kind in ("Column", "Measure"):
            ref = node.get(kind)
            if isinstance(ref, dict) and "Property" in ref:
                entity = ref.get("Expression", {}).get("SourceRef", {}).get("Entity")
                found.append((kind, entity, ref["Property"]))
        for value in node.values():
            found += _visual_fields(value)
    elif isinstance(node, list):
        for value in node:
            found += _visual_fields(value)
    return found


def reference_problems(project: Project) -> list[str]:
    """Every table, column and measure a measure, a visual, a sortByColumn or a relationship names
    exists in the model."""
    tables = project.model.tables
    all_measures = {m.name for m in project.model.measures()}
    problems = []
    for m in project.model.measures():
        columns, measures, table_refs, local = _dax_references(m.expression)
        for table, column in sorted(columns):
            if table not in tables or column not in tables[table].columns:
                problems.append(
                    f"measure {m.table}[{m.name}] names a missing column {table}[{column}]"
                )
        for name in sorted(measures - local):
            if name not in all_measures:
                problems.append(f"measure {m.table}[{m.name}] names a missing measure [{name}]")
        for table in sorted(table_refs - set(tables)):
            problems.append(f"measure {m.table}[{m.name}] names a missing table {table}")
    for (page, visual), doc in project.report.visuals.items():
        for kind, table, name in _visual_fields(doc):
            t = tables.get(table)
            holder = None if t is None else (t.columns if kind == "Column" else t.measures)
            if holder is None or name not in holder:
                problems.append(
                    f"visual {page}/{visual} names a missing {kind.lower()} {table}[{name}]"
                )
    for t in tables.values():
        for c in t.columns.values():
            if c.sort_by and c.sort_by not in t.columns:
                problems.append(f"{t.name}[{c.name}] sorts by a missing column {c.sort_by}")
    for r in project.model.relationships:
        for table, column in ((r.from_table, r.from_column), (r.to_table, r.to_column)):
            if table not in tables or column not in tables[table].columns:
                problems.append(f"relationship {r.name} names a missing column {table}[{column}]")
    return problems


def relationship_problems(project: Project) -> list[str]:
    """Relationships join columns of one data type, many-to-one onto a key column (isKey: unique),
    and no two relationships join the same pair of columns."""
    tables = project.model.tables
    problems, seen = [], set()
    for r in project.model.relationships:
        try:
            src = tables[r.from_table].columns[r.from_column]
            key = tables[r.to_table].columns[r.to_column]
        except KeyError:
            problems.append(f"relationship {r.name}: a column is missing")
            continue
        if not key.is_key:
            problems.append(
                f"relationship {r.name}: {r.to_table}[{r.to_column}] is not a key column (isKey)"
            )
        if src.data_type != key.data_type:
            problems.append(f"relationship {r.name}: {src.data_type} joins {key.data_type}")
        if r.properties.get("toCardinality", "one") != "one":
            problems.append(f"relationship {r.name}: the key side must be 'one'")
        pair = (r.from_table, r.from_column, r.to_table, r.to_column)
        if pair in seen:
            problems.append(f"relationship {r.name} duplicates another")
        seen.add(pair)
    return problems


AGGREGATIONS = {
    "SUM",
    "SUMX",
    "AVERAGE",
    "AVERAGEX",
    "MIN",
    "MINX",
    "MAX",
    "MAXX",
    "COUNT",
    "COUNTX",
    "COUNTROWS",
    "COUNTA",
    "COUNTBLANK",
    "DISTINCTCOUNT",
    "PRODUCT",
    "PRODUCTX",
}


def _aggregated_columns(expression: str) -> set[tuple[str, str]]:
    """(table, column) pairs read inside an aggregation (SUM, SUMX, COUNTROWS, ...)."""
    ast = parsed_dax(expression)
    found: set[tuple[str, str]] = set()
    for fn in ast.find_all(dax_exprs.FunctionExpression) if ast else []:
        if fn.function_name().upper() in AGGREGATIONS:
            found |= {
                (unquote(n.table.text), n.column.text[1:-1])
                for arg in fn.args
                for n in arg.find_all(dax_exprs.ColumnExpression)
            }
            found |= {
                (unquote(n.name.text), "*")
                for arg in fn.args
                for n in arg.find_all(dax_exprs.TableExpression)
            }
    return found


def version_rule_problems(project: Project) -> list[str]:
    """Counts are never summed across model versions: every table with model_version has a
    relationship to the model-version dimension, and every measure that aggregates a column of
    such a fact table (other than model_version itself) filters 'Model versions'[model_version]
    on [Model version in use]."""
    facts = {r.from_table for r in project.model.relationships if r.to_table == VERSION_TABLE}
    problems = [
        f"table {t.name} has model_version but no relationship to {VERSION_TABLE}"
        for t in project.model.tables.values()
        if VERSION_COLUMN in t.columns and t.name != VERSION_TABLE and t.name not in facts
    ]
    if VERSION_MEASURE not in {m.name for m in project.model.measures()}:
        return [*problems, f"no measure [{VERSION_MEASURE}]"]
    for m in project.model.measures():
        if m.name == VERSION_MEASURE:
            continue
        reads = {
            (t, c)
            for t, c in _aggregated_columns(m.expression)
            if t in facts and c != VERSION_COLUMN
        }
        columns, measures, _, _ = _dax_references(m.expression)
        if reads and (
            VERSION_MEASURE not in measures or (VERSION_TABLE, VERSION_COLUMN) not in columns
        ):
            problems.append(
                f"measure {m.table}[{m.name}] aggregates {sorted(reads)}"
                f" without [{VERSION_MEASURE}]"
            )
    return problems


def partition_problems(project: Project) -> list[str]:
    """Each table imports one reporting view through MySQL.Database(Server, Database, ...), where
    Server and Database are text parameters of expressions.tmdl (the MySQL connector is Import
    only)."""
    problems = []
    for name in ("Server", "Database"):
        text = project.model.expressions.get(name, "")
        if not re.fullmatch(
            r'"[^"]+"\s+meta\s+\[.*IsParameterQuery\s*=\s*true.*Type\s*=\s*"Text".*\]', text
        ):
            problems.append(f"expression {name} is not a text parameter")
    views = {p.stem for p in VIEWS_DIR.glob("v_*.sql")}
    for t in project.model.tables.values():
        if len(t.partitions) != 1 or t.partitions[0].kind != "m":
            problems.append(f"table {t.name} needs exactly one M partition")
            continue
        p = t.partitions[0]
        if p.mode != "import":
            problems.append(f"table {t.name}: partition mode {p.mode!r}, not import")
        if not re.search(r"MySQL\.Database\(\s*Server\s*,\s*Database\s*[,)]", p.source or ""):
            problems.append(f"table {t.name} does not read MySQL.Database(Server, Database)")
        if t.view() not in views:
            problems.append(
                f"table {t.name} reads {t.view()!r}, not one reporting view of sql/views/"
            )
    return problems


M_TO_TMDL = {
    "Int64.Type": "int64",
    "type number": "double",
    "type text": "string",
    "type date": "dateTime",
    "type datetime": "dateTime",
}


def m_type_problems(project: Project) -> list[str]:
    """The M states each imported column's type (Table.TransformColumnTypes, or the type of a
    Table.Group aggregate) and it agrees with the column's dataType: on refresh the M type wins."""
    problems = []
    for t in project.model.tables.values():
        source = t.m_source() or ""
        stated = dict(re.findall(r'\{"(\w+)", ((?:Int64\.Type|type \w+))\}', source))
        stated |= dict(re.findall(r'\{"(\w+)", each [^{}]*?, ((?:Int64\.Type|type \w+))\}', source))
        keys = re.search(r"Table\.Group\(\w+, \{([^}]*)\}", source)
        untyped = set(re.findall(r'"(\w+)"', keys.group(1))) if keys else set()
        for c in t.columns.values():
            m_type = stated.get(c.source_column or "")
            if m_type is None:
                if c.source_column not in untyped:
                    problems.append(
                        f"{t.name}[{c.name}]: the M states no type for {c.source_column}"
                    )
            elif M_TO_TMDL.get(m_type) != c.data_type:
                problems.append(f"{t.name}[{c.name}] is {c.data_type}; the M makes it {m_type}")
    return problems


def table_file_problems(project: Project) -> list[str]:
    """model.tmdl refers to every table file once, and each file is named after its table."""
    problems = []
    refs = project.model.table_refs
    if len(refs) != len(set(refs)) or set(refs) != set(project.model.tables):
        problems.append(
            f"model.tmdl refers to {sorted(refs)}, the tables are {sorted(project.model.tables)}"
        )
    for t in project.model.tables.values():
        if t.file.stem != t.name:
            problems.append(f"{t.file.name} holds table {t.name}")
    return problems


def page_problems(project: Project) -> list[str]:
    """pages.json lists every page folder once and nothing else; page.json and visual.json names
    match their folders; the active page is a listed page."""
    report = project.report
    pages_dir = report.root / "definition" / "pages"
    folders = sorted(p.name for p in pages_dir.iterdir() if p.is_dir())
    order = report.pages_meta.get("pageOrder", [])
    problems = []
    if len(order) != len(set(order)) or set(order) != set(folders):
        problems.append(f"pages.json lists {order}, the page folders are {folders}")
    if report.pages_meta.get("activePageName") not in order:
        problems.append("pages.json: activePageName is not a listed page")
    for folder in folders:
        page = report.pages.get(folder)
        if page is None:
            problems.append(f"page folder {folder} has no page.json")
        elif page.get("name") != folder:
            problems.append(f"page {folder}: page.json names {page.get('name')!r}")
    for (page, visual), doc in report.visuals.items():
        if doc.get("name") != visual:
            problems.append(f"visual {page}/{visual}: visual.json names {doc.get('name')!r}")
    return problems


def report_size_problems(project: Project, min_pages: int = 4, min_visuals: int = 10) -> list[str]:
    """At least ``min_pages`` pages and ``min_visuals`` visuals, every page with a visual."""
    report = project.report
    problems = []
    if len(report.pages) < min_pages:
        problems.append(f"{len(report.pages)} pages, want at least {min_pages}")
    if len(report.visuals) < min_visuals:
        problems.append(f"{len(report.visuals)} visuals, want at least {min_visuals}")
    for page in report.pages:
        if not any(p == page for p, _ in report.visuals):
            problems.append(f"page {page} has no visual")
    return problems


MODEL_RULES = [
    syntax_problems,
    divide_problems,
    measure_metadata_problems,
    date_table_problems,
    column_type_problems,
    reference_problems,
    relationship_problems,
    version_rule_problems,
    partition_problems,
    m_type_problems,
    table_file_problems,
]
REPORT_RULES = [page_problems, report_size_problems]
