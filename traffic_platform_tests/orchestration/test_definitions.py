"""The code location loads: in-process, with the Dagster CLI, and in the real web UI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_ASSETS = {
    ("ingest", "locations"), ("ingest", "captures"), ("ingest", "detections"), ("ingest", "capture_counts"),
    ("reporting", "capture_summary_daily"), ("reporting", "traffic_counts_15min"), ("reporting", "traffic_counts_hourly"),
    ("reporting", "traffic_counts_daily"), ("reporting", "dim_locations"), ("reporting", "dim_calendar"), ("reporting", "views"),
    ("reporting", "dashboard"), ("reporting", "capture_features"), ("health", "camera_health"),
}
BLOCKING_CHECKS = {"detection_scores_in_range", "detection_boxes_valid", "traffic_classes_allowed",
                   "counts_reconcile_with_detections", "no_orphans", "traffic_counts_15min_reconcile",
                   "traffic_counts_hourly_reconcile", "traffic_counts_daily_reconcile", "camera_health_consistent"}
WARNING_CHECKS = {"no_duplicate_content", "distorted_rate_anomaly", "daily_count_anomaly", "captures_fresh_per_location",
                  "spool_backlog_not_stale", "camera_health_no_open_problems", "capture_features_images_readable"}
SCHEDULES = {"reporting_current_day_every_15_min", "reporting_nightly_finalisation", "ingest_observation_every_15_min", "serving_hourly",
             "camera_health_every_15_min"}
SENSORS = {"late_captures_sensor", "landing_ingest_sensor", "redetect_reporting_sensor", "camera_health_alerts_sensor"}


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAFFIC_")}
    env.update(DAGSTER_HOME=str(tmp_path / "dagster_home"), TRAFFIC_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    return env


def test_definitions_load():
    from traffic_platform.orchestration.definitions import defs as load_definitions

    defs = load_definitions()  # what workspace.yaml loads: a @dg.definitions function
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {tuple(k.path) for k in graph.get_all_asset_keys()} == EXPECTED_ASSETS
    checks = {k.name: k for k in graph.asset_check_keys}
    assert set(checks) == BLOCKING_CHECKS | WARNING_CHECKS
    for name in BLOCKING_CHECKS:
        assert graph.get_check_spec(checks[name]).blocking, name
    for name in WARNING_CHECKS:
        assert not graph.get_check_spec(checks[name]).blocking, name
    assert {s.name for s in defs.schedules} == SCHEDULES
    assert {s.name for s in defs.sensors} == SENSORS


def test_dagster_cli_validates_the_workspace(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _restore_default_signals() -> None:  # runs in the child before exec
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    assert "errors" not in body, body
    return body["data"]


@pytest.mark.slow
def test_web_ui_serves_assets_checks_schedules_and_sensors(tmp_path):
    port = _free_port()
    log = open(tmp_path / "dagster_dev.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=_restore_default_signals,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert proc.poll() is None, (tmp_path / "dagster_dev.log").read_text(errors="replace")
                assert time.monotonic() < deadline, "dagster dev did not come up in 180 s"
                time.sleep(1)
        data = _graphql(
            port,
            "{ assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name blocking } } } }"
            " repositoriesOrError { ... on RepositoryConnection { nodes { schedules { name } sensors { name } } } } }",
        )
        assert {tuple(n["assetKey"]["path"]) for n in data["assetNodes"]} == EXPECTED_ASSETS
        checks = {c["name"]: c["blocking"] for n in data["assetNodes"] for c in n["assetChecksOrError"]["checks"]}
        assert checks == {**{c: True for c in BLOCKING_CHECKS}, **{c: False for c in WARNING_CHECKS}}
        (repo,) = data["repositoriesOrError"]["nodes"]
        assert {s["name"] for s in repo["schedules"]} == SCHEDULES
        assert {s["name"] for s in repo["sensors"]} == SENSORS
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
    assert proc.returncode is not None


_IMPORT_PROBE = """
import importlib, pkgutil
import traffic_platform.config as config
import traffic_platform.orchestration.settings as settings

calls = []
for owner in (config.Settings, settings.OrchestrationSettings):
    def spy(cls, environ=None, _original=owner.from_env.__func__):
        calls.append(cls.__name__)
        return _original(cls, environ)
    owner.from_env = classmethod(spy)

import traffic_platform.orchestration as package
modules = [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
for name in [*modules, "traffic_platform.demo"]:
    importlib.import_module(name)
print(len(modules), "modules imported; settings read:", calls)
from traffic_platform.domain.errors import ConfigurationError
from traffic_platform.orchestration.definitions import defs
try:
    defs()
except ConfigurationError as exc:
    print("on load:", exc)
"""


def test_importing_reads_no_settings_loading_the_code_location_does(tmp_path):
    env = {**_env(tmp_path), "TRAFFIC_PARTITIONS_START": "not-a-date"}
    proc = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr  # before: ConfigurationError while importing partitions.py
    imported, loaded = proc.stdout.strip().splitlines()
    assert imported.endswith("modules imported; settings read: []") and int(imported.split()[0]) > 20
    assert loaded.startswith("on load: TRAFFIC_PARTITIONS_START='not-a-date' is invalid")


def test_the_partitions_start_comes_from_the_settings_when_loaded(monkeypatch):
    from datetime import date

    from traffic_platform.orchestration.assets.reporting import CAPTURE_SUMMARY
    from traffic_platform.orchestration.definitions import build_definitions, defs
    from traffic_platform.orchestration.settings import OrchestrationSettings

    def first_partition(definitions: dg.Definitions) -> str:
        asset = next(a for a in definitions.assets if isinstance(a, dg.AssetsDefinition) and CAPTURE_SUMMARY in a.keys)
        return asset.partitions_def.get_first_partition_key()

    assert first_partition(build_definitions()) == "2022-01-01"
    assert first_partition(build_definitions(OrchestrationSettings(partitions_start=date(2023, 5, 1)))) == "2023-05-01"
    monkeypatch.setenv("TRAFFIC_PARTITIONS_START", "2022-10-01")
    assert first_partition(defs()) == "2022-10-01"
