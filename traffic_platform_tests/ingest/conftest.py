"""Fixtures for end-to-end ingest tests: a tiny real transformers detector and a running platform."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from traffic_platform.config import Settings
from traffic_platform.detection.factory import build_detector
from traffic_platform.ingest.local import LocalPlatform


@pytest.fixture(scope="session")
def tiny_detector(tiny_detr_dir: Path):
    """One detector for the session (the model loads once per process, as in production)."""
    return build_detector(Settings(detector=f"local:{tiny_detr_dir}", detector_runtime="torch"))


@pytest.fixture(params=["local", "s3"])
def platform_settings(request, tmp_path: Path, db_url: str, tiny_detr_dir: Path) -> Settings:
    """Settings on every database (sqlite, mariadb) x object store (directory, S3 over HTTP)."""
    base = Settings(home=tmp_path, database_url=db_url, detector=f"local:{tiny_detr_dir}", detector_runtime="torch")
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_settings")
        base = dataclasses.replace(base, object_store_uri=s3.object_store_uri, s3_endpoint_url=s3.s3_endpoint_url, s3_region=s3.s3_region)
    return base


@pytest.fixture
def platform(platform_settings: Settings, tiny_detector) -> Iterator[LocalPlatform]:
    with LocalPlatform(platform_settings, detector=tiny_detector) as p:
        yield p


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict | bytes, dict]:
    """One HTTP request; returns (status, JSON body or bytes, headers)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, data, hdrs = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        status, data, hdrs = err.code, err.read(), dict(err.headers)
    if hdrs.get("Content-Type", "").startswith("application/json"):
        return status, json.loads(data), hdrs
    return status, data, hdrs
