"""Sensors: re-materialise reporting partitions touched by late-arriving captures.

Rule: every capture newly stored since the cursor (``captures.stored_at``: rows are written
asynchronously, so ``ingested_at`` could land behind the cursor; ties
broken by ``capture_id``) touches the partition of its local ``captured_at`` date. Days
before today (UTC) are requested, once per sensor tick and day; today and later are left
to the 15-minute schedule. On its first tick the sensor starts at the newest capture
without requesting anything (history is rebuilt by a backfill, not by the sensor).

Extension point: the landing-prefix ingest sensor (objects dropped under a landing
prefix → the ingest service) belongs here once ``traffic_platform.ingest.service`` exists;
it would take the ``object_store`` resource.
"""


import json
from datetime import UTC, date, datetime

import dagster as dg
from sqlalchemy import DateTime, bindparam, text

from .jobs import reporting_daily_job, reporting_run_request
from .partitions import in_partitions, partition_key_for
from .resources import DatabaseResource
from .schedules import TAG_TRIGGER

BATCH = 50_000  # captures read per tick; more are picked up by the next tick

_NEWEST = text("SELECT capture_id, stored_at FROM captures ORDER BY stored_at DESC, capture_id DESC LIMIT 1").columns(
    stored_at=DateTime
)
_SINCE = text(
    "SELECT capture_id, stored_at, captured_at FROM captures"
    " WHERE stored_at > :after OR (stored_at = :after AND capture_id > :after_id)"
    " ORDER BY stored_at, capture_id LIMIT :batch"
).columns(stored_at=DateTime, captured_at=DateTime)


def _encode(stored_at: datetime, capture_id: str) -> str:
    return json.dumps({"stored_at": stored_at.isoformat(), "capture_id": capture_id})


def _decode(cursor: str) -> tuple[datetime, str]:
    data = json.loads(cursor)
    return datetime.fromisoformat(data["stored_at"]), str(data["capture_id"])


def late_capture_requests(database: DatabaseResource, cursor: str | None, today: date) -> tuple[list[dg.RunRequest], str | None, dict]:
    """The run requests for captures ingested after ``cursor``, the new cursor and figures."""
    with database.get_engine().connect() as conn:
        if cursor is None:
            newest = conn.execute(_NEWEST).first()
            return [], (None if newest is None else _encode(newest[1], newest[0])), {"initialised": True}
        after, after_id = _decode(cursor)
        rows = conn.execute(
            _SINCE.bindparams(bindparam("after", after, type_=DateTime), bindparam("after_id", after_id), bindparam("batch", BATCH))
        ).all()
    if not rows:
        return [], cursor, {"new_captures": 0}
    days: dict[date, int] = {}
    for _, _, captured_at in rows:
        days[captured_at.date()] = days.get(captured_at.date(), 0) + 1
    new_cursor = _encode(rows[-1][1], rows[-1][0])
    late = sorted(d for d in days if in_partitions(d, today) and d < today)
    skipped = sorted(d.isoformat() for d in days if not in_partitions(d, today))
    requests = [
        reporting_run_request(partition_key_for(d), run_key=f"late:{partition_key_for(d)}:{new_cursor}",
                              tags={TAG_TRIGGER: "late_captures"})
        for d in late
    ]
    return requests, new_cursor, {"new_captures": len(rows), "late_days": [d.isoformat() for d in late],
                                  "days_outside_partitions": skipped}


@dg.sensor(
    name="late_captures_sensor",
    job=reporting_daily_job,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Re-materialise the reporting partitions (local days before today) that newly ingested "
    "captures fall into; cursor on captures.stored_at.",
)
def late_captures_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SensorResult:
    today = datetime.now(UTC).date()
    requests, cursor, figures = late_capture_requests(database, context.cursor, today)
    context.log.info(f"late captures: {figures}")
    if not requests:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"no late captures ({figures})"), cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


SENSORS = [late_captures_sensor]
