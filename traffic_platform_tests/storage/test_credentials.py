"""``?aws_secret=<ARN>`` database URLs: credentials from Secrets Manager (moto over HTTP) on MariaDB."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from traffic_platform.domain.errors import ConfigurationError
from traffic_platform.storage.database import make_engine

# MariaDB only: the conftest's db_url fixture, with its mariadb parameter alone
pytestmark = [pytest.mark.mariadb, pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)]


@pytest.fixture
def secrets(s3_server, monkeypatch):
    """A Secrets Manager client on the moto server; every boto3 client in the test goes there."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    return boto3.client("secretsmanager", region_name="eu-west-1")


@pytest.fixture
def mariadb_user(db_url):
    """A MariaDB user allowed into the test database: (name, password, host, port, database)."""
    from sqlalchemy import create_engine

    url = make_url(db_url)
    name, password = f"tp_s_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'"))
        conn.execute(text(f"CREATE USER '{name}'@'localhost' IDENTIFIED BY '{password}'"))
        conn.execute(text(f"GRANT SELECT ON `{url.database}`.* TO '{name}'@'%', '{name}'@'localhost'"))
    yield admin, name, password, url
    with admin.connect() as conn:
        conn.execute(text(f"DROP USER IF EXISTS '{name}'@'%', '{name}'@'localhost'"))
    admin.dispose()


def secret_url(url, arn: str) -> str:
    return f"mysql+pymysql://{url.host}:{url.port or 3306}/{url.database}?aws_secret={arn}"


def test_the_engine_logs_in_with_the_secret_and_follows_a_rotation(secrets, mariadb_user):
    admin, name, password, url = mariadb_user
    arn = secrets.create_secret(
        Name=f"rds-{uuid.uuid4().hex[:8]}", SecretString=json.dumps({"username": name, "password": password})
    )["ARN"]
    engine = make_engine(secret_url(url, arn))
    assert password not in str(engine.url) and "aws_secret" not in str(engine.url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT CURRENT_USER()")).split("@")[0] == name
        # rotation: the server and the secret get a new password; pooled connections are gone
        rotated = uuid.uuid4().hex
        with admin.connect() as conn:
            for host in ("%", "localhost"):
                conn.execute(text(f"ALTER USER '{name}'@'{host}' IDENTIFIED BY '{rotated}'"))
        secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": name, "password": rotated}))
        engine.dispose()
        with engine.connect() as conn:  # the cached password is refused (1045): read again, retry once
            assert conn.scalar(text("SELECT 1")) == 1
    finally:
        engine.dispose()


def test_a_secret_without_a_password_is_a_configuration_error(secrets, mariadb_user):
    _, name, _, url = mariadb_user
    arn = secrets.create_secret(Name=f"rds-{uuid.uuid4().hex[:8]}", SecretString=json.dumps({"username": name}))["ARN"]
    engine = make_engine(secret_url(url, arn))
    with pytest.raises(ConfigurationError, match="'username' and 'password'"):
        engine.connect()
    engine.dispose()


def test_a_missing_secret_names_the_permission_to_check(secrets, mariadb_user):
    _, _, _, url = mariadb_user
    engine = make_engine(secret_url(url, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:absent-AbCdEf"))
    with pytest.raises(ConfigurationError, match="secretsmanager:GetSecretValue"):
        engine.connect()
    engine.dispose()
