"""The Dagster code location: merges the areas, nothing else.

Load with ``dagster dev -w workspace.yaml`` (or ``-m traffic_platform.orchestration.definitions``).
"""

from __future__ import annotations

import dagster as dg

from .assets.ingest_tables import ingest_tables
from .assets.locations import dim_locations
from .assets.reporting import (
    capture_summary_daily,
    traffic_counts_15min,
    traffic_counts_daily,
    traffic_counts_hourly,
)
from .assets.views import reporting_views
from .checks.ingest_health import INGEST_HEALTH_CHECKS
from .checks.ingest_quality import INGEST_QUALITY_CHECKS
from .checks.reporting import REPORTING_CHECKS
from .jobs import ingest_observation_job, reporting_daily_job, serving_job
from .landing import landing_ingest_job
from .redetect import redetect_job
from .resources import default_resources
from .schedules import SCHEDULES
from .sensors import SENSORS

ingest = dg.Definitions(assets=[ingest_tables], asset_checks=INGEST_HEALTH_CHECKS)
reporting = dg.Definitions(
    assets=[capture_summary_daily, traffic_counts_15min, traffic_counts_hourly, traffic_counts_daily],
    asset_checks=[*INGEST_QUALITY_CHECKS, *REPORTING_CHECKS],
)
serving = dg.Definitions(assets=[dim_locations, reporting_views])
automation = dg.Definitions(
    jobs=[reporting_daily_job, serving_job, ingest_observation_job, landing_ingest_job, redetect_job],
    schedules=SCHEDULES,
    sensors=SENSORS,
)

defs = dg.Definitions.merge(ingest, reporting, serving, automation, dg.Definitions(resources=default_resources()))
