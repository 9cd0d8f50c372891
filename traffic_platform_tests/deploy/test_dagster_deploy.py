"""Dagster on AWS (deploy/dagster/): the services template and the instance configuration.

The instance configuration is loaded as the services load it: a real ``DagsterInstance``
from ``dagster.yaml``, with its MySQL run storage on MariaDB and dagster-aws's
``EcsRunLauncher``.
"""

from __future__ import annotations

import copy
import re
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from .cfn_checks import ecs_service_findings, iam_findings, task_secret_findings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "dagster"
ROOT_WORKSPACE = Path(__file__).resolve().parents[2] / "workspace.yaml"
CHECKS = [iam_findings, task_secret_findings, ecs_service_findings]


@pytest.fixture(scope="module")
def template() -> dict:
    from cfnlint.decode import decode

    parsed, matches = decode(str(DEPLOY / "template.yaml"))
    assert not matches, matches
    return parsed


def test_cfn_lint_finds_nothing():
    from cfnlint.api import lint_file

    matches = lint_file(DEPLOY / "template.yaml")
    assert not matches, "\n".join(str(m) for m in matches)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_services_template_has_the_property(template, check):
    assert check(template) == []


def _container(template: dict, task: str) -> dict:
    return template["Resources"][task]["Properties"]["ContainerDefinitions"][0]


@pytest.mark.parametrize("breakage", ["plain_password", "password_in_url", "secret_not_readable",
                                      "public_ip", "two_daemons", "wildcard_action"])
def test_each_property_notices_its_breakage(template, breakage):
    broken = copy.deepcopy(template)
    resources = broken["Resources"]
    if breakage == "plain_password":
        _container(broken, "DaemonTask")["Environment"].append({"Name": "DAGSTER_MYSQL_PASSWORD", "Value": "hunter2"})
        _container(broken, "DaemonTask")["Secrets"].pop()
    elif breakage == "password_in_url":
        _container(broken, "CodeLocationTask")["Environment"][2]["Value"] = "mysql+pymysql://admin:hunter2@db:3306/traffic"
    elif breakage == "secret_not_readable":
        resources["ExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].pop(0)
    elif breakage == "public_ip":
        resources["WebserverService"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] = "ENABLED"
    elif breakage == "two_daemons":
        resources["DaemonService"]["Properties"]["DeploymentConfiguration"]["MaximumPercent"] = 200
    elif breakage == "wildcard_action":
        resources["RunRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]["Action"] = "s3:*"
    assert any(check(broken) for check in CHECKS), breakage


def test_the_services_find_the_code_location_it_serves(template):
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"][0]["grpc_server"]
    namespace = template["Resources"]["Namespace"]["Properties"]["Name"]
    service = template["Resources"]["CodeLocationDiscovery"]["Properties"]["Name"]
    assert workspace["host"] == f"{service}.{namespace}" and workspace["port"] == 4000
    ports = _container(template, "CodeLocationTask")["PortMappings"]
    assert [p["ContainerPort"] for p in ports] == [4000]
    # the code location serves the module and attribute the local workspace (tested by
    # test_definitions) loads
    local = yaml.safe_load(ROOT_WORKSPACE.read_text())["load_from"][0]["python_module"]
    script = (DEPLOY / "start-code-location.sh").read_text()
    assert re.search(rf"-m {re.escape(local['module_name'])} -a {local['attribute']}\b", script)
    assert "db upgrade" in script and 'create-database "${DAGSTER_MYSQL_DB' in script
    assert 'CMD ["start-code-location"]' in (DEPLOY / "Dockerfile").read_text()
    # the daemon (schedules and sensors) and the webserver read the same workspace file
    for task in ("DaemonTask", "WebserverTask"):
        assert "/opt/dagster/home/workspace.yaml" in _container(template, task)["Command"]


@pytest.mark.mariadb
@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
def test_dagster_yaml_makes_an_instance_with_mysql_storage_ecs_runs_and_run_monitoring(
        db_url, tmp_path, monkeypatch, aws_env):
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef
    from dagster_aws.ecs import EcsRunLauncher
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from traffic_platform.storage.database import create_database, make_engine

    url = make_url(db_url)
    name = f"tp_dagster_{uuid.uuid4().hex[:8]}"
    engine = make_engine(db_url)
    assert create_database(engine, name)  # what start-code-location does
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    for variable, value in {"DAGSTER_MYSQL_USERNAME": url.username, "DAGSTER_MYSQL_PASSWORD": url.password or "",
                            "DAGSTER_MYSQL_HOST": url.host, "DAGSTER_MYSQL_DB": name}.items():
        monkeypatch.setenv(variable, value)
    try:
        instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
        try:
            assert isinstance(instance.run_launcher, EcsRunLauncher)
            assert instance.run_launcher.container_name == "code-location"
            assert instance.run_monitoring_enabled and instance.run_monitoring_max_resume_run_attempts == 0
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            assert list(instance.get_runs()) == []  # the run storage's tables exist in MariaDB
            assert type(instance.run_storage).__name__ == "MySQLRunStorage"
        finally:
            instance.dispose()
        with engine.connect() as conn:
            tables = set(conn.scalars(text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                                      {"s": name}))
        assert {"runs", "event_logs", "alembic_version"} <= tables
    finally:
        with engine.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            conn.commit()
        engine.dispose()
