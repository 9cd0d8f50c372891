"""Set-based SQL that fills the reporting tables, one partition (local day) at a time.

Each ``replace_*`` function runs inside the caller's transaction: it deletes the
partition's rows and inserts them again with ``INSERT … SELECT``, so a partition is
replaced atomically and re-running it never duplicates rows. Only the window bucketing,
the seconds-between expression and the temporary-table DDL differ between dialects
(:mod:`.dialects`).

The counts make one pass over the day's captures and counts: :func:`replace_counts`
aggregates them per (location, *slot*, class, model) into a temporary table, a slot being
the greatest common divisor of the window lengths (15 min for 15 min, 1 h and 1 day), and
fills every window's table by rolling the slots up. Every figure rolls up exactly: images,
counts and images with at least one add up (each capture lies in one slot), the maximum is
the maximum of the slots' maxima, and the mean, share, expected images and coverage are
recomputed from the sums and the window's own length.

Rules (documented for analysts in the README's Dagster section):

* **Images.** ``images_received`` counts every capture of the window (accepted and
  distorted); ``images_distorted`` the distorted ones; ``images_accepted`` the accepted
  captures the reported model processed (those with its ``capture_counts`` rows).
  Distorted captures count nowhere else.
* **Camera health.** Accepted captures that ``capture_features`` marks ``excluded`` (frozen
  or slate frames, see ``orchestration/health/rules.py``) count in ``images_received`` but
  not in ``images_accepted`` nor in any count; ``images_excluded_health`` says how many.
* **Degraded.** ``images_degraded`` counts the images of ``images_accepted`` (accepted, not
  excluded by camera health; in the windows: processed by the reported model) that the
  distortion gate flagged (``captures.quality_flags`` not ``'[]'``: fog, low light, …).
  They are counted like any other accepted image.
* **Model.** By default each capture's own ingest model: the partition is reported once
  per ingest (model_name, model_version) among its accepted captures (after a model
  change mid-day each version reports the images it processed, and
  ``images_received`` stays the window's total). With no accepted capture that day, the
  most recently ingested model is used. A run may name another version (re-detection);
  then only that version's rows are replaced.
* **Zero fill.** Every (location, window) with at least one image has a row for each of
  the six classes and each reported model. ``mean_per_image``/``max_per_image``/
  ``share_with_any`` are NULL when the model processed no image in the window.
* **Expected images.** ``expected_images = window seconds / cadence_s`` of the
  location-day, and ``coverage = images_received / expected_images``. ``cadence_s`` is
  ``TRAFFIC_CAPTURE_CADENCE_S`` for that location if set, else the median gap between
  the location's consecutive images that day (UTC, gaps of 0 s ignored), else
  ``TRAFFIC_CADENCE_FALLBACK_S`` (60 s). Windows use nominal lengths (a DST day is 24 h).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    text,
)
from sqlalchemy.engine import Connection

from ...domain.classes import TRAFFIC_CLASSES
from ...storage.tables import exact_text
from ..windows import ReportingWindow
from .dialects import (
    dialect_of,
    drop_temporary_table,
    indexed,
    ordered_join,
    seconds_between,
    window_start,
)
from .reporting_tables import capture_summary_daily, local_datetime


@dataclass(frozen=True)
class ModelKey:
    model_name: str
    model_version: str

    def __str__(self) -> str:
        return f"{self.model_name}@{self.model_version}"


# The day's captures with their camera-health row (at most one: capture_features is keyed by capture).
DAY_CAPTURES = (
    "captures c LEFT JOIN capture_features f ON f.capture_id = c.capture_id"
    " WHERE c.captured_at >= :start AND c.captured_at < :end"
)
# 1 when camera health excludes the capture (a frozen or slate frame), else 0; on DAY_CAPTURES.
HEALTH_EXCLUDED = "COALESCE(f.excluded, 0)"
# 1 when the gate flagged the accepted capture as degraded (the repository writes '[]' for none).
DEGRADED = "CASE WHEN c.quality_flags <> '[]' THEN 1 ELSE 0 END"


def _range_params(start: datetime, end: datetime) -> list:
    return [bindparam("start", start, type_=DateTime), bindparam("end", end, type_=DateTime)]


# -- which model(s) a partition reports ------------------------------------------------

_INGEST_MODELS = text(
    "SELECT DISTINCT model_name, model_version FROM captures"
    " WHERE captured_at >= :start AND captured_at < :end AND status = 'accepted'"
    " AND model_name IS NOT NULL AND model_version IS NOT NULL"
    " ORDER BY model_name, model_version"
)
_LATEST_INGEST_MODEL = text(
    "SELECT model_name, model_version FROM captures"
    " WHERE status = 'accepted' AND model_name IS NOT NULL AND model_version IS NOT NULL"
    " ORDER BY ingested_at DESC LIMIT 1"
)


def reported_models(conn: Connection, start: datetime, end: datetime, requested: ModelKey | None = None) -> list[ModelKey]:
    """The models a partition is reported for (see the module docstring)."""
    if requested is not None:
        return [requested]
    rows = conn.execute(_INGEST_MODELS.bindparams(*_range_params(start, end))).all()
    if not rows:
        rows = conn.execute(_LATEST_INGEST_MODEL).all()
    return [ModelKey(name, version) for name, version in rows]


# -- per location-day summary and cadence ------------------------------------------------

_SUMMARY_DELETE = text("DELETE FROM capture_summary_daily WHERE day = :day")

_SUMMARY_INSERT = """
INSERT INTO capture_summary_daily (location_id, day, images_received, images_accepted, images_distorted,
    first_captured_at, last_captured_at, observed_cadence_s, cadence_s, cadence_source, expected_images,
    coverage, computed_at, images_excluded_health, images_degraded)
