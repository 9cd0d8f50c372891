"""The embedded home: wires settings into database, object store, detector, spool and worker.

Used by `traffic-platform serve|worker|ingest|demo`, the landing-prefix job and end-to-end
tests. Every client, connection and the model are created here once per process.
:meth:`LocalPlatform.ingest_batch` is the one way to "ingest these and wait until they
are stored" (the CLI, the demo and the landing job use it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..config import Settings
from ..detection.base import Detector
from ..domain.captures import DISTORTED, CaptureRecord
from ..domain.errors import DistortedImage, TrafficPlatformError
from ..storage.counts import CountsReader
from .api import Api
from .backpressure import SpoolBound
from .counts_api import CountsApi
from .handoff import CaptureJob
from .http_server import ApiServer
from .lookup import StoredCaptureLookup
from .metrics import Metrics
from .persist import Persister
from .service import IngestService
from .spool import Spool
from .uploads import UploadsApi
from .worker import SpoolWorker

log = logging.getLogger(__name__)


#: The embedded home's lookup is the shared one, with its spool (pending / failed states).
LocalCaptureLookup = StoredCaptureLookup


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
        self.persister = Persister(self.repo, self.store, max_pixels=settings.max_pixels)
        self.worker = SpoolWorker(
            self.spool, self.persister.persist, max_attempts=settings.persist_max_attempts,
            backoff_cap=settings.persist_backoff_cap_s, concurrency=settings.persist_concurrency,
            persist_many=self.persister.persist_many,
        )
        self.bound = SpoolBound(self.spool, settings.spool_max_pending, lambda: self.worker.persisted)
        self.run_worker = run_worker
        self.metrics = Metrics()
        self.metrics.gauge("traffic_spool_pending", self.spool.depth)
        self.metrics.gauge("traffic_spool_dead", self.spool.dead_count)
        self.metrics.gauge("traffic_spool_admission_waits_total", lambda: self.bound.waited)
        self.metrics.gauge("traffic_spool_full_refusals_total", lambda: self.bound.refused)
        self.metrics.gauge("traffic_spool_oldest_pending_age_seconds", self.spool.oldest_pending_age)
        self.metrics.gauge("traffic_persist_transient_failures_streak", lambda: self.worker.transient_streak)
        self.detector = detector
        if self.detector is None and load_detector:
            from ..detection.factory import build_detector

            self.detector = build_detector(settings)
            self.detector.warmup()

    @cached_property
    def service(self) -> IngestService:
        """The ingest service of this process (built once, on first use)."""
        return IngestService(self.settings, self.detector, _CountedSpool(self.spool, self.bound),
                             admission=self._admit)

    def _admit(self) -> None:
        """Back-pressure while this process's worker drains the spool (``serve``) and keeps
        succeeding: during an outage the spool buffers (the worker is blocked, not behind), and a
        caller that persists its own hand-offs afterwards (landing runs, ``run_worker=False``) is
        never held."""
        self.bound.admit(hold=lambda: self.worker.running and self.worker.transient_streak == 0)

    def ingest_batch(
        self, items: Iterable[tuple[str, bytes, Any]], *, wait_s: float | None = 600.0
    ) -> list[IngestOutcome]:
        """Ingest ``(file name, bytes, tag)`` items one by one, then wait until they are stored.

        ``items`` may be a generator (it is consumed lazily, so only one image is in memory at a
        time); ``tag`` is the caller's handle (a path, an object key), returned on its outcome.
        No item's error stops the batch. With ``wait_s=None`` nothing waits for persistence
        (``stored`` stays ``None``).
        """
        outcomes = []
        for file_name, data, tag in items:
            try:
                record = self.service.ingest(file_name, data)
            except DistortedImage as exc:  # handed off as distorted, stored under distorted/
                outcomes.append(IngestOutcome(file_name, tag, DISTORTED, exc.details.get("capture_id"), error=exc))
            except TrafficPlatformError as exc:  # 4xx: the input is wrong; 5xx: a dependency failed
                outcomes.append(IngestOutcome(file_name, tag, REJECTED if exc.http_status < 500 else FAILED, error=exc))
            except Exception as exc:  # noqa: BLE001 - one bad item must not stop the batch
                log.exception("ingest of %s failed", file_name)
                outcomes.append(IngestOutcome(file_name, tag, FAILED, problem=f"{type(exc).__name__}: {exc}"[:500]))
            else:
                outcomes.append(IngestOutcome(file_name, tag, record.status, record.capture_id, record=record))
            if self.worker.running:
                self.worker.notify()  # after each item: its hand-off (if any) is in the spool
        if wait_s is None:
            return outcomes
        handed = [o.capture_id for o in outcomes if o.capture_id]
        self.wait_persisted(handed, timeout_s=wait_s)
        for outcome in outcomes:
            if outcome.capture_id:
                outcome.stored = self.repo.capture_exists(outcome.capture_id)
                if not outcome.stored:
                    reason = self.spool.dead_reason(outcome.capture_id) or self.spool.attempts(outcome.capture_id)
                    outcome.problem = f"not stored yet: {reason}"[:500]
        return outcomes

    def wait_persisted(self, capture_ids: Sequence[str], *, timeout_s: float) -> bool:
        """Wait until none of ``capture_ids`` is pending in the spool (stored or dead-lettered).

        When this process's worker runs, it does the work; otherwise this call persists
        them itself, taking the spool's worker lock. If another process holds the spool
        (``traffic-platform serve``, a concurrent landing run), its worker stores ours and
        we keep trying to take over until they are done. Returns whether everything left
        the spool within ``timeout_s``.
        """
        spool, worker = self.spool, self.worker
        deadline = time.monotonic() + timeout_s

        def pending() -> bool:
            return any(spool.is_pending(cid) for cid in capture_ids)

        while pending() and time.monotonic() < deadline:
            if worker.running:
                worker.notify()
                time.sleep(0.05)
                continue
            try:
                worker.acquire()
            except BlockingIOError:
                time.sleep(0.2)
                continue
            try:
                while pending() and time.monotonic() < deadline:
                    if not worker.run_once():
                        time.sleep(0.05)
            finally:
                worker.release()
        return not pending()

    def api(self) -> Api:
        return Api(
            self.service,
            lookup=LocalCaptureLookup(self.repo, self.store, self.spool),
            readiness={
                "database": self.repo.ping,
                "object_store": self.store.ping,
                "model": self._model_ready,
                "spool": self.spool_health,
            },
            metrics=self.metrics,
            api_key=self.settings.api_key,
            base_path=self.settings.api_base_path,
            counts=CountsApi(CountsReader(self.engine)),
            dashboard=self.dashboard_html,
            uploads=UploadsApi.for_store(self.store),
            after_image=self.worker.notify,
        )

    def dashboard_html(self) -> bytes:
        """The dashboard page from the views and the object store, rendered now (``GET /dashboard``)."""
        from ..dashboard import render_dashboard

        html, _ = render_dashboard(self.engine, self.store)
        return html.encode("utf-8")

    def spool_health(self) -> dict[str, Any]:
        """The backlog, and ``degraded`` with the reason while it is old or the store/database is
        failing (accepted images are safe in the spool; they are only late)."""
        backlog = self.spool.backlog()
        reasons = []
        limit_s = self.settings.backlog_warn_minutes * 60
        if backlog["oldest_pending_age_s"] > limit_s:
            reasons.append(f"oldest pending job is {backlog['oldest_pending_age_s']:.0f} s old (limit {limit_s:.0f} s)")
        if self.worker.transient_streak:
            reasons.append(f"last {self.worker.transient_streak} persist attempts failed transiently "
                           f"({self.worker.last_transient_error})"[:500])
        return {**backlog, **({"degraded": "; ".join(reasons)} if reasons else {})}

    def _model_ready(self) -> dict[str, str]:
        if self.detector is None:
            raise RuntimeError("no detector loaded in this process")
        return self.detector.describe()

    def http_server(self, host: str = "127.0.0.1", port: int = 0) -> ApiServer:
        s = self.settings
        return ApiServer(
            self.api(), host, port, max_body=s.max_upload_bytes, max_concurrency=s.http_max_concurrency,
            header_timeout_s=s.http_header_timeout_s, body_timeout_s=s.http_body_timeout_s,
        )  # fmt: skip

    def __enter__(self) -> LocalPlatform:
        if self.run_worker:
            self.worker.start()
        return self

    def __exit__(self, *exc) -> None:
        self.worker.stop()  # joins its thread if started, ends its pool, releases the spool lock
        if "service" in self.__dict__:  # built: stop its threads
            self.service.close()
        self.engine.dispose()


#: Outcomes of :meth:`LocalPlatform.ingest_batch` besides accepted/distorted.
REJECTED, FAILED = "rejected", "failed"


@dataclass
class IngestOutcome:
    """What became of one item of :meth:`LocalPlatform.ingest_batch`.

    ``status``: ``accepted`` or ``distorted`` (handed off: ``capture_id`` is set), ``rejected``
    (the input is wrong: a 4xx error a retry cannot fix) or ``failed`` (the detector, a
    dependency or something unexpected failed: worth a retry). ``stored`` says, after the
    wait, whether the capture is in the database; ``problem`` why not, or what failed.
    """

    file_name: str
    tag: Any
    status: str
    capture_id: str | None = None
    record: CaptureRecord | None = None
    error: TrafficPlatformError | None = None
    stored: bool | None = None
    problem: str | None = None


class _CountedSpool:
    """Submits to the spool and counts it for back-pressure. It does not wake the worker: the
    caller does once it has answered (``Api(after_image=)``; :meth:`LocalPlatform.ingest_batch`),
    so persistence does not compete with the answer being written (issue 19)."""

    def __init__(self, spool: Spool, bound: SpoolBound):
        self.spool, self.bound = spool, bound

    def submit(self, job: CaptureJob) -> None:
        self.spool.submit(job)
        self.bound.submitted()
