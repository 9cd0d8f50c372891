"""The embedded home: wires settings into database, object store, detector, spool and worker.

Used by `traffic-platform serve|worker|ingest|demo` and by end-to-end tests. Every
client, connection and the model are created here once per process.
"""

from __future__ import annotations

import logging
from typing import Any

from ..config import Settings
from ..detection.base import Detector
from ..domain.errors import NotFound
from .api import Api, CaptureLookup
from .http_server import ApiServer
from .jobs import CaptureJob
from .metrics import Metrics
from .persist import Persister
from .service import IngestService
from .spool import Spool
from .worker import SpoolWorker

log = logging.getLogger(__name__)


class LocalCaptureLookup(CaptureLookup):
    """A capture's state from the database, else the spool (pending) or its dead letters (failed)."""

    def __init__(self, repo, store, spool: Spool):
        self.repo, self.store, self.spool = repo, store, spool

    def status(self, capture_id: str) -> dict[str, Any]:
        row = self.repo.get_capture(capture_id)
        if row is not None:
            return {**row, "status": "stored" if row.get("status") == "accepted" else row.get("status")}
        if self.spool.is_pending(capture_id):
            job = self.spool.load(capture_id)
            return self._from_job(job, "pending", self.spool.attempts(capture_id).get("last_error"))
        reason = self.spool.dead_reason(capture_id)
        if reason is not None:
            return {"capture_id": capture_id, "status": "failed", "error": reason.get("reason")}
        raise NotFound(f"No capture {capture_id}: it was never accepted here.", code="capture_not_found")

    @staticmethod
    def _from_job(job: CaptureJob, status: str, last_error: str | None) -> dict[str, Any]:
        from ..domain.detections import count_by_class

        body = {
            "capture_id": job.capture_id,
            "status": status if job.status == "accepted" else f"{status}_{job.status}",
            "metadata": job.metadata.to_dict(),
            "counts": count_by_class(job.detections),
            "detections": [d.to_dict() for d in job.detections],
        }
        if last_error:
            body["last_error"] = last_error
        return body

    def image(self, capture_id: str, annotated: bool) -> tuple[bytes, str]:
        row = self.repo.get_capture(capture_id)
        if row is None:
            if self.spool.is_pending(capture_id):
                raise NotFound(f"Capture {capture_id} is still being stored; try again in a moment.", code="capture_pending")
            raise NotFound(f"No capture {capture_id}.", code="capture_not_found")
        key = row.get("annotated_key") if annotated else row.get("image_key")
        if not key:
            raise NotFound(f"Capture {capture_id} has no {'annotated ' if annotated else ''}image (status {row.get('status')}).", code="image_not_found")
        try:
            data = self.store.get(key)
        except KeyError:  # ObjectNotFound
            raise NotFound(f"The image of capture {capture_id} is missing from the object store.", code="image_not_found") from None
        return data, "image/jpeg" if annotated or key.endswith((".jpg", ".jpeg")) else "image/png"


class LocalPlatform:
    """Everything the embedded home needs, built once; a context manager that starts/stops the worker."""

    def __init__(self, settings: Settings, *, run_worker: bool = True, load_detector: bool = True, detector: Detector | None = None):
        from ..storage.database import make_engine, upgrade
        from ..storage.objectstore import open_object_store
        from ..storage.repository import Repository

        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(settings.database_url)
        upgrade(self.engine)
        self.repo = Repository(self.engine)
        self.store = open_object_store(settings)
        self.spool = Spool(settings.spool_dir)
        self.persister = Persister(self.repo, self.store)
        self.worker = SpoolWorker(
            self.spool, self.persister.persist, max_attempts=settings.persist_max_attempts, concurrency=settings.persist_concurrency
        )
        self.run_worker = run_worker
        self.metrics = Metrics()
        self.metrics.gauge("traffic_spool_pending", self.spool.depth)
        self.metrics.gauge("traffic_spool_dead", self.spool.dead_count)
        self.detector = detector
        if self.detector is None and load_detector:
            from ..detection.factory import build_detector

            self.detector = build_detector(settings)
            self.detector.warmup()

    @property
    def service(self) -> IngestService:
        return IngestService(self.settings, self.detector, _NotifyingSpool(self.spool, self.worker))

    def api(self) -> Api:
        return Api(
            self.service,
            lookup=LocalCaptureLookup(self.repo, self.store, self.spool),
            readiness={
                "database": self.repo.ping,
                "object_store": self.store.ping,
                "model": self._model_ready,
                "spool": lambda: {"pending": self.spool.depth(), "dead": self.spool.dead_count()},
            },
            metrics=self.metrics,
            api_key=self.settings.api_key,
        )

    def _model_ready(self) -> dict[str, str]:
        if self.detector is None:
            raise RuntimeError("no detector loaded in this process")
        return self.detector.describe()

    def http_server(self, host: str = "127.0.0.1", port: int = 0) -> ApiServer:
        return ApiServer(self.api(), host, port, max_body=self.settings.max_upload_bytes)

    def __enter__(self) -> LocalPlatform:
        if self.run_worker:
            self.worker.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.run_worker:
            self.worker.stop()
        self.engine.dispose()


class _NotifyingSpool:
    """Submits to the spool, then wakes the worker so persistence starts at once."""

    def __init__(self, spool: Spool, worker: SpoolWorker):
        self.spool, self.worker = spool, worker

    def submit(self, job: CaptureJob) -> None:
        self.spool.submit(job)
        self.worker.notify()
