"""The async part: store one capture job — image, annotated copy, rows — idempotently.

Objects are written before rows, so a row never points at a missing object; every
write is an overwrite-or-insert-if-absent, so replaying a job changes nothing.
Used by the local spool worker and by the SQS persist Lambda alike.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..domain.metadata import CaptureMetadata
from ..storage import keys
from ..storage.repository import CaptureRecord, Repository
from .jobs import ACCEPTED, CaptureJob

if TYPE_CHECKING:
    from ..storage.objectstore import ObjectStore

log = logging.getLogger(__name__)


class Persister:
    """Writes jobs to the object store and the database."""

    def __init__(self, repo: Repository, store: ObjectStore, *, blur_people: bool = False):
        self.repo = repo
        self.store = store
        self.blur_people = blur_people

    def persist(self, job: CaptureJob) -> bool:
        """Store ``job``; return True if the capture is new. Raises on any failure (retry later)."""
        started = time.perf_counter()
        meta = job.metadata
        image_key = annotated_key = None
        if job.status == ACCEPTED:
            image_key = keys.image_key(job.capture_id, meta.captured_at, meta.extension)
            annotated_key = keys.annotated_key(job.capture_id, meta.captured_at)
            self.store.put(image_key, job.image, job.content_type)
            self.store.put(annotated_key, self._annotated(job), "image/jpeg")
        else:
            image_key = keys.distorted_key(job.capture_id, meta.captured_at, meta.extension)
            self.store.put(image_key, job.image, job.content_type)
        created = self.repo.save_capture(self.record_for(job, meta, image_key, annotated_key))
        log.debug("persisted %s in %.1f ms (new=%s)", job.capture_id, (time.perf_counter() - started) * 1e3, created)
        return created

    def _annotated(self, job: CaptureJob) -> bytes:
        from ..detection.annotate import annotate
        from .decode import open_oriented

        return annotate(open_oriented(job.image), job.detections, blur_people=self.blur_people)

    @staticmethod
    def record_for(job: CaptureJob, meta: CaptureMetadata, image_key: str | None, annotated_key: str | None) -> CaptureRecord:
        return CaptureRecord(
            capture_id=job.capture_id,
            metadata=meta,
            timezone=job.timezone,
            captured_at_utc=job.captured_at_utc,
            content_sha256=job.content_sha256,
            status=job.status,
            quality_metrics=job.quality_metrics,
            quality_reasons=job.quality_reasons,
            width=job.width,
            height=job.height,
            image_key=image_key,
            annotated_key=annotated_key,
            model_name=job.model_name,
            model_version=job.model_version,
            timings=job.timings,
            ingested_at=job.ingested_at,
            detections=job.detections,
        )