WITH day_captures AS (
    SELECT c.location_id, c.status, c.captured_at, c.captured_at_utc, {excluded} AS health_excluded,
           {degraded} AS degraded FROM {day_captures}
),
ordered AS (
    SELECT location_id, captured_at_utc,
           LAG(captured_at_utc) OVER (PARTITION BY location_id ORDER BY captured_at_utc) AS previous_utc
    FROM day_captures
),
gaps AS (
    SELECT location_id, {gap} AS gap_s FROM ordered WHERE previous_utc IS NOT NULL
),
ranked AS (
    SELECT location_id, gap_s,
           ROW_NUMBER() OVER (PARTITION BY location_id ORDER BY gap_s) AS rn,
           COUNT(*) OVER (PARTITION BY location_id) AS n
    FROM gaps WHERE gap_s > 0
),
observed AS (
    SELECT location_id, AVG(gap_s * 1e0) AS cadence_s FROM ranked
    WHERE 2 * rn >= n AND 2 * rn <= n + 2
    GROUP BY location_id
),
summary AS (
    SELECT location_id, COUNT(*) AS received,
           SUM(CASE WHEN status = 'accepted' THEN 1 ELSE 0 END) AS accepted,
           SUM(CASE WHEN status = 'distorted' THEN 1 ELSE 0 END) AS distorted,
           MIN(captured_at) AS first_at, MAX(captured_at) AS last_at,
           SUM(CASE WHEN status = 'accepted' AND health_excluded = 1 THEN 1 ELSE 0 END) AS excluded,
           SUM(CASE WHEN status = 'accepted' AND health_excluded = 0 AND degraded = 1 THEN 1 ELSE 0 END) AS degraded
    FROM day_captures GROUP BY location_id
),
chosen AS (
    SELECT s.location_id, o.cadence_s AS observed_s, {configured} AS configured_s
    FROM summary s LEFT JOIN observed o ON o.location_id = s.location_id
)
SELECT s.location_id, :day, s.received, s.accepted, s.distorted, s.first_at, s.last_at, c.observed_s,
       COALESCE(c.configured_s, c.observed_s, :fallback_s),
       CASE WHEN c.configured_s IS NOT NULL THEN 'setting'
            WHEN c.observed_s IS NOT NULL THEN 'observed' ELSE 'fallback' END,
       86400e0 / COALESCE(c.configured_s, c.observed_s, :fallback_s),
       s.received / (86400e0 / COALESCE(c.configured_s, c.observed_s, :fallback_s)),
       :computed_at, s.excluded, s.degraded
