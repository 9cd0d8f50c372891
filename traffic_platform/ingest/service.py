"""The ingest service: the sync part of the real-time path, framework-free.

    parse name -> safe decode -> quality gate -> detect -> durable hand-off -> answer

The HTTP server, the Lambda handlers, the CLI and the landing-prefix sensor are thin
adapters over :meth:`IngestService.ingest`. No database round trip happens here:
the capture id is derived from the name and bytes, and persistence is the worker's job.
"""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ..config import Settings
from ..detection.base import Detector
from ..domain.detections import Detection, count_by_class
from ..domain.errors import DistortedImage, TrafficPlatformError
from ..domain.metadata import CaptureMetadata, parse_file_name
from ..domain.quality import assess_quality
from ..domain.timezones import local_to_utc, resolve_timezone
from .decode import decode_image
from .jobs import ACCEPTED, DISTORTED, CaptureJob, capture_id_for

log = logging.getLogger("traffic_platform.ingest")


def _timed(fn, *args):
    """``(fn(*args), elapsed ms)``."""
    t = time.perf_counter()
    return fn(*args), (time.perf_counter() - t) * 1e3


class Handoff(Protocol):
    """Where accepted work goes before the caller is answered (spool or SQS); must be durable."""

    def submit(self, job: CaptureJob) -> None: ...


@dataclass
class IngestResult:
    """What the caller gets back for an accepted image."""

    capture_id: str
    metadata: CaptureMetadata
    detections: list[Detection]
    model_name: str
    model_version: str
    width: int
    height: int
    timings: dict[str, float] = field(default_factory=dict)
    status: str = ACCEPTED

    @property
    def counts(self) -> dict[str, int]:
        return count_by_class(self.detections)

    def to_dict(self) -> dict[str, Any]:
        return {
            "capture_id": self.capture_id,
            "status": self.status,
            "metadata": self.metadata.to_dict(),
            "width": self.width,
            "height": self.height,
            "counts": self.counts,
            "detections": [d.to_dict() for d in self.detections],
            "model": {"name": self.model_name, "version": self.model_version},
            "timings_ms": {k: round(v, 2) for k, v in self.timings.items()},
        }


class IngestService:
    """Turns (file name, bytes) into an answer and a durable job. Thread-safe if the detector is."""

    def __init__(self, settings: Settings, detector: Detector, handoff: Handoff):
        self.settings = settings
        self.detector = detector
        self.handoff = handoff
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="quality-gate")

    def ingest(self, file_name: str, data: bytes, content_type: str | None = None) -> IngestResult:
        """Run the sync part; raise a :class:`TrafficPlatformError` for anything rejected.

        A distorted image is handed off too (stored under ``distorted/``) before
        :class:`DistortedImage` is raised, so it is recorded with its reasons.
        """
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        metadata = parse_file_name(file_name)
        content_sha256 = hashlib.sha256(data).hexdigest() if data else ""
        capture_id = capture_id_for(file_name, content_sha256)
        zone = resolve_timezone(metadata.city, metadata.country, self.settings.timezones)

        def job(status: str, **extra: Any) -> CaptureJob:
            return CaptureJob(
                capture_id=capture_id,
                file_name=file_name,
                content_sha256=content_sha256,
                content_type=metadata.content_type,
                status=status,
                timezone=zone,
                captured_at_utc=local_to_utc(metadata.captured_at, zone),
                ingested_at=datetime.now(UTC).replace(tzinfo=None),
                image=data,
                **extra,
            )

        try:
            decoded = decode_image(
                data,
                declared_content_type=content_type or metadata.content_type,
                max_bytes=self.settings.max_upload_bytes,
                max_pixels=self.settings.max_pixels,
            )
        except DistortedImage as exc:  # it is a JPEG/PNG, but broken: keep it as distorted
            reasons = list(exc.details.get("reasons") or [exc.code])
            self._handoff(job(DISTORTED, quality_reasons=reasons), timings, t0)
            raise self._distorted(exc.message, capture_id, reasons, {}, code=exc.code) from None
        timings["decode_ms"] = (time.perf_counter() - t0) * 1e3

        # The quality gate runs beside the detector (both release the GIL in their heavy parts);
        # a distorted image's detections are simply dropped.
        quality = self._pool.submit(_timed, assess_quality, decoded.image, self.settings.quality)
        t = time.perf_counter()
        detections = self.detector.detect_one(decoded.to_input())
        timings["detect_ms"] = (time.perf_counter() - t) * 1e3
        report, timings["quality_ms"] = quality.result()
        size = {"width": decoded.width, "height": decoded.height}
        if not report.ok:
            self._handoff(job(DISTORTED, quality_metrics=report.metrics, quality_reasons=report.reasons, **size), timings, t0)
            raise self._distorted("; ".join(report.messages), capture_id, report.reasons, report.metrics)
        model = self.detector.describe()
        self._handoff(
            job(
                ACCEPTED,
                quality_metrics=report.metrics,
                model_name=model["model_name"],
                model_version=model["model_version"],
                detections=detections,
                **size,
            ),
            timings,
            t0,
        )
        result = IngestResult(
            capture_id=capture_id,
            metadata=metadata,
            detections=detections,
            model_name=model["model_name"],
            model_version=model["model_version"],
            timings=timings,
            **size,
        )
        log.info(
            "accepted %s",
            file_name,
            extra={"capture_id": capture_id, "timings_ms": {k: round(v, 2) for k, v in timings.items()}, "counts": result.counts},
        )
        return result

    def _handoff(self, job: CaptureJob, timings: dict[str, float], t0: float) -> None:
        t = time.perf_counter()
        job.timings = {**timings, "total_ms": (t - t0) * 1e3}  # stored: sync time up to the hand-off
        self.handoff.submit(job)
        timings["handoff_ms"] = (time.perf_counter() - t) * 1e3
        timings["total_ms"] = (time.perf_counter() - t0) * 1e3

    @staticmethod
    def _distorted(message: str, capture_id: str, reasons: list[str], metrics: dict[str, float], code: str | None = None) -> TrafficPlatformError:
        return DistortedImage(
            f"The image is distorted and was stored for review: {message}",
            code=code,
            details={"capture_id": capture_id, "reasons": reasons, "metrics": {k: round(v, 3) for k, v in metrics.items()}},
        )
