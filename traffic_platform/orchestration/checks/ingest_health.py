"""Warning checks on ingest health: duplicates, distorted-rate anomalies, freshness, spool backlog.

They never block the counts (severity WARN): the numbers are still right, but someone
should look (a camera re-sending, a lens getting dirty, a camera gone quiet).
"""


from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from sqlalchemy import Date, DateTime, bindparam, text
from sqlalchemy.engine import Connection

from ..assets.ingest_tables import CAPTURES, LOCATIONS
from ..assets.reporting import CAPTURE_SUMMARY
from ..dagster_previews import accepted_previews
from ..partitions import partition_day
from ..resources import DatabaseResource, IngestResource
from ..settings import OrchestrationSettings
from ..sql.dialects import dialect_of, indexed
from .day_rows import partition_params
from .ingest_quality import SAMPLE
from .stats import score_today

DISTORTED_RATE_FLOOR = 0.02  # two percentage points: below this a rate change is noise


def _warn(passed: bool, metadata: dict[str, Any]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={k: (dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v) for k, v in metadata.items()},
    )


# -- duplicates -----------------------------------------------------------------------

# The day's captures and their hashes from their day index (which covers content_sha256; with
# history MariaDB chose a whole-table scan), each hash looked up in ix_captures_content_sha256.
_DUPLICATES = """
FROM {captures}
WHERE c.captured_at >= :start AND c.captured_at < :end AND EXISTS (
    SELECT 1 FROM captures o WHERE o.content_sha256 = c.content_sha256 AND o.capture_id <> c.capture_id
)
"""


def check_duplicates(conn: Connection, partition_key: str) -> dg.AssetCheckResult:
    params = partition_params(partition_key)
    day = _DUPLICATES.format(captures=indexed(dialect_of(conn), "captures", "c", "ix_captures_captured_at"))
    duplicated, hashes = (int(v or 0) for v in conn.execute(
        text(f"SELECT COUNT(*), COUNT(DISTINCT c.content_sha256) {day}").bindparams(*params)).one())
    sample = [
        {"capture_id": r[0], "file_name": r[1], "content_sha256": r[2]}
        for r in conn.execute(
            text(f"SELECT c.capture_id, c.file_name, c.content_sha256 {day} ORDER BY c.content_sha256, c.capture_id LIMIT :sample").bindparams(
                *params, bindparam("sample", SAMPLE)
            )
        )
    ] if duplicated else []
    return _warn(duplicated == 0, {"captures_sharing_content": duplicated, "distinct_hashes": hashes, "sample": sample})


_NO_DUPLICATE_CONTENT = "No capture of the day has the same image bytes (content_sha256) as another capture."


# -- distorted-rate anomaly -------------------------------------------------------------

_SUMMARY_HISTORY = text(
    "SELECT location_id, day, images_received, images_distorted FROM capture_summary_daily"
    " WHERE day >= :first AND day <= :day ORDER BY location_id, day"
)


def check_distorted_rate(conn: Connection, partition_key: str, settings: OrchestrationSettings) -> dg.AssetCheckResult:
    """Flag locations whose distorted share of the day is ``z > TRAFFIC_ANOMALY_Z`` above their history."""
    day = partition_day(partition_key)
    first = day - timedelta(days=settings.anomaly_history_days)
    rates: dict[int, dict[Any, float]] = defaultdict(dict)
    for location_id, row_day, received, distorted in conn.execute(
        _SUMMARY_HISTORY.bindparams(bindparam("first", first, type_=Date), bindparam("day", day, type_=Date))
    ):
        if received:
            rates[int(location_id)][str(row_day)[:10]] = distorted / received
    scores, too_short = score_today(rates, day.isoformat(), min_history_days=settings.anomaly_min_history_days,
                                    floor=lambda _history: DISTORTED_RATE_FLOOR)
    flagged = [{"location_id": location_id, **score.as_dict()} for location_id, score in scores if score.z > settings.anomaly_z]
    return _warn(
        not flagged,
        {
            "locations_scored": len(scores),
            "locations_with_short_history": too_short,
            "threshold_z": settings.anomaly_z,
            "anomalies": flagged,
        },
    )


_DISTORTED_RATE_ANOMALY = (
    "A location's share of distorted images today is not far above its own history: robust z = "
    "(rate - median) / max(1.4826·MAD, 0.02) over the previous TRAFFIC_ANOMALY_HISTORY_DAYS (28) days, "
    "needs >= TRAFFIC_ANOMALY_MIN_HISTORY_DAYS (7) days, warns when z > TRAFFIC_ANOMALY_Z (4)."
)


