"""Shared fixtures for the whole test suite.

Databases (every test that takes ``db_url``/``engine``/``repo`` runs on both):

* ``db_url`` — ``sqlite``: a file in ``tmp_path``; ``mariadb``: a fresh database
  ``tp_<hex>`` on ``$TRAFFIC_TEST_MARIADB_URL`` (default
  ``mysql+pymysql://root:@127.0.0.1:3306``), dropped afterwards. If MariaDB is not
  reachable the test is skipped, or fails when ``CI=true``.
* ``engine`` — :func:`make_engine` on ``db_url``, migrated to head, disposed afterwards.
* ``repo`` — a :class:`Repository` on ``engine``.

Object stores:

* ``s3_server`` (session) — moto's S3 over real HTTP on 127.0.0.1 (fake credentials set);
  yields the endpoint URL. ``s3_client`` (session) — a boto3 client for assertions.
* ``s3_bucket`` — a fresh, emptied-and-deleted-afterwards bucket on that server.
* ``object_store`` — parametrised ``local`` / ``s3``, opened through
  :func:`open_object_store` from :class:`Settings` exactly as production does.

Records: ``make_record`` builds a valid :class:`CaptureRecord` from a file name.

Heavy imports (SQLAlchemy, boto3, moto) stay inside the fixtures.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from traffic_platform.config import Settings
    from traffic_platform.domain.captures import CaptureRecord
    from traffic_platform.storage.objectstore import ObjectStore
    from traffic_platform.storage.repository import Repository

MARIADB_ADMIN_URL = os.environ.get(
    "TRAFFIC_TEST_MARIADB_URL", "mysql+pymysql://root:@127.0.0.1:3306"
)
TEST_DB_PREFIX = "tp_"
S3_REGION = "eu-west-1"
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": S3_REGION,
    "AWS_REGION": S3_REGION,
}


def _unavailable(reason: str) -> None:
    """Skip, or fail on CI, where CI=true promises every service is there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: required)")
    pytest.skip(reason)


def _mariadb_admin_engine() -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(
        MARIADB_ADMIN_URL,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"charset": "utf8mb4", "connect_timeout": 5},
    )


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: SQLite file or a fresh MariaDB database (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'traffic.db'}"  # parent dir created by make_engine
        return
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    admin = _mariadb_admin_engine()
    name = f"{TEST_DB_PREFIX}{uuid.uuid4().hex[:16]}"
    try:
        with admin.connect() as conn:
            conn.execute(
                text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            )
    except OperationalError as exc:
        admin.dispose()
        _unavailable(
            f"MariaDB at {make_url(MARIADB_ADMIN_URL).render_as_string()} is not reachable: {exc.orig}"
        )
    try:
        yield (
            make_url(MARIADB_ADMIN_URL)
            .set(database=name)
            .update_query_dict({"charset": "utf8mb4"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text("SET SESSION lock_wait_timeout = 60"))
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on ``db_url`` with the schema migrated to head."""
    from traffic_platform.storage.database import make_engine, upgrade

    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def repo(engine: Engine) -> Repository:
    from traffic_platform.storage.repository import Repository

    return Repository(engine)


@pytest.fixture
def make_record() -> Callable[..., CaptureRecord]:
    """``make_record(file_name="x_Leuven_Belgium_12-10-2022_10-51-38.jpg", **overrides)``.

    An accepted capture with a fresh capture id, the zone resolved from the country, UTC
    derived from it, no detections and a model ``test-model``/``v1``; override any field.
    """
    from traffic_platform.domain.captures import CaptureRecord
    from traffic_platform.domain.metadata import parse_file_name
    from traffic_platform.domain.timezones import local_to_utc, resolve_timezone

    def build(
        file_name: str = "tiensevest_Leuven_Belgium_12-10-2022_10-51-38.jpg", **overrides: Any
    ) -> CaptureRecord:
        meta = parse_file_name(file_name)
        zone = overrides.pop("timezone", None) or resolve_timezone(meta.city, meta.country)
        values: dict[str, Any] = {
            "capture_id": uuid.uuid4().hex,
            "metadata": meta,
            "timezone": zone,
            "captured_at_utc": local_to_utc(meta.captured_at, zone),
            "content_sha256": hashlib.sha256(file_name.encode()).hexdigest(),
            "status": "accepted",
            "ingested_at": datetime.now(UTC).replace(tzinfo=None),
            "quality_metrics": {
                "sharpness": 120.5,
                "brightness": 110.25,
                "contrast": 48.0,
                "clipped_share": 0.01,
                "uniform_share": 0.02,
            },
            "width": 1920,
            "height": 1080,
            "model_name": "test-model",
            "model_version": "v1",
            "timings": {"decode_ms": 4.5, "quality_ms": 2.25, "detect_ms": 80.0, "total_ms": 90.0},
        }
        values.update(overrides)
        return CaptureRecord(**values)

    return build


@pytest.fixture(scope="session")
def aws_env() -> Iterator[dict[str, str]]:
    """Fake AWS credentials for the whole session, so no test can reach real AWS."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in FAKE_AWS_ENV.items():
            mp.setenv(name, value)
        for name in (
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
        ):
            mp.delenv(name, raising=False)
        yield dict(FAKE_AWS_ENV)


@pytest.fixture(scope="session")
def s3_server(aws_env: dict[str, str]) -> Iterator[str]:
    """Moto's S3 (and other services) over HTTP on a free 127.0.0.1 port; yields the endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_server: str) -> Any:
    """A boto3 S3 client on the moto endpoint (for set-up and assertions)."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_server, region_name=S3_REGION)


@pytest.fixture
def s3_bucket(s3_client: Any) -> Iterator[str]:
    """A fresh bucket; emptied and deleted afterwards."""
    name = f"tp-test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": S3_REGION}
    )
    yield name
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            s3_client.delete_object(Bucket=name, Key=item["Key"])
    s3_client.delete_bucket(Bucket=name)


@pytest.fixture
def s3_settings(tmp_path: Path, s3_server: str, s3_bucket: str) -> Settings:
    """Settings whose object store is ``s3://<fresh bucket>/objects`` on the moto server."""
    from traffic_platform.config import Settings

    return Settings(
        home=tmp_path,
        object_store_uri=f"s3://{s3_bucket}/objects",
        s3_endpoint_url=s3_server,
        s3_region=S3_REGION,
    )


@pytest.fixture(params=["local", "s3"])
def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """An empty object store: a directory under ``tmp_path`` or a fresh S3 bucket over HTTP."""
    from traffic_platform.config import Settings
    from traffic_platform.storage.objectstore import open_object_store

    if request.param == "local":
        return open_object_store(Settings(home=tmp_path))
    return open_object_store(request.getfixturevalue("s3_settings"))


@pytest.fixture(scope="session")
def tiny_detr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight DETR checkpoint saved like a real one (built once per session)."""
    from traffic_platform.detection.tiny_models import build_tiny_detr

    return build_tiny_detr(tmp_path_factory.mktemp("tiny-detr"))