FROM summary s JOIN chosen c ON c.location_id = s.location_id
"""


def _configured_case(configured: Mapping[int, float]) -> tuple[str, list]:
    """``CASE c.location_id WHEN :cfg_loc_0 THEN :cfg_s_0 … END`` — placeholders only."""
    if not configured:
        return "NULL", []
    parts, params = ["CASE s.location_id"], []
    for i, (location_id, seconds) in enumerate(sorted(configured.items())):
        parts.append(f"WHEN :cfg_loc_{i} THEN :cfg_s_{i}")
        params += [bindparam(f"cfg_loc_{i}", int(location_id)), bindparam(f"cfg_s_{i}", float(seconds), type_=Float)]
    parts.append("END")
    return " ".join(parts), params


def replace_capture_summary(
    conn: Connection,
    start: datetime,
    end: datetime,
    *,
    configured_cadence: Mapping[int, float],
    fallback_cadence_s: float,
    computed_at: datetime,
) -> int:
    """Replace the partition's ``capture_summary_daily`` rows; return how many were written."""
    dialect = dialect_of(conn)
    configured_sql, configured_params = _configured_case(configured_cadence)
    sql = _SUMMARY_INSERT.format(gap=seconds_between(dialect, "previous_utc", "captured_at_utc"), configured=configured_sql,
                               excluded=HEALTH_EXCLUDED, degraded=DEGRADED, day_captures=DAY_CAPTURES)
    day = start.date()
    conn.execute(_SUMMARY_DELETE.bindparams(bindparam("day", day, type_=Date)))
    result = conn.execute(
        text(sql).bindparams(
            *_range_params(start, end),
            bindparam("day", day, type_=Date),
            bindparam("fallback_s", float(fallback_cadence_s), type_=Float),
            bindparam("computed_at", computed_at, type_=DateTime),
            *configured_params,
        )
    )
    return int(result.rowcount)


# -- traffic counts per window ----------------------------------------------------------

_COUNTS_DELETE = (
    "DELETE FROM {table} WHERE window_start >= :start AND window_start < :end"
    " AND model_name = :model_name AND model_version = :model_version"
)

SLOTS = "tmp_counts_slots"  # the temporary table of the one pass (per connection, dropped after use)

# The figures of one model per (location, slot, class), zero-filled: every slot with an image
# gets the six classes. ``counted``: an accepted capture camera health keeps that the model
# processed (it has the model's capture_counts rows). max_count is NULL when the model
# processed no image of the slot. The counts are joined from the day's captures (ordered_join),
# through ix_capture_counts_day: each capture's rows lie next to the previous capture's.
_SLOTS_INSERT = """
INSERT INTO {slots} (location_id, slot_start, traffic_class, model_name, model_version, images_received,
    images_distorted, images_excluded_health, images_accepted, images_degraded, total_count, max_count, with_any)
WITH slot_captures AS (
    SELECT c.capture_id, c.captured_at, c.location_id, c.status, {slot_start} AS slot_start,
           {excluded} AS health_excluded, {degraded} AS degraded,
           CASE WHEN c.status = 'accepted' AND {excluded} = 0 AND EXISTS (
               SELECT 1 FROM {day_counts}
               WHERE k.captured_at = c.captured_at AND k.capture_id = c.capture_id
                 AND k.model_name = :model_name AND k.model_version = :model_version
           ) THEN 1 ELSE 0 END AS counted
    FROM {day_captures}
),
classes AS ({classes}),
slots AS (
    SELECT location_id, slot_start, COUNT(*) AS received,
           SUM(CASE WHEN status = 'distorted' THEN 1 ELSE 0 END) AS distorted,
           SUM(CASE WHEN status = 'accepted' AND health_excluded = 1 THEN 1 ELSE 0 END) AS excluded,
           SUM(counted) AS images, SUM(counted * degraded) AS degraded
    FROM slot_captures GROUP BY location_id, slot_start
),
per_class AS (
    SELECT w.location_id, w.slot_start, k.traffic_class, SUM(k.count) AS total, MAX(k.count) AS most,
           SUM(CASE WHEN k.count > 0 THEN 1 ELSE 0 END) AS with_any
    FROM slot_captures w
    {ordered_join} {day_counts} ON k.captured_at = w.captured_at AND k.capture_id = w.capture_id
         AND k.model_name = :model_name AND k.model_version = :model_version
    WHERE w.status = 'accepted' AND w.health_excluded = 0
    GROUP BY w.location_id, w.slot_start, k.traffic_class
)
SELECT w.location_id, w.slot_start, cl.traffic_class, :model_name, :model_version, w.received, w.distorted,
       w.excluded, w.images, w.degraded, COALESCE(p.total, 0),
       CASE WHEN w.images > 0 THEN COALESCE(p.most, 0) END, COALESCE(p.with_any, 0)
FROM slots w
CROSS JOIN classes cl
LEFT JOIN per_class p ON p.location_id = w.location_id AND p.slot_start = w.slot_start
     AND p.traffic_class = cl.traffic_class
"""

