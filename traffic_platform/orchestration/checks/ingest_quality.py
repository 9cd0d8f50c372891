"""Blocking checks on a partition's ingest data, run on ``capture_summary_daily``.

If any fails (severity ERROR), the ``traffic_counts_*`` tables of that run are not
materialised: wrong detections are never published as counts. They run as one step
(:func:`check_ingest_quality`) that reads the day's rows only: its captures once into a
temporary table (:mod:`.day_rows`), its detections once and its counts once, each a range of
its day index. Nothing scans a whole table, so the step costs the same whatever the
history kept; an orphan is a row of the day without its capture of the day.
"""


from typing import Any

import dagster as dg
from sqlalchemy import Column, Float, Integer, MetaData, Table, bindparam, text
from sqlalchemy.engine import Connection

from ...domain.classes import TRAFFIC_CLASSES
from ...storage.tables import exact_text, hex_id, real
from ..assets.ingest_tables import CAPTURE_COUNTS, CAPTURES, DETECTIONS, LOCATIONS
from ..assets.reporting import CAPTURE_SUMMARY
from ..dagster_previews import accepted_previews
from ..resources import DatabaseResource
from ..sql.reporting_tables import local_datetime
from .day_rows import DAY_CAPTURES, day_captures, partition_params, temporary_table

SAMPLE = 5  # offending rows shown in the check's metadata
# Boxes are clipped to the image; float32 storage (MySQL FLOAT) may move an edge by < 0.001 px.
BOX_TOLERANCE_PX = 0.01


def _classes_param() -> Any:
    return bindparam("classes", list(TRAFFIC_CLASSES), expanding=True)


def _scalar(conn: Connection, sql: str, params: list) -> int:
    return int(conn.execute(text(sql).bindparams(*params)).scalar() or 0)


def _rows(conn: Connection, sql: str, params: list) -> list[dict[str, Any]]:
    """At most ``SAMPLE`` rows of ``sql`` (which ends in ``LIMIT :sample``), JSON-ready."""
    params = [*params, bindparam("sample", SAMPLE)]
    return [{k: (v if isinstance(v, (int, float, str)) or v is None else str(v)) for k, v in row.items()}
            for row in conn.execute(text(sql).bindparams(*params)).mappings()]


def _result(passed: bool, metadata: dict[str, Any]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={k: (dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v) for k, v in metadata.items()},
    )


# A row of the day (``t``: detections d or counts k) whose capture is not a capture of the day
# at the same time: an orphan, or a copy of captured_at that disagrees with its capture.
def _misplaced(t: str) -> str:
    return f"(c.capture_id IS NULL OR c.captured_at <> {t}.captured_at)"


# -- detection rows: scores, boxes, classes (one range of ix_detections_day) ----------------

_SCORE_BAD = "(d.score IS NULL OR d.score < 0 OR d.score > 1)"
_BOX_BAD = (
    "(c.capture_id IS NOT NULL AND (c.width IS NULL OR c.height IS NULL OR d.x1 < -:tol OR d.y1 < -:tol"
    " OR d.x2 > c.width + :tol OR d.y2 > c.height + :tol OR d.x2 <= d.x1 OR d.y2 <= d.y1))"
)
_CLASS_BAD = "(d.traffic_class NOT IN :classes)"
_DAY_DETECTIONS = (f"FROM detections d LEFT JOIN {DAY_CAPTURES} c ON c.capture_id = d.capture_id"
                   " WHERE d.captured_at >= :start AND d.captured_at < :end")
_CLASSES = tuple(enumerate(TRAFFIC_CLASSES))
_PAIR = "{t}.captured_at, {t}.capture_id, {t}.model_name, {t}.model_version"
# The day's detections, read once and grouped per (capture, model) in ix_detections_day's order
# into :data:`DAY_DETECTED`: how many, the extremes of their scores and boxes, how many are
# degenerate, and how many of each of the six classes (plain aggregates: per-row CASEs cost more
# than the read). The row checks judge each pair against its capture (:data:`_ROW_FIGURES`) and
# count the offending rows exactly only when some pair fails; the counts are compared with it.
DAY_DETECTED = "tmp_check_detected"
_FIGURES = ("n_rows", "n_scored", "min_score", "max_score", "min_x1", "min_y1", "max_x2", "max_y2", "degenerate",
            *(f"n{i}" for i, _ in _CLASSES))
