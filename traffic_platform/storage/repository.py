"""Reads and idempotent writes of captures, detections and counts.

Every write is one transaction with bulk inserts (``executemany``). Saving the same
record twice changes nothing; a re-detection with another model version is stored
beside the original, never over it. A new capture (the common case) costs three INSERTs
and the commit: the location id is cached per repository and the capture row is inserted
optimistically; a key conflict rolls back and takes the general path (verdict compare).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, and_, delete, exists, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from ..domain.captures import CaptureRecord, quality_verdict
from ..domain.classes import TRAFFIC_CLASSES
from ..domain.detections import Detection, count_by_class
from ..domain.errors import NotFound, ServiceUnavailable
from ..domain.metadata import EXTENSIONS
from .database import writer
from .tables import QUALITY_METRICS, TIMINGS, capture_counts, captures, locations
from .tables import detections as detections_table

T = TypeVar("T")
_RETRYABLE_MYSQL = {1205, 1213}  # lock wait timeout, deadlock: the transaction was rolled back


class Repository:
    """The ingest tables behind one engine (create once per process; thread-safe)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._writer = writer(engine)
        # (address, city, country) -> locations.id, filled after a commit that read or made it.
        # Locations are never deleted; a stale id fails the capture's foreign key and is evicted.
        self._locations: dict[tuple[str, str, str], int] = {}

    # -- writes ---------------------------------------------------------------

    def save_capture(self, record: CaptureRecord) -> bool:
        """Store ``record`` (location, capture, detections, counts) in one transaction.

        Idempotent; returns ``True`` when this call created the capture row. The latest
        ingest's verdict is the stored one: a record ingested later than the stored row
        whose verdict differs (status, reasons, flags, ingest model or its counts — e.g. the same
        upload after a threshold change) replaces the row's verdict, object keys and ingest
        detections (other model versions stay); an older one (a late redelivery) changes nothing.
        """
        try:
            return _retry(lambda: self._insert_new(record))
        except _Conflict:  # the row exists (a replay, a race) or the cached location is stale
            self._locations.pop(_location_key(record), None)
        return _retry(lambda: self._save_capture(record))

    def save_captures(self, records: Sequence[CaptureRecord]) -> list[bool | Exception]:
        """:meth:`save_capture` for many records, one result each (``True``: created; or the
        exception that record raised). New captures go in one transaction (one INSERT per
        table); on any failure each record is saved on its own, so a bad one fails alone."""
        records = list(records)
        if len({r.capture_id for r in records}) == len(records) > 1:
            try:
                _retry(lambda: self._insert_new(*records))
                return [True] * len(records)
            except _Conflict:
                for record in records:
                    self._locations.pop(_location_key(record), None)
            except Exception:  # noqa: BLE001 - the one-by-one pass below says which record it was
                pass
        results: list[bool | Exception] = []
        for record in records:
            try:
                results.append(self.save_capture(record))
            except Exception as exc:  # noqa: BLE001 - reported per record
                results.append(exc)
        return results

    def _insert_new(self, *records: CaptureRecord) -> bool:
        """The common case in as few round trips as possible: insert the capture, its
        detections and counts (one multi-row INSERT each) and commit; raise :class:`_Conflict`
        (the transaction rolled back) on any unique or foreign key error."""
        found: dict[tuple[str, str, str], int] = {}
        with self._writer.begin() as conn:
            for record in records:
                key = _location_key(record)
                if key not in found:
                    cached = self._locations.get(key)
                    found[key] = cached if cached is not None else self._location_id_for(conn, record)
            try:
                conn.execute(
                    insert(captures), [_capture_row(r, found[_location_key(r)]) for r in records]
                )
                _insert_detections(
                    conn,
                    [
                        (r.capture_id, r.metadata.captured_at, r.model_name, r.model_version, r.detections)
                        for r in records
                        if r.model_name is not None
                    ],
                )
            except IntegrityError as exc:
                raise _Conflict(records[0].capture_id) from exc
        self._locations.update(found)
        return True

    def _save_capture(self, record: CaptureRecord) -> bool:
        """The general case: the row may exist (compare verdicts, add missing counts)."""
        with self._writer.begin() as conn:
            created = False
            stored = _stored_verdict(conn, record.capture_id)
            if stored is None:
                location_id = self._location_id_for(conn, record)
                created = _insert_ignoring_duplicate(
                    conn, captures, [_capture_row(record, location_id)]
                )
            elif _is_newer_verdict(conn, stored, record):
                stored = _stored_verdict(conn, record.capture_id, lock=True)  # then decide again, alone
                if _is_newer_verdict(conn, stored, record):
                    _replace_verdict(conn, stored, record)
            if record.model_name is not None and not _has_counts(
                conn, record.capture_id, record.model_name, record.model_version
            ):
                with conn.begin_nested() as savepoint:
                    try:
                        _insert_detections(
                            conn,
                            [(record.capture_id, record.metadata.captured_at, record.model_name,
                              record.model_version, record.detections)],
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
                captured_at = conn.scalar(select(captures.c.captured_at).where(captures.c.capture_id == capture_id))
                if captured_at is None:
                    raise NotFound(f"no capture {capture_id!r}", details={"capture_id": capture_id})
                for table in (detections_table, capture_counts):
                    conn.execute(
                        delete(table).where(
                            _model_filter(table, capture_id, model_name, model_version)
                        )
                    )
                _insert_detections(conn, [(capture_id, captured_at, model_name, model_version, detections)])

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
                    select(*(detections_table.c[name] for name in _DETECTION_FIELDS))
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


class _Conflict(Exception):
    """The optimistic insert of a new capture hit an existing key; it was rolled back."""


def _location_key(record: CaptureRecord) -> tuple[str, str, str]:
    meta = record.metadata
    return meta.address, meta.city, meta.country


def _finite(value: float | None) -> float | None:
    """Databases cannot store NaN/inf: those become NULL."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _capture_row(record: CaptureRecord, location_id: int) -> dict[str, Any]:
    meta = record.metadata
    row: dict[str, Any] = {
        "capture_id": record.capture_id,
        "location_id": location_id,
        "captured_at": meta.captured_at,
        "captured_at_utc": record.captured_at_utc,
        "file_name": meta.file_name,
        "content_sha256": record.content_sha256,
        "status": record.status,
        "quality_reasons": json.dumps(list(record.quality_reasons)),
        "quality_flags": json.dumps(list(record.quality_flags)),
        "width": record.width,
        "height": record.height,
        "image_key": record.image_key,
        "annotated_key": record.annotated_key,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "ingested_at": record.ingested_at,
        "stored_at": _utcnow(),
    }
    row.update({name: _finite(record.quality_metrics.get(name)) for name in QUALITY_METRICS})
    row.update({name: _finite(record.timings.get(name)) for name in TIMINGS})
    return row


_VERDICT = ("status", "quality_reasons", "quality_flags", "model_name", "model_version", "ingested_at", "location_id")


def _stored_verdict(conn: Connection, capture_id: str, *, lock: bool = False) -> Any:
    """The stored row's verdict columns (``lock``: locked until the transaction ends; only for a
    row that exists — a locking read of a missing key takes a gap lock that makes concurrent
    first inserts deadlock on MySQL); ``None`` if absent."""
    query = select(*(captures.c[name] for name in _VERDICT)).where(captures.c.capture_id == capture_id)
    return conn.execute(query.with_for_update() if lock else query).mappings().first()


def _ingest_counts(conn: Connection, capture_id: str, model_name: str, model_version: str) -> dict[str, int]:
    rows = conn.execute(
        select(capture_counts.c.traffic_class, capture_counts.c["count"]).where(
            _model_filter(capture_counts, capture_id, model_name, model_version)
        )
    ).all()
    return {cls: int(n) for cls, n in rows}


def _is_newer_verdict(conn: Connection, stored: Any, record: CaptureRecord) -> bool:
    """Whether ``record`` was ingested after the stored row and decided otherwise."""
    if record.ingested_at <= stored["ingested_at"]:
        return False
    if (stored["status"], json.loads(stored["quality_reasons"]), json.loads(stored["quality_flags"]),
        stored["model_name"], stored["model_version"]) != (
        record.status, list(record.quality_reasons), list(record.quality_flags), record.model_name, record.model_version
    ):
        return True
    if record.model_name is None:
        return False
    counts = _ingest_counts(conn, record.capture_id, record.model_name, record.model_version)
    return bool(counts) and counts != record.counts


def _replace_verdict(conn: Connection, stored: Any, record: CaptureRecord) -> None:
    """Overwrite the row's verdict with ``record``'s and drop the previous ingest detections
    (the caller inserts the new ones); ``stored_at`` moves, so reporting re-runs that day."""
    row = _capture_row(record, stored["location_id"])
    for fixed in ("capture_id", "location_id", "captured_at", "captured_at_utc", "file_name", "content_sha256"):
        row.pop(fixed)
    conn.execute(captures.update().where(captures.c.capture_id == record.capture_id).values(row))
    names = {(stored["model_name"], stored["model_version"]), (record.model_name, record.model_version)}
    for name, version in names:
        if name is not None:
            for table in (detections_table, capture_counts):
                conn.execute(delete(table).where(_model_filter(table, record.capture_id, name, version)))


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
    conn: Connection, runs: Iterable[tuple[str, datetime, str, str | None, Iterable[Detection]]]
) -> None:
    """Bulk-insert detections and zero-filled counts of ``(capture_id, captured_at, model_name,
    model_version, detections)`` runs (``captured_at``: the capture's, copied onto each row):
    one multi-row INSERT per table for all of them."""
    detection_rows: list[dict[str, Any]] = []
    count_rows: list[dict[str, Any]] = []
    for capture_id, captured_at, model_name, model_version, found in runs:
        found = list(found)
        key = {"capture_id": capture_id, "captured_at": captured_at, "model_name": model_name,
               "model_version": model_version}
        detection_rows += [
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
        ]
        count_rows += [
            key | {"traffic_class": c, "count": n} for c, n in count_by_class(found).items()
        ]
    if detection_rows:
        conn.execute(insert(detections_table), detection_rows)
    if count_rows:
        conn.execute(insert(capture_counts), count_rows)


_DETECTION_FIELDS = ("traffic_class", "label", "score", "x1", "y1", "x2", "y2")


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
    flags = json.loads(row["quality_flags"])
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
        "quality_flags": flags,
        "quality": {"verdict": quality_verdict(row["status"], flags), "flags": flags},
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


__all__ = ["Repository"]
