"""The read-only reporting user on MariaDB: reads every view, cannot read the raw tables, cannot write."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from traffic_platform import cli
from traffic_platform.orchestration.sql.reporting_user import (
    render_reporting_user_sql,
    reporting_user_statements,
)
from traffic_platform.orchestration.sql.view_files import load_views

from . import datagen
from .datagen import DAY

ROOT = Path(__file__).resolve().parents[2]
REFUSED = (OperationalError, ProgrammingError)


def test_checked_in_ddl_is_the_rendered_template():
    assert (ROOT / "sql" / "reporting_user.mysql.sql").read_text(encoding="utf-8") == render_reporting_user_sql(), (
        "regenerate: .venv/bin/python -m traffic_platform.orchestration.sql.reporting_user > sql/reporting_user.mysql.sql")
    statements = reporting_user_statements("analyst", "%", "traffic")
    assert sum(s.startswith("GRANT SELECT ON `traffic`.`v_") for s in statements) == len(load_views())
    assert all(" ON `traffic`.`v_" in s for s in statements if s.startswith("GRANT"))  # views only
    with pytest.raises(Exception, match="user name"):
        reporting_user_statements("x'; DROP USER root; --", "%", "traffic")


@pytest.fixture
def reporting_user(repo, engine, db_url, materialize_day):
    """A fresh user name and password on a MariaDB with one materialized day; the user is
    dropped afterwards."""
    datagen.generate(repo, small=True, redetect=False)
    assert materialize_day(DAY).success
    user, password = f"tp_ro_{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    yield user, password
    with connected(db_url, isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))


@contextmanager
def connected(url: str | URL, **engine_kwargs: Any) -> Iterator[Connection]:
    """A connection on ``url`` (admin: ``db_url``; the reporting user: ``as_user``), disposed after."""
    eng = create_engine(make_url(url), **engine_kwargs)
    try:
        with eng.connect() as conn:
            yield conn
    finally:
        eng.dispose()


def as_user(db_url: str, user: str, password: str) -> URL:
    return make_url(db_url).set(username=user, password=password)


@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
def test_reporting_user_reads_views_only(reporting_user, db_url, monkeypatch, capsys):
    user, password = reporting_user
    monkeypatch.setenv("TRAFFIC_DATABASE_URL", db_url)
    monkeypatch.setenv("TP_TEST_REPORTING_PW", password)
    assert cli.main(["db", "create-reporting-user", user, "--password-env", "TP_TEST_REPORTING_PW"]) == 0
    assert f"'{user}'@'%' may SELECT {len(load_views())} views" in capsys.readouterr().out
    with connected(as_user(db_url, user, password)) as conn:
        for view in load_views():  # every view reads, through SQL SECURITY DEFINER
            conn.execute(text(f"SELECT * FROM {view.name}")).all()
        assert conn.execute(text("SELECT COUNT(*) FROM v_traffic_counts_hourly")).scalar_one() > 0
        for statement in ("SELECT COUNT(*) FROM captures", "SELECT * FROM traffic_counts_hourly",
                          "SELECT * FROM detections", "INSERT INTO locations (address) VALUES ('x')",
                          "UPDATE v_locations SET city = 'x'", "DELETE FROM v_traffic_counts_daily",
                          "CREATE TABLE x (a INT)", "DROP VIEW v_locations"):
            with pytest.raises(REFUSED):
                conn.execute(text(statement))
            conn.rollback()
    # running it again resets the user and keeps it read-only
    assert cli.main(["db", "create-reporting-user", user, "--password-env", "TP_TEST_REPORTING_PW"]) == 0
    with connected(db_url) as conn:
        grants = [row[0] for row in conn.execute(text(f"SHOW GRANTS FOR '{user}'@'%'"))]
    assert all(g.startswith(("GRANT USAGE ON *.*", "GRANT SELECT ON `")) and ".`v_" in g or "USAGE" in g for g in grants), grants


@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
def test_the_views_asset_keeps_the_configured_reporting_user_in_step(reporting_user, db_url, monkeypatch):
    """On AWS nobody runs the command: TRAFFIC_REPORTING_USER/_PASSWORD make the views asset do it."""
    import dagster as dg

    from traffic_platform.orchestration.assets.views import reporting_views
    from traffic_platform.orchestration.resources import DatabaseResource

    user, password = reporting_user
    monkeypatch.setenv("TRAFFIC_REPORTING_USER", user)
    monkeypatch.setenv("TRAFFIC_REPORTING_PASSWORD", password)
    result = dg.materialize([reporting_views], resources={"database": DatabaseResource(url=db_url)})
    assert result.success
    metadata = result.asset_materializations_for_node("reporting__views")[0].metadata
    assert metadata["reporting_user"].value == user
    with connected(as_user(db_url, user, password)) as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM v_traffic_counts_hourly")).scalar_one() > 0
        with pytest.raises(REFUSED):
            conn.execute(text("SELECT COUNT(*) FROM captures"))


def test_a_reporting_user_without_its_password_is_a_configuration_error():
    from traffic_platform.domain.errors import ConfigurationError
    from traffic_platform.orchestration.settings import OrchestrationSettings

    with pytest.raises(ConfigurationError, match="TRAFFIC_REPORTING_PASSWORD"):
        OrchestrationSettings.from_env({"TRAFFIC_REPORTING_USER": "powerbi"})
