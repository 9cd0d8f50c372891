"""Camera health as data: per-image features (daily partitions) and the episodes per location.

``reporting/capture_features`` reads each stored image of a local day once (object store),
computes its features (:mod:`..health.features`) and flags every frame with the rules of
:mod:`..health.rules`, in arrival order per location with the frames before the day as
context. It runs before the day's aggregation (the summary and counts depend on it), which
leaves out the frames it marks ``excluded`` (frozen or slate). Images are read off the
answer's critical path: here, never at ingest.

``health/camera_health`` (unpartitioned) turns the flags of the last
``TRAFFIC_HEALTH_LOOKBACK_DAYS`` and the arrival gaps into episodes, one row per location x
state x episode (:func:`..health.store.replace_episodes`: idempotent).
"""


import json
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from sqlalchemy import DateTime, bindparam, text

from ...storage.objectstore import ObjectNotFound
from ..health import store as health_store
from ..health.features import image_features
from ..health.rules import (
    EXCLUDING_STATES,
    FRAME_STATES,
    Episode,
    Frame,
    episodes,
    flag_frames,
    offline_episodes,
)
from ..partitions import partition_bounds, partition_day
from ..resources import DatabaseResource, ObjectStoreResource
from ..settings import OrchestrationSettings
from ..sql.reporting_tables import ensure_reporting_tables
from ..sql.transactions import write_transaction
from .ingest_tables import CAPTURES, LOCATIONS

CAPTURE_FEATURES = dg.AssetKey(["reporting", "capture_features"])
CAMERA_HEALTH = dg.AssetKey(["health", "camera_health"])
HEALTH_GROUP = "health"

_DAY_CAPTURES = text(
    "SELECT c.capture_id, c.location_id, c.ingested_at, c.captured_at_utc, c.content_sha256, c.image_key, c.sharpness,"
    " f.dhash, f.thumb, f.uniform_share, f.repeated_line_share, f.mean_level, f.feature_error"
    " FROM captures c LEFT JOIN capture_features f ON f.capture_id = c.capture_id"
    " WHERE c.captured_at >= :start AND c.captured_at < :end ORDER BY c.location_id, c.ingested_at, c.capture_id"
).columns(ingested_at=DateTime, captured_at_utc=DateTime)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _features(row: Any, store: Any) -> dict[str, Any]:
    """Stored features of a capture (reused) or computed now from its image."""
    if row["dhash"] is not None or row["feature_error"] in ("no_image", "undecodable"):
        return {k: row[k] for k in ("dhash", "thumb", "uniform_share", "repeated_line_share", "mean_level", "feature_error")}
    empty = {"dhash": None, "thumb": None, "uniform_share": None, "repeated_line_share": None, "mean_level": None}
    if not row["image_key"]:
        return empty | {"feature_error": "no_image"}
    try:
        data = store.get(row["image_key"])
    except ObjectNotFound:
        return empty | {"feature_error": "image_missing"}  # tried again on the next run
    found = image_features(data)
    if found is None:
        return empty | {"feature_error": "undecodable"}
    return {"dhash": f"{found.dhash:016x}", "thumb": found.thumb.hex(), "uniform_share": found.uniform_share,
            "repeated_line_share": found.repeated_line_share, "mean_level": found.mean_level, "feature_error": None}


def capture_features_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=CAPTURE_FEATURES,
        group_name="reporting",
        partitions_def=partitions,
        deps=[CAPTURES, LOCATIONS],
        kinds={"sql"},
        description="Per capture of the local day: perceptual hash (dHash), 16x9 grey thumbnail, slate statistics "
        "and sharpness, read from the stored image once; and the camera-health flags of each frame (frozen, slate, "
        "moved, obstructed, clock_drift; frozen and slate frames are excluded from the counts).",
    )
    def capture_features(context: dg.AssetExecutionContext, database: DatabaseResource,
                         object_store: ObjectStoreResource) -> dg.MaterializeResult:
        settings = OrchestrationSettings.from_env()
        thresholds = settings.health
        engine = database.get_engine()
        ensure_reporting_tables(engine)
        start, end = partition_bounds(context.partition_key)
        day = partition_day(context.partition_key)
        began = time.perf_counter()
        store = object_store.get_store()
        computed_at = _utcnow()
        with engine.connect() as conn:
            rows = conn.execute(_DAY_CAPTURES.bindparams(bindparam("start", start, type_=DateTime),
                                                         bindparam("end", end, type_=DateTime))).mappings().all()
        by_location: dict[int, list[dict[str, Any]]] = defaultdict(list)
        read = 0
        for row in rows:
            values = _features(row, store)
            read += row["dhash"] is None and values["dhash"] is not None
            by_location[int(row["location_id"])].append({"row": row, **values})
        out, flagged = [], dict.fromkeys(FRAME_STATES, 0)
        context_size = max(2 * thresholds.reference_frames, thresholds.frozen_min_frames, thresholds.drift_window)
        with write_transaction(engine) as conn:
            for location_id, items in by_location.items():
                frames = [health_store.frame_from_row({**item["row"], **item}) for item in items]
                before = health_store.context_frames(conn, location_id, frames[0].arrived_at, day, context_size)
                flags = flag_frames([*before, *frames], thresholds)[len(before):]
                for item, flag in zip(items, flags, strict=True):
                    row = item["row"]
                    for state in flag.states:
                        flagged[state] += 1
                    out.append({
                        "capture_id": row["capture_id"], "location_id": location_id, "day": day,
                        "arrived_at": row["ingested_at"], "sharpness": row["sharpness"],
                        **{k: item[k] for k in ("dhash", "thumb", "uniform_share", "repeated_line_share",
                                                "mean_level", "feature_error")},
                        **{state: int(state in flag.states) for state in FRAME_STATES},
                        "excluded": int(flag.excluded), "evidence": json.dumps(flag.evidence, sort_keys=True),
                        "computed_at": computed_at,
                    })
            health_store.replace_features(conn, day, out)
        errors = sum(1 for r in out if r["feature_error"] not in (None, "no_image"))
        return dg.MaterializeResult(metadata={
            "captures": dg.MetadataValue.int(len(out)),
            "images_read": dg.MetadataValue.int(int(read)),
            "feature_errors": dg.MetadataValue.int(errors),
            "excluded": dg.MetadataValue.int(sum(r["excluded"] for r in out)),
            "flagged": dg.MetadataValue.json(flagged),
            "seconds": dg.MetadataValue.float(round(time.perf_counter() - began, 3)),
        })

    return capture_features


