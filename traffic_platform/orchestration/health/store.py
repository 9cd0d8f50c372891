"""Reading and writing the camera-health tables (``capture_features``, ``camera_health``).

The SQL side of :mod:`..assets.camera_health`: frames in arrival order per location, the
feature rows of a partition, and the idempotent replacement of the episodes of a window.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, DateTime, and_, bindparam, delete, insert, or_, select, text, update
from sqlalchemy.engine import Connection

from ..sql.reporting_tables import camera_health, capture_features
from .rules import FRAME_STATES, Episode, Flags, Frame

_FRAME_COLUMNS = (
    "SELECT c.capture_id, c.location_id, c.ingested_at, c.captured_at_utc, c.content_sha256,"
    " f.dhash, f.thumb, f.uniform_share, f.repeated_line_share, f.sharpness"
)


def frame_from_row(row: Mapping[str, Any]) -> Frame:
    return Frame(
        capture_id=row["capture_id"], arrived_at=row["ingested_at"], captured_at_utc=row["captured_at_utc"],
        content_sha256=row["content_sha256"],
        dhash=int(row["dhash"], 16) if row["dhash"] else None,
        thumb=bytes.fromhex(row["thumb"]) if row["thumb"] else None,
        uniform_share=row["uniform_share"], repeated_line_share=row["repeated_line_share"],
        sharpness=row["sharpness"],
    )


def context_frames(conn: Connection, location_id: int, before: datetime, day: date, limit: int) -> list[Frame]:
    """The ``limit`` frames of a location that arrived before ``before`` on other days, oldest first."""
    rows = conn.execute(text(
        _FRAME_COLUMNS + " FROM capture_features f JOIN captures c ON c.capture_id = f.capture_id"
        " WHERE f.location_id = :loc AND f.arrived_at < :before AND f.day <> :day"
        " ORDER BY f.arrived_at DESC, c.capture_id DESC LIMIT :limit"
    ).bindparams(bindparam("loc", location_id), bindparam("before", before, type_=DateTime),
                 bindparam("day", day, type_=Date), bindparam("limit", limit)).columns(
        ingested_at=DateTime, captured_at_utc=DateTime)).mappings().all()
    return [frame_from_row(r) for r in reversed(rows)]


def replace_features(conn: Connection, day: date, rows: Sequence[dict[str, Any]]) -> None:
    conn.execute(delete(capture_features).where(capture_features.c.day == day))
    if rows:
        conn.execute(insert(capture_features), list(rows))


@dataclass(frozen=True)
class FlaggedFrame:
    location_id: int
    frame: Frame
    flags: Flags


def flagged_frames(conn: Connection, start: datetime, end: datetime) -> dict[int, list[tuple[Frame, Flags]]]:
    """Per location, the frames that arrived in ``[start, end]`` with their stored flags, in arrival order."""
    rows = conn.execute(text(
        "SELECT c.capture_id, c.location_id, c.ingested_at, c.captured_at_utc, c.content_sha256, f.evidence, "
        + ", ".join(f"f.{s}" for s in FRAME_STATES)
        + " FROM capture_features f JOIN captures c ON c.capture_id = f.capture_id"
        " WHERE f.arrived_at >= :start AND f.arrived_at <= :end ORDER BY f.location_id, f.arrived_at, c.capture_id"
    ).bindparams(bindparam("start", start, type_=DateTime), bindparam("end", end, type_=DateTime)).columns(
        ingested_at=DateTime, captured_at_utc=DateTime)).mappings()
    out: dict[int, list[tuple[Frame, Flags]]] = defaultdict(list)
    for r in rows:
        frame = Frame(r["capture_id"], r["ingested_at"], r["captured_at_utc"], r["content_sha256"])
        flags = Flags({s for s in FRAME_STATES if r[s]}, json.loads(r["evidence"]))
        out[int(r["location_id"])].append((frame, flags))
    return out


def arrivals(conn: Connection, start: datetime, end: datetime, active_since: datetime) -> dict[int, list[tuple[datetime, date]]]:
    """Per location active since ``active_since``: (arrival, local day) of every capture that arrived
    in ``[start, end]``, preceded by the last one before ``start`` (if any), in arrival order."""
    params = [bindparam("start", start, type_=DateTime), bindparam("end", end, type_=DateTime),
              bindparam("active", active_since, type_=DateTime)]
    active = "(SELECT location_id FROM captures WHERE ingested_at >= :active AND ingested_at <= :end)"
    rows = conn.execute(text(
        "SELECT location_id, ingested_at, captured_at FROM captures WHERE ingested_at >= :start AND ingested_at <= :end"
        " UNION ALL SELECT c.location_id, c.ingested_at, c.captured_at FROM captures c JOIN ("
        "  SELECT location_id, MAX(ingested_at) AS last_at FROM captures WHERE ingested_at < :start"
        f"  AND location_id IN {active} GROUP BY location_id) p"
        " ON p.location_id = c.location_id AND p.last_at = c.ingested_at"
    ).bindparams(*params).columns(ingested_at=DateTime, captured_at=DateTime)).all()
    out: dict[int, list[tuple[datetime, date]]] = defaultdict(list)
    for location_id, ingested_at, captured_at in rows:
        out[int(location_id)].append((ingested_at, captured_at.date()))
    for values in out.values():
        values.sort()
    return out


def cadences(conn: Connection, first_day: date, last_day: date) -> dict[tuple[int, date], float]:
    """(location_id, local day) -> the cadence the capture summary used that day."""
    rows = conn.execute(text(
        "SELECT location_id, day, cadence_s FROM capture_summary_daily WHERE day >= :first AND day <= :last"
    ).bindparams(bindparam("first", first_day, type_=Date), bindparam("last", last_day, type_=Date))).all()
    return {(int(loc), day if isinstance(day, date) else date.fromisoformat(str(day))): float(c) for loc, day, c in rows}


def open_at(conn: Connection, moment: datetime) -> dict[tuple[int, str], Mapping[str, Any]]:
    """The stored episodes that started before ``moment`` and had not ended by then, by (location, state)."""
    rows = conn.execute(select(camera_health).where(and_(
        camera_health.c.started_at < moment,
        or_(camera_health.c.ended_at.is_(None), camera_health.c.ended_at >= moment)))).mappings()
    return {(int(r["location_id"]), r["state"]): r for r in rows}


def replace_episodes(conn: Connection, start: datetime, computed: Iterable[tuple[int, Episode]],
                     first_arrival: Mapping[int, datetime], computed_at: datetime) -> dict[str, int]:
    """Replace the episodes that start at or after ``start`` by ``computed`` (location, episode).

    An episode stored from before ``start`` and still open then is continued by a computed one
    of the same location and state that starts at that location's first frame in the window
    (its end is updated, its start kept), or closed at that first frame when none does. A
    computed episode that starts before ``start`` (an outage whose last image arrived before
    it) updates the stored row with its start, or is inserted. Idempotent.
    """
    carried = open_at(conn, start)
    conn.execute(delete(camera_health).where(camera_health.c.started_at >= start))
    figures = {"inserted": 0, "continued": 0, "closed": 0}
    continued: set[tuple[int, str]] = set()
    for location_id, e in computed:
        key = (location_id, e.state)
        old = carried.get(key)
        values = {"ended_at": e.ended_at, "reason": e.reason[:400], "evidence": json.dumps(e.evidence, sort_keys=True),
                  "computed_at": computed_at}
        if old is not None and (e.started_at == old["started_at"] or (
                e.state != "offline" and e.started_at == first_arrival.get(location_id))):
            conn.execute(update(camera_health).where(_identity(location_id, e.state, old["started_at"])).values(values))
            continued.add(key)
            figures["continued"] += 1
        elif e.started_at < start:
            exists = conn.execute(select(camera_health.c.state).where(_identity(location_id, e.state, e.started_at))).first()
            if exists:
                conn.execute(update(camera_health).where(_identity(location_id, e.state, e.started_at)).values(values))
            else:
                conn.execute(insert(camera_health).values(location_id=location_id, state=e.state, started_at=e.started_at, **values))
                figures["inserted"] += 1
        else:
            conn.execute(insert(camera_health).values(location_id=location_id, state=e.state, started_at=e.started_at, **values))
            figures["inserted"] += 1
    for key, old in carried.items():
        if key in continued or old["ended_at"] is not None or key[0] not in first_arrival:
            continue
        conn.execute(update(camera_health).where(_identity(key[0], key[1], old["started_at"])).values(
            ended_at=first_arrival[key[0]], computed_at=computed_at))
        figures["closed"] += 1
    return figures


def _identity(location_id: int, state: str, started_at: datetime):
    return and_(camera_health.c.location_id == location_id, camera_health.c.state == state,
                camera_health.c.started_at == started_at)
