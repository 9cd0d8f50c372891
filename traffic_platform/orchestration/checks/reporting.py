"""Checks on the published counts: they reconcile with the ingest tables (blocking) and
daily totals are not anomalous against each location's history (warning). All run as one
step, which reads the day's ingest side once for every window."""


from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from statistics import median
from typing import Any

import dagster as dg
from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.engine import Connection

from ...domain.classes import TRAFFIC_CLASSES
from ..assets.reporting import COUNTS_KEYS, counts_key
from ..dagster_previews import accepted_previews
from ..partitions import partition_bounds, partition_day
from ..resources import DatabaseResource
from ..settings import OrchestrationSettings
from ..sql.aggregation import day_counts
from ..sql.dialects import dialect_of
from ..windows import WINDOWS, ReportingWindow
from .day_rows import partition_params
from .stats import score_today

# -- reconcile ------------------------------------------------------------------------

# Fixed per table: identifiers come only from the declared windows' table names.
_TABLE_TOTALS = (
    "SELECT model_name, model_version, traffic_class, COUNT(*) AS n_rows, SUM(total_count) AS total,"
    " SUM(images_received) AS received, SUM(images_accepted) AS accepted, SUM(images_distorted) AS distorted,"
    " SUM(images_excluded_health) AS excluded_health, SUM(images_degraded) AS degraded"
    " FROM {table} WHERE window_start >= :start AND window_start < :end"
    " GROUP BY model_name, model_version, traffic_class"
)
_TABLE_GROUPS_NOT_SIX = (
    "SELECT COUNT(*) FROM (SELECT location_id, window_start, model_name, model_version, COUNT(*) AS n"
    " FROM {table} WHERE window_start >= :start AND window_start < :end AND traffic_class IN :classes"
    " GROUP BY location_id, window_start, model_name, model_version) x WHERE x.n <> :n_classes"
)
# The ingest side, from capture_counts (which the blocking check upstream proved equal to
# the detections): per model and class, the sum of counts and the images with a row, without
# the captures camera health excludes (frozen or slate frames: capture_features.excluded), and
# of those images the ones the gate flagged as degraded. A capture's counts are looked up in
# ix_capture_counts_day, in the order the day's captures are read.
_DAY_CAPTURES = (
    " FROM captures c LEFT JOIN capture_features f ON f.capture_id = c.capture_id{join}"
    " WHERE c.captured_at >= :start AND c.captured_at < :end"
)


def _counted(dialect: str) -> Any:
    join = f" JOIN {day_counts(dialect)} ON k.captured_at = c.captured_at AND k.capture_id = c.capture_id"
    return text(
        "SELECT k.model_name, k.model_version, k.traffic_class, SUM(k.count), COUNT(*),"
        " SUM(CASE WHEN c.quality_flags <> '[]' THEN 1 ELSE 0 END)"
        + _DAY_CAPTURES.format(join=join)
        + " AND c.status = 'accepted' AND COALESCE(f.excluded, 0) = 0 GROUP BY k.model_name, k.model_version, k.traffic_class"
    )


_CAPTURED = text(
    "SELECT COUNT(*), SUM(CASE WHEN c.status = 'distorted' THEN 1 ELSE 0 END),"
    " SUM(CASE WHEN c.status = 'accepted' AND f.excluded = 1 THEN 1 ELSE 0 END)" + _DAY_CAPTURES.format(join="")
)
_INGEST_MODELS = text(
    "SELECT DISTINCT c.model_name, c.model_version FROM captures c"
    " WHERE c.captured_at >= :start AND c.captured_at < :end AND c.status = 'accepted' AND c.model_name IS NOT NULL"
)


@dataclass(frozen=True)
class IngestTotals:
    """The day's ingest side of the reconcile, the same for every window (read once)."""

    counted: dict[tuple[str, str, str], tuple[int, int, int]]  # (model, version, class) -> (total, images, degraded)
    captured: int
    distorted: int
    excluded: int
    ingest_models: set[tuple[str, str]]


def ingest_totals(conn: Connection, partition_key: str) -> IngestTotals:
    params = partition_params(partition_key)
    counted = {
        (m, v, c): (int(total or 0), int(images), int(degraded or 0))
        for m, v, c, total, images, degraded in conn.execute(_counted(dialect_of(conn)).bindparams(*params))
    }
    captured, distorted, excluded = (int(v or 0) for v in conn.execute(_CAPTURED.bindparams(*params)).one())
    ingest_models = {(m, v) for m, v in conn.execute(_INGEST_MODELS.bindparams(*params))}
    return IngestTotals(counted, captured, distorted, excluded, ingest_models)


