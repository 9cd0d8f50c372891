"""Sensors: re-materialise reporting partitions touched by late-arriving captures.

Rule: every capture newly stored since the cursor (``captures.stored_at``: rows are written
asynchronously, so ``ingested_at`` could land behind the cursor) touches the partition of
its local ``captured_at`` date. Days before today (UTC) are requested, once per sensor tick
and day; today and later are left to the 15-minute schedule. On its first tick the sensor
starts at the newest capture without requesting anything (history is rebuilt by a
backfill, not by the sensor).

``stored_at`` is set in Python before the commit, so with concurrent persisters a capture
can become visible *after* the cursor passed its ``stored_at``. Each tick therefore
re-reads an overlap window (``OVERLAP`` before the newest ``stored_at`` seen) and skips the
captures it already counted (their ids, kept in the cursor for that window).

Also here: ``landing_ingest_sensor`` (objects dropped under ``landing/`` -> ``landing_ingest_job``
through the ingest service, see :mod:`.landing`) and ``redetect_reporting_sensor`` (a
successful ``redetect_job`` -> one reporting run per day it wrote, for its model version,
see :mod:`.redetect`), and ``camera_health_alerts_sensor`` (webhook alerts, see :mod:`.health.alerts`).
"""


import hashlib
import json
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from sqlalchemy import DateTime, bindparam, text

from ..config import Settings
from .health.alerts import camera_health_alerts_sensor
from .jobs import reporting_daily_job, reporting_run_request
from .landing import landing_ingest_job, landing_requests
from .partitions import configured_start, in_partitions, partition_key_for
from .redetect import TAG_REDETECT_DAYS, decode_days, redetect_job
from .resources import DatabaseResource, ObjectStoreResource
from .schedules import TAG_TRIGGER
from .sql.aggregation import ModelKey

BATCH = 50_000  # new captures read per tick; more are picked up by the next tick
# How late a commit may become visible after its stored_at: one transaction (lock waits end
# after innodb_lock_wait_timeout, 50 s; a retried one takes a fresh stored_at) plus the clock
# skew between persister hosts. Ten minutes is a wide margin for both.
OVERLAP = timedelta(minutes=10)
SEEN_ID_CHARS = 16  # 64 bits of the capture id: enough to tell the window's captures apart

_NEWEST = text("SELECT capture_id, stored_at FROM captures ORDER BY stored_at DESC, capture_id DESC LIMIT 1").columns(
    stored_at=DateTime
)
_SINCE = text(
    "SELECT capture_id, stored_at, captured_at FROM captures"
    " WHERE stored_at >= :since ORDER BY stored_at, capture_id LIMIT :batch"
).columns(stored_at=DateTime, captured_at=DateTime)


def _encode(stored_at: datetime, capture_id: str, seen: list[str]) -> str:
    return json.dumps({"stored_at": stored_at.isoformat(), "capture_id": capture_id, "seen": sorted(seen)})


def _decode(cursor: str) -> tuple[datetime, set[str]]:
    """The newest stored_at seen and the captures counted in the overlap window before it
    (a cursor of an older version has no ``seen``: its window is counted once more, harmlessly)."""
    data = json.loads(cursor)
    return datetime.fromisoformat(data["stored_at"]), set(data.get("seen", []))


def _seen_in_window(rows, newest: datetime) -> list[str]:
    return [row[0][:SEEN_ID_CHARS] for row in rows if row[1] >= newest - OVERLAP]


