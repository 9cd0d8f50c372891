"""The reporting windows are one declaration: a new window brings its table, DDL, view,
asset and check, and its SQL bucketing is derived from its length alone."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import pytest
from sqlalchemy import DateTime, bindparam, select, text

from traffic_platform.orchestration.assets.reporting import reporting_assets
from traffic_platform.orchestration.checks.reporting import reporting_checks
from traffic_platform.orchestration.definitions import build_definitions
from traffic_platform.orchestration.partitions import daily_partitions
from traffic_platform.orchestration.resources import DatabaseResource, ObjectStoreResource
from traffic_platform.orchestration.sql.dialects import dialect_of, window_start
from traffic_platform.orchestration.sql.reporting_tables import (
    build_metadata,
    counts_tables,
    render_mysql_ddl,
)
from traffic_platform.orchestration.sql.view_files import (
    apply_views,
    parse_view,
    render_counts_view,
)
from traffic_platform.orchestration.windows import WINDOWS, ReportingWindow, window_named

from . import datagen
from .datagen import DAY
from .test_reporting_assets import assert_matches

HALF_HOUR = ReportingWindow("30min", 30 * 60)
WITH_HALF_HOUR = (*WINDOWS, HALF_HOUR)


def test_the_declared_windows():
    assert [(w.name, w.seconds, w.table, w.view, w.check) for w in WINDOWS] == [
        ("15min", 900, "traffic_counts_15min", "v_traffic_counts_15min", "traffic_counts_15min_reconcile"),
        ("hourly", 3600, "traffic_counts_hourly", "v_traffic_counts_hourly", "traffic_counts_hourly_reconcile"),
        ("daily", 86400, "traffic_counts_daily", "v_traffic_counts_daily", "traffic_counts_daily_reconcile"),
    ]
    assert window_named("hourly").seconds == 3600
    with pytest.raises(KeyError):
        window_named("30min")


@pytest.mark.parametrize(("name", "seconds"), [("7min", 7 * 60), ("weekly", 7 * 86400), ("0s", 0), ("Bad-Name", 60), ("x", 1.5)])
def test_a_window_must_divide_a_day_and_have_a_plain_name(name, seconds):
    with pytest.raises(ValueError):
        ReportingWindow(name, seconds)


def test_a_new_window_is_one_declaration():
    table = build_metadata(WITH_HALF_HOUR).tables["traffic_counts_30min"]
    assert [(c.name, str(c.type)) for c in table.c] == [(c.name, str(c.type)) for c in counts_tables["15min"].c]
    ddl = render_mysql_ddl(WITH_HALF_HOUR)
    assert "CREATE TABLE traffic_counts_30min (" in ddl and "CONSTRAINT pk_traffic_counts_30min PRIMARY KEY" in ddl
    assert "CREATE INDEX ix_traffic_counts_30min_location_window ON traffic_counts_30min" in ddl
    assert all(block in ddl for block in render_mysql_ddl().split("\n\n"))  # the declared tables are unchanged
    view = parse_view("v_traffic_counts_30min.sql", render_counts_view(HALF_HOUR))
    assert view.name == "v_traffic_counts_30min" and "FROM traffic_counts_30min t" in view.select
    assert view.select == parse_view("v_traffic_counts_15min.sql", render_counts_view(window_named("15min"))).select.replace(
        "traffic_counts_15min", "traffic_counts_30min")
    defs = build_definitions(windows=WITH_HALF_HOUR)
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey(["reporting", "traffic_counts_30min"]) in graph.get_all_asset_keys()
    checks = {k.name: k for k in graph.asset_check_keys}
    assert graph.get_check_spec(checks["traffic_counts_30min_reconcile"]).blocking
    key = dg.AssetKey(["reporting", "traffic_counts_30min"])
    asset = next(a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and key in a.keys)
    assert asset.group_names_by_key[key] == "reporting"  # so reporting_daily_job (selected by group) runs it
    assert asset.partitions_def == daily_partitions() and asset.metadata_by_key[key]["window_seconds"] == 1800


def test_a_new_window_aggregates_like_brute_force(repo, engine, db_url, tmp_path):
    data = datagen.generate(repo)
    partitions = daily_partitions()
    result = dg.materialize(
        [*reporting_assets(partitions, (HALF_HOUR,)), *reporting_checks(partitions, (HALF_HOUR,))],
        partition_key=DAY, resources={"database": DatabaseResource(url=db_url),
                                      "object_store": ObjectStoreResource(uri=(tmp_path / "objects").as_uri())},
    )
    assert result.success
    assert [(e.check_name, e.passed) for e in result.get_asset_check_evaluations()] == [("traffic_counts_30min_reconcile", True)]
    table = build_metadata((HALF_HOUR,)).tables["traffic_counts_30min"]
    with engine.connect() as conn:
        actual = {(r["location_id"], r["window_start"], r["traffic_class"], r["model_name"], r["model_version"]): dict(r)
                  for r in conn.execute(select(table)).mappings()}
    expected = datagen.expected_counts(data, DAY, HALF_HOUR, datagen.reported_models(data, DAY), datagen.expected_cadences(data, DAY))
    assert_matches(actual, expected)
    assert {k[1].minute for k in actual} == {0, 30}
    with engine.begin() as conn:  # its rendered view applies and reads the table
        apply_views(conn, [parse_view("v_traffic_counts_30min.sql", render_counts_view(HALF_HOUR))])
        assert conn.execute(text("SELECT COUNT(*) FROM v_traffic_counts_30min")).scalar_one() == len(actual) > 0


# Hand-checked window starts, the same the per-window SQL gave before it was derived from the length.
AWKWARD = {
    datetime(2022, 10, 12, 0, 0, 0): ("2022-10-12 00:00:00", "2022-10-12 00:00:00", "2022-10-12 00:00:00"),
    datetime(2022, 10, 12, 9, 14, 59): ("2022-10-12 09:00:00", "2022-10-12 09:00:00", "2022-10-12 00:00:00"),
    datetime(2022, 10, 12, 9, 15, 0): ("2022-10-12 09:15:00", "2022-10-12 09:00:00", "2022-10-12 00:00:00"),
    datetime(2022, 10, 12, 23, 59, 59): ("2022-10-12 23:45:00", "2022-10-12 23:00:00", "2022-10-12 00:00:00"),
    datetime(2024, 2, 29, 13, 44, 1): ("2024-02-29 13:30:00", "2024-02-29 13:00:00", "2024-02-29 00:00:00"),
    datetime(2022, 10, 30, 2, 30, 0): ("2022-10-30 02:30:00", "2022-10-30 02:00:00", "2022-10-30 00:00:00"),
}


@pytest.mark.parametrize("seconds", [60, 900, 1800, 3600, 7200, 21600, 86400])
def test_derived_bucketing_matches_python_and_the_former_per_window_sql(engine, seconds):
    with engine.connect() as conn:
        expr = window_start(dialect_of(conn), seconds, ":t")
        for t, former in AWKWARD.items():
            got = conn.execute(text(f"SELECT {expr}").bindparams(bindparam("t", t, type_=DateTime)).columns()).scalar()
            assert str(got)[:19] == datagen.window_start(t, ReportingWindow("w", seconds)).isoformat(sep=" "), (t, got)
            if seconds in (900, 3600, 86400):
                assert str(got)[:19] == former[(900, 3600, 86400).index(seconds)], (t, got)
