"""The Dagster code location: merges the areas, nothing else.

Load with ``dagster dev -w workspace.yaml`` (or ``-m traffic_platform.orchestration.definitions``).
:func:`defs` is what Dagster loads: it reads the ``TRAFFIC_*`` settings (the partitions'
start) when the code location is loaded, so importing this module reads no environment.
:func:`build_definitions` builds the same definitions from given settings and windows.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from .assets.calendar import dim_calendar
from .assets.camera_health import camera_health
from .assets.dashboard import dashboard
from .assets.ingest_tables import ingest_tables
from .assets.locations import dim_locations
from .assets.reporting import reporting_assets
from .assets.views import reporting_views
from .checks.camera_health import camera_health_checks
from .checks.ingest_health import ingest_health_checks
from .checks.ingest_quality import ingest_quality_checks
from .checks.reporting import reporting_checks
from .dagster_previews import accepted_previews
from .jobs import camera_health_job, ingest_observation_job, reporting_daily_job, serving_job
from .landing import landing_ingest_job
from .partitions import daily_partitions
from .redetect import redetect_job
from .resources import default_resources
from .schedules import SCHEDULES
from .sensors import SENSORS
from .settings import OrchestrationSettings
from .windows import WINDOWS, ReportingWindow


def build_definitions(settings: OrchestrationSettings | None = None,
                      windows: Sequence[ReportingWindow] = WINDOWS) -> dg.Definitions:
    """The code location for ``settings`` (default: the defaults, no environment read) and ``windows``."""
    partitions = daily_partitions((settings or OrchestrationSettings()).partitions_start)
    ingest = dg.Definitions(assets=[ingest_tables], asset_checks=ingest_health_checks(partitions))
    reporting = dg.Definitions(
        assets=reporting_assets(partitions, windows),
        asset_checks=[*ingest_quality_checks(partitions), *reporting_checks(partitions, windows)],
    )
    health = dg.Definitions(assets=[camera_health], asset_checks=camera_health_checks(partitions))
    serving = dg.Definitions(assets=[dim_locations, dim_calendar, reporting_views, dashboard])
    automation = dg.Definitions(
        jobs=[camera_health_job, reporting_daily_job, serving_job, ingest_observation_job, landing_ingest_job, redetect_job],
        schedules=SCHEDULES,
        sensors=SENSORS,
    )
    definitions = dg.Definitions.merge(ingest, reporting, health, serving, automation, dg.Definitions(resources=default_resources()))
    with accepted_previews("sensor_owners"):  # Dagster warns while binding resources to the sensors' jobs
        definitions.get_repository_def()  # resolved once here; Dagster and callers reuse the cached result
    return definitions


@dg.definitions
def defs() -> dg.Definitions:
    """The code location ``workspace.yaml`` names, with the settings read when Dagster loads it."""
    return build_definitions(OrchestrationSettings.from_env())
