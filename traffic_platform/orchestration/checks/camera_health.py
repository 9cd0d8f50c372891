"""Checks on camera health: the episodes are consistent (blocking), no location has an open
problem (warning), and the day's images could be read for their features (warning)."""


from typing import Any

import dagster as dg
from sqlalchemy import text
from sqlalchemy.engine import Connection

from ..assets.camera_health import CAMERA_HEALTH, CAPTURE_FEATURES
from ..health.rules import STATES
from ..resources import DatabaseResource
from .day_rows import partition_params
from .partitioned import partition_check

_BACKWARDS = text("SELECT location_id, state, started_at, ended_at FROM camera_health WHERE ended_at < started_at")
_OVERLAPS = text(
    "SELECT a.location_id, a.state, a.started_at, b.started_at FROM camera_health a JOIN camera_health b"
    " ON a.location_id = b.location_id AND a.state = b.state AND a.started_at < b.started_at"
    " AND (a.ended_at IS NULL OR a.ended_at > b.started_at)"
)
_UNKNOWN = text("SELECT DISTINCT state FROM camera_health")
_OPEN = text(
    "SELECT h.location_id, l.address, l.city, l.country, h.state, h.started_at, h.reason FROM camera_health h"
    " JOIN locations l ON l.id = h.location_id WHERE h.ended_at IS NULL ORDER BY h.started_at"
)
# A missing object is a problem for any capture; an undecodable one only for an accepted capture
# (a distorted capture may be kept precisely because it did not decode: image_undecodable).
_UNREADABLE = text(
    "SELECT COUNT(*), SUM(CASE WHEN f.feature_error = 'image_missing'"
    " OR (f.feature_error = 'undecodable' AND c.status = 'accepted') THEN 1 ELSE 0 END)"
    " FROM capture_features f JOIN captures c ON c.capture_id = f.capture_id"
    " WHERE c.captured_at >= :start AND c.captured_at < :end"
)


def _sample(rows: Any) -> list[list[str]]:
    return [[str(v) for v in row] for row in list(rows)[:10]]


def check_health_consistent(conn: Connection) -> dg.AssetCheckResult:
    """No episode ends before it starts, none overlaps another of its location and state, states are known."""
    backwards = conn.execute(_BACKWARDS).all()
    overlaps = conn.execute(_OVERLAPS).all()
    unknown = sorted({s for (s,) in conn.execute(_UNKNOWN)} - set(STATES))
    return dg.AssetCheckResult(
        passed=not (backwards or overlaps or unknown),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"ended_before_start": len(backwards), "overlapping": len(overlaps), "unknown_states": unknown,
                  "sample": dg.MetadataValue.json(_sample(backwards) + _sample(overlaps))},
    )


def check_no_open_problems(conn: Connection) -> dg.AssetCheckResult:
    """Warn while a location has an open episode (any state)."""
    rows = conn.execute(_OPEN).all()
    return dg.AssetCheckResult(
        passed=not rows,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"open_problems": len(rows), "problems": dg.MetadataValue.json(
            [{"location": f"{r[1]}/{r[2]}/{r[3]}", "state": r[4], "since": str(r[5]), "reason": r[6]} for r in rows[:50]])},
    )


def check_features_readable(conn: Connection, partition_key: str) -> dg.AssetCheckResult:
    """Every stored image of the day was found, and every accepted one decoded, for its features."""
    total, unreadable = conn.execute(_UNREADABLE.bindparams(*partition_params(partition_key))).one()
    return dg.AssetCheckResult(
        passed=not unreadable, severity=dg.AssetCheckSeverity.WARN,
        metadata={"captures": int(total or 0), "unreadable_images": int(unreadable or 0)},
    )


@dg.asset_check(asset=CAMERA_HEALTH, name="camera_health_consistent", blocking=True,
                description="No camera_health episode ends before it starts or overlaps another of the same location "
                "and state, and every state is one of offline, frozen, slate, moved, obstructed, clock_drift.")
def camera_health_consistent(database: DatabaseResource) -> dg.AssetCheckResult:
    with database.get_engine().connect() as conn:
        return check_health_consistent(conn)


@dg.asset_check(asset=CAMERA_HEALTH, name="camera_health_no_open_problems",
                description="Warns while any location has an open camera-health episode (ended_at NULL), listing them.")
def camera_health_no_open_problems(database: DatabaseResource) -> dg.AssetCheckResult:
    with database.get_engine().connect() as conn:
        return check_no_open_problems(conn)


def camera_health_checks(partitions: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    readable = partition_check(
        partitions, check_features_readable, asset=CAPTURE_FEATURES, name="capture_features_images_readable",
        description="Every stored image of the day was found in the object store, and every accepted one "
        "decoded, for its camera-health features (a missing one is tried again on the next run; a distorted "
        "capture kept because it did not decode is expected).",
    )
    return [camera_health_consistent, camera_health_no_open_problems, readable]
