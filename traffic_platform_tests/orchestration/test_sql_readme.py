"""sql/README.md documents every column of every view, as MariaDB creates them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import text

from traffic_platform.orchestration.sql.reporting_tables import ensure_reporting_tables
from traffic_platform.orchestration.sql.view_files import apply_views, load_views
from traffic_platform.orchestration.windows import WINDOWS

README = Path(__file__).resolve().parents[2] / "sql" / "README.md"


def documented_columns() -> dict[str, list[str]]:
    """View name -> the columns its section's table lists; ``<window>`` headings stand for every window."""
    sections: dict[str, list[str]] = {}
    names: list[str] = []
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            names = re.findall(r"`(v_[a-z0-9_<>]+)`", line)
            names = [n.replace("<window>", w.name) for n in names for w in WINDOWS] if any("<window>" in n for n in names) else names
            for name in names:
                sections[name] = []
        elif line.startswith("| `") and names:
            column = re.match(r"\| `([a-z0-9_]+)` \|", line).group(1)
            for name in names:
                sections[name].append(column)
    return sections


@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
def test_every_view_column_is_documented(engine):
    ensure_reporting_tables(engine)
    with engine.begin() as conn:
        apply_views(conn, load_views())
        rows = conn.execute(text(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
            " AND TABLE_NAME IN (SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE())"
            " ORDER BY TABLE_NAME, ORDINAL_POSITION")).all()
    actual: dict[str, list[str]] = {}
    for view, column in rows:
        actual.setdefault(view, []).append(column)
    assert set(actual) == {v.name for v in load_views()}
    docs = documented_columns()
    assert set(docs) == set(actual), "sql/README.md needs a section per view"
    for view, columns in actual.items():
        assert docs[view] == columns, f"{view}: README lists {docs[view]}, the view has {columns}"
    assert "busyness measure of still images, not a flow count" in README.read_text(encoding="utf-8")
