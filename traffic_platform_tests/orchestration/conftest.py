"""Fixtures for the orchestration tests (the suite-wide ones live in ../conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
import pytest

from traffic_platform.orchestration.assets.reporting import reporting_assets
from traffic_platform.orchestration.checks.ingest_health import (
    captures_fresh_per_location,
    ingest_health_checks,
    spool_backlog_not_stale,
)
from traffic_platform.orchestration.checks.ingest_quality import ingest_quality_checks
from traffic_platform.orchestration.checks.reporting import reporting_checks
from traffic_platform.orchestration.partitions import daily_partitions
from traffic_platform.orchestration.resources import DatabaseResource, ObjectStoreResource

PARTITIONS = daily_partitions()  # the default start, 2022-01-01
REPORTING_ASSETS = reporting_assets(PARTITIONS)
ALL_PARTITION_CHECKS = [*ingest_quality_checks(PARTITIONS), *reporting_checks(PARTITIONS),
                        *(c for c in ingest_health_checks(PARTITIONS) if c not in (captures_fresh_per_location, spool_backlog_not_stale))]


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    """Every TRAFFIC_* variable unset except a home under tmp_path: tests never touch var/."""
    import os

    for name in list(os.environ):
        if name.startswith("TRAFFIC_") and name != "TRAFFIC_TEST_MARIADB_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRAFFIC_HOME", str(tmp_path / "home"))


@pytest.fixture
def materialize_day(db_url: str) -> Callable[..., dg.ExecuteInProcessResult]:
    """``materialize_day("2022-10-12", tags=..., checks=...)``: the reporting assets of one partition, in-process."""

    def run(partition: str, *, tags: dict[str, str] | None = None, checks: list[Any] | None = None,
            assets: list[Any] | None = None, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [*(REPORTING_ASSETS if assets is None else assets), *(ALL_PARTITION_CHECKS if checks is None else checks)],
            partition_key=partition,
            resources={"database": DatabaseResource(url=db_url), "object_store": ObjectStoreResource()},
            tags=tags,
            raise_on_error=raise_on_error,
        )

    return run
