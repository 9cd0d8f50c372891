"""Schedules (UTC): today's partition every 15 minutes, yesterday's once more at night,
the ingest observation every 15 minutes, the serving tables hourly and camera health every
15 minutes."""


from datetime import timedelta

import dagster as dg

from .jobs import (
    camera_health_job,
    ingest_observation_job,
    reporting_daily_job,
    reporting_run_request,
    serving_job,
)
from .partitions import configured_start, in_partitions, partition_key_for

TAG_TRIGGER = "traffic/trigger"


def _request_day(context: dg.ScheduleEvaluationContext, days_back: int, trigger: str) -> dg.RunRequest | dg.SkipReason:
    day = context.scheduled_execution_time.date() - timedelta(days=days_back)
    key = partition_key_for(day)
    start = configured_start()
    if not in_partitions(day, context.scheduled_execution_time.date(), start):
        return dg.SkipReason(f"partition {key} is outside the partitions (starts {start:%Y-%m-%d}).")
    return reporting_run_request(key, tags={TAG_TRIGGER: trigger})


def _reporting_day_schedule(name: str, cron: str, days_back: int, trigger: str, description: str) -> dg.ScheduleDefinition:
    """Rebuild the partition ``days_back`` days before the tick's UTC date, on ``cron`` (UTC)."""

    @dg.schedule(name=name, cron_schedule=cron, execution_timezone="UTC", job=reporting_daily_job,
                 default_status=dg.DefaultScheduleStatus.STOPPED, description=description)
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        return _request_day(context, days_back, trigger)

    return _schedule


reporting_current_day = _reporting_day_schedule(
    "reporting_current_day_every_15_min", "*/15 * * * *", 0, "current_day",
    "Rebuild today's partition (UTC date) every 15 minutes so counts are at most ~15 min behind.",
)
reporting_nightly = _reporting_day_schedule(
    "reporting_nightly_finalisation", "30 3 * * *", 1, "nightly",
    "At 03:30 UTC rebuild yesterday's partition with everything that arrived by then (European "
    "and Asian local days are over). Later arrivals are picked up by the late-captures sensor.",
)

ingest_observation_schedule = dg.ScheduleDefinition(
    name="ingest_observation_every_15_min",
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    job=ingest_observation_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Observe the ingest tables and run the per-location freshness check.",
)

serving_schedule = dg.ScheduleDefinition(
    name="serving_hourly",
    cron_schedule="5 * * * *",
    execution_timezone="UTC",
    job=serving_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Refresh dim_locations (activity flags) and re-apply the views every hour.",
)

camera_health_schedule = dg.ScheduleDefinition(
    name="camera_health_every_15_min",
    cron_schedule="7,22,37,52 * * * *",
    execution_timezone="UTC",
    job=camera_health_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Recompute the camera-health episodes (after the 15-minute reporting run filled capture_features).",
)

SCHEDULES = [reporting_current_day, reporting_nightly, ingest_observation_schedule, serving_schedule,
             camera_health_schedule]
