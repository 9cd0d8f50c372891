"""Capture jobs for tests, built from real (small) JPEG bytes."""

from __future__ import annotations

import hashlib
import io
from datetime import datetime

from PIL import Image

from traffic_platform.domain.captures import ACCEPTED, CaptureRecord, capture_id_for
from traffic_platform.domain.classes import TrafficClass
from traffic_platform.domain.detections import Detection
from traffic_platform.domain.metadata import parse_file_name
from traffic_platform.ingest.handoff import CaptureJob


def jpeg_bytes(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    img = Image.effect_noise((width, height), 40 + seed).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def make_job(index: int = 0, *, status: str = ACCEPTED, minute: int | None = None) -> CaptureJob:
    data = jpeg_bytes(seed=index)
    name = f"tiensevest_Leuven_Belgium_12-10-2022_10-{(minute if minute is not None else index) % 60:02d}-00.jpg"
    sha = hashlib.sha256(data).hexdigest()
    detections = [
        Detection(TrafficClass.CAR, "car", 0.9, (1.0, 2.0, 30.0, 40.0)),
        Detection(TrafficClass.PERSON, "person", 0.7, (5.0, 5.0, 10.0, 20.0)),
    ] if status == ACCEPTED else []
    record = CaptureRecord(
        capture_id=capture_id_for(name, sha),
        metadata=parse_file_name(name),
        content_sha256=sha,
        status=status,
        timezone="Europe/Brussels",
        captured_at_utc=datetime(2022, 10, 12, 8, index % 60),
        ingested_at=datetime(2026, 11, 25, 9, 0, 0, 123456),
        width=64,
        height=48,
        quality_metrics={"sharpness": 100.0},
        quality_reasons=[] if status == ACCEPTED else ["blurred"],
        model_name="tiny" if status == ACCEPTED else None,
        model_version="v1" if status == ACCEPTED else None,
        detections=detections,
        timings={"total_ms": 12.5},
    )
    return CaptureJob(record, data)
