"""Fixtures for the dashboard tests: isolated settings, reported data with annotated images."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from traffic_platform.storage.keys import annotated_key
from traffic_platform.storage.objectstore import LocalObjectStore
from traffic_platform_tests.images import jpeg_bytes, street_scene
from traffic_platform_tests.orchestration import datagen, reporting_data

ANNOTATED = 15  # more than the gallery's 12, so "the newest 12" is a choice


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    """Every TRAFFIC_* variable unset except a home under tmp_path: tests never touch var/."""
    for name in [n for n in os.environ if n.startswith("TRAFFIC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TRAFFIC_HOME", str(tmp_path / "home"))


@dataclass
class Reported:
    db_url: str
    store: LocalObjectStore
    newest: list[str]  # the annotated keys, newest first


@pytest.fixture
def reported(repo, db_url, tmp_path) -> Reported:
    """datagen's data reported (every reporting asset and view) and ANNOTATED annotated copies
    in a directory store, their modification times one minute apart (the newest known)."""
    reporting_data.build(repo, db_url)
    store = LocalObjectStore(tmp_path / "home" / "objects")
    picture = jpeg_bytes(street_scene(960, 540))
    keys = []
    base = time.time() - 3600
    for i in range(ANNOTATED):
        key = annotated_key(uuid.uuid4().hex, datagen.DAYS[i % len(datagen.DAYS)])
        store.put(key, picture, "image/jpeg")
        os.utime(store.root / key, (base + 60 * i, base + 60 * i))
        keys.append(key)
    # the page lists the newest day first, then the newest stored within the day
    newest = sorted(keys, key=lambda k: (k.split("/")[1:4], os.stat(store.root / k).st_mtime), reverse=True)
    return Reported(db_url, store, newest)


def page_path(tmp_path: Path) -> Path:
    return tmp_path / "out" / "index.html"
