"""The model against the views as MariaDB creates them: columns, types, keys and joins.

One MariaDB database is filled with reporting_data's known data and every reporting view; the
checks read information_schema and the views, on the project and on broken copies of it.
"""

from __future__ import annotations

import os
import re

import pytest
from sqlalchemy import text

from traffic_platform_tests.orchestration.reporting_data import build

from .project import Project

# information_schema DATA_TYPE -> the TMDL data type that holds it
SQL_TO_TMDL = {
    **dict.fromkeys(("tinyint", "smallint", "mediumint", "int", "bigint"), "int64"),
    **dict.fromkeys(("double", "float"), "double"),
    **dict.fromkeys(("date", "datetime", "timestamp"), "dateTime"),
    **dict.fromkeys(("char", "varchar", "tinytext", "text", "mediumtext", "longtext"), "string"),
}


def view_columns(conn) -> dict[str, dict[str, str]]:
    """View -> column -> DATA_TYPE, from information_schema."""
    rows = conn.execute(
        text(
            "SELECT c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE FROM information_schema.COLUMNS c"
            " JOIN information_schema.VIEWS v"
            " ON v.TABLE_SCHEMA = c.TABLE_SCHEMA AND v.TABLE_NAME = c.TABLE_NAME"
            " WHERE c.TABLE_SCHEMA = DATABASE()"
        )
    ).all()
    found: dict[str, dict[str, str]] = {}
    for view, column, data_type in rows:
        found.setdefault(view, {})[column] = data_type.lower()
    return found


def column_problems(project: Project, views: dict[str, dict[str, str]]) -> list[str]:
    """Each imported column's sourceColumn exists in its view with a type of its dataType, and the
    M selects exactly those columns."""
    problems = []
    for t in project.model.tables.values():
        view = t.view()
        if view not in views:
            problems.append(f"table {t.name}: no view {view!r} on the database")
            continue
        for c in t.columns.values():
            sql_type = views[view].get(c.source_column or "")
            if sql_type is None:
                problems.append(f"{t.name}[{c.name}]: {view} has no column {c.source_column!r}")
            elif SQL_TO_TMDL.get(sql_type) != c.data_type:
                problems.append(
                    f"{t.name}[{c.name}] is {c.data_type}; {view}.{c.source_column} is {sql_type}"
                )
        selected = re.search(r"Table\.SelectColumns\(View, \{([^}]*)\}\)", t.m_source() or "")
        names = set(re.findall(r'"(\w+)"', selected.group(1))) if selected else set()
        if names != {c.source_column for c in t.columns.values()}:
            problems.append(
                f"table {t.name}: M selects {sorted(names)}, the columns read "
                f"{sorted(c.source_column for c in t.columns.values())}"
            )
    return problems


def _group_key(m_source: str) -> list[str] | None:
    found = re.search(r"Table\.Group\(\w+, \{([^}]*)\}", m_source)
    return re.findall(r'"(\w+)"', found.group(1)) if found else None


def key_problems(project: Project, conn) -> list[str]:
    """Each relationship's key side is unique in the data its table imports, and every fact row
    finds its dimension row (no blank members)."""
    problems = []
    tables = project.model.tables
    for r in project.model.relationships:
        dim, fact = tables[r.to_table], tables[r.from_table]
        key = dim.columns[r.to_column].source_column
        group = _group_key(dim.m_source() or "")
        if group is not None:
            if group != [key]:
                problems.append(f"{r.to_table} groups by {group}, not its key {key}")
        else:
            total, distinct = conn.execute(
                text(f"SELECT COUNT(*), COUNT(DISTINCT {key}) FROM {dim.view()}")
            ).one()
            if total != distinct:
                problems.append(
                    f"{r.to_table}[{r.to_column}]: {total} rows, {distinct} distinct keys"
                )
        fk = fact.columns[r.from_column].source_column
        rows, orphans = conn.execute(
            text(
                f"SELECT COUNT(*), SUM(CASE WHEN {fk} IN (SELECT {key} FROM {dim.view()})"
                " THEN 0 ELSE 1 END)"
                f" FROM {fact.view()}"
            )
        ).one()
        if not rows:
            problems.append(
                f"{fact.view()} is empty: nothing checked for {r.from_table}[{r.from_column}]"
            )
        elif orphans:
            problems.append(
                f"{r.from_table}[{r.from_column}]: {orphans} rows without a {r.to_table} row"
            )
    return problems


@pytest.fixture
def _home(tmp_path, monkeypatch):
    """TRAFFIC_* unset but a home under tmp_path (as the orchestration tests do)."""
    for name in [n for n in os.environ if n.startswith("TRAFFIC_")]:
        if name != "TRAFFIC_TEST_MARIADB_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRAFFIC_HOME", str(tmp_path / "home"))


TABLES = "TrafficPlatform.SemanticModel/definition/tables"


@pytest.mark.mariadb
@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
def test_model_matches_the_views_on_mariadb(_home, repo, engine, db_url, project, broken_project):
    build(repo, db_url)
    with engine.connect() as conn:
        views = view_columns(conn)
        assert {
            "v_traffic_counts_hourly",
            "v_traffic_counts_hourly_wide",
            "v_data_quality_daily",
            "v_dim_date",
            "v_dim_time_of_day",
            "v_locations",
        } <= set(views)
        assert column_problems(project, views) == []
        assert key_problems(project, conn) == []

        # the checks catch a broken copy
        renamed = broken_project(
            {f"{TABLES}/Locations.tmdl": ("sourceColumn: city", "sourceColumn: town")}
        )
        assert "Locations[city]: v_locations has no column 'town'" in column_problems(
            renamed, views
        )
        retyped = broken_project(
            {
                f"{TABLES}/Data quality.tmdl": (
                    "column images_received\n\t\tdataType: int64",
                    "column images_received\n\t\tdataType: double",
                )
            }
        )
        assert (
            "Data quality[images_received] is double; v_data_quality_daily.images_received is int"
            in column_problems(retyped, views)
        )
        unselected = broken_project({f"{TABLES}/Date.tmdl": ('"is_weekend"}),', "}),")})
        assert any(
            p.startswith("table Date: M selects") for p in column_problems(unselected, views)
        )
        not_unique = broken_project(
            {
                "TrafficPlatform.SemanticModel/definition/relationships.tmdl": (
                    "toColumn: Date.date",
                    "toColumn: Date.year",
                )
            }
        )
        assert any(
            p.startswith("Date[year]:") and "distinct keys" in p
            for p in key_problems(not_unique, conn)
        )
        regrouped = broken_project(
            {
                f"{TABLES}/Model versions.tmdl": (
                    'Table.Group(Selected, {"model_version"}',
                    'Table.Group(Selected, {"model_name"}',
                )
            }
        )
        assert "Model versions groups by ['model_name'], not its key model_version" in key_problems(
            regrouped, conn
        )