def _day_health_checks(partitions: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    """The day's duplicate and distorted-rate checks, in one step."""
    with accepted_previews("partitioned_checks"):  # the specs' partitions_def
        @dg.multi_asset_check(
            name="ingest_health_day_checks",
            specs=[
                dg.AssetCheckSpec("no_duplicate_content", asset=CAPTURE_SUMMARY, description=_NO_DUPLICATE_CONTENT,
                                  partitions_def=partitions, additional_deps=[CAPTURES]),
                dg.AssetCheckSpec("distorted_rate_anomaly", asset=CAPTURE_SUMMARY, description=_DISTORTED_RATE_ANOMALY,
                                  partitions_def=partitions),
            ],
            description="Duplicate image bytes and the distorted-rate anomaly of the day (warnings).",
        )
        def ingest_health_day_checks(context: dg.AssetCheckExecutionContext, database: DatabaseResource):
            with database.get_engine().connect() as conn:
                results = {"no_duplicate_content": check_duplicates(conn, context.partition_key),
                           "distorted_rate_anomaly": check_distorted_rate(conn, context.partition_key,
                                                                          OrchestrationSettings.from_env())}
            for name, result in results.items():
                yield dg.AssetCheckResult(check_name=name, asset_key=CAPTURE_SUMMARY, passed=result.passed,
                                          severity=result.severity, metadata=result.metadata)

    return ingest_health_day_checks


# -- freshness ------------------------------------------------------------------------

_LAST_INGEST = text(
    """
SELECT l.id, l.address_display, l.city, l.country, MAX(c.ingested_at) AS last_ingested
FROM captures c JOIN locations l ON l.id = c.location_id
WHERE c.ingested_at >= :active_since
GROUP BY l.id, l.address_display, l.city, l.country
ORDER BY l.id
"""
).columns(last_ingested=DateTime)


def check_freshness(conn: Connection, settings: OrchestrationSettings, now: datetime | None = None) -> dg.AssetCheckResult:
    """Warn about active locations (an image in the last N days) silent for longer than the limit."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    active_since = now - timedelta(days=settings.active_location_days)
    stale, active = [], 0
    for location_id, address, city, country, last in conn.execute(
        _LAST_INGEST.bindparams(bindparam("active_since", active_since, type_=DateTime))
    ):
        active += 1
        age = (now - last).total_seconds()
        if age > settings.freshness_max_age_s:
            stale.append({"location_id": int(location_id), "location": f"{address}, {city}, {country}",
                          "last_ingested_at": last.isoformat(), "age_s": round(age)})
    return _warn(
        not stale,
        {"active_locations": active, "stale_locations": len(stale), "max_age_s": settings.freshness_max_age_s,
         "stale": sorted(stale, key=lambda s: -s["age_s"])[:50]},
    )


@dg.asset_check(
    asset=CAPTURES,
    name="captures_fresh_per_location",
    additional_deps=[LOCATIONS],
    description="Every active location (an image in the last TRAFFIC_ACTIVE_LOCATION_DAYS days) sent an image "
    "within TRAFFIC_FRESHNESS_MAX_AGE_S (30 min) of now (by ingested_at, UTC).",
)
def captures_fresh_per_location(context: dg.AssetCheckExecutionContext, database: DatabaseResource) -> dg.AssetCheckResult:
    with database.get_engine().connect() as conn:
        return check_freshness(conn, OrchestrationSettings.from_env())


# -- spool backlog ----------------------------------------------------------------------


def check_spool_backlog(backlog: dict[str, float] | None, warn_minutes: float) -> dg.AssetCheckResult:
    """Warn when the oldest job waiting in the local spool is older than ``warn_minutes``: accepted
    images are safe there, but the tables (and the reports) are behind until it drains."""
    limit_s = warn_minutes * 60
    if backlog is None:
        return _warn(True, {"spool": "none in this home", "max_age_s": limit_s})
    return _warn(backlog["oldest_pending_age_s"] <= limit_s, {**backlog, "max_age_s": limit_s})


@dg.asset_check(
    asset=CAPTURES,
    name="spool_backlog_not_stale",
    description="The oldest capture job waiting in the local spool (accepted, not yet stored) is younger than "
    "TRAFFIC_BACKLOG_WARN_MINUTES (10): else the database or object store has been failing for that long.",
)
def spool_backlog_not_stale(context: dg.AssetCheckExecutionContext, ingest: IngestResource) -> dg.AssetCheckResult:
    return check_spool_backlog(ingest.spool_backlog(), ingest.settings().backlog_warn_minutes)


def ingest_health_checks(partitions: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    """The warning checks on ingest health; the per-day ones partitioned by ``partitions``."""
    return [_day_health_checks(partitions), captures_fresh_per_location, spool_backlog_not_stale]
