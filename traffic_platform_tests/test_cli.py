"""The `traffic-platform` console script, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).with_name("traffic-platform")


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "traffic_platform.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def test_help_lists_the_commands():
    out = cli("--help")
    assert out.returncode == 0
    for command in ("parse-name", "db", "serve", "worker", "ingest", "spool", "model", "demo", "report"):
        assert command in out.stdout


def test_parse_name_prints_json():
    out = cli("parse-name", "rue_de_la_loi_Liège_Belgium_12-10-2022_10-51-38.jpg")
    assert out.returncode == 0
    data = json.loads(out.stdout)
    assert data["address_display"] == "rue de la loi" and data["city"] == "Liège"
    assert data["captured_at"] == "2022-10-12T10:51:38"


@pytest.mark.parametrize(
    "name, code",
    [("a_B_C_31-02-2022_10-00-00.jpg", "file_name_impossible_date"), ("../x_B_C_12-10-2022_10-00-00.jpg", "file_name_path_component")],
)
def test_parse_name_error_exits_2_with_code(name, code):
    out = cli("parse-name", name)
    assert out.returncode == 2
    assert out.stderr.startswith(f"{code}: ")


def test_invalid_setting_fails_at_start_naming_the_variable(tmp_path):
    out = cli("db", "upgrade", env={"TRAFFIC_DATABASE_URL": "postgres://nope", "TRAFFIC_HOME": str(tmp_path)})
    assert out.returncode == 2 and "TRAFFIC_DATABASE_URL" in out.stderr


def test_db_upgrade_and_ddl(db_url, tmp_path):
    out = cli("db", "upgrade", env={"TRAFFIC_DATABASE_URL": db_url, "TRAFFIC_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "at revision 0004" in out.stdout
    ddl = cli("db", "ddl")
    assert ddl.returncode == 0 and "CREATE TABLE captures" in ddl.stdout


def test_db_create_database_makes_a_second_schema_once(db_url, tmp_path):
    import uuid

    env = {"TRAFFIC_DATABASE_URL": db_url, "TRAFFIC_HOME": str(tmp_path)}
    name = f"tp_dagster_{uuid.uuid4().hex[:8]}"
    first = cli("db", "create-database", name, env=env)
    if db_url.startswith("sqlite"):
        assert first.returncode == 2 and first.stderr.startswith("not_mysql: ")
        return
    from sqlalchemy import create_engine, text

    try:
        assert first.returncode == 0 and f"database {name} created" in first.stdout, first.stderr
        assert f"database {name} exists" in cli("db", "create-database", name, env=env).stdout
        bad = cli("db", "create-database", "x`; DROP DATABASE test; --", env=env)
        assert bad.returncode == 2 and bad.stderr.startswith("bad_database_name: ")
    finally:
        admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def test_ingest_command_summarises_by_outcome(tmp_path, tiny_detr_dir):
    from .images import jpeg_bytes, street_scene

    photos = tmp_path / "in"
    photos.mkdir()
    (photos / "tiensevest_Leuven_Belgium_12-10-2022_10-51-38.jpg").write_bytes(jpeg_bytes(street_scene(320, 240)))
    (photos / "no-metadata.jpg").write_bytes(b"x")
    (photos / "tiensevest_Leuven_Belgium_12-10-2022_10-52-38.jpg").write_bytes(b"not an image")
    env = {"TRAFFIC_HOME": str(tmp_path / "home"), "TRAFFIC_DETECTOR": f"local:{tiny_detr_dir}", "TRAFFIC_DETECTOR_RUNTIME": "torch"}
    out = cli("ingest", "--quiet", str(photos), env=env)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["files"] == 3 and summary["accepted"] == 1 and summary["persisted"] is True
    assert summary["rejected"] == {"file_name_missing_parts": 1, "not_an_image": 1}
    status = cli("spool", "status", env=env)
    assert json.loads(status.stdout)["pending"] == 0