_FILL_DETECTED = f"""
INSERT INTO {DAY_DETECTED} (captured_at, capture_id, model_name, model_version, {", ".join(_FIGURES)})
SELECT {_PAIR.format(t="d")}, COUNT(*), COUNT(d.score), MIN(d.score), MAX(d.score), MIN(d.x1), MIN(d.y1),
       MAX(d.x2), MAX(d.y2), SUM(d.x2 <= d.x1 OR d.y2 <= d.y1),
       {", ".join(f"SUM(d.traffic_class = :class_{i})" for i, _ in _CLASSES)}
FROM detections d WHERE d.captured_at >= :start AND d.captured_at < :end
GROUP BY {_PAIR.format(t="d")}
"""
# The detections, the pairs with a bad score or a bad box, the detections of another class and
# those without their capture of the day (all of a pair's rows share its captured_at).
_ROW_FIGURES = f"""
SELECT SUM(y.n_rows),
       SUM(CASE WHEN y.n_scored < y.n_rows OR y.min_score < 0 OR y.max_score > 1 THEN 1 ELSE 0 END),
       SUM(CASE WHEN c.capture_id IS NOT NULL AND (y.degenerate > 0 OR c.width IS NULL OR c.height IS NULL
                OR y.min_x1 < -:tol OR y.min_y1 < -:tol OR y.max_x2 > c.width + :tol OR y.max_y2 > c.height + :tol)
                THEN 1 ELSE 0 END),
       SUM(y.n_rows - ({" + ".join(f"y.n{i}" for i, _ in _CLASSES)})),
       SUM(CASE WHEN {_misplaced('y')} THEN y.n_rows ELSE 0 END)
FROM {DAY_DETECTED} y LEFT JOIN {DAY_CAPTURES} c ON c.capture_id = y.capture_id
"""


def _detected_table() -> Table:
    return Table(
        DAY_DETECTED, MetaData(),
        Column("captured_at", local_datetime(), primary_key=True),
        Column("capture_id", hex_id(32), primary_key=True),
        Column("model_name", exact_text(200), primary_key=True),
        Column("model_version", exact_text(64), primary_key=True),
        *(Column(name, Integer, nullable=False) for name in ("n_rows", "n_scored", "degenerate")),
        *(Column(name, real(), nullable=True) for name in ("min_score", "max_score", "min_x1", "min_y1", "max_x2", "max_y2")),
        *(Column(f"n{i}", Integer, nullable=False) for i, _ in _CLASSES),
        prefixes=["TEMPORARY"],
    )


# -- count rows: against their detections, complete, of the right classes --------------------

# 1 when a count row disagrees with the number of its class's detections (for the failure's sample).
_COUNT_WRONG = """CASE WHEN k.count <> (
    SELECT COUNT(*) FROM detections d
    WHERE d.captured_at = k.captured_at AND d.capture_id = k.capture_id AND d.model_name = k.model_name
      AND d.model_version = k.model_version AND d.traffic_class = k.traffic_class
) THEN 1 ELSE 0 END"""
_DAY_COUNTS = (f"FROM capture_counts k LEFT JOIN {DAY_CAPTURES} c ON c.capture_id = k.capture_id"
               " WHERE k.captured_at >= :start AND k.captured_at < :end")
