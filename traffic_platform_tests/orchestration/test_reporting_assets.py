"""The reporting assets, materialised in-process on SQLite and MariaDB, against a brute-force
recomputation from the generated records."""

from __future__ import annotations

import math
from datetime import datetime

import pytest
from sqlalchemy import select

from traffic_platform.orchestration.assets.reporting import TAG_MODEL_NAME, TAG_MODEL_VERSION
from traffic_platform.orchestration.sql.reporting_tables import capture_summary_daily, counts_tables

from . import datagen
from .datagen import DAY, DST_DAY, INGEST_V1, INGEST_V2, REDETECT_V3

FIGURES = ("images_received", "images_accepted", "images_distorted", "images_degraded", "images_excluded_health",
           "total_count", "mean_per_image",
           "max_per_image", "share_with_any", "expected_images", "coverage")


def table_rows(engine, window: str, day: str, model: tuple[str, str] | None = None) -> dict[tuple, dict]:
    table = counts_tables[window]
    start = datetime.fromisoformat(day)
    end = start.replace(day=start.day + 1)
    query = select(table).where(table.c.window_start >= start, table.c.window_start < end)
    if model is not None:
        query = query.where(table.c.model_name == model[0], table.c.model_version == model[1])
    with engine.connect() as conn:
        return {
            (r["location_id"], r["window_start"], r["traffic_class"], r["model_name"], r["model_version"]): dict(r)
            for r in conn.execute(query).mappings()
        }


def assert_matches(actual: dict[tuple, dict], expected: dict[tuple, dict]) -> None:
    assert set(actual) == set(expected), (sorted(set(actual) - set(expected))[:5], sorted(set(expected) - set(actual))[:5])
    for key, want in expected.items():
        got = actual[key]
        for name in FIGURES:
            if want[name] is None or isinstance(want[name], int):
                assert got[name] == want[name], (key, name, got[name], want[name])
            else:
                assert math.isclose(got[name], want[name], rel_tol=1e-9), (key, name, got[name], want[name])


def test_every_aggregate_equals_brute_force(repo, engine, materialize_day):
    data = datagen.generate(repo)
    result = materialize_day(DAY)
    assert result.success
    cadences = datagen.expected_cadences(data, DAY)
    models = datagen.reported_models(data, DAY)
    assert models == sorted([INGEST_V1, INGEST_V2])  # mid-day upgrade at Liège: both ingest versions
    for window in ("15min", "hourly", "daily"):
        actual = table_rows(engine, window, DAY)
        expected = datagen.expected_counts(data, DAY, window, models, cadences)
        assert_matches(actual, expected)
        # zero fill: every (location, window, model) has all six classes
        groups = {k[:2] + k[3:] for k in actual}
        assert len(actual) == 6 * len(groups)
    daily = table_rows(engine, "daily", DAY)
    assert sum(r["total_count"] for r in daily.values()) > 0
    assert any(r["images_distorted"] for r in daily.values())
    # some accepted images are degraded, never all of them, and never more than were accepted
    assert 0 < sum(r["images_degraded"] for r in daily.values()) < sum(r["images_accepted"] for r in daily.values())
    # the Japanese location (unicode names) is reported
    tokyo = data.location_ids[("渋谷_交差点", "東京", "Japan")]
    assert any(k[0] == tokyo for k in daily)


def test_capture_summary_and_cadence(repo, engine, materialize_day):
    data = datagen.generate(repo)
    materialize_day(DAY)
    cadences = datagen.expected_cadences(data, DAY)
    with engine.connect() as conn:
        rows = {r["location_id"]: r for r in conn.execute(select(capture_summary_daily)).mappings()}
    assert set(rows) == set(cadences)
    for loc_id, (observed, used, source) in cadences.items():
        records = [r for r in datagen.partition_records(data, DAY) if datagen._loc_id(data, r) == loc_id]
        row = rows[loc_id]
        assert row["images_received"] == len(records)
        assert row["images_distorted"] == sum(r.status == "distorted" for r in records)
        assert row["images_accepted"] == sum(r.status == "accepted" for r in records)
        assert row["images_degraded"] == sum(r.status == "accepted" and bool(r.quality_flags) for r in records) > 0
        assert row["cadence_source"] == source == "observed"
        assert math.isclose(row["observed_cadence_s"], observed) and math.isclose(row["cadence_s"], used)
        assert math.isclose(row["expected_images"], 86400 / used)
        assert math.isclose(row["coverage"], len(records) / (86400 / used))


