"""Daily-partitioned reporting tables, filled in the database (see ``sql/aggregation.py``).

``capture_summary_daily`` (images per location-day and the cadence used for expected
images) is upstream of the ``traffic_counts_<window>`` tables, one asset per reporting window
(:data:`traffic_platform.orchestration.windows.WINDOWS`), all written by one step; the blocking data-quality checks on the ingest data sit on
it, so wrong detections stop the counts from being published.

The assets are built by :func:`reporting_assets` for a partitions definition (its start
date is a setting, read when the code location loads, not at import).
"""


import time
from collections.abc import Sequence
from datetime import UTC, datetime

import dagster as dg
from sqlalchemy import text

from ..partitions import partition_bounds
from ..resources import DatabaseResource
from ..settings import OrchestrationSettings
from ..sql.aggregation import ModelKey, replace_capture_summary, replace_counts, reported_models
from ..sql.reporting_tables import ensure_reporting_tables
from ..sql.transactions import write_transaction
from ..windows import WINDOWS, ReportingWindow
from .camera_health import CAPTURE_FEATURES, capture_features_asset
from .ingest_tables import CAPTURE_COUNTS, CAPTURES, DETECTIONS, LOCATIONS

REPORTING_GROUP = "reporting"
CAPTURE_SUMMARY = dg.AssetKey(["reporting", "capture_summary_daily"])


def counts_key(window: ReportingWindow) -> dg.AssetKey:
    return dg.AssetKey(["reporting", window.table])


# Window name -> asset key, for the declared windows.
COUNTS_KEYS: dict[str, dg.AssetKey] = {window.name: counts_key(window) for window in WINDOWS}

# Run tags that choose the model version to report (e.g. set by the re-detection job or a
# backfill launched from the UI); both or neither.
TAG_MODEL_NAME = "traffic/model_name"
TAG_MODEL_VERSION = "traffic/model_version"


class ReportingConfig(dg.Config):
    """Leave empty to report each capture's ingest model; name both to report another version."""

    model_name: str | None = None
    model_version: str | None = None


def requested_model(context: dg.AssetExecutionContext, config: ReportingConfig) -> ModelKey | None:
    """The model a run asks for: asset config first, then run tags, else ``None`` (ingest models)."""
    tags = context.run.tags
    for name, version, where in (
        (config.model_name, config.model_version, "config model_name/model_version"),
        (tags.get(TAG_MODEL_NAME), tags.get(TAG_MODEL_VERSION), f"run tags {TAG_MODEL_NAME}/{TAG_MODEL_VERSION}"),
    ):
        if name or version:
            if not (name and version):
                raise dg.Failure(f"{where}: give both the model name and the model version, or neither.")
            return ModelKey(name, version)
    return None


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


_CONFIG_LOCATIONS = text("SELECT id, address, city, country FROM locations")


def capture_summary_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=CAPTURE_SUMMARY,
        group_name=REPORTING_GROUP,
        partitions_def=partitions,
        deps=[CAPTURES, LOCATIONS, CAPTURE_FEATURES],
        kinds={"sql"},
        description="Per location and local day: images received/accepted/distorted, first and last image, "
        "the observed median gap between images and the cadence used for expected images "
        "(TRAFFIC_CAPTURE_CADENCE_S, else observed median, else TRAFFIC_CADENCE_FALLBACK_S), coverage.",
    )
    def capture_summary_daily(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
        settings = OrchestrationSettings.from_env()
        engine = database.get_engine()
        ensure_reporting_tables(engine)
        start, end = partition_bounds(context.partition_key)
        began = time.perf_counter()
        with write_transaction(engine) as conn:
            configured: dict[int, float] = {}
            if settings.capture_cadence_s:
                for location_id, address, city, country in conn.execute(_CONFIG_LOCATIONS):
                    seconds = settings.cadence_for(address, city, country)
                    if seconds is not None:
                        configured[int(location_id)] = seconds
            rows = replace_capture_summary(
                conn,
                start,
                end,
                configured_cadence=configured,
                fallback_cadence_s=settings.cadence_fallback_s,
                computed_at=_utcnow(),
            )
        return dg.MaterializeResult(
            metadata={
                "rows": dg.MetadataValue.int(rows),
                "configured_cadences": dg.MetadataValue.int(len(configured)),
                "seconds": dg.MetadataValue.float(round(time.perf_counter() - began, 3)),
            }
        )

    return capture_summary_daily


def counts_assets(partitions: dg.PartitionsDefinition,
                  windows: Sequence[ReportingWindow] = WINDOWS) -> dg.AssetsDefinition:
    """The ``reporting/traffic_counts_<window>`` assets of ``windows``, filled together in one pass
    (:func:`..sql.aggregation.replace_counts`): one step, one transaction, always all of them."""
    specs = [
        dg.AssetSpec(
            counts_key(window),
            group_name=REPORTING_GROUP,
            deps=[CAPTURE_SUMMARY, CAPTURES, CAPTURE_COUNTS, DETECTIONS, LOCATIONS, CAPTURE_FEATURES],
            kinds={"sql"},
            description=f"{window.table}: per location × {window.name} window (local time, {window.seconds} s) × "
            "traffic class × model version: images received/accepted/distorted, total count, mean and max per "
            "accepted image, share of images with at least one, expected images and coverage. Zero-filled for all "
            "six classes.",
            metadata={"table": window.table, "window_seconds": window.seconds},
        )
        for window in windows
    ]

    @dg.multi_asset(name="traffic_counts", specs=specs, partitions_def=partitions, can_subset=False)
    def _assets(context: dg.AssetExecutionContext, config: ReportingConfig, database: DatabaseResource):
        engine = database.get_engine()
        ensure_reporting_tables(engine, windows)
        start, end = partition_bounds(context.partition_key)
        began = time.perf_counter()
        with write_transaction(engine) as conn:
            models = reported_models(conn, start, end, requested_model(context, config))
            rows = replace_counts(conn, windows, start, end, models, computed_at=_utcnow())
        seconds = round(time.perf_counter() - began, 3)
        if not models:
            context.log.warning(f"No model has processed any image yet; the counts get no rows for {context.partition_key}.")
        models_json = dg.MetadataValue.json([{"model_name": m.model_name, "model_version": m.model_version} for m in models])
        for window in windows:
            yield dg.MaterializeResult(asset_key=counts_key(window), metadata={
                "rows": dg.MetadataValue.int(rows.get(window.name, 0)),
                "models": models_json,
                "seconds": dg.MetadataValue.float(seconds),  # of the one pass that wrote every window
            })

    return _assets


def reporting_assets(partitions: dg.PartitionsDefinition,
                     windows: Sequence[ReportingWindow] = WINDOWS) -> list[dg.AssetsDefinition]:
    """The capture features, the capture summary and the counts assets of ``windows`` (one pass), all
    partitioned by ``partitions``."""
    return [capture_features_asset(partitions), capture_summary_asset(partitions), counts_assets(partitions, windows)]