def late_capture_requests(database: DatabaseResource, cursor: str | None, today: date) -> tuple[list[dg.RunRequest], str | None, dict]:
    """The run requests for captures stored after ``cursor`` (or committed late inside its
    overlap window), the new cursor and figures."""
    with database.get_engine().connect() as conn:
        if cursor is None:
            newest = conn.execute(_NEWEST).first()
            if newest is None:
                return [], None, {"initialised": True}
            window = conn.execute(_SINCE.bindparams(bindparam("since", newest[1] - OVERLAP, type_=DateTime),
                                                    bindparam("batch", BATCH))).all()
            return [], _encode(newest[1], newest[0], _seen_in_window(window, newest[1])), {"initialised": True}
        watermark, seen = _decode(cursor)
        rows = conn.execute(
            _SINCE.bindparams(bindparam("since", watermark - OVERLAP, type_=DateTime), bindparam("batch", BATCH + len(seen)))
        ).all()
    new = [row for row in rows if row[0][:SEEN_ID_CHARS] not in seen]
    if not new:
        return [], cursor, {"new_captures": 0}
    days: dict[date, int] = {}
    for _, _, captured_at in new:
        days[captured_at.date()] = days.get(captured_at.date(), 0) + 1
    newest = max(watermark, rows[-1][1])
    new_cursor = _encode(newest, rows[-1][0], _seen_in_window(rows, newest))
    tick = hashlib.sha256(new_cursor.encode()).hexdigest()[:16]
    start = configured_start()
    late = sorted(d for d in days if in_partitions(d, today, start) and d < today)
    skipped = sorted(d.isoformat() for d in days if not in_partitions(d, today, start))
    requests = [
        reporting_run_request(partition_key_for(d), run_key=f"late:{partition_key_for(d)}:{tick}",
                              tags={TAG_TRIGGER: "late_captures"})
        for d in late
    ]
    return requests, new_cursor, {"new_captures": len(new), "late_days": [d.isoformat() for d in late],
                                  "days_outside_partitions": skipped}


@dg.sensor(
    name="late_captures_sensor",
    job=reporting_daily_job,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Re-materialise the reporting partitions (local days before today) that newly ingested "
    "captures fall into; cursor on captures.stored_at with a 10-minute overlap window (late commits).",
)
def late_captures_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SensorResult:
    today = datetime.now(UTC).date()
    requests, cursor, figures = late_capture_requests(database, context.cursor, today)
    context.log.info(f"late captures: {figures}")
    if not requests:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"no late captures ({figures})"), cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


@dg.sensor(
    name="landing_ingest_sensor",
    job=landing_ingest_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Ingest images dropped under landing/ in the object store: one landing_ingest_job run per "
    "batch of new objects; the cursor remembers what was requested (by ETag/size or size/mtime).",
)
def landing_ingest_sensor(context: dg.SensorEvaluationContext, object_store: ObjectStoreResource) -> dg.SensorResult:
    settle_s = Settings.from_env().landing_settle_s  # TRAFFIC_LANDING_SETTLE_S
    tick = landing_requests(object_store.get_store(), context.cursor, time.time(), settle_s=settle_s)
    context.log.info(f"landing: {tick.figures}")
    if not tick.requests:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"nothing new under landing/ ({tick.figures})"), cursor=tick.cursor)
    return dg.SensorResult(run_requests=tick.requests, cursor=tick.cursor)


TAG_REDETECT_RUN = "traffic/redetect_run"


def redetect_reporting_requests(run_id: str, tags: Mapping[str, str], today: date) -> list[dg.RunRequest]:
    """One reporting run per day a re-detection run wrote, for the model version it wrote."""
    from .assets.reporting import TAG_MODEL_NAME, TAG_MODEL_VERSION

    name, version = tags.get(TAG_MODEL_NAME), tags.get(TAG_MODEL_VERSION)
    if not (name and version):
        return []
    model, start = ModelKey(name, version), configured_start()
    return [
        reporting_run_request(partition_key_for(day), model, run_key=f"redetect:{run_id}:{partition_key_for(day)}",
                              tags={TAG_TRIGGER: "redetect", TAG_REDETECT_RUN: run_id})
        for day in decode_days(tags.get(TAG_REDETECT_DAYS, ""))
        if in_partitions(day, today, start)
    ]


@dg.run_status_sensor(
    name="redetect_reporting_sensor",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[redetect_job],
    request_job=reporting_daily_job,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="After a successful redetect_job: rebuild the reporting partitions of every day it wrote, "
    "for the new model version (run tags traffic/model_name, traffic/model_version).",
)
def redetect_reporting_sensor(context: dg.RunStatusSensorContext):
    run = context.dagster_run
    requests = redetect_reporting_requests(run.run_id, run.tags, datetime.now(UTC).date())
    if not requests:
        return dg.SkipReason(f"run {run.run_id} wrote no day inside the partitions")
    return requests


SENSORS = [late_captures_sensor, landing_ingest_sensor, redetect_reporting_sensor, camera_health_alerts_sensor]
