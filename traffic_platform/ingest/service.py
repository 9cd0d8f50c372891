"""The ingest service: the sync part of the real-time path, framework-free.

    parse name -> safe decode -> quality gate -> detect -> durable hand-off -> answer

The HTTP server, the Lambda handlers, the CLI and the landing-prefix sensor are thin
adapters over :meth:`IngestService.ingest`, which returns the
:class:`~traffic_platform.domain.captures.CaptureRecord` it handed off. No database round
trip happens here: the capture id is derived from the name and bytes, and persistence is
the worker's job.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ..config import Settings
from ..detection.base import Detector, ImageInput
from ..domain.captures import ACCEPTED, DISTORTED, CaptureRecord, capture_id_for
from ..domain.errors import DistortedImage, ServiceUnavailable, TrafficPlatformError
from ..domain.images import decode_image, header_pixels
from ..domain.metadata import parse_file_name
from ..domain.quality import assess_quality
from ..domain.timezones import local_to_utc, resolve_timezone
from .handoff import CaptureJob, Handoff

log = logging.getLogger("traffic_platform.ingest")


def _timed(fn, *args):
    """``(fn(*args), elapsed ms)``."""
    t = time.perf_counter()
    return fn(*args), (time.perf_counter() - t) * 1e3


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in values.items()}


class IngestService:
    """Turns (file name, bytes) into an answer and a durable job. Thread-safe if the detector is."""

    def __init__(self, settings: Settings, detector: Detector, handoff: Handoff,
                 admission: Callable[[], None] | None = None):
        self.settings = settings
        self.detector = detector
        self.handoff = handoff
        # Called first, before any decoding: may wait for room, or raise (back-pressure, :mod:`.backpressure`).
        self.admission = admission
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="quality-gate")
        self.decode_budget = PixelBudget(settings.decode_budget_pixels)

    def close(self) -> None:
        """Stop the quality-gate threads (the service cannot ingest afterwards)."""
        self._pool.shutdown(wait=True)

    def ingest(self, file_name: str, data: bytes, content_type: str | None = None) -> CaptureRecord:
        """Run the sync part; return the accepted capture (``timings`` up to the answer).

        Raises a :class:`TrafficPlatformError` for anything rejected. A distorted image is
        handed off too (stored under ``distorted/``) before :class:`DistortedImage` is
        raised, so it is recorded with its reasons. Every image gets one log line with its
        outcome and timings (``traffic_platform.ingest``).
        """
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        try:
            if self.admission is not None:
                self.admission()
            with self.decode_budget.hold(header_pixels(data)):
                record = self._ingest(file_name, data, content_type, timings, t0)
        except TrafficPlatformError as exc:
            timings.setdefault("total_ms", (time.perf_counter() - t0) * 1e3)
            outcome = DISTORTED if isinstance(exc, DistortedImage) else "rejected"
            log.info(
                "%s %s: %s", outcome, file_name, exc.code,
                extra={"event": "ingest", "outcome": outcome, "file_name": file_name, "code": exc.code,
                       "capture_id": exc.details.get("capture_id"), "http_status": exc.http_status,
                       "timings_ms": _rounded(timings)},
            )  # fmt: skip
            raise
        log.info(
            "accepted %s", file_name,
            extra={"event": "ingest", "outcome": ACCEPTED, "file_name": file_name, "capture_id": record.capture_id,
                   "counts": record.counts, "model_version": record.model_version,
                   "timings_ms": _rounded(record.timings)},
        )  # fmt: skip
        return record

    def _ingest(
        self, file_name: str, data: bytes, content_type: str | None, timings: dict[str, float], t0: float
    ) -> CaptureRecord:
        metadata = parse_file_name(file_name)
        content_sha256 = hashlib.sha256(data).hexdigest() if data else ""
        capture_id = capture_id_for(file_name, content_sha256)
        zone = resolve_timezone(metadata.city, metadata.country, self.settings.timezones)

        def record(status: str, **extra: Any) -> CaptureRecord:
            return CaptureRecord(
                capture_id=capture_id,
                metadata=metadata,
                content_sha256=content_sha256,
                status=status,
                timezone=zone,
                captured_at_utc=local_to_utc(metadata.captured_at, zone),
                ingested_at=datetime.now(UTC).replace(tzinfo=None),
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
            sniffed = exc.details.get("content_type")  # from the bytes' signature, when they had one
            self._handoff(record(DISTORTED, quality_reasons=reasons, content_type=sniffed), data, timings, t0)
            raise self._distorted(exc.message, capture_id, reasons, {}, code=exc.code) from None
        timings["decode_ms"] = (time.perf_counter() - t0) * 1e3

        # The quality gate runs beside the detector (both release the GIL in their heavy parts);
        # a distorted image's detections are simply dropped.
        quality = self._pool.submit(_timed, assess_quality, decoded.image, self.settings.quality)
        t = time.perf_counter()
        detections = self.detector.detect_one(ImageInput.of(decoded))
        timings["detect_ms"] = (time.perf_counter() - t) * 1e3
        report, timings["quality_ms"] = quality.result()
        size = {"width": decoded.width, "height": decoded.height, "content_type": decoded.content_type}
        if not report.ok:
            distorted = record(DISTORTED, quality_metrics=report.metrics, quality_reasons=report.reasons, **size)
            self._handoff(distorted, data, timings, t0)
            raise self._distorted("; ".join(report.messages), capture_id, report.reasons, report.metrics)
        model = self.detector.describe()  # a remote detector names the model that answered
        accepted = record(
            ACCEPTED,
            quality_metrics=report.metrics,
            quality_flags=list(report.flags),
            model_name=model["model_name"],
            model_version=model["model_version"],
            detections=detections,
            **size,
        )
        self._handoff(accepted, data, timings, t0)
        return replace(accepted, timings=dict(timings))

    def _handoff(self, record: CaptureRecord, data: bytes, timings: dict[str, float], t0: float) -> None:
        t = time.perf_counter()
        # Stored: the sync time up to the hand-off; the answer adds the hand-off itself.
        stored = replace(record, timings={**timings, "total_ms": (t - t0) * 1e3})
        self.handoff.submit(CaptureJob(stored, data))
        timings["handoff_ms"] = (time.perf_counter() - t) * 1e3
        timings["total_ms"] = (time.perf_counter() - t0) * 1e3

    @staticmethod
    def _distorted(message: str, capture_id: str, reasons: list[str], metrics: dict[str, float], code: str | None = None) -> TrafficPlatformError:
        return DistortedImage(
            f"The image is distorted and was stored for review: {message}",
            code=code,
            details={"capture_id": capture_id, "reasons": reasons, "metrics": {k: round(v, 3) for k, v in metrics.items()}},
        )


class PixelBudget:
    """A semaphore counted in pixels: how much decoded picture the process holds at once.

    A 7000x7000 upload costs ~0.8 GB while it is decoded, measured and detected (RGB copy,
    grey copy, model input); ``settings.decode_budget_pixels`` bounds the sum over the
    images in flight. An image waits up to ``wait_s`` for room (queued behind the images
    being decoded: 2 s was too short at saturation with 21-MP photos, ``bench/load.py``),
    then is refused with 503
    ``decode_budget_exhausted`` (``Retry-After``). One image larger than the whole budget
    is admitted alone (it was already accepted by ``max_pixels``).
    """

    def __init__(self, pixels: int, wait_s: float = 10.0):
        self.total = pixels
        self.wait_s = wait_s
        self.in_use = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        cost = min(max(0, pixels), self.total)
        with self._cond:
            if not self._cond.wait_for(lambda: self.in_use + cost <= self.total, timeout=self.wait_s):
                raise ServiceUnavailable(
                    f"The server is decoding as many pixels as it allows ({self.total:,}); retry in a moment.",
                    code="decode_budget_exhausted",
                    details={"retry_after_s": 1, "pixels": pixels, "budget_pixels": self.total},
                )
            self.in_use += cost
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= cost
                self._cond.notify_all()