# Per (capture, model), grouped in ix_capture_counts_day's order: each class's count (NULL: no row),
# beside the same pair's detections (:data:`DAY_DETECTED`) and its capture, each looked up once per
# pair. Then, summed: the count rows that disagree with their detections, the pairs without all
# six classes, rows of another class, the counts' sum, the accepted captures' own ingest-model
# pairs, and the count rows without their capture of the day.
_COUNT_FIGURES = f"""
SELECT COUNT(*), SUM({" + ".join(f"CASE WHEN x.n{i} IS NOT NULL AND x.n{i} <> COALESCE(y.n{i}, 0) THEN 1 ELSE 0 END" for i, _ in _CLASSES)}),
       SUM(CASE WHEN x.n_allowed <> :n_classes THEN 1 ELSE 0 END), SUM(x.n_rows - x.n_allowed), SUM(x.total),
       SUM(CASE WHEN c.status = 'accepted' AND x.model_name = c.model_name AND x.model_version = c.model_version
                THEN 1 ELSE 0 END),
       SUM(CASE WHEN {_misplaced('x')} THEN x.n_rows ELSE 0 END)
FROM (
    SELECT {_PAIR.format(t="k")}, {", ".join(f"SUM(CASE WHEN k.traffic_class = :class_{i} THEN k.count END) AS n{i}" for i, _ in _CLASSES)},
           SUM(k.count) AS total, COUNT(*) AS n_rows, SUM(k.traffic_class IN :classes) AS n_allowed
    FROM capture_counts k WHERE k.captured_at >= :start AND k.captured_at < :end
    GROUP BY {_PAIR.format(t="k")}
) x LEFT JOIN {DAY_DETECTED} y ON y.captured_at = x.captured_at AND y.capture_id = x.capture_id
   AND y.model_name = x.model_name AND y.model_version = x.model_version
LEFT JOIN {DAY_CAPTURES} c ON c.capture_id = x.capture_id
"""


def _class_params() -> list:
    return [bindparam(f"class_{i}", name) for i, name in _CLASSES]


_ACCEPTED = f"SELECT COUNT(*) FROM {DAY_CAPTURES} c WHERE c.status = 'accepted'"
_WITHOUT_LOCATION = f"SELECT COUNT(*) FROM {DAY_CAPTURES} c LEFT JOIN locations l ON l.id = c.location_id WHERE l.id IS NULL"


def check_ingest_quality(conn: Connection, partition_key: str) -> dict[str, dg.AssetCheckResult]:
    """The blocking checks on the day's detections and counts, from one range of each (samples only on failure).

    * ``detection_scores_in_range``, ``detection_boxes_valid``, ``traffic_classes_allowed``: scores in
      [0, 1], boxes inside the image and non-degenerate, classes among the six (detections and counts).
    * ``counts_reconcile_with_detections``: every count row equals its class's detections (per
      capture and model, the six counts beside the six numbers of detections, each side grouped in
      its day index's order); then, once no row disagrees, the day's detections equal the sum of its
      counts exactly when no detection lacks a count row (so that side needs two totals, not a
      second row-by-row join). All six classes per (capture, model), and every accepted capture has
      its ingest model's counts.
    * ``no_orphans``: no detection or count row of the day without its capture (at the same
      ``captured_at``), no capture of the day without its location.
    """
    params = partition_params(partition_key)
    classes = _classes_param()
    tol = bindparam("tol", BOX_TOLERANCE_PX, type_=Float)
    fill = text(_FILL_DETECTED).bindparams(*params, *_class_params())
    with day_captures(conn, partition_key), temporary_table(conn, _detected_table(), fill):
        checked, score_pairs, box_pairs, bad_classes, misplaced_detections = (
            int(v or 0) for v in conn.execute(text(_ROW_FIGURES).bindparams(tol)).one())
        # exact numbers of offending rows, read only when some pair has one
        bad_scores = _scalar(conn, f"SELECT COUNT(*) {_DAY_DETECTIONS} AND {_SCORE_BAD}", params) if score_pairs else 0
        bad_boxes = _scalar(conn, f"SELECT COUNT(*) {_DAY_DETECTIONS} AND {_BOX_BAD}", [*params, tol]) if box_pairs else 0
        pairs, mismatched, incomplete, bad_count_rows, counted, ingest_pairs, misplaced_counts = (
            int(v or 0) for v in conn.execute(
                text(_COUNT_FIGURES).bindparams(*params, classes, *_class_params(),
                                                bindparam("n_classes", len(TRAFFIC_CLASSES)))).one())
        accepted = _scalar(conn, _ACCEPTED, [])
        orphans = {
            "detections_without_capture": misplaced_detections,
            "counts_without_capture": misplaced_counts,
            "captures_without_location": _scalar(conn, _WITHOUT_LOCATION, []),
        }
        reconcile = {
            "capture_model_pairs": pairs,
            "count_rows_not_matching_detections": mismatched,
            "detections": checked,
            "sum_of_counts": counted,
            "capture_models_without_all_six_classes": incomplete,
            "accepted_captures_without_ingest_counts": accepted - ingest_pairs,
            "sample": _rows(conn, f"SELECT k.capture_id, k.model_version, k.traffic_class, k.count AS stored {_DAY_COUNTS}"
                            f" AND {_COUNT_WRONG} = 1 ORDER BY k.capture_id, k.traffic_class LIMIT :sample", params)
            if mismatched else [],
        }
        results = {
            "detection_scores_in_range": _result(bad_scores == 0, {
                "detections_checked": checked, "scores_outside_0_1": bad_scores,
                "sample": _rows(conn, f"SELECT d.id, d.capture_id, d.model_version, d.score {_DAY_DETECTIONS} AND {_SCORE_BAD} ORDER BY d.id LIMIT :sample", params) if bad_scores else [],
            }),
            "detection_boxes_valid": _result(bad_boxes == 0, {
                "detections_checked": checked, "bad_boxes": bad_boxes, "tolerance_px": BOX_TOLERANCE_PX,
                "sample": _rows(conn, f"SELECT d.id, d.capture_id, d.x1, d.y1, d.x2, d.y2, c.width, c.height {_DAY_DETECTIONS} AND {_BOX_BAD} ORDER BY d.id LIMIT :sample", [*params, tol]) if bad_boxes else [],
            }),
            "traffic_classes_allowed": _result(bad_classes == 0 and bad_count_rows == 0, {
                "allowed": list(TRAFFIC_CLASSES), "detections_checked": checked,
                "detections_with_other_class": bad_classes, "count_rows_with_other_class": bad_count_rows,
                "other_classes": _rows(conn, f"SELECT d.traffic_class, COUNT(*) AS n {_DAY_DETECTIONS} AND {_CLASS_BAD} GROUP BY d.traffic_class ORDER BY d.traffic_class LIMIT :sample", [*params, classes]) if bad_classes else [],
            }),
            "counts_reconcile_with_detections": _result(
                mismatched == 0 and checked == counted and incomplete == 0 and reconcile["accepted_captures_without_ingest_counts"] == 0,
                reconcile),
            "no_orphans": _result(all(v == 0 for v in orphans.values()), orphans),
        }
    return results


