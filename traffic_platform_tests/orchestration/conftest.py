"""Fixtures for the orchestration tests (the suite-wide ones live in ../conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
import pytest

from traffic_platform.orchestration.assets.reporting import COUNTS_ASSETS, capture_summary_daily
from traffic_platform.orchestration.checks.ingest_health import (
    distorted_rate_anomaly,
    no_duplicate_content,
)
from traffic_platform.orchestration.checks.ingest_quality import INGEST_QUALITY_CHECKS
from traffic_platform.orchestration.checks.reporting import REPORTING_CHECKS
from traffic_platform.orchestration.resources import DatabaseResource

REPORTING_ASSETS = [capture_summary_daily, *COUNTS_ASSETS.values()]
ALL_PARTITION_CHECKS = [*INGEST_QUALITY_CHECKS, *REPORTING_CHECKS, no_duplicate_content, distorted_rate_anomaly]


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
            resources={"database": DatabaseResource(url=db_url)},
            tags=tags,
            raise_on_error=raise_on_error,
        )

    return run
