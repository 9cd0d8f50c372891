"""Set-based SQL that fills the reporting tables, one partition (local day) at a time.

Each ``replace_*`` function runs inside the caller's transaction: it deletes the
partition's rows and inserts them again with one ``INSERT … SELECT``, so a partition is
replaced atomically and re-running it never duplicates rows. Only the window bucketing
and the seconds-between expression differ between dialects (:mod:`.dialects`).

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Date, DateTime, Float, bindparam, text
from sqlalchemy.engine import Connection

from ...domain.classes import TRAFFIC_CLASSES
from ..windows import ReportingWindow
from .dialects import dialect_of, seconds_between, window_start
from .reporting_tables import capture_summary_daily


@dataclass(frozen=True)
class ModelKey:
    model_name: str
    model_version: str

    def __str__(self) -> str:
        return f"{self.model_name}@{self.model_version}"


# 1 when camera health excludes the capture (a frozen or slate frame), else 0; in a query on captures.
HEALTH_EXCLUDED = (
    "COALESCE((SELECT f.excluded FROM capture_features f WHERE f.capture_id = captures.capture_id), 0)"
)


# 1 when the gate flagged the accepted capture as degraded (the repository writes '[]' for none).
DEGRADED = "CASE WHEN captures.quality_flags <> '[]' THEN 1 ELSE 0 END"


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
    SELECT location_id, status, captured_at, captured_at_utc, {excluded} AS health_excluded,
           {degraded} AS degraded FROM captures
    WHERE captured_at >= :start AND captured_at < :end
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
                               excluded=HEALTH_EXCLUDED, degraded=DEGRADED)
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

_COUNTS_INSERT = """
INSERT INTO {table} (location_id, window_start, traffic_class, model_name, model_version, images_received,
    images_accepted, images_distorted, total_count, mean_per_image, max_per_image, share_with_any,
    expected_images, coverage, computed_at, images_excluded_health, images_degraded)
WITH window_captures AS (
    SELECT capture_id, location_id, status, {window_start} AS window_start, {excluded} AS health_excluded,
           {degraded} AS degraded FROM captures
    WHERE captured_at >= :start AND captured_at < :end
),
classes AS ({classes}),
windows AS (
    SELECT location_id, window_start, COUNT(*) AS received,
           SUM(CASE WHEN status = 'distorted' THEN 1 ELSE 0 END) AS distorted,
           SUM(CASE WHEN status = 'accepted' AND health_excluded = 1 THEN 1 ELSE 0 END) AS excluded
    FROM window_captures GROUP BY location_id, window_start
),
processed AS (
    SELECT w.location_id, w.window_start, w.capture_id, w.degraded, k.traffic_class, k.count AS n
    FROM window_captures w
    JOIN capture_counts k ON k.capture_id = w.capture_id
         AND k.model_name = :model_name AND k.model_version = :model_version
    WHERE w.status = 'accepted' AND w.health_excluded = 0
),
accepted AS (
    SELECT location_id, window_start, COUNT(DISTINCT capture_id) AS images,
           COUNT(DISTINCT CASE WHEN degraded = 1 THEN capture_id END) AS degraded
    FROM processed GROUP BY location_id, window_start
),
per_class AS (
    SELECT location_id, window_start, traffic_class, SUM(n) AS total, MAX(n) AS most,
           SUM(CASE WHEN n > 0 THEN 1 ELSE 0 END) AS with_any
    FROM processed GROUP BY location_id, window_start, traffic_class
)
SELECT w.location_id, w.window_start, cl.traffic_class, :model_name, :model_version,
       w.received, COALESCE(a.images, 0), w.distorted, COALESCE(p.total, 0),
       CASE WHEN a.images > 0 THEN COALESCE(p.total, 0) * 1e0 / a.images END,
       CASE WHEN a.images > 0 THEN COALESCE(p.most, 0) END,
       CASE WHEN a.images > 0 THEN COALESCE(p.with_any, 0) * 1e0 / a.images END,
       :window_s / s.cadence_s,
       w.received / (:window_s / s.cadence_s),
       :computed_at, w.excluded, COALESCE(a.degraded, 0)
FROM windows w
CROSS JOIN classes cl
LEFT JOIN accepted a ON a.location_id = w.location_id AND a.window_start = w.window_start
LEFT JOIN per_class p ON p.location_id = w.location_id AND p.window_start = w.window_start
     AND p.traffic_class = cl.traffic_class
LEFT JOIN capture_summary_daily s ON s.location_id = w.location_id AND s.day = :day
"""


def _classes_sql() -> tuple[str, list]:
    selects = [f"SELECT :class_{i} AS traffic_class" for i in range(len(TRAFFIC_CLASSES))]
    return " UNION ALL ".join(selects), [bindparam(f"class_{i}", c) for i, c in enumerate(TRAFFIC_CLASSES)]


def replace_counts(
    conn: Connection,
    window: ReportingWindow,
    start: datetime,
    end: datetime,
    models: Sequence[ModelKey],
    *,
    computed_at: datetime,
) -> int:
    """Replace the partition's rows of ``window``'s counts table for ``models``; return rows written."""
    table = window.table  # an identifier derived from a validated window name, never a value
    dialect = dialect_of(conn)
    classes_sql, class_params = _classes_sql()
    insert_sql = _COUNTS_INSERT.format(
        table=table, window_start=window_start(dialect, window.seconds, "captured_at"), classes=classes_sql,
        excluded=HEALTH_EXCLUDED, degraded=DEGRADED,
    )
    written = 0
    for model in models:
        model_params = [bindparam("model_name", model.model_name), bindparam("model_version", model.model_version)]
        conn.execute(text(_COUNTS_DELETE.format(table=table)).bindparams(*_range_params(start, end), *model_params))
        result = conn.execute(
            text(insert_sql).bindparams(
                *_range_params(start, end),
                *model_params,
                *class_params,
                bindparam("window_s", float(window.seconds), type_=Float),
                bindparam("day", start.date(), type_=Date),
                bindparam("computed_at", computed_at, type_=DateTime),
            )
        )
        written += int(result.rowcount)
    return written


__all__ = ["ModelKey", "replace_capture_summary", "replace_counts", "reported_models", "capture_summary_daily"]
