"""Where the dashboard comes from: the Dagster asset (alone and in the serving job),
``traffic-platform dashboard`` and ``GET /dashboard`` on the real local server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg

from traffic_platform.config import Settings
from traffic_platform.dashboard import PAGES
from traffic_platform.ingest.api import Api, Request
from traffic_platform.ingest.local import LocalPlatform
from traffic_platform.orchestration.assets.dashboard import dashboard
from traffic_platform.orchestration.definitions import build_definitions
from traffic_platform.orchestration.resources import DatabaseResource, ObjectStoreResource

from .conftest import page_path
from .expected import expected

ROOT = Path(__file__).resolve().parents[2]
TITLES = [title for _, title, _ in PAGES]


def _kpi(html: str, name: str) -> str:
    match = re.search(rf'data-kpi="{name}">([^<]*)<', html)
    assert match, name
    return match.group(1)


def _shows_the_data(html: str, want: dict, gallery: int = 12) -> None:
    assert _kpi(html, "vehicles") == f"{want['kpis']['vehicles']:,}"
    assert _kpi(html, "images_received") == f"{want['kpis']['images_received']:,}"
    assert html.count("<figure data-gallery-item") == gallery
    assert f"data-model-version>{want['model_version']}<" in html


def test_the_asset_writes_the_file_and_says_what_it_shows(reported, engine, tmp_path):
    path = page_path(tmp_path)
    resources = {"database": DatabaseResource(url=reported.db_url), "object_store": ObjectStoreResource(uri=reported.store.root.as_uri())}
    result = dg.materialize([dashboard], resources=resources,
                            run_config={"ops": {"reporting__dashboard": {"config": {"path": str(path)}}}})
    assert result.success
    (materialization,) = result.asset_materializations_for_node("reporting__dashboard")
    meta = materialization.metadata
    assert meta["path"].value == str(path.resolve()) and meta["size_bytes"].value == path.stat().st_size
    assert meta["pages"].value == TITLES and meta["gallery_images"].value == 12
    want = expected(engine)
    assert meta["model"].value.endswith(f" {want['model_version']}")
    _shows_the_data(path.read_text(encoding="utf-8"), want)


def test_the_serving_job_renders_it_from_the_settings(reported, engine, tmp_path, monkeypatch):
    target = tmp_path / "served" / "dash.html"
    monkeypatch.setenv("TRAFFIC_DATABASE_URL", reported.db_url)
    monkeypatch.setenv("TRAFFIC_OBJECT_STORE_URI", reported.store.root.as_uri())
    monkeypatch.setenv("TRAFFIC_DASHBOARD_PATH", str(target))
    job = build_definitions().resolve_job_def("serving_job")
    assert dg.AssetKey(["reporting", "dashboard"]) in job.asset_layer.executable_asset_keys
    with dg.DagsterInstance.ephemeral() as instance:
        assert job.execute_in_process(instance=instance).success
    _shows_the_data(target.read_text(encoding="utf-8"), expected(engine))


def _get(url: str, method: str = "GET", headers: dict | None = None):
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_get_dashboard_on_the_local_server_renders_it_now_behind_the_api_key(reported, engine, tmp_path):
    settings = Settings(home=tmp_path / "home", database_url=reported.db_url, object_store_uri=reported.store.root.as_uri(),
                        api_key="sesame")
    with LocalPlatform(settings, run_worker=False, load_detector=False) as platform, platform.http_server() as server:
        status, headers, body = _get(f"{server.url}/dashboard", headers={"x-api-key": "sesame"})
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        assert headers["Cache-Control"] == "no-store"
        _shows_the_data(body.decode("utf-8"), expected(engine))
        status, _, body = _get(f"{server.url}/dashboard")
        assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
        status, headers, body = _get(f"{server.url}/dashboard", "POST", {"x-api-key": "sesame"})
        assert status == 405 and headers["Allow"] == "GET"
        metrics = _get(f"{server.url}/metrics")[2].decode()
        assert 'route="dashboard"' in metrics
    # a server without a renderer (the ingest Lambda) says where the dashboard is
    answer = Api(service=None).handle(Request("GET", "/dashboard"))
    assert answer.status == 404 and json.loads(answer.body)["error"]["code"] == "not_found"
    assert "traffic-platform dashboard" in json.loads(answer.body)["error"]["message"]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRAFFIC_")}
    return subprocess.run([sys.executable, "-m", "traffic_platform.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**environ, "PYTHONPATH": str(ROOT), **env})


def test_the_command_writes_it_and_prints_the_path(reported, engine, tmp_path):
    out = tmp_path / "cli" / "dash.html"
    env = {"TRAFFIC_HOME": str(tmp_path / "home"), "TRAFFIC_DATABASE_URL": reported.db_url,
           "TRAFFIC_OBJECT_STORE_URI": reported.store.root.as_uri()}
    proc = _cli("dashboard", "--out", str(out), "--gallery", "3", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out.resolve()) and proc.stderr == ""
    _shows_the_data(out.read_text(encoding="utf-8"), expected(engine), gallery=3)
    bad = _cli("dashboard", "--gallery", "-1", env=env)
    assert bad.returncode == 2 and "whole number from 0 to 200" in bad.stderr


def test_the_command_on_a_fresh_home_writes_the_no_data_page(tmp_path):
    home = tmp_path / "fresh"
    proc = _cli("dashboard", env={"TRAFFIC_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert path == (home / "dashboard" / "index.html").resolve()
    assert "No data yet" in path.read_text(encoding="utf-8") and proc.stderr.startswith("no data: ")
