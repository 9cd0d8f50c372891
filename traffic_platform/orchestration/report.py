"""``traffic-platform report --from DATE --to DATE``: the reporting assets for local days, in-process.

Runs the same definitions the schedules run (:func:`.definitions.build_definitions` from the
``TRAFFIC_*`` settings, with their real resources): ``reporting_daily_job`` once per partition
key (local day), then ``serving_job`` (locations, calendar, views) once, with a progress bar,
then a summary of every check evaluated. It fails when a run fails or a blocking check does
(a blocking check's failure publishes nothing for that day; the previous numbers stay).
The demo reports through it too.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TextIO

from ..domain.errors import BadRequest
from .partitions import partition_key_for
from .settings import OrchestrationSettings

# The runs' own events stay in the run history (the UI); the terminal shows our progress only.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
MAX_REPORT_DAYS = 3660


@dataclass(frozen=True)
class CheckOutcome:
    day: str | None  # the partition key; None for the unpartitioned serving assets
    asset: str
    name: str
    passed: bool
    severity: str  # ERROR | WARN
    blocking: bool


@dataclass
class ReportSummary:
    days: list[str]
    failed_runs: list[str] = field(default_factory=list)  # partition keys (or "serving") whose run failed
    checks: list[CheckOutcome] = field(default_factory=list)

    @property
    def failed_blocking(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.passed and c.blocking]

    @property
    def ok(self) -> bool:
        return not self.failed_runs and not self.failed_blocking

    def render(self) -> str:
        lines = [f"report {self.days[0]} .. {self.days[-1]}: {len(self.days)} day(s)"]
        by_name: dict[str, list[CheckOutcome]] = {}
        for check in self.checks:
            by_name.setdefault(check.name, []).append(check)
        for name, outcomes in sorted(by_name.items()):
            failed = [c for c in outcomes if not c.passed]
            kind = "blocking" if outcomes[0].blocking else "warning"
            status = "ok" if not failed else "FAILED" if outcomes[0].blocking else "warned"
            line = f"  {status:<6} {name} ({kind}): {len(outcomes) - len(failed)}/{len(outcomes)} passed"
            if failed:
                line += " — failed on " + ", ".join(c.day or "serving" for c in failed)
            lines.append(line)
        passed = sum(c.passed for c in self.checks)
        lines.append(f"checks: {passed}/{len(self.checks)} passed, {len(self.failed_blocking)} blocking failure(s)"
                     + (f"; failed runs: {', '.join(self.failed_runs)}" if self.failed_runs else ""))
        lines.append("result: " + ("ok" if self.ok else "FAILED (a blocking check or a run failed; nothing new was published for those days)"))
        return "\n".join(lines)


def report_days(first: date, last: date, settings: OrchestrationSettings | None = None) -> list[str]:
    """The partition keys ``first``..``last``; :class:`BadRequest` when they are not partitions."""
    settings = settings or OrchestrationSettings.from_env()
    if first > last:
        raise BadRequest(f"--from {first} is after --to {last}.", code="bad_date_range")
    if (last - first).days + 1 > MAX_REPORT_DAYS:
        raise BadRequest(f"Report at most {MAX_REPORT_DAYS} days at a time.", code="date_range_too_long")
    today = datetime.now(UTC).date()
    if first < settings.partitions_start or last > today:
        raise BadRequest(f"Days must lie within the partitions {settings.partitions_start} .. {today} "
                         "(TRAFFIC_PARTITIONS_START).", code="day_out_of_partitions")
    return [partition_key_for(first + timedelta(days=i)) for i in range((last - first).days + 1)]


@contextmanager
def _instance(instance) -> Iterator:
    import os

    import dagster as dg

    if instance is not None:
        yield instance
    elif os.environ.get("DAGSTER_HOME"):
        with dg.DagsterInstance.get() as persistent:  # runs show in the UI afterwards
            yield persistent
    else:
        with dg.DagsterInstance.ephemeral() as ephemeral:
            yield ephemeral


def run_report(first: date, last: date, *, settings: OrchestrationSettings | None = None, instance=None,
               progress: bool = True, out: TextIO | None = None) -> ReportSummary:
    """Materialise the reporting assets for ``first``..``last`` and the serving assets; return the summary."""
    from tqdm import tqdm

    from .definitions import build_definitions

    settings = settings or OrchestrationSettings.from_env()
    days = report_days(first, last, settings)
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    blocking = {key: graph.get_check_spec(key).blocking for key in graph.asset_check_keys}
    summary = ReportSummary(days)
    daily, serving = defs.resolve_job_def("reporting_daily_job"), defs.resolve_job_def("serving_job")
    with _instance(instance) as dagster_instance, tqdm(total=len(days) + 1, desc="reporting", unit="run",
                                                         file=out or sys.stderr, disable=not progress) as bar:
        for day, job in [*((d, daily) for d in days), (None, serving)]:
            bar.set_postfix_str(day or "serving")
            kwargs = {"partition_key": day} if day else {}
            result = job.execute_in_process(instance=dagster_instance, raise_on_error=False, run_config=QUIET_RUN_CONFIG, **kwargs)
            if not result.success:
                summary.failed_runs.append(day or "serving")
            for evaluation in result.get_asset_check_evaluations():
                key = evaluation.asset_check_key
                summary.checks.append(CheckOutcome(day, key.asset_key.to_user_string(), key.name, evaluation.passed,
                                                   evaluation.severity.value, blocking.get(key, False)))
            bar.update()
    return summary
