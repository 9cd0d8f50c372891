"""The one partitioning of the reporting assets: local calendar days of ``captured_at``.

A partition key ``2022-10-12`` holds every capture whose *local* wall-clock time (as its
file name states) falls on 12 October 2022, whatever the location's zone. The keys
themselves are zone-free; Dagster's own clock (UTC) only decides when a new key appears.
``end_offset=1`` makes today's key exist so the 15-minute schedule can fill it as the day
goes on. Locations east of UTC start their local day before UTC does: their first hours
are reported once UTC reaches that date (at the latest by 14:00 local time).

The first partition is the setting ``TRAFFIC_PARTITIONS_START``. Nothing here reads it at
import: the code location builds the definitions when Dagster loads it
(:func:`traffic_platform.orchestration.definitions.defs`), and schedules and sensors read it
when they are evaluated.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import dagster as dg

from .settings import DEFAULT_PARTITIONS_START, OrchestrationSettings

PARTITION_FORMAT = "%Y-%m-%d"


def daily_partitions(start: date = DEFAULT_PARTITIONS_START) -> dg.DailyPartitionsDefinition:
    """The daily partitions from ``start`` (a local calendar day) to today (UTC) inclusive."""
    return dg.DailyPartitionsDefinition(start_date=start.strftime(PARTITION_FORMAT), end_offset=1, fmt=PARTITION_FORMAT)


def partition_day(partition_key: str) -> date:
    """``"2022-10-12"`` -> ``date(2022, 10, 12)``."""
    return datetime.strptime(partition_key, PARTITION_FORMAT).date()


def partition_bounds(partition_key: str) -> tuple[datetime, datetime]:
    """The half-open range ``[start, end)`` of local wall-clock times in the partition."""
    day = partition_day(partition_key)
    start = datetime.combine(day, time())
    return start, start + timedelta(days=1)


def partition_key_for(day: date) -> str:
    return day.strftime(PARTITION_FORMAT)


def configured_start() -> date:
    """The first partition, ``TRAFFIC_PARTITIONS_START``, read now (at load or evaluation time)."""
    return OrchestrationSettings.from_env().partitions_start


def in_partitions(day: date, today: date, start: date) -> bool:
    """Whether ``day`` is a partition from ``start`` when (UTC) ``today`` is the newest one (``end_offset=1``)."""
    return start <= day <= today