def check_counts_reconcile(conn: Connection, window: ReportingWindow, partition_key: str,
                           ingest: IngestTotals | None = None) -> dg.AssetCheckResult:
    """The partition's rows of one counts table add up to the ingest tables, per model and class
    (``ingest``: :func:`ingest_totals` of the partition, read here when not given)."""
    table = window.table
    params = partition_params(partition_key)
    ingest = ingest or ingest_totals(conn, partition_key)
    counted = ingest.counted
    processed = {(m, v) for (m, v, _) in counted}
    captured, distorted, excluded = ingest.captured, ingest.distorted, ingest.excluded
    problems: list[dict[str, Any]] = []
    models: set[tuple[str, str]] = set()
    for row in conn.execute(text(_TABLE_TOTALS.format(table=table)).bindparams(*params)).mappings():
        model = (row["model_name"], row["model_version"])
        models.add(model)
        total, images, degraded = counted.get((*model, row["traffic_class"]), (0, 0, 0))
        expected = {"total": total, "received": captured, "distorted": distorted, "excluded_health": excluded,
                    "accepted": images, "degraded": degraded}
        for field, want in expected.items():
            if int(row[field] or 0) != want:
                problems.append({"model": f"{model[0]}@{model[1]}", "class": row["traffic_class"], "field": field,
                                 "table": int(row[field] or 0), "ingest": want})
    groups_not_six = int(
        conn.execute(
            text(_TABLE_GROUPS_NOT_SIX.format(table=table)).bindparams(
                *params, bindparam("classes", list(TRAFFIC_CLASSES), expanding=True), bindparam("n_classes", len(TRAFFIC_CLASSES))
            )
        ).scalar()
        or 0
    )
    missing_ingest = sorted(f"{m}@{v}" for m, v in ingest.ingest_models - models)
    if captured > distorted and not models:  # accepted images but no rows; an all-distorted day has none
        missing_ingest = missing_ingest or ["(no rows at all for a day with captures)"]
    other_models = sorted(f"{m}@{v}" for m, v in processed - models - ingest.ingest_models)
    return dg.AssetCheckResult(
        passed=not problems and groups_not_six == 0 and not missing_ingest,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "models_in_table": dg.MetadataValue.json(sorted(f"{m}@{v}" for m, v in models)),
            "captures": captured,
            "mismatches": len(problems),
            "windows_without_six_classes": groups_not_six,
            "sample": dg.MetadataValue.json(problems[:10]),
            "ingest_models_missing": dg.MetadataValue.json(missing_ingest),
            "other_models_not_reported": dg.MetadataValue.json(other_models),
        },
    )


def _reconcile_description(window: ReportingWindow) -> str:
    return (f"Per model version and class, the day's {window.table} rows add up exactly to the ingest tables "
            "(total_count = counts of accepted captures, which the upstream blocking check equates with the "
            "detections; images received/distorted/accepted/degraded = captures of the day) and every (location, "
            "window, model) has all six classes.")


# -- count anomaly --------------------------------------------------------------------

_DAILY_TOTALS = text(
    "SELECT location_id, model_name, model_version, window_start, SUM(total_count) FROM traffic_counts_daily"
    " WHERE window_start >= :first AND window_start < :end"
    " GROUP BY location_id, model_name, model_version, window_start"
)


def check_count_anomaly(conn: Connection, partition_key: str, settings: OrchestrationSettings) -> dg.AssetCheckResult:
    """Flag (location, model) whose day total is ``|z| > TRAFFIC_ANOMALY_Z`` off its own history."""
    start, end = partition_bounds(partition_key)
    first = start - timedelta(days=settings.anomaly_history_days)
    totals: dict[tuple[int, str, str], dict[str, float]] = defaultdict(dict)
    for location_id, model_name, model_version, window_start, total in conn.execute(
        _DAILY_TOTALS.bindparams(bindparam("first", first, type_=DateTime), bindparam("end", end, type_=DateTime))
    ):
        totals[(int(location_id), model_name, model_version)][str(window_start)[:10]] = float(total or 0)
    today_key = partition_day(partition_key).isoformat()
    # Counts are roughly Poisson: never call a deviation below ~sqrt(median) anomalous.
    scores, too_short = score_today(totals, today_key, min_history_days=settings.anomaly_min_history_days,
                                    floor=lambda history: max(1.0, median(history) ** 0.5))
    flagged = [{"location_id": location_id, "model": f"{model_name}@{model_version}", **score.as_dict()}
               for (location_id, model_name, model_version), score in scores if abs(score.z) > settings.anomaly_z]
    return dg.AssetCheckResult(
        passed=not flagged,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "series_scored": len(scores),
            "series_with_short_history": too_short,
            "threshold_z": settings.anomaly_z,
            "anomalies": dg.MetadataValue.json(flagged),
        },
    )


_ANOMALY_DESCRIPTION = (
    "Each location's total road users of the day (per model version) is not far from its own "
    "history: robust z = (total - median) / max(1.4826·MAD, sqrt(median), 1) over the previous "
    "TRAFFIC_ANOMALY_HISTORY_DAYS (28) materialised days, needs >= 7 days, warns when |z| > 4."
)


def reporting_checks(partitions: dg.PartitionsDefinition,
                     windows: Sequence[ReportingWindow] = WINDOWS) -> list[dg.AssetChecksDefinition]:
    """A blocking reconcile check per window, and the anomaly check on the daily totals (if "daily" is
    one): one step that reads the day's ingest side once for every window."""
    daily = any(window.name == "daily" for window in windows)
    with accepted_previews("partitioned_checks"):  # the specs' partitions_def
        specs = [dg.AssetCheckSpec(window.check, asset=counts_key(window), description=_reconcile_description(window),
                                   blocking=True, partitions_def=partitions) for window in windows]
        if daily:
            specs.append(dg.AssetCheckSpec("daily_count_anomaly", asset=COUNTS_KEYS["daily"],
                                           description=_ANOMALY_DESCRIPTION, partitions_def=partitions))

        @dg.multi_asset_check(name="reporting_checks", specs=specs,
                              description="The counts tables against the day's ingest side (read once), and the daily totals "
                              "against each location's history.")
        def _checks(context: dg.AssetCheckExecutionContext, database: DatabaseResource):
            with database.get_engine().connect() as conn:
                ingest = ingest_totals(conn, context.partition_key)
                for window in windows:
                    result = check_counts_reconcile(conn, window, context.partition_key, ingest)
                    yield _named(result, window.check, counts_key(window))
                if daily:
                    result = check_count_anomaly(conn, context.partition_key, OrchestrationSettings.from_env())
                    yield _named(result, "daily_count_anomaly", COUNTS_KEYS["daily"])

    return [_checks]


def _named(result: dg.AssetCheckResult, name: str, asset: dg.AssetKey) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name=name, asset_key=asset, passed=result.passed, severity=result.severity,
                               metadata=result.metadata)