# One window's rows from the slots it is made of.
_ROLLUP_INSERT = """
INSERT INTO {table} (location_id, window_start, traffic_class, model_name, model_version, images_received,
    images_accepted, images_distorted, total_count, mean_per_image, max_per_image, share_with_any,
    expected_images, coverage, computed_at, images_excluded_health, images_degraded)
SELECT g.location_id, g.window_start, g.traffic_class, g.model_name, g.model_version,
       g.received, g.images, g.distorted, g.total,
       CASE WHEN g.images > 0 THEN g.total * 1e0 / g.images END,
       CASE WHEN g.images > 0 THEN g.most END,
       CASE WHEN g.images > 0 THEN g.with_any * 1e0 / g.images END,
       :window_s / s.cadence_s,
       g.received / (:window_s / s.cadence_s),
       :computed_at, g.excluded, g.degraded
FROM (
    SELECT location_id, {window_start} AS window_start, traffic_class, model_name, model_version,
           SUM(images_received) AS received, SUM(images_accepted) AS images, SUM(images_distorted) AS distorted,
           SUM(images_excluded_health) AS excluded, SUM(images_degraded) AS degraded, SUM(total_count) AS total,
           MAX(max_count) AS most, SUM(with_any) AS with_any
    FROM {slots}
    GROUP BY location_id, {window_start}, traffic_class, model_name, model_version
) g
LEFT JOIN capture_summary_daily s ON s.location_id = g.location_id AND s.day = :day
"""


def slot_seconds(windows: Sequence[ReportingWindow]) -> int:
    """The longest slot every window is a whole number of (each window divides a day, so this does too)."""
    return math.gcd(*(window.seconds for window in windows))


def day_counts(dialect: str) -> str:
    """``capture_counts k`` read through ``ix_capture_counts_day``: join it on ``captured_at`` and
    ``capture_id`` from the day's captures, and each capture's rows lie next to the previous one's."""
    return indexed(dialect, "capture_counts", "k", "ix_capture_counts_day")


def _slots_table() -> Table:
    return Table(
        SLOTS, MetaData(),
        Column("location_id", Integer, nullable=False),
        Column("slot_start", local_datetime(), nullable=False),
        Column("traffic_class", String(16), nullable=False),
        Column("model_name", exact_text(200), nullable=False),
        Column("model_version", exact_text(64), nullable=False),
        *(Column(name, Integer, nullable=False) for name in (
            "images_received", "images_distorted", "images_excluded_health", "images_accepted", "images_degraded",
            "total_count", "with_any")),
        Column("max_count", Integer, nullable=True),
        prefixes=["TEMPORARY"],
    )


def _classes_sql() -> tuple[str, list]:
    selects = [f"SELECT :class_{i} AS traffic_class" for i in range(len(TRAFFIC_CLASSES))]
    return " UNION ALL ".join(selects), [bindparam(f"class_{i}", c) for i, c in enumerate(TRAFFIC_CLASSES)]


def replace_counts(
    conn: Connection,
    windows: Sequence[ReportingWindow],
    start: datetime,
    end: datetime,
    models: Sequence[ModelKey],
    *,
    computed_at: datetime,
) -> dict[str, int]:
    """Replace the partition's rows of every window's counts table for ``models``; rows written per window."""
    dialect = dialect_of(conn)
    slots = _slots_table()
    conn.execute(text(drop_temporary_table(dialect, SLOTS)))  # left over on this pooled connection by a failed run
    slots.create(conn)
    classes_sql, class_params = _classes_sql()
    slots_sql = text(_SLOTS_INSERT.format(
        slots=SLOTS, slot_start=window_start(dialect, slot_seconds(windows), "c.captured_at"), classes=classes_sql,
        excluded=HEALTH_EXCLUDED, degraded=DEGRADED, day_captures=DAY_CAPTURES, ordered_join=ordered_join(dialect),
        day_counts=day_counts(dialect),
    ))
    for model in models:
        conn.execute(slots_sql.bindparams(*_range_params(start, end), *_model_params(model), *class_params))
    written: dict[str, int] = {}
    for window in windows:
        table = window.table  # an identifier derived from a validated window name, never a value
        for model in models:
            conn.execute(text(_COUNTS_DELETE.format(table=table)).bindparams(*_range_params(start, end), *_model_params(model)))
        rollup = _ROLLUP_INSERT.format(table=table, slots=SLOTS, window_start=window_start(dialect, window.seconds, "slot_start"))
        result = conn.execute(text(rollup).bindparams(
            bindparam("window_s", float(window.seconds), type_=Float),
            bindparam("day", start.date(), type_=Date),
            bindparam("computed_at", computed_at, type_=DateTime),
        ))
        written[window.name] = int(result.rowcount)
    conn.execute(text(drop_temporary_table(dialect, SLOTS)))
    return written


def _model_params(model: ModelKey) -> list:
    return [bindparam("model_name", model.model_name), bindparam("model_version", model.model_version)]


__all__ = ["ModelKey", "replace_capture_summary", "replace_counts", "reported_models", "capture_summary_daily", "slot_seconds"]
