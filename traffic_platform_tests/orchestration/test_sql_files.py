"""The checked-in SQL matches the code, and the view files follow their contract."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from traffic_platform.orchestration.sql.reporting_tables import (
    ensure_reporting_tables,
    metadata,
    render_mysql_ddl,
)
from traffic_platform.orchestration.sql.view_files import (
    GENERATED_MARK,
    VIEWS,
    load_views,
    render_counts_views,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_VIEWS = ROOT / "traffic_platform" / "orchestration" / "sql" / "views"
REGENERATE_VIEWS = "regenerate: .venv/bin/python -m traffic_platform.orchestration.sql.view_files"


def test_reporting_ddl_file_matches_the_metadata():
    path = ROOT / "sql" / "reporting_tables.mysql.sql"
    assert path.read_text(encoding="utf-8") == render_mysql_ddl(), (
        "regenerate: .venv/bin/python -m traffic_platform.orchestration.sql.reporting_tables > sql/reporting_tables.mysql.sql"
    )


def test_tables_are_created_once_and_match(engine):
    ensure_reporting_tables(engine)
    ensure_reporting_tables(engine)  # checkfirst: a second call changes nothing
    found = inspect(engine)
    for table in metadata.sorted_tables:
        assert {c["name"] for c in found.get_columns(table.name)} == set(table.c.keys())


def test_tables_of_an_older_version_get_the_new_nullable_columns(engine):
    """A reporting schema from before ``images_degraded``: the column is added, rows are kept
    (NULL there until the partition is recomputed) and the views read them."""
    from datetime import date, datetime

    from sqlalchemy import text

    from traffic_platform.orchestration.sql.view_files import apply_views

    ensure_reporting_tables(engine)
    with engine.begin() as conn:
        for table in ("capture_summary_daily", "traffic_counts_daily"):
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN images_degraded"))
        conn.execute(text(
            "INSERT INTO locations (address, address_display, city, country, timezone, created_at)"
            " VALUES ('a', 'a', 'c', 'k', 'UTC', :t)"), {"t": datetime(2022, 10, 12)})
        conn.execute(text(
            "INSERT INTO capture_summary_daily (location_id, day, images_received, images_accepted, images_distorted,"
            " first_captured_at, last_captured_at, cadence_s, cadence_source, expected_images, coverage, computed_at)"
            " VALUES (1, :d, 3, 2, 1, :t, :t, 60, 'fallback', 1440, 0.002, :t)"),
            {"d": date(2022, 10, 12), "t": datetime(2022, 10, 12, 9)})
    assert "images_degraded" not in {c["name"] for c in inspect(engine).get_columns("capture_summary_daily")}
    ensure_reporting_tables(engine)
    for table in ("capture_summary_daily", "traffic_counts_daily"):
        assert "images_degraded" in {c["name"] for c in inspect(engine).get_columns(table)}
    with engine.begin() as conn:
        apply_views(conn, load_views())
        row = conn.execute(text("SELECT images_accepted, images_degraded, degraded_share FROM v_data_quality_daily")).one()
    assert tuple(row) == (2, None, None)


def test_view_files():
    views = load_views()
    assert Path(str(VIEWS)) == PACKAGE_VIEWS  # package data, found through importlib.resources
    assert {v.name for v in views} >= {"v_traffic_counts_15min", "v_traffic_counts_hourly", "v_traffic_counts_daily",
                                       "v_capture_summary_daily", "v_locations", "v_dim_date", "v_dim_time_of_day",
                                       "v_data_quality_daily", "v_traffic_counts_hourly_wide"}


def test_bad_view_file_is_refused(tmp_path):
    (tmp_path / "v_x.sql").write_text("CREATE OR REPLACE VIEW v_y AS SELECT 1;")
    with pytest.raises(ValueError, match="v_x"):
        load_views(tmp_path)
    (tmp_path / "v_x.sql").write_text("CREATE OR REPLACE VIEW v_x AS SELECT 1; DROP TABLE captures;")
    with pytest.raises(ValueError, match="one statement"):
        load_views(tmp_path)


def test_per_window_view_files_are_the_rendered_template():
    rendered = render_counts_views()
    generated = {p.name: p.read_text(encoding="utf-8") for p in PACKAGE_VIEWS.glob("*.sql")
                 if p.read_text(encoding="utf-8").startswith(GENERATED_MARK)}
    assert generated == rendered, REGENERATE_VIEWS
    assert set(rendered) == {"v_traffic_counts_15min.sql", "v_traffic_counts_hourly.sql", "v_traffic_counts_daily.sql",
                             "v_traffic_counts_15min_wide.sql", "v_traffic_counts_hourly_wide.sql",
                             "v_traffic_counts_daily_wide.sql", "v_data_quality_daily.sql"}


def test_root_sql_views_is_an_exact_copy_of_the_package_views():
    package = {p.name: p.read_bytes() for p in PACKAGE_VIEWS.glob("*.sql")}
    copy = {p.name: p.read_bytes() for p in (ROOT / "sql" / "views").glob("*.sql")}
    assert copy == package, REGENERATE_VIEWS
