"""One capture record: what ingest decided about one image, handed off, persisted and stored.

The same :class:`CaptureRecord` travels the whole path: the ingest service builds it and
answers the caller from it; the hand-off (spool file or SQS message) carries its
:meth:`~CaptureRecord.header` beside the raw image bytes; the persister adds the object
keys and the repository writes it. There is no other copy of these fields.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from .detections import Detection, count_by_class
from .errors import InvalidFileName
from .metadata import EXTENSIONS, CaptureMetadata, parse_file_name

#: A capture's stored verdict: detected and counted, or kept under ``distorted/`` for review.
ACCEPTED = "accepted"
DISTORTED = "distorted"
CAPTURE_STATUSES = (ACCEPTED, DISTORTED)
#: Content type of a stored object's key extension, and the extension stored objects get.
CONTENT_TYPE_OF_EXTENSION = dict(EXTENSIONS)
EXTENSION_OF_CONTENT_TYPE = {"image/jpeg": "jpg", "image/png": "png"}
#: Version of :meth:`CaptureRecord.header`; readers refuse others.
HEADER_VERSION = 1


def capture_id_for(file_name: str, content_sha256: str) -> str:
    """Deterministic capture id: the same file name and bytes always give the same id
    (so a repeated upload is recognised without a database round trip)."""
    return hashlib.sha256(f"{file_name}\x00{content_sha256}".encode()).hexdigest()[:32]


def quality_verdict(status: str, flags: Sequence[str]) -> str:
    """The gate's verdict of a capture with this status and these flags (``domain.quality``):
    ``unusable`` (distorted), ``degraded`` (accepted with flags) or ``clear``."""
    from .quality import CLEAR, DEGRADED, UNUSABLE  # imported here: that module loads NumPy

    if status != ACCEPTED:
        return UNUSABLE
    return DEGRADED if flags else CLEAR


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


@dataclass(frozen=True, kw_only=True)
class CaptureRecord:
    """Everything known about one ingested image.

    ``captured_at_utc`` and ``ingested_at`` are naive UTC (aware values are converted).
    ``model_name``/``model_version`` are ``None`` when no detector ran (e.g. distorted).
    ``image_key``/``annotated_key`` are set by the persister once the objects are written.
    Of ``quality_metrics`` and ``timings`` the keys the database has columns for are
    stored; others (e.g. ``handoff_ms``) travel but are not stored.
    ``quality_flags`` are the gate's degraded flags (``fog``, ``low_light``, ...) of an
    accepted image: empty for a clear one, always empty for a distorted one.
    """

    capture_id: str
    metadata: CaptureMetadata
    content_sha256: str
    status: str
    timezone: str
    captured_at_utc: datetime
    ingested_at: datetime
    width: int | None = None
    height: int | None = None
    quality_metrics: Mapping[str, float] = field(default_factory=dict)
    quality_reasons: list[str] = field(default_factory=list)
    #: Degraded flags of an accepted image (``domain.quality.FLAGS``); empty in headers written
    #: before this field existed.
    quality_flags: list[str] = field(default_factory=list)
    model_name: str | None = None
    model_version: str | None = None
    detections: list[Detection] = field(default_factory=list)
    timings: Mapping[str, float] = field(default_factory=dict)
    image_key: str | None = None
    annotated_key: str | None = None
    #: What the bytes are (``DecodedImage.content_type``); ``None``: what the file name says
    #: (an undecodable upload, or a header written before this field existed).
    content_type: str | None = None

    def __post_init__(self) -> None:
        if self.content_type is None:
            object.__setattr__(self, "content_type", self.metadata.content_type)
        if self.content_type not in EXTENSION_OF_CONTENT_TYPE:
            raise ValueError(f"content_type must be one of {tuple(EXTENSION_OF_CONTENT_TYPE)}, got {self.content_type!r}")
        if self.status not in CAPTURE_STATUSES:
            raise ValueError(f"status must be one of {CAPTURE_STATUSES}, got {self.status!r}")
        if (self.model_name is None) != (self.model_version is None):
            raise ValueError("model_name and model_version must be given together")
        if self.quality_flags and self.status != ACCEPTED:
            raise ValueError("only an accepted capture carries quality flags")
        if self.detections and self.model_name is None:
            raise ValueError("detections need the model_name/model_version that produced them")
        object.__setattr__(self, "captured_at_utc", _naive_utc(self.captured_at_utc))
        object.__setattr__(self, "ingested_at", _naive_utc(self.ingested_at))

    @property
    def file_name(self) -> str:
        return self.metadata.file_name

    @property
    def extension(self) -> str:
        """The extension its stored objects get: that of its real content type (a PNG sent
        as ``.jpg`` is stored as ``<id>.png``, ``image/png``)."""
        return EXTENSION_OF_CONTENT_TYPE[self.content_type or self.metadata.content_type]

    @property
    def quality_verdict(self) -> str:
        """The gate's verdict: ``unusable`` (distorted), ``degraded`` (flags) or ``clear``."""
        return quality_verdict(self.status, self.quality_flags)

    @property
    def counts(self) -> dict[str, int]:
        """Detections per traffic class, all six classes present."""
        return count_by_class(self.detections)

    # -- the one serialisation (spool files, SQS messages) ---------------------------------

    def header(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_header` reverses it. The file name stands for the
        metadata (it is parsed again on the way back, so both always agree)."""
        data: dict[str, Any] = {"v": HEADER_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "metadata":
                data["file_name"] = value.file_name
            elif isinstance(value, datetime):
                data[f.name] = value.isoformat()
            elif f.name == "detections":
                data[f.name] = [d.to_dict() for d in value]
            elif isinstance(value, Mapping):
                data[f.name] = dict(value)
            else:
                data[f.name] = value
        return data

    @classmethod
    def from_header(cls, header: Mapping[str, Any]) -> CaptureRecord:
        """Rebuild a record from :meth:`header`; raise ``ValueError`` for a version or shape
        this code cannot read (a retry cannot fix that)."""
        version = header.get("v")
        if version != HEADER_VERSION:
            raise ValueError(f"unsupported capture header version {version!r}")
        try:
            values: dict[str, Any] = {
                f.name: header[f.name]
                for f in fields(cls)
                if f.name in header and f.name != "metadata"
            }
            values["metadata"] = parse_file_name(header["file_name"])
            values["captured_at_utc"] = datetime.fromisoformat(header["captured_at_utc"])
            values["ingested_at"] = datetime.fromisoformat(header["ingested_at"])
            values["detections"] = [Detection.from_dict(d) for d in header.get("detections", [])]
            return cls(**values)
        except (KeyError, TypeError, InvalidFileName) as exc:
            raise ValueError(f"malformed capture header: {type(exc).__name__}: {exc}") from None


__all__ = [
    "ACCEPTED",
    "CAPTURE_STATUSES",
    "CONTENT_TYPE_OF_EXTENSION",
    "EXTENSION_OF_CONTENT_TYPE",
    "DISTORTED",
    "HEADER_VERSION",
    "CaptureRecord",
    "capture_id_for",
    "quality_verdict",
]
