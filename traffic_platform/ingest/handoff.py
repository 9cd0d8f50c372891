"""The durable hand-off from the sync part to the async part: one capture job to persist.

A job is the :class:`~traffic_platform.domain.captures.CaptureRecord` (metadata, quality
verdict, detections) plus the image bytes, so the worker never calls back into the
request. It travels as the record's header JSON beside the raw image: in a spool file
(:mod:`.spool`) or an SQS message (:mod:`.sqs_handoff`). Reading one back checks the
bytes against the record's ``content_sha256`` once, so a damaged job is never stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..domain.captures import CaptureRecord


@dataclass(frozen=True)
class CaptureJob:
    """One capture to persist: its record and the uploaded bytes, untouched."""

    record: CaptureRecord
    image: bytes

    @property
    def capture_id(self) -> str:
        return self.record.capture_id

    def header_json(self) -> bytes:
        return json.dumps(self.record.header(), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_parts(cls, header: Mapping[str, Any], image: bytes) -> CaptureJob:
        """Rebuild a job; ``ValueError`` when the header is unreadable or the bytes are not
        the ones the record was made from."""
        record = CaptureRecord.from_header(header)
        if hashlib.sha256(image).hexdigest() != record.content_sha256:
            raise ValueError(f"job {record.capture_id}: image bytes do not match content_sha256")
        return cls(record, image)


class Handoff(Protocol):
    """Where accepted work goes before the caller is answered (spool or SQS); must be durable."""

    def submit(self, job: CaptureJob) -> None: ...
