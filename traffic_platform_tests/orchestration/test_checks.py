"""Each check passes on clean data and fails on data corrupted on purpose; blocking ones stop the counts."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import insert, select, text

from traffic_platform.orchestration.assets.camera_health import CAPTURE_FEATURES
from traffic_platform.orchestration.assets.reporting import CAPTURE_SUMMARY, COUNTS_KEYS
from traffic_platform.orchestration.checks.ingest_health import (
    check_distorted_rate,
    check_freshness,
)
from traffic_platform.orchestration.checks.reporting import (
    check_count_anomaly,
    check_counts_reconcile,
)
from traffic_platform.orchestration.checks.stats import robust_z
from traffic_platform.orchestration.settings import OrchestrationSettings
from traffic_platform.orchestration.sql.reporting_tables import (
    capture_summary_daily,
    counts_tables,
    ensure_reporting_tables,
)
from traffic_platform.orchestration.windows import window_named

from . import datagen
from .corrupt import execute_unchecked
from .datagen import DAY

# A detection / count row of the partition to corrupt (SQLite placeholders are :name as well).
ONE_DETECTION = (
    "(SELECT id FROM (SELECT d.id FROM detections d JOIN captures c ON c.capture_id = d.capture_id"
    " WHERE c.captured_at >= '2022-10-12' AND c.captured_at < '2022-10-13' ORDER BY d.id LIMIT 1) x)"
)
ONE_COUNTED_CAPTURE = (
    "(SELECT capture_id FROM (SELECT c.capture_id FROM captures c WHERE c.status = 'accepted'"
    " AND c.captured_at >= '2022-10-12' AND c.captured_at < '2022-10-13' ORDER BY c.capture_id LIMIT 1) x)"
)
# One of the day's zero counts (``column``: capture_id or traffic_class of the same row).
ONE_ZERO_COUNT = (
    "(SELECT {column} FROM (SELECT k.capture_id, k.traffic_class FROM capture_counts k WHERE k.count = 0"
    " AND k.captured_at >= '2022-10-12' AND k.captured_at < '2022-10-13' ORDER BY k.capture_id, k.traffic_class LIMIT 1) x)"
)

CORRUPTIONS = {
    "score_above_one": ("detection_scores_in_range", f"UPDATE detections SET score = 1.5 WHERE id = {ONE_DETECTION}"),
    "negative_score": ("detection_scores_in_range", f"UPDATE detections SET score = -0.1 WHERE id = {ONE_DETECTION}"),
    "box_outside_image": ("detection_boxes_valid", f"UPDATE detections SET x2 = 5000 WHERE id = {ONE_DETECTION}"),
    "degenerate_box": ("detection_boxes_valid", f"UPDATE detections SET y2 = y1 WHERE id = {ONE_DETECTION}"),
    "class_dog": ("traffic_classes_allowed", f"UPDATE detections SET traffic_class = 'dog' WHERE id = {ONE_DETECTION}"),
    "count_mismatch": ("counts_reconcile_with_detections",
                       f"UPDATE capture_counts SET count = count + 1 WHERE traffic_class = 'car' AND capture_id = {ONE_COUNTED_CAPTURE}"),
    "count_row_missing": ("counts_reconcile_with_detections",
                          f"DELETE FROM capture_counts WHERE traffic_class = 'bus' AND capture_id = {ONE_COUNTED_CAPTURE}"),
    "orphan_detection": ("no_orphans",
                         "INSERT INTO detections (capture_id, model_name, model_version, seq, traffic_class, label, score,"
                         " x1, y1, x2, y2, captured_at)"
                         " VALUES ('ffffffffffffffffffffffffffffffff', 'm', 'v', 0, 'car', 'car', 0.9, 1, 1, 5, 5, '2022-10-12 10:00:00')"),
    "orphan_count": ("no_orphans",
                     "INSERT INTO capture_counts (capture_id, model_name, model_version, traffic_class, count, captured_at)"
                     " VALUES ('eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', 'm', 'v', 'car', 0, '2022-10-12 10:00:00')"),
    # the copy of the capture's time on a row disagrees with its capture: within the day, or moved to the next
    "detection_time_not_its_capture_s": ("no_orphans",
                                         f"UPDATE detections SET captured_at = '2022-10-12 23:59:59' WHERE id = {ONE_DETECTION}"),
    "count_time_not_its_capture_s": ("no_orphans",
                                     f"UPDATE capture_counts SET captured_at = '2022-10-12 23:59:59' WHERE traffic_class = 'car'"
                                     f" AND capture_id = {ONE_COUNTED_CAPTURE}"),
    "detection_moved_to_the_next_day": ("counts_reconcile_with_detections",
                                        f"UPDATE detections SET captured_at = '2022-10-13 08:00:00' WHERE id = {ONE_DETECTION}"),
    "count_row_moved_to_the_next_day": ("counts_reconcile_with_detections",
                                        f"UPDATE capture_counts SET captured_at = '2022-10-13 08:00:00' WHERE traffic_class = 'car'"
                                        f" AND capture_id = {ONE_COUNTED_CAPTURE}"),
    # a count on a class that has no detections, a detection moved to another class
    "count_for_a_class_without_detections": ("counts_reconcile_with_detections",
                                             f"UPDATE capture_counts SET count = 2 WHERE capture_id = {ONE_ZERO_COUNT.format(column='capture_id')}"
                                             f" AND traffic_class = {ONE_ZERO_COUNT.format(column='traffic_class')}"),
    "detection_moved_to_another_class": ("counts_reconcile_with_detections",
                                         f"UPDATE detections SET traffic_class = CASE WHEN traffic_class = 'bus' THEN 'truck' ELSE 'bus' END"
                                         f" WHERE id = {ONE_DETECTION}"),
    "capture_without_location": ("no_orphans", f"UPDATE captures SET location_id = 9999 WHERE capture_id = {ONE_COUNTED_CAPTURE}"),
}
BLOCKING = {"detection_scores_in_range", "detection_boxes_valid", "traffic_classes_allowed",
            "counts_reconcile_with_detections", "no_orphans"}


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def materialized(result: dg.ExecuteInProcessResult) -> set[dg.AssetKey]:
    return {e.asset_key for e in result.get_asset_materialization_events()}


def test_every_check_passes_on_clean_data(repo, materialize_day):
    datagen.generate(repo)
    result = materialize_day(DAY)
    found = evaluations(result)
    assert set(found) >= BLOCKING | {"no_duplicate_content", "distorted_rate_anomaly", "daily_count_anomaly",
                                     "traffic_counts_15min_reconcile", "traffic_counts_hourly_reconcile",
                                     "traffic_counts_daily_reconcile"}
    failed = {name: e.metadata for name, e in found.items() if not e.passed}
    assert not failed
    # figures are reported, not just a verdict
    assert found["detection_scores_in_range"].metadata["detections_checked"].value > 100
    assert found["traffic_counts_daily_reconcile"].metadata["mismatches"].value == 0
    assert found["distorted_rate_anomaly"].metadata["locations_with_short_history"].value == 4  # all: < 7 days of history


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_check_fails_on_corrupted_data_and_blocks_counts(case, repo, engine, materialize_day):
    datagen.generate(repo, small=True, redetect=False)
    check_name, sql = CORRUPTIONS[case]
    assert execute_unchecked(engine, sql) == 1
    result = materialize_day(DAY, raise_on_error=False)
    found = evaluations(result)
    assert not found[check_name].passed, found[check_name].metadata
    assert found[check_name].severity == dg.AssetCheckSeverity.ERROR
    # the blocking failure stops the counts: only the summary was materialised, tables stay empty
    assert materialized(result) == {CAPTURE_FEATURES, CAPTURE_SUMMARY}  # the counts are blocked
    with engine.connect() as conn:
        for table in counts_tables.values():
            assert conn.execute(select(table.c.location_id)).first() is None


def test_blocked_partition_keeps_previous_counts(repo, engine, materialize_day):
    """A failed run leaves the last good numbers published (nothing half-replaced)."""
    datagen.generate(repo, small=True, redetect=False)
    materialize_day(DAY)
    with engine.connect() as conn:
        before = conn.execute(select(counts_tables["daily"])).all()
    execute_unchecked(engine, CORRUPTIONS["score_above_one"][1])
    result = materialize_day(DAY, raise_on_error=False)
    assert COUNTS_KEYS["daily"] not in materialized(result)
    with engine.connect() as conn:
        assert conn.execute(select(counts_tables["daily"])).all() == before


def test_duplicate_content_warns_but_publishes(repo, engine, materialize_day, make_record):
    data = datagen.generate(repo, small=True, redetect=False)
    original = data.records[0]
    copy = datagen._replace(original, capture_id=f"{12345:032x}", ingested_at=original.ingested_at + timedelta(hours=1))
    repo.save_capture(copy)
    result = materialize_day(DAY)
    e = evaluations(result)["no_duplicate_content"]
    assert not e.passed and e.severity == dg.AssetCheckSeverity.WARN
    assert e.metadata["captures_sharing_content"].value == 2
    assert COUNTS_KEYS["daily"] in materialized(result)


@pytest.mark.parametrize("window", ["15min", "hourly", "daily"])
def test_reconcile_check_catches_a_wrong_published_count(window, repo, engine, materialize_day):
    datagen.generate(repo, small=True, redetect=False)
    materialize_day(DAY)
    with engine.connect() as conn:
        assert check_counts_reconcile(conn, window_named(window), DAY).passed
    table = counts_tables[window].name
    with engine.begin() as conn:
        row = conn.execute(text(f"SELECT location_id, window_start FROM {table} WHERE traffic_class = 'car' ORDER BY window_start LIMIT 1")).one()
        conn.execute(text(f"UPDATE {table} SET total_count = total_count + 3 WHERE traffic_class = 'car' AND location_id = :l AND window_start = :w"),
                     {"l": row[0], "w": row[1]})
    with engine.connect() as conn:
        result = check_counts_reconcile(conn, window_named(window), DAY)
    assert not result.passed and result.metadata["mismatches"].value == 1
    with engine.begin() as conn:  # undo, then a degraded image published as clear
        conn.execute(text(f"UPDATE {table} SET total_count = total_count - 3 WHERE traffic_class = 'car' AND location_id = :l AND window_start = :w"),
                     {"l": row[0], "w": row[1]})
        degraded = conn.execute(text(f"SELECT location_id, window_start FROM {table} WHERE traffic_class = 'car'"
                                     " AND images_degraded > 0 ORDER BY window_start LIMIT 1")).one()
        conn.execute(text(f"UPDATE {table} SET images_degraded = images_degraded - 1 WHERE traffic_class = 'car'"
                          " AND location_id = :l AND window_start = :w"), {"l": degraded[0], "w": degraded[1]})
    with engine.connect() as conn:
        result = check_counts_reconcile(conn, window_named(window), DAY)
    assert not result.passed and result.metadata["mismatches"].value == 1
    assert result.metadata["sample"].value[0]["field"] == "degraded"
    with engine.begin() as conn:  # a missing class row
        conn.execute(text(f"DELETE FROM {table} WHERE traffic_class = 'bus' AND location_id = :l AND window_start = :w"), {"l": row[0], "w": row[1]})
    with engine.connect() as conn:
        result = check_counts_reconcile(conn, window_named(window), DAY)
    assert not result.passed and result.metadata["windows_without_six_classes"].value == 1
    with engine.begin() as conn:  # the whole day gone
        conn.execute(text(f"DELETE FROM {table}"))
    with engine.connect() as conn:
        assert not check_counts_reconcile(conn, window_named(window), DAY).passed


# -- anomalies --------------------------------------------------------------------------


def test_robust_z():
    score = robust_z(10, [10, 11, 9, 10, 10, 12, 8], floor=1.0)
    assert score.median == 10 and score.z == 0
    assert robust_z(30, [10, 11, 9, 10, 10, 12, 8], floor=1.0).z == pytest.approx(20 / 1.4826)
    assert robust_z(10.5, [10] * 7, floor=1.0).z == 0.5  # steady history: the floor keeps z small
    with pytest.raises(ValueError):
        robust_z(1, [], floor=1.0)


def _summary_rows(location_id: int, rates: list[float], last_day: date) -> list[dict]:
    rows = []
    for i, rate in enumerate(rates):
        day = last_day - timedelta(days=len(rates) - 1 - i)
        rows.append({"location_id": location_id, "day": day, "images_received": 1000, "images_accepted": 1000 - int(rate * 1000),
                     "images_distorted": int(rate * 1000), "first_captured_at": datetime.combine(day, datetime.min.time()),
                     "last_captured_at": datetime.combine(day, datetime.min.time()), "observed_cadence_s": 60.0,
                     "cadence_s": 60.0, "cadence_source": "observed", "expected_images": 1440.0, "coverage": 0.69,
                     "computed_at": datetime(2022, 11, 1)})
    return rows


def test_distorted_rate_anomaly(engine):
    ensure_reporting_tables(engine)
    settings = OrchestrationSettings()
    last = date(2022, 10, 12)
    history = [0.02, 0.03, 0.01, 0.02, 0.025, 0.02, 0.03, 0.015]
    with engine.begin() as conn:
        conn.execute(insert(capture_summary_daily), _summary_rows(1, [*history, 0.04], last))  # normal day
        conn.execute(insert(capture_summary_daily), _summary_rows(2, [*history, 0.40], last))  # lens covered
        conn.execute(insert(capture_summary_daily), _summary_rows(3, [0.02, 0.9], last))  # too little history
    with engine.connect() as conn:
        result = check_distorted_rate(conn, "2022-10-12", settings)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    flagged = result.metadata["anomalies"].value
    assert [a["location_id"] for a in flagged] == [2] and flagged[0]["z"] > 4
    assert result.metadata["locations_scored"].value == 2
    assert result.metadata["locations_with_short_history"].value == 1
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM capture_summary_daily WHERE location_id = 2"))
    with engine.connect() as conn:
        assert check_distorted_rate(conn, "2022-10-12", settings).passed


def _daily_rows(location_id: int, totals: list[int], last_day: date) -> list[dict]:
    rows = []
    for i, total in enumerate(totals):
        day = datetime.combine(last_day - timedelta(days=len(totals) - 1 - i), datetime.min.time())
        for cls in ("car", "truck", "bus", "person", "bicycle", "motorcycle"):
            rows.append({"location_id": location_id, "window_start": day, "traffic_class": cls, "model_name": "m",
                         "model_version": "v1", "images_received": 1440, "images_accepted": 1440, "images_distorted": 0,
                         "total_count": total if cls == "car" else 0, "mean_per_image": total / 1440, "max_per_image": 9,
                         "share_with_any": 0.5, "expected_images": 1440.0, "coverage": 1.0, "computed_at": datetime(2022, 11, 1)})
    return rows


def test_daily_count_anomaly(engine):
    ensure_reporting_tables(engine)
    settings = OrchestrationSettings()
    last = date(2022, 10, 12)
    history = [5000, 5200, 4900, 5100, 5050, 4950, 5150, 5000, 4980, 5020]
    with engine.begin() as conn:
        conn.execute(insert(counts_tables["daily"]), _daily_rows(1, [*history, 5100], last))
        conn.execute(insert(counts_tables["daily"]), _daily_rows(2, [*history, 900], last))  # camera half-blind
    with engine.connect() as conn:
        result = check_count_anomaly(conn, "2022-10-12", settings)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    flagged = result.metadata["anomalies"].value
    assert [a["location_id"] for a in flagged] == [2] and flagged[0]["z"] < -4
    assert result.metadata["series_scored"].value == 2


# -- freshness ------------------------------------------------------------------------


def test_freshness_per_active_location(repo, engine, make_record):
    now = datetime(2026, 11, 25, 12, 0, 0)
    repo.save_capture(make_record("tiensevest_Leuven_Belgium_25-11-2026_12-58-00.jpg", ingested_at=now - timedelta(minutes=2)))
    repo.save_capture(make_record("rue_de_la_loi_Liège_Belgium_25-11-2026_10-00-00.jpg", ingested_at=now - timedelta(hours=2)))
    repo.save_capture(make_record("old_Gent_Belgium_01-10-2026_10-00-00.jpg", ingested_at=now - timedelta(days=30)))  # inactive
    with engine.connect() as conn:
        result = check_freshness(conn, OrchestrationSettings(), now=now)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["active_locations"].value == 2
    stale = result.metadata["stale"].value
    assert [s["location"] for s in stale] == ["rue de la loi, Liège, Belgium"] and stale[0]["age_s"] == 7200
    with engine.connect() as conn:
        assert check_freshness(conn, OrchestrationSettings(freshness_max_age_s=3 * 3600), now=now).passed


def test_observation_job_observes_tables_and_runs_freshness(repo, db_url, make_record):
    from traffic_platform.orchestration.definitions import defs as load_definitions
    from traffic_platform.orchestration.resources import DatabaseResource

    defs = load_definitions()  # the code location as Dagster loads it (settings read now)
    repo.save_capture(make_record(ingested_at=datetime.now() - timedelta(days=1)))
    job = defs.resolve_job_def("ingest_observation_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, resources={"database": DatabaseResource(url=db_url)})
        assert result.success
        observations = {e.asset_key.path[-1]: e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"}
        assert set(observations) == {"locations", "captures", "detections", "capture_counts"}
        captures_obs = observations["captures"].event_specific_data.asset_observation
        assert captures_obs.metadata["rows"].value == 1
        fresh = {e.check_name: e for e in result.get_asset_check_evaluations()}["captures_fresh_per_location"]
        assert not fresh.passed and fresh.metadata["stale_locations"].value == 1


# -- spool backlog ----------------------------------------------------------------------


def test_spool_backlog_check_warns_on_an_old_pending_job(repo, db_url, tmp_path, monkeypatch):
    import os
    import time

    from traffic_platform.ingest.spool import Spool
    from traffic_platform.orchestration.checks.ingest_health import check_spool_backlog
    from traffic_platform.orchestration.definitions import defs as load_definitions
    from traffic_platform.orchestration.resources import DatabaseResource

    from ..ingest.jobs_factory import make_job

    assert check_spool_backlog(None, 10).passed  # the AWS home has no spool
    monkeypatch.setenv("TRAFFIC_BACKLOG_WARN_MINUTES", "5")
    spool = Spool(tmp_path / "home" / "spool")  # TRAFFIC_HOME of these tests
    job = make_job(1)
    spool.submit(job)
    os.utime(spool.pending / f"{job.capture_id}.job", (time.time() - 6 * 60,) * 2)
    job_def = load_definitions().resolve_job_def("ingest_observation_job")
    with dg.instance_for_test() as instance:
        result = job_def.execute_in_process(instance=instance, resources={"database": DatabaseResource(url=db_url)})
    assert result.success
    backlog = {e.check_name: e for e in result.get_asset_check_evaluations()}["spool_backlog_not_stale"]
    assert not backlog.passed and backlog.severity == dg.AssetCheckSeverity.WARN
    assert backlog.metadata["pending"].value == 1 and backlog.metadata["max_age_s"].value == 300
    assert backlog.metadata["oldest_pending_age_s"].value >= 360
    spool.done(job.capture_id)
    assert check_spool_backlog(spool.backlog(), 5).passed
