"""Reads and idempotent writes of captures, detections and counts.

Every write is one transaction with bulk inserts (``executemany``). Saving the same
record twice changes nothing; a re-detection with another model version is stored
beside the original, never over it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, and_, delete, exists, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from ..domain.classes import TRAFFIC_CLASSES
from ..domain.detections import Detection, count_by_class
from ..domain.errors import NotFound, ServiceUnavailable
from ..domain.metadata import EXTENSIONS, CaptureMetadata
from .database import writer
from .tables import CAPTURE_STATUSES, QUALITY_METRICS, TIMINGS, capture_counts, captures, locations
from .tables import detections as detections_table

T = TypeVar("T")
_RETRYABLE_MYSQL = {1205, 1213}  # lock wait timeout, deadlock: the transaction was rolled back


@dataclass(frozen=True, kw_only=True)
class CaptureRecord:
    """Everything stored about one ingested image (what the async persistence step receives).

    ``captured_at_utc`` and ``ingested_at`` are naive UTC (aware values are converted).
    ``model_name``/``model_version`` are ``None`` when no detector ran (e.g. distorted).
    Of ``quality_metrics`` and ``timings`` the keys in ``tables.QUALITY_METRICS`` /
    ``tables.TIMINGS`` are stored; other keys (e.g. ``width``) travel but are not stored.
    """

    capture_id: str
    metadata: CaptureMetadata
    timezone: str
    captured_at_utc: datetime
    content_sha256: str
    status: str
    ingested_at: datetime
    quality_metrics: dict[str, float] = field(default_factory=dict)
    quality_reasons: list[str] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    image_key: str | None = None
    annotated_key: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    detections: list[Detection] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.status not in CAPTURE_STATUSES:
            raise ValueError(f"status must be one of {CAPTURE_STATUSES}, got {self.status!r}")
        if (self.model_name is None) != (self.model_version is None):
            raise ValueError("model_name and model_version must be given together")
        if self.detections and self.model_name is None:
            raise ValueError("detections need the model_name/model_version that produced them")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for the durable hand-off); :meth:`from_dict` reverses it."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["metadata"] = self.metadata.to_dict()
        data["captured_at_utc"] = self.captured_at_utc.isoformat()
        data["ingested_at"] = self.ingested_at.isoformat()
        data["detections"] = [d.to_dict() for d in self.detections]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaptureRecord:
        values = dict(data)
        meta = dict(values["metadata"])
        meta["captured_at"] = datetime.fromisoformat(meta["captured_at"])
        values["metadata"] = CaptureMetadata(**meta)
        values["captured_at_utc"] = datetime.fromisoformat(values["captured_at_utc"])
        values["ingested_at"] = datetime.fromisoformat(values["ingested_at"])
        values["detections"] = [Detection.from_dict(d) for d in values.get("detections", [])]
        return cls(**values)


class Repository:
    """The ingest tables behind one engine (create once per process; thread-safe)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._writer = writer(engine)

    # -- writes ---------------------------------------------------------------

    def save_capture(self, record: CaptureRecord) -> bool:
        """Store ``record`` (location, capture, detections, counts) in one transaction.

        Idempotent; returns ``True`` when this call created the capture row.
        """
        return _retry(lambda: self._save_capture(record))

    def _save_capture(self, record: CaptureRecord) -> bool:
        with self._writer.begin() as conn:
            created = False
            if not _capture_exists(conn, record.capture_id):
                location_id = self._location_id_for(conn, record)
                created = _insert_ignoring_duplicate(
                    conn, captures, [_capture_row(record, location_id)]
                )
            if record.model_name is not None and not _has_counts(
                conn, record.capture_id, record.model_name, record.model_version
            ):
                with conn.begin_nested() as savepoint:
                    try:
                        _insert_detections(
                            conn,
                            record.capture_id,
                            record.model_name,
                            record.model_version,
                            record.detections,
                        )
                    except IntegrityError:
                        savepoint.rollback()  # a concurrent save of the same record won
            return created

    def save_detections(
        self, capture_id: str, model_name: str, model_version: str, detections: Sequence[Detection]
    ) -> None:
        """Replace one model version's detections and counts for a capture (re-detection).

        Other model versions are left untouched. Raise :class:`NotFound` if there is no such capture.
        """

        def run() -> None:
            with self._writer.begin() as conn:
                if not _capture_exists(conn, capture_id):
                    raise NotFound(f"no capture {capture_id!r}", details={"capture_id": capture_id})
                for table in (detections_table, capture_counts):
                    conn.execute(
                        delete(table).where(
                            _model_filter(table, capture_id, model_name, model_version)
                        )
                    )
                _insert_detections(conn, capture_id, model_name, model_version, detections)

        _retry(run)

    def _location_id_for(self, conn: Connection, record: CaptureRecord) -> int:
        meta = record.metadata
        found = _select_location_id(conn, meta.address, meta.city, meta.country)
        if found is not None:
            return found
        row = {
            "address": meta.address,
            "address_display": meta.address_display,
            "city": meta.city,
            "country": meta.country,
            "timezone": record.timezone,
            "created_at": _utcnow(),
        }
        with conn.begin_nested() as savepoint:
            try:
                return int(conn.execute(insert(locations).values(row)).inserted_primary_key[0])
            except IntegrityError:
                savepoint.rollback()
        # Someone else created it meanwhile; a locking read sees their committed row.
        found = _select_location_id(conn, meta.address, meta.city, meta.country, for_update=True)
        assert found is not None
        return found

    # -- reads ----------------------------------------------------------------

    def capture_exists(self, capture_id: str) -> bool:
        with self.engine.connect() as conn:
            return _capture_exists(conn, capture_id)

    def get_location_id(self, address: str, city: str, country: str) -> int | None:
        """The id of the location with exactly these raw tokens, or ``None``."""
        with self.engine.connect() as conn:
            return _select_location_id(conn, address, city, country)

    def get_capture(
        self, capture_id: str, model_name: str | None = None, model_version: str | None = None
    ) -> dict[str, Any] | None:
        """One capture as a JSON-ready dict, or ``None``.

        ``counts`` (all six classes) and ``detections`` (``Detection.to_dict()`` shape, in
        image order) are those of the ingest model unless another model version is named;
        ``counts`` is ``None`` when that model never ran on the capture. ``models`` lists
        every (model_name, model_version) stored for it.
        """
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(captures, locations)
                    .join(locations, locations.c.id == captures.c.location_id)
                    .where(captures.c.capture_id == capture_id)
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            name = model_name if model_name is not None else row["model_name"]
            version = model_version if model_version is not None else row["model_version"]
            counts = None
            found: list[dict[str, Any]] = []
            if name is not None and version is not None:
                count_rows = conn.execute(
                    select(capture_counts.c.traffic_class, capture_counts.c["count"]).where(
                        _model_filter(capture_counts, capture_id, name, version)
                    )
                ).all()
                if count_rows:
                    counts = {c: 0 for c in TRAFFIC_CLASSES} | {
                        cls: int(n) for cls, n in count_rows
                    }
                det_rows = conn.execute(
                    select(detections_table)
                    .where(_model_filter(detections_table, capture_id, name, version))
                    .order_by(detections_table.c.seq)
                ).mappings()
                found = [_detection_from_row(d).to_dict() for d in det_rows]
            models = conn.execute(
                select(capture_counts.c.model_name, capture_counts.c.model_version)
                .where(capture_counts.c.capture_id == capture_id)
                .distinct()
                .order_by(capture_counts.c.model_name, capture_counts.c.model_version)
            ).all()
        return _capture_dict(row, name, version, counts, found, models)

    def ping(self) -> None:
        """Raise :class:`ServiceUnavailable` if the database cannot answer a query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means "not ready"
            raise ServiceUnavailable(f"database is not reachable: {type(exc).__name__}") from exc


def _finite(value: float | None) -> float | None:
    """Databases cannot store NaN/inf: those become NULL."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _capture_row(record: CaptureRecord, location_id: int) -> dict[str, Any]:
    meta = record.metadata
    row: dict[str, Any] = {
        "capture_id": record.capture_id,
        "location_id": location_id,
        "captured_at": meta.captured_at,
        "captured_at_utc": _naive_utc(record.captured_at_utc),
        "file_name": meta.file_name,
        "content_sha256": record.content_sha256,
        "status": record.status,
        "quality_reasons": json.dumps(list(record.quality_reasons)),
        "width": record.width,
        "height": record.height,
        "image_key": record.image_key,
        "annotated_key": record.annotated_key,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "ingested_at": _naive_utc(record.ingested_at),
        "stored_at": _utcnow(),
    }
    row.update({name: _finite(record.quality_metrics.get(name)) for name in QUALITY_METRICS})
    row.update({name: _finite(record.timings.get(name)) for name in TIMINGS})
    return row


