"""The async part: store one capture job — image, annotated copy, rows — idempotently.

Objects are written before rows, so a row never points at a missing object; every
write is an overwrite-or-insert-if-absent, so replaying a job changes nothing.
Used by the local spool worker and by the SQS persist Lambda alike. The job arrives
parsed and checked (:class:`~traffic_platform.ingest.handoff.CaptureJob`); the image is
decoded once here, for the annotated copy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..domain.captures import ACCEPTED, CaptureRecord
from ..storage import keys
from ..storage.repository import Repository
from .handoff import CaptureJob

if TYPE_CHECKING:
    from ..storage.objectstore import ObjectStore

log = logging.getLogger(__name__)


class Persister:
    """Writes jobs to the object store and the database."""

    def __init__(
        self,
        repo: Repository,
        store: ObjectStore,
        *,
        blur_people: bool = False,
        max_pixels: int | None = None,
    ):
        self.repo = repo
        self.store = store
        self.blur_people = blur_people
        self.max_pixels = max_pixels  # ingest's limit, so the worker never refuses what it accepted

    def persist(self, job: CaptureJob) -> bool:
        """Store ``job``; return True if the capture is new. Raises on any failure (retry later)."""
        started = time.perf_counter()
        record = self._store_objects(job)
        created = self.repo.save_capture(record)
        self._log(record, created, started)
        return created

    def persist_many(
        self, jobs: Sequence[CaptureJob], map: Callable[..., Iterator] = map
    ) -> list[bool | Exception]:
        """:meth:`persist` for a batch, one result per job (``True``: new capture; or the
        exception that job raised): the objects job by job (through ``map``: e.g. a thread
        pool's), then the rows of all in one transaction (:meth:`Repository.save_captures`);
        a failing job fails alone."""
        started = time.perf_counter()
        stored = list(map(self._try_store_objects, jobs))
        results: list[bool | Exception] = [r if isinstance(r, Exception) else False for r in stored]
        ready = [(i, r) for i, r in enumerate(stored) if isinstance(r, CaptureRecord)]
        saved = self.repo.save_captures([record for _, record in ready]) if ready else []
        for (i, record), outcome in zip(ready, saved, strict=True):
            results[i] = outcome
            if not isinstance(outcome, Exception):
                self._log(record, outcome, started)
        return results

    def _try_store_objects(self, job: CaptureJob) -> CaptureRecord | Exception:
        try:
            return self._store_objects(job)
        except Exception as exc:  # noqa: BLE001 - reported per job
            return exc

    def _store_objects(self, job: CaptureJob) -> CaptureRecord:
        """Put the image (and the annotated copy of an accepted one); the record with its keys."""
        record = job.record
        meta = record.metadata
        annotated_key = None
        if record.status == ACCEPTED:
            image_key = keys.image_key(record.capture_id, meta.captured_at, record.extension)
            annotated_key = keys.annotated_key(record.capture_id, meta.captured_at)
            self.store.put(image_key, job.image, record.content_type)
            self.store.put(annotated_key, self._annotated(job), "image/jpeg")
        else:
            image_key = keys.distorted_key(record.capture_id, meta.captured_at, record.extension)
            self.store.put(image_key, job.image, record.content_type)
        return replace(record, image_key=image_key, annotated_key=annotated_key)

    def _log(self, record: CaptureRecord, created: bool, started: float) -> None:
        log.info(
            "stored %s",
            record.capture_id,
            extra={
                "event": "persist",
                "capture_id": record.capture_id,
                "status": record.status,
                "new_capture": created,
                "persist_ms": round((time.perf_counter() - started) * 1e3, 3),
            },
        )

    def _annotated(self, job: CaptureJob) -> bytes:
        from ..detection.annotate import annotate
        from ..domain.images import open_stored

        picture = open_stored(job.image, max_pixels=self.max_pixels)
        return annotate(picture, job.record.detections, blur_people=self.blur_people)
