"""Camera-health alerts: one JSON POST to ``TRAFFIC_ALERT_WEBHOOK_URL`` when an episode starts
and one when it ends, never one per image.

The sensor's cursor remembers, per episode (``location_id|state|started_at``), what was
delivered: ``"started"`` or ``"ended"``. Each tick reads the episodes that are open or
started/ended within the lookback window, and sends what is missing, oldest first; the
cursor records an alert only after a 2xx answer, so a failed POST is retried on the next
tick and a delivered one is never sent again. Episodes that fell out of the window are
dropped from the cursor once delivered as ended. On its first tick (no cursor) the sensor
marks the episodes that already ended as delivered and announces only the open ones: a new
deployment does not replay history.

Body: ``{"location": "address/City/Country", "location_id", "state", "status": "started" |
"ended", "started_at", "ended_at", "reason", "evidence", "episode"}`` (times UTC, ISO 8601).
"""


import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from sqlalchemy import DateTime, bindparam, text

from ..resources import DatabaseResource
from ..settings import OrchestrationSettings

_EPISODES = text(
    "SELECT h.location_id, l.address_display, l.city, l.country, h.state, h.started_at, h.ended_at, h.reason,"
    " h.evidence FROM camera_health h JOIN locations l ON l.id = h.location_id"
    " WHERE h.ended_at IS NULL OR h.started_at >= :since OR h.ended_at >= :since"
    " ORDER BY h.started_at, h.location_id, h.state"
).columns(started_at=DateTime, ended_at=DateTime)


def episode_key(location_id: int, state: str, started_at: datetime) -> str:
    return f"{location_id}|{state}|{started_at.isoformat()}"


def alert_body(row: Mapping[str, Any], status: str) -> dict[str, Any]:
    return {
        "location": f"{row['address_display']}/{row['city']}/{row['country']}",
        "location_id": int(row["location_id"]),
        "state": row["state"],
        "status": status,
        "started_at": row["started_at"].isoformat(),
        "ended_at": row["ended_at"].isoformat() if row["ended_at"] is not None else None,
        "reason": row["reason"],
        "evidence": json.loads(row["evidence"]),
        "episode": episode_key(row["location_id"], row["state"], row["started_at"]),
    }


def post_json(url: str, body: Mapping[str, Any], timeout_s: float) -> None:
    """POST ``body``; raise ``OSError`` (``urllib.error.URLError``/``HTTPError``) unless a 2xx comes back."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "traffic-platform"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (a configured http(s) URL)
        if not 200 <= response.status < 300:
            raise urllib.error.HTTPError(url, response.status, "not a 2xx answer", response.headers, None)


def deliver(rows: list[Mapping[str, Any]], cursor: str | None, send, first_tick_quiet: bool = True) -> tuple[str, dict]:
    """Send the missing alerts for ``rows`` through ``send(body)``; return the new cursor and figures.
    Stops at the first failed delivery (the rest is sent on a later tick, in order)."""
    sent: dict[str, str] = json.loads(cursor)["sent"] if cursor else {}
    figures: dict[str, Any] = {"sent": 0, "failed": None}
    current = set()
    for row in rows:
        key = episode_key(row["location_id"], row["state"], row["started_at"])
        current.add(key)
        if cursor is None and first_tick_quiet and row["ended_at"] is not None:
            sent[key] = "ended"
            continue
        wanted = ["started", "ended"] if row["ended_at"] is not None else ["started"]
        for status in wanted:
            if sent.get(key) == "ended" or (status == "started" and key in sent):
                continue
            try:
                send(alert_body(row, status))
            except (OSError, ValueError) as exc:
                figures["failed"] = f"{type(exc).__name__}: {exc}"
                return _encode(sent, current), figures
            sent[key] = status
            figures["sent"] += 1
    return _encode(sent, current), figures


def _encode(sent: dict[str, str], current: set[str]) -> str:
    # keep what is still in the window, and whatever was announced but not yet ended
    kept = {k: v for k, v in sent.items() if k in current or v != "ended"}
    return json.dumps({"sent": kept}, sort_keys=True)


@dg.sensor(
    name="camera_health_alerts_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="POST a JSON alert to TRAFFIC_ALERT_WEBHOOK_URL when a camera-health episode starts and when it "
    "ends (once each: the cursor advances only after a 2xx; failures are retried on the next tick).",
)
def camera_health_alerts_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SensorResult:
    settings = OrchestrationSettings.from_env()
    url = settings.alert_webhook_url
    if not url:
        return dg.SensorResult(skip_reason=dg.SkipReason("TRAFFIC_ALERT_WEBHOOK_URL is not set"), cursor=context.cursor)
    since = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=settings.health_lookback_days)
    from ..sql.reporting_tables import ensure_reporting_tables

    engine = database.get_engine()
    ensure_reporting_tables(engine)
    with engine.connect() as conn:
        rows = list(conn.execute(_EPISODES.bindparams(bindparam("since", since, type_=DateTime))).mappings())
    cursor, figures = deliver(rows, context.cursor, lambda body: post_json(url, body, settings.alert_timeout_s))
    context.log.info(f"camera health alerts: {figures}")
    if figures["failed"]:
        context.log.warning(f"alert delivery failed, retried on the next tick: {figures['failed']}")
    return dg.SensorResult(skip_reason=dg.SkipReason(f"alerts: {figures}"), cursor=cursor)