def _capture_exists(conn: Connection, capture_id: str) -> bool:
    return bool(conn.scalar(select(exists().where(captures.c.capture_id == capture_id))))


def _select_location_id(
    conn: Connection, address: str, city: str, country: str, *, for_update: bool = False
) -> int | None:
    query = select(locations.c.id).where(
        and_(
            locations.c.address == address, locations.c.city == city, locations.c.country == country
        )
    )
    value = conn.scalar(query.with_for_update() if for_update else query)
    return None if value is None else int(value)


def _model_filter(table: Any, capture_id: str, model_name: str, model_version: str | None) -> Any:
    return and_(
        table.c.capture_id == capture_id,
        table.c.model_name == model_name,
        table.c.model_version == model_version,
    )


def _has_counts(
    conn: Connection, capture_id: str, model_name: str, model_version: str | None
) -> bool:
    return bool(
        conn.scalar(
            select(
                exists().where(_model_filter(capture_counts, capture_id, model_name, model_version))
            )
        )
    )


def _insert_ignoring_duplicate(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> bool:
    """Insert inside a savepoint; ``False`` if a unique key says the row is already there."""
    with conn.begin_nested() as savepoint:
        try:
            conn.execute(insert(table), rows)
        except IntegrityError:
            savepoint.rollback()
            return False
    return True


def _insert_detections(
    conn: Connection,
    capture_id: str,
    model_name: str,
    model_version: str | None,
    found: Iterable[Detection],
) -> None:
    """Bulk-insert one model version's detections and its zero-filled counts."""
    found = list(found)
    key = {"capture_id": capture_id, "model_name": model_name, "model_version": model_version}
    if found:
        conn.execute(
            insert(detections_table),
            [
                key
                | {
                    "seq": seq,
                    "traffic_class": d.traffic_class.value,
                    "label": d.label,
                    "score": float(d.score),
                    "x1": d.box[0],
                    "y1": d.box[1],
                    "x2": d.box[2],
                    "y2": d.box[3],
                }
                for seq, d in enumerate(found)
            ],
        )
    conn.execute(
        insert(capture_counts),
        [key | {"traffic_class": c, "count": n} for c, n in count_by_class(found).items()],
    )


def _detection_from_row(row: Any) -> Detection:
    return Detection.from_dict(
        {
            "class": row["traffic_class"],
            "label": row["label"],
            "score": row["score"],
            "box": [row["x1"], row["y1"], row["x2"], row["y2"]],
        }
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _capture_dict(
    row: Any,
    model_name: str | None,
    model_version: str | None,
    counts: dict[str, int] | None,
    found: list[dict[str, Any]],
    models: Sequence[Any],
) -> dict[str, Any]:
    return {
        "capture_id": row["capture_id"],
        "file_name": row["file_name"],
        "captured_at": _iso(row["captured_at"]),
        "captured_at_utc": _iso(row["captured_at_utc"]),
        "timezone": row["timezone"],
        "metadata": _metadata_dict(row),
        "location": {
            key: row[key] for key in ("address", "address_display", "city", "country", "timezone")
        }
        | {"id": row["location_id"]},
        "content_sha256": row["content_sha256"],
        "status": row["status"],
        "quality_reasons": json.loads(row["quality_reasons"]),
        "quality_metrics": {name: row[name] for name in QUALITY_METRICS},
        "width": row["width"],
        "height": row["height"],
        "image_key": row["image_key"],
        "annotated_key": row["annotated_key"],
        "model_name": row["model_name"],
        "model_version": row["model_version"],
        "timings": {name: row[name] for name in TIMINGS},
        "ingested_at": _iso(row["ingested_at"]),
        "stored_at": _iso(row["stored_at"]),
        "counts_model": None
        if counts is None
        else {"model_name": model_name, "model_version": model_version},
        "counts": counts,
        "detections": found,
        "models": [{"model_name": n, "model_version": v} for n, v in models],
    }


def _metadata_dict(row: Any) -> dict[str, Any]:
    """The ``CaptureMetadata.to_dict()`` shape, rebuilt from the stored columns."""
    extension = row["file_name"].rpartition(".")[2].lower()
    return {
        "file_name": row["file_name"],
        "address": row["address"],
        "address_display": row["address_display"],
        "city": row["city"],
        "country": row["country"],
        "captured_at": _iso(row["captured_at"]),
        "extension": extension,
        "content_type": EXTENSIONS.get(extension),
    }


def _retry(action: Callable[[], T], attempts: int = 4) -> T:
    """Run ``action`` again when MySQL rolled the transaction back (deadlock, lock wait timeout)."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except OperationalError as exc:
            code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
            if code not in _RETRYABLE_MYSQL or attempt == attempts:
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


__all__ = ["CaptureRecord", "Repository"]