def test_configured_cadence_wins_over_observation(repo, engine, materialize_day, monkeypatch):
    data = datagen.generate(repo, small=True, redetect=False)
    monkeypatch.setenv("TRAFFIC_CAPTURE_CADENCE_S", "Leuven/Belgium=30")
    materialize_day(DAY)
    leuven = data.location_ids[("tiensevest", "Leuven", "Belgium")]
    configured = {leuven: 30.0}
    cadences = datagen.expected_cadences(data, DAY, configured=configured)
    with engine.connect() as conn:
        rows = {r["location_id"]: r for r in conn.execute(select(capture_summary_daily)).mappings()}
    assert rows[leuven]["cadence_source"] == "setting" and rows[leuven]["cadence_s"] == 30.0
    assert next(v for k, v in rows.items() if k != leuven)["cadence_source"] == "observed"
    assert_matches(table_rows(engine, "15min", DAY), datagen.expected_counts(data, DAY, "15min", [INGEST_V1], cadences))


def test_rerun_replaces_the_partition(repo, engine, materialize_day):
    data = datagen.generate(repo, small=True, redetect=False)
    materialize_day(DAY)
    first = table_rows(engine, "hourly", DAY)
    # one more capture arrives late; re-running must replace, not add
    extra, found = datagen.make_record(datagen.random.Random(1), datagen.LOCATIONS[0], datetime(2022, 10, 12, 8, 1, 2),
                                       ingested_at=datetime(2022, 10, 20), distorted=False, model=INGEST_V1, n_detections=4)
    repo.save_capture(extra)
    data.records.append(extra)
    data.detections[extra.capture_id] = {INGEST_V1: found}
    materialize_day(DAY)
    materialize_day(DAY)
    second = table_rows(engine, "hourly", DAY)
    assert set(second) == set(first)  # same keys, no duplicates (the PK would refuse them anyway)
    cadences = datagen.expected_cadences(data, DAY)
    assert_matches(second, datagen.expected_counts(data, DAY, "hourly", [INGEST_V1], cadences))
    with engine.connect() as conn:
        assert conn.execute(select(counts_tables["hourly"].c.location_id)).all().__len__() == len(second)


def test_other_model_version_via_run_tags_is_kept_apart(repo, engine, materialize_day):
    data = datagen.generate(repo)
    materialize_day(DAY)
    before = table_rows(engine, "daily", DAY)
    result = materialize_day(DAY, tags={TAG_MODEL_NAME: REDETECT_V3[0], TAG_MODEL_VERSION: REDETECT_V3[1]})
    assert result.success
    cadences = datagen.expected_cadences(data, DAY)
    for window in ("15min", "daily"):
        v3 = table_rows(engine, window, DAY, REDETECT_V3)
        assert_matches(v3, datagen.expected_counts(data, DAY, window, [REDETECT_V3], cadences))
    after = table_rows(engine, "daily", DAY)
    assert {k: v for k, v in after.items() if k[3:] != REDETECT_V3}.keys() == before.keys()  # ingest rows untouched
    # only Leuven was re-detected: elsewhere v3 processed nothing, so its per-image figures are NULL
    leuven = data.location_ids[("tiensevest", "Leuven", "Belgium")]
    v3 = table_rows(engine, "daily", DAY, REDETECT_V3)
    assert all(r["images_accepted"] > 0 for k, r in v3.items() if k[0] == leuven)
    assert all(r["images_accepted"] == 0 and r["mean_per_image"] is None for k, r in v3.items() if k[0] != leuven)


def test_half_given_model_is_refused(repo, materialize_day):
    datagen.generate(repo, small=True, redetect=False)
    result = materialize_day(DAY, tags={TAG_MODEL_NAME: "x"}, raise_on_error=False)
    assert not result.success


def test_dst_fall_back_keeps_both_images(repo, engine, materialize_day):
    data = datagen.generate(repo)
    materialize_day(DST_DAY)
    rows = table_rows(engine, "15min", DST_DAY)
    assert {k[1] for k in rows} == {datetime(2022, 10, 30, 2, 30)}
    assert all(r["images_received"] == 2 for r in rows.values())
    # one hour between the two in UTC: that is the observed cadence
    cadences = datagen.expected_cadences(data, DST_DAY)
    assert cadences[data.location_ids[datagen.LOCATIONS[0]]][1] == 3600
    for window, start in (("15min", datetime(2022, 10, 30, 2, 30)), ("hourly", datetime(2022, 10, 30, 2)),
                          ("daily", datetime(2022, 10, 30))):  # rolled up: both images, nominal lengths
        rows = table_rows(engine, window, DST_DAY)
        assert {k[1] for k in rows} == {start} and all(r["images_received"] == 2 for r in rows.values())
        assert_matches(rows, datagen.expected_counts(data, DST_DAY, window, [INGEST_V1], cadences))