class CameraHealthConfig(dg.Config):
    """``as_of``: judge the episodes as of this UTC time (ISO 8601), e.g. to replay a past day; default now."""

    as_of: str | None = None


def compute_episodes(conn: Any, as_of: datetime, settings: OrchestrationSettings) -> tuple[list[tuple[int, Episode]], dict[int, datetime]]:
    """The episodes of the lookback window ending at ``as_of`` and each location's first arrival in it."""
    thresholds = settings.health
    start = as_of - timedelta(days=settings.health_lookback_days)
    computed: list[tuple[int, Episode]] = []
    for location_id, items in health_store.flagged_frames(conn, start, as_of).items():
        frames: list[Frame] = [frame for frame, _ in items]
        computed += [(location_id, e) for e in episodes(frames, [flags for _, flags in items], thresholds)]
    active_since = as_of - timedelta(days=settings.active_location_days)
    arrived = health_store.arrivals(conn, start, as_of, active_since)
    days = [d for values in arrived.values() for _, d in values]
    summary = health_store.cadences(conn, min(days), max(days)) if days else {}
    first_arrival: dict[int, datetime] = {}
    for location_id, values in arrived.items():
        inside = [a for a, _ in values if a >= start]
        if inside:
            first_arrival[location_id] = inside[0]
        fallback = settings.cadence_fallback_s
        cadence = [summary.get((location_id, d), fallback) for _, d in values]
        computed += [(location_id, e) for e in offline_episodes([a for a, _ in values], cadence, as_of, thresholds)]
    return computed, first_arrival


@dg.asset(
    key=CAMERA_HEALTH,
    group_name=HEALTH_GROUP,
    deps=[CAPTURE_FEATURES, CAPTURES, LOCATIONS, dg.AssetKey(["reporting", "capture_summary_daily"])],
    kinds={"sql"},
    description="camera_health: one row per location x state (offline, frozen, slate, moved, obstructed, clock_drift) "
    "x episode, with start, end (NULL while open), reason and evidence; recomputed for the last "
    "TRAFFIC_HEALTH_LOOKBACK_DAYS from capture_features and the arrival gaps (offline: no image for "
    "TRAFFIC_HEALTH_OFFLINE_CADENCES x the cadence).",
)
def camera_health(context: dg.AssetExecutionContext, config: CameraHealthConfig,
                  database: DatabaseResource) -> dg.MaterializeResult:
    settings = OrchestrationSettings.from_env()
    as_of = datetime.fromisoformat(config.as_of).replace(tzinfo=None) if config.as_of else _utcnow()
    engine = database.get_engine()
    ensure_reporting_tables(engine)
    with write_transaction(engine) as conn:
        computed, first_arrival = compute_episodes(conn, as_of, settings)
        start = as_of - timedelta(days=settings.health_lookback_days)
        figures = health_store.replace_episodes(conn, start, computed, first_arrival, _utcnow())
        open_rows = conn.execute(text("SELECT state, COUNT(*) FROM camera_health WHERE ended_at IS NULL GROUP BY state")).all()
    by_state: dict[str, int] = defaultdict(int)
    for _, e in computed:
        by_state[e.state] += 1
    return dg.MaterializeResult(metadata={
        "as_of": as_of.isoformat(),
        "episodes_in_window": dg.MetadataValue.json(dict(by_state)),
        "open": dg.MetadataValue.json({state: int(n) for state, n in open_rows}),
        **{k: dg.MetadataValue.int(v) for k, v in figures.items()},
        "excluding_states": dg.MetadataValue.json(list(EXCLUDING_STATES)),
    })


__all__ = ["CAMERA_HEALTH", "CAPTURE_FEATURES", "camera_health", "capture_features_asset", "compute_episodes"]
