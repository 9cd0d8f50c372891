"""Resources built from the one settings object (``Settings.from_env``).

Left unset, each resource reads ``TRAFFIC_*`` when a run starts (so no URL or secret is
shown in the UI's run config); tests pass explicit values. Clients are created once per
run in ``setup_for_execution``, never at import time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from ..config import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ..detection.base import Detector
    from ..ingest.local import LocalPlatform
    from ..storage.objectstore import ObjectStore


class DatabaseResource(dg.ConfigurableResource):
    """The platform database (SQLite file or Aurora MySQL/MariaDB) as a SQLAlchemy engine."""

    url: str | None = None  # default: TRAFFIC_DATABASE_URL (via Settings.from_env)

    _engine: Any = PrivateAttr(default=None)

    def resolved_url(self) -> str:
        return self.url or Settings.from_env().database_url

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._engine = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def get_engine(self) -> Engine:
        """The run's engine (created on first use, disposed when the run step ends)."""
        if self._engine is None:
            from ..storage.database import make_engine

            self._engine = make_engine(self.resolved_url())
        return self._engine


class ObjectStoreResource(dg.ConfigurableResource):
    """The image store (a directory or S3) from the same settings."""

    uri: str | None = None  # default: TRAFFIC_OBJECT_STORE_URI
    s3_endpoint_url: str | None = None  # default: TRAFFIC_S3_ENDPOINT_URL

    _store: Any = PrivateAttr(default=None)

    def settings(self) -> Settings:
        settings = Settings.from_env()
        changes: dict[str, Any] = {}
        if self.uri:
            changes["object_store_uri"] = self.uri
        if self.s3_endpoint_url:
            changes["s3_endpoint_url"] = self.s3_endpoint_url
        return replace(settings, **changes) if changes else settings

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._store = None

    def get_store(self) -> ObjectStore:
        if self._store is None:
            from ..storage.objectstore import open_object_store

            self._store = open_object_store(self.settings())
        return self._store


_DETECTORS: dict[tuple, Detector] = {}
_DETECTORS_LOCK = threading.Lock()


def _detector_cache_key(settings: Settings) -> tuple:
    return (
        settings.detector,
        settings.detector_runtime,
        settings.detector_threads,
        settings.detector_batch_size,
        repr(settings.thresholds),
        str(settings.model_cache_dir),
        settings.s3_endpoint_url,
        settings.sagemaker_timeout_s,
    )


def shared_detector(settings: Settings) -> Detector:
    """The detector ``settings`` names, built and warmed up once per process (like the HTTP server).

    A process keeps the model it loaded; a Dagster run normally gets its own process, so a
    changed ``TRAFFIC_DETECTOR`` (or new weights under the same path) is used from the next run.
    """
    key = _detector_cache_key(settings)
    with _DETECTORS_LOCK:
        detector = _DETECTORS.get(key)
        if detector is None:
            from ..detection.factory import build_detector

            detector = build_detector(settings)
            detector.warmup()
            _DETECTORS[key] = detector
        return detector


class IngestResource(dg.ConfigurableResource):
    """The ingest service wired as the local platform wires it: the configured detector and the
    durable spool hand-off, persisted by the spool worker into the same database and object store
    as the other resources.

    Everything not set here comes from ``TRAFFIC_*`` (detector spec and runtime, thresholds,
    quality gate, upload limits, time zones, ``TRAFFIC_SPOOL_DIR`` / ``TRAFFIC_HOME``).
    """

    database: DatabaseResource
    object_store: ObjectStoreResource
    detector: str | None = None  # default: TRAFFIC_DETECTOR
    detector_runtime: str | None = None  # default: TRAFFIC_DETECTOR_RUNTIME
    spool_dir: str | None = None  # default: TRAFFIC_SPOOL_DIR, else <TRAFFIC_HOME>/spool
    # How long a run waits for the spool worker to store what it handed off (retries included).
    persist_timeout_s: float = 600.0

    def settings(self) -> Settings:
        """``Settings.from_env()`` with this resource's (and its store's and database's) overrides."""
        settings = self.object_store.settings()
        changes: dict[str, Any] = {"database_url": self.database.resolved_url()}
        if self.detector:
            changes["detector"] = self.detector
        if self.detector_runtime:
            changes["detector_runtime"] = self.detector_runtime
        if self.spool_dir:
            changes["spool_dir"] = Path(self.spool_dir)
        settings = replace(settings, **changes)
        settings.validate()
        return settings

    def spool_backlog(self) -> dict[str, float] | None:
        """The local spool's backlog (pending, dead, oldest pending age in seconds), or ``None``
        where this home has no spool directory (the AWS home hands off through SQS)."""
        from ..ingest.spool import Spool

        spool_dir = self.settings().spool_dir
        if not (spool_dir / "pending").is_dir():
            return None
        return Spool(spool_dir).backlog()

    @contextmanager
    def open_platform(self) -> Iterator[LocalPlatform]:
        """The local platform (database, store, spool, worker) with the process-wide detector.

        The worker thread is not started: the caller persists its own hand-offs (see
        :meth:`traffic_platform.ingest.local.LocalPlatform.wait_persisted`), so a run ends only
        once what it accepted is stored. Everything is closed on exit.
        """
        from ..ingest.local import LocalPlatform

        settings = self.settings()
        with LocalPlatform(settings, run_worker=False, detector=shared_detector(settings)) as platform:
            yield platform


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """The resources every deployment uses; values come from ``TRAFFIC_*`` at run time."""
    database, object_store = DatabaseResource(), ObjectStoreResource()
    return {
        "database": database,
        "object_store": object_store,
        "ingest": IngestResource(database=database, object_store=object_store),
    }
