"""The unit of work handed from the sync part to the async part: one capture to persist.

A job is self-contained (metadata, quality verdict, detections and the image bytes),
so the worker never calls back into the request. It serialises to one JSON header
plus the raw image, for the local spool and for SQS messages alike.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ..domain.detections import Detection
from ..domain.metadata import CaptureMetadata, parse_file_name

ACCEPTED = "accepted"
DISTORTED = "distorted"
JOB_VERSION = 1


def capture_id_for(file_name: str, content_sha256: str) -> str:
    """Deterministic capture id: the same file name and bytes always give the same id
    (so a repeated upload is recognised without a database round trip)."""
    return hashlib.sha256(f"{file_name}\x00{content_sha256}".encode()).hexdigest()[:32]


@dataclass
class CaptureJob:
    """Everything the worker needs to store one capture; ``image`` travels beside the header."""

    capture_id: str
    file_name: str
    content_sha256: str
    content_type: str
    status: str
    timezone: str
    captured_at_utc: datetime
    ingested_at: datetime
    width: int | None = None
    height: int | None = None
    quality_metrics: dict[str, float] = field(default_factory=dict)
    quality_reasons: list[str] = field(default_factory=list)
    model_name: str | None = None
    model_version: str | None = None
    detections: list[Detection] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    image: bytes = b""

    @property
    def metadata(self) -> CaptureMetadata:
        return parse_file_name(self.file_name)

    def header(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("image")
        data["v"] = JOB_VERSION
        data["captured_at_utc"] = self.captured_at_utc.isoformat()
        data["ingested_at"] = self.ingested_at.isoformat()
        data["detections"] = [d.to_dict() for d in self.detections]
        return data

    def header_json(self) -> bytes:
        return json.dumps(self.header(), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_header(cls, header: dict[str, Any], image: bytes) -> CaptureJob:
        data = dict(header)
        version = data.pop("v", None)
        if version != JOB_VERSION:
            raise ValueError(f"unsupported job version {version!r}")
        data["captured_at_utc"] = datetime.fromisoformat(data["captured_at_utc"])
        data["ingested_at"] = datetime.fromisoformat(data["ingested_at"])
        data["detections"] = [Detection.from_dict(d) for d in data["detections"]]
        job = cls(**data, image=image)
        if hashlib.sha256(image).hexdigest() != job.content_sha256:
            raise ValueError(f"job {job.capture_id}: image bytes do not match content_sha256")
        return job