_CHECKS = {
    "detection_scores_in_range": ("Every detection score of the day is within [0, 1].", [DETECTIONS, CAPTURES]),
    "detection_boxes_valid": ("Every box of the day lies inside its image (± 0.01 px) and has positive width and height.",
                              [DETECTIONS, CAPTURES]),
    "traffic_classes_allowed": ("Detections and counts of the day use only car, truck, bus, person, bicycle, motorcycle.",
                                [DETECTIONS, CAPTURES, CAPTURE_COUNTS]),
    "counts_reconcile_with_detections": (
        "For every capture of the day and model version, each class count equals the number of its "
        "detections, all six classes are present, and every accepted capture has its ingest model's counts.",
        [DETECTIONS, CAPTURE_COUNTS, CAPTURES]),
    "no_orphans": ("No detection or count row of the day without its capture (at the same captured_at), no capture "
                   "of the day without its location.",
                   [DETECTIONS, CAPTURE_COUNTS, CAPTURES, LOCATIONS]),
}


def ingest_quality_checks(partitions: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    """The blocking checks on a partition's ingest data (one step: :func:`check_ingest_quality`)."""
    with accepted_previews("partitioned_checks"):  # the specs' partitions_def
        @dg.multi_asset_check(
            name="ingest_quality_checks",
            specs=[
                dg.AssetCheckSpec(name, asset=CAPTURE_SUMMARY, description=description, blocking=True,
                                  partitions_def=partitions, additional_deps=deps)
                for name, (description, deps) in _CHECKS.items()
            ],
            description="Scores, boxes and classes of the day's detections, its counts against them, orphans; "
            "one range of the day's detections and one of its counts.",
        )
        def ingest_quality(context: dg.AssetCheckExecutionContext, database: DatabaseResource):
            with database.get_engine().connect() as conn:
                results = check_ingest_quality(conn, context.partition_key)
            for name, result in results.items():
                yield dg.AssetCheckResult(check_name=name, asset_key=CAPTURE_SUMMARY, passed=result.passed,
                                          severity=result.severity, metadata=result.metadata)

    return [ingest_quality]
