"""Jobs, selecting assets by group (and the checks on them)."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from .assets.ingest_tables import INGEST_GROUP
from .assets.locations import SERVING_GROUP
from .assets.reporting import REPORTING_GROUP, TAG_MODEL_NAME, TAG_MODEL_VERSION
from .dagster_previews import accepted_previews
from .sql.aggregation import ModelKey

# The daily-partitioned reporting assets (capture summary + the three counts tables) with
# their checks; the blocking checks on the summary gate the counts within a run.
reporting_daily_job = dg.define_asset_job(
    "reporting_daily_job",
    selection=dg.AssetSelection.groups(REPORTING_GROUP),
    description="Rebuild one local day of the reporting tables (one partition, replaced atomically).",
)

# Camera health: the episodes per location (unpartitioned), recomputed over the lookback window.
camera_health_job = dg.define_asset_job(
    "camera_health_job",
    selection=dg.AssetSelection.groups("health"),
    description="Recompute the camera-health episodes of the last TRAFFIC_HEALTH_LOOKBACK_DAYS and check them.",
)

# The unpartitioned tables analysts read beside the counts: the location dimension and views.
serving_job = dg.define_asset_job(
    "serving_job",
    selection=dg.AssetSelection.groups(SERVING_GROUP),
    description="Refresh dim_locations, dim_date and dim_time_of_day, (re)apply the Power BI views and render the dashboard.",
)

# Observe the ingest tables (row counts, newest writes) and run the freshness check.
with accepted_previews("include_sources"):
    ingest_observation_job = dg.define_asset_job(
        "ingest_observation_job",
        selection=dg.AssetSelection.groups(INGEST_GROUP, include_sources=True),
        description="Observe the ingest tables and check every active location is still sending images.",
    )


def model_tags(model: ModelKey | None) -> Mapping[str, str]:
    """Run tags that make the reporting assets report ``model`` (``{}``: the ingest models)."""
    if model is None:
        return {}
    return {TAG_MODEL_NAME: model.model_name, TAG_MODEL_VERSION: model.model_version}


def reporting_run_request(partition_key: str, model: ModelKey | None = None, *, run_key: str | None = None,
                          tags: Mapping[str, str] | None = None) -> dg.RunRequest:
    """A run of :data:`reporting_daily_job` for one day, optionally for another model version.

    The re-detection job (ingest side) calls this for every day it reprocessed, so its
    new version is reported beside the original.
    """
    return dg.RunRequest(
        run_key=run_key,
        partition_key=partition_key,
        tags={**(tags or {}), **model_tags(model)},
    )