def test_rollup_over_uneven_windows_with_excluded_frames(repo, engine, db_url, tmp_path):
    """Windows that are no multiples of each other (20 min beside 15 min: 5-min slots), frames camera
    health excludes, degraded images, a mid-day model change: every window equals brute force, and
    the reconcile checks agree."""
    import dagster as dg
    from sqlalchemy import bindparam, text

    from traffic_platform.orchestration.assets.camera_health import CAPTURE_FEATURES
    from traffic_platform.orchestration.assets.reporting import reporting_assets
    from traffic_platform.orchestration.checks.reporting import reporting_checks
    from traffic_platform.orchestration.partitions import daily_partitions
    from traffic_platform.orchestration.resources import DatabaseResource, ObjectStoreResource
    from traffic_platform.orchestration.sql.aggregation import slot_seconds
    from traffic_platform.orchestration.sql.reporting_tables import build_metadata
    from traffic_platform.orchestration.windows import ReportingWindow, window_named

    data = datagen.generate(repo)
    windows = (window_named("15min"), ReportingWindow("20min", 1200), window_named("hourly"), window_named("daily"))
    assert slot_seconds(windows) == 300
    partitions = daily_partitions()
    resources = {"database": DatabaseResource(url=db_url), "object_store": ObjectStoreResource(uri=(tmp_path / "objects").as_uri())}
    assets = reporting_assets(partitions, windows)
    features = [a for a in assets if CAPTURE_FEATURES in a.keys]
    assert dg.materialize(features, partition_key=DAY, resources=resources).success
    accepted = [r for r in datagen.partition_records(data, DAY) if r.status == "accepted"]
    excluded = frozenset(r.capture_id for r in accepted[::4])  # frozen frames, say
    with engine.begin() as conn:
        conn.execute(text("UPDATE capture_features SET frozen = 1, excluded = 1 WHERE capture_id IN :ids")
                     .bindparams(bindparam("ids", expanding=True)), {"ids": sorted(excluded)})
    result = dg.materialize([*(a for a in assets if a not in features), *reporting_checks(partitions, windows)],
                            partition_key=DAY, resources=resources)
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    models, cadences = datagen.reported_models(data, DAY), datagen.expected_cadences(data, DAY)
    tables = build_metadata(windows).tables
    for window in windows:
        table = tables[window.table]
        with engine.connect() as conn:
            actual = {(r["location_id"], r["window_start"], r["traffic_class"], r["model_name"], r["model_version"]): dict(r)
                      for r in conn.execute(select(table)).mappings()}
        assert_matches(actual, datagen.expected_counts(data, DAY, window, models, cadences, excluded))
        assert 0 < sum(r["images_excluded_health"] for r in actual.values())
        # slots are finer than every window here: a window with images in several slots exists
        assert any(r["images_received"] > 1 for r in actual.values())


def test_empty_day_writes_nothing(engine, materialize_day):
    result = materialize_day("2022-03-01")
    assert result.success
    for window in counts_tables:
        assert table_rows(engine, window, "2022-03-01") == {}


@pytest.mark.parametrize("window", ["15min", "hourly", "daily"])
def test_window_bucketing_matches_python(engine, window):
    """The dialect-specific bucketing expression agrees with Python on awkward times."""
    from sqlalchemy import DateTime, bindparam, text

    from traffic_platform.orchestration.sql.dialects import dialect_of, window_start
    from traffic_platform.orchestration.windows import window_named

    times = [datetime(2022, 10, 12, 0, 0, 0), datetime(2022, 10, 12, 9, 14, 59), datetime(2022, 10, 12, 9, 15, 0),
             datetime(2022, 10, 12, 23, 59, 59), datetime(2024, 2, 29, 13, 44, 1)]
    with engine.connect() as conn:
        expr = window_start(dialect_of(conn), window_named(window).seconds, ":t")
        for t in times:
            got = conn.execute(text(f"SELECT {expr}").bindparams(bindparam("t", t, type_=DateTime)).columns()).scalar()
            assert str(got)[:19] == datagen.window_start(t, window).isoformat(sep=" "), (t, got)


def test_a_day_of_only_distorted_images_publishes_without_count_rows(repo, engine, materialize_day):
    """Every image of the day distorted (a fogged lens): the summary says so, counts have no rows,
    and no blocking check mistakes that for lost data."""
    rng = datagen.random.Random(11)
    day = datetime(2022, 10, 20, 9, 0)
    for minute in range(0, 30, 5):
        record, _ = datagen.make_record(rng, datagen.LOCATIONS[0], day.replace(minute=minute), ingested_at=day,
                                        distorted=True, model=INGEST_V1, n_detections=0)
        repo.save_capture(record)
    result = materialize_day("2022-10-20")
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    with engine.connect() as conn:
        summary = conn.execute(select(capture_summary_daily)).mappings().all()
        assert [(r["images_received"], r["images_distorted"], r["images_accepted"]) for r in summary] == [(6, 6, 0)]
        for table in counts_tables.values():
            assert conn.execute(select(table)).all() == []
