"""Schedules, the late-captures sensor and the serving assets."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import sqlalchemy as sa
from sqlalchemy import select, text

from traffic_platform.orchestration.assets.calendar import dim_calendar
from traffic_platform.orchestration.assets.locations import dim_locations
from traffic_platform.orchestration.assets.views import reporting_views
from traffic_platform.orchestration.jobs import reporting_run_request
from traffic_platform.orchestration.resources import DatabaseResource
from traffic_platform.orchestration.schedules import reporting_current_day, reporting_nightly
from traffic_platform.orchestration.sensors import late_capture_requests, late_captures_sensor
from traffic_platform.orchestration.sql.aggregation import ModelKey
from traffic_platform.orchestration.sql.reporting_tables import location_dimension
from traffic_platform.orchestration.sql.view_files import load_views

from . import datagen
from .datagen import DAY


def test_current_day_schedule_requests_todays_partition():
    ctx = dg.build_schedule_context(scheduled_execution_time=datetime(2022, 10, 12, 10, 15, tzinfo=UTC))
    request = reporting_current_day(ctx)
    assert isinstance(request, dg.RunRequest) and request.partition_key == "2022-10-12"
    assert request.tags["traffic/trigger"] == "current_day"


def test_nightly_schedule_finalises_yesterday():
    ctx = dg.build_schedule_context(scheduled_execution_time=datetime(2022, 10, 13, 3, 30, tzinfo=UTC))
    request = reporting_nightly(ctx)
    assert isinstance(request, dg.RunRequest) and request.partition_key == "2022-10-12"


def test_schedule_skips_days_before_the_partitions_start():
    ctx = dg.build_schedule_context(scheduled_execution_time=datetime(2021, 6, 1, 3, 30, tzinfo=UTC))
    assert isinstance(reporting_nightly(ctx), dg.SkipReason)


def test_rebuild_request_for_another_model_version():
    request = reporting_run_request("2022-10-12", ModelKey("rtdetr", "v3"))
    assert request.partition_key == "2022-10-12"
    assert request.tags == {"traffic/model_name": "rtdetr", "traffic/model_version": "v3"}


def test_late_capture_sensor(repo, db_url):
    data = datagen.generate(repo, redetect=False)
    database = DatabaseResource(url=db_url)
    today = date(2022, 10, 14)
    # first tick: start at the newest capture, request nothing
    requests, cursor, figures = late_capture_requests(database, None, today)
    assert requests == [] and figures == {"initialised": True}
    newest = max(data.records, key=lambda r: (r.ingested_at, r.capture_id))
    with repo.engine.connect() as conn:  # the cursor follows stored_at: the order rows were written
        last_stored = conn.execute(sa.text("SELECT capture_id FROM captures ORDER BY stored_at DESC, capture_id DESC LIMIT 1")).scalar_one()
    assert json.loads(cursor)["capture_id"] == last_stored
    # nothing new: nothing requested, cursor kept
    assert late_capture_requests(database, cursor, today)[:2] == ([], cursor)
    # late arrivals for 12 Oct and 11 Oct, plus one for "today" (left to the 15-minute schedule)
    rng = datagen.random.Random(3)
    later = newest.ingested_at + timedelta(minutes=5)
    late_ids = []
    for local in (datetime(2022, 10, 12, 18, 0), datetime(2022, 10, 12, 18, 5), datetime(2022, 10, 11, 9, 0), datetime(2022, 10, 14, 8, 0)):
        record, _ = datagen.make_record(rng, datagen.LOCATIONS[1], local, ingested_at=later, distorted=False,
                                        model=datagen.INGEST_V1, n_detections=1)
        repo.save_capture(record)
        late_ids.append(record.capture_id)
    requests, new_cursor, figures = late_capture_requests(database, cursor, today)
    assert sorted(r.partition_key for r in requests) == ["2022-10-11", "2022-10-12"]
    assert figures["new_captures"] == 4
    assert all(r.run_key and r.tags["traffic/trigger"] == "late_captures" for r in requests)
    assert json.loads(new_cursor)["capture_id"] in late_ids
    # through the sensor itself, with Dagster's context and cursor handling; its "today" is the
    # real one (2026), so the 14 October 2022 capture is late too
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"database": database}) as ctx:
            result = late_captures_sensor(ctx)
        assert sorted(r.partition_key for r in result.run_requests) == ["2022-10-11", "2022-10-12", "2022-10-14"]
        assert result.cursor == new_cursor


def test_dim_locations_and_views(repo, engine, db_url, materialize_day):
    data = datagen.generate(repo, small=True, redetect=False)
    materialize_day(DAY)
    result = dg.materialize([dim_locations, dim_calendar, reporting_views], resources={"database": DatabaseResource(url=db_url)})
    assert result.success
    with engine.connect() as conn:
        dims = {r["location_id"]: r for r in conn.execute(select(location_dimension)).mappings()}
        assert set(dims) == set(data.location_ids.values())
        liege = dims[data.location_ids[("rue_de_la_loi", "Liège", "Belgium")]]
        assert liege["city"] == "Liège" and liege["address_display"] == "rue de la loi"
        assert liege["images_total"] == sum(r.metadata.city == "Liège" for r in data.records)
        assert liege["is_active"] == 0  # its images were ingested in 2022
        names = [v.name for v in load_views()]
        for name in names:  # every view answers, and the counts view matches its table
            conn.execute(text(f"SELECT * FROM {name}")).all()
        via_view = conn.execute(text("SELECT SUM(total_count), COUNT(*) FROM v_traffic_counts_hourly WHERE city = :c"), {"c": "Liège"}).one()
        via_table = conn.execute(text("SELECT SUM(total_count), COUNT(*) FROM traffic_counts_hourly t JOIN locations l ON l.id = t.location_id WHERE l.city = :c"), {"c": "Liège"}).one()
        assert tuple(via_view) == tuple(via_table) and via_view[1] > 0
    # applying the views twice is fine (CREATE OR REPLACE / DROP + CREATE)
    assert dg.materialize([reporting_views], resources={"database": DatabaseResource(url=db_url)}).success


def test_late_capture_sensor_sees_a_capture_committed_after_the_cursor_passed_its_stored_at(repo, db_url):
    """Two persisters: B takes stored_at first but commits after A, and after a sensor tick that
    moved the cursor to A's stored_at. B's day must still be rebuilt (once)."""
    database = DatabaseResource(url=db_url)
    today = date(2022, 10, 14)
    rng = datagen.random.Random(7)
    first, _ = datagen.make_record(rng, datagen.LOCATIONS[0], datetime(2022, 10, 13, 9, 0), ingested_at=datetime(2026, 11, 25, 9, 0),
                                   distorted=False, model=datagen.INGEST_V1, n_detections=1)
    repo.save_capture(first)
    _, cursor, _ = late_capture_requests(database, None, today)
    a, _ = datagen.make_record(rng, datagen.LOCATIONS[0], datetime(2022, 10, 13, 10, 0), ingested_at=datetime(2026, 11, 25, 9, 1),
                               distorted=False, model=datagen.INGEST_V1, n_detections=1)
    repo.save_capture(a)
    requests, cursor, _ = late_capture_requests(database, cursor, today)
    assert [r.partition_key for r in requests] == ["2022-10-13"]
    a_stored_at = datetime.fromisoformat(repo.get_capture(a.capture_id)["stored_at"])
    # B: its stored_at was taken 30 s before A's, its commit lands only now
    b, _ = datagen.make_record(rng, datagen.LOCATIONS[1], datetime(2022, 10, 11, 7, 0), ingested_at=datetime(2026, 11, 25, 9, 0),
                               distorted=False, model=datagen.INGEST_V1, n_detections=1)
    repo.save_capture(b)
    with repo.engine.begin() as conn:
        conn.execute(text("UPDATE captures SET stored_at = :t WHERE capture_id = :c").bindparams(
            sa.bindparam("t", a_stored_at - timedelta(seconds=30), type_=sa.DateTime)), {"c": b.capture_id})
    requests, cursor, figures = late_capture_requests(database, cursor, today)
    assert [r.partition_key for r in requests] == ["2022-10-11"] and figures["new_captures"] == 1
    assert late_capture_requests(database, cursor, today)[:2] == ([], cursor)  # counted once
