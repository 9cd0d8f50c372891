"""What the dashboard shows, read from the reporting views and the object store, nothing else.

The views are the analysts' contract (``sql/README.md``); every query here is plain SQL that
runs unchanged on SQLite and MySQL/MariaDB. Counts are never added up across model versions:
the dashboard shows **one** model version, the one with the most accepted images in
``v_traffic_counts_daily_wide`` (ties: the newest ``computed_at``), so a re-detection of a few
days does not hide the version that covers the whole history; the page says which one it is and
lists the others. Image counts (received, distorted, coverage) do not depend on the model and
come from ``v_data_quality_daily`` and ``v_locations``.

The gallery is the newest annotated copies (``annotated/YYYY/MM/DD/<id>.jpg``, the local day of
the capture): the days come from ``v_data_quality_daily``, newest first, and each day's prefix is
listed until enough images are found, so a large bucket is never listed whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from ..domain.classes import TRAFFIC_CLASSES
from ..domain.images import thumbnail_jpeg
from ..storage.keys import ANNOTATED_PREFIX
from ..storage.objectstore import ObjectNotFound

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from ..storage.objectstore import ObjectStore

GALLERY_SIZE = 12
THUMBNAIL_SIDE = 480
VEHICLE_CLASSES = ("car", "truck", "bus", "motorcycle")  # what the views' `vehicles` column adds up

_MODELS = """
SELECT model_name, model_version, SUM(images_accepted) AS images_accepted, MAX(computed_at) AS computed_at
FROM v_traffic_counts_daily_wide GROUP BY model_name, model_version"""
_DAILY = f"""
SELECT location_id, date, images_received, images_accepted, {", ".join(TRAFFIC_CLASSES)}, vehicles
FROM v_traffic_counts_daily_wide WHERE model_name = :model_name AND model_version = :model_version
ORDER BY date, location_id"""
_HOURLY = """
SELECT location_id, window_start, images_accepted, vehicles
FROM v_traffic_counts_hourly_wide WHERE model_name = :model_name AND model_version = :model_version
ORDER BY window_start, location_id"""
_WEEK = """
SELECT d.weekday, d.weekday_name, t.hour, SUM(h.vehicles) AS vehicles, SUM(h.images_accepted) AS images_accepted
FROM v_traffic_counts_hourly_wide h
JOIN v_dim_date d ON d.date = h.date
JOIN v_dim_time_of_day t ON t.time_slot = h.time_slot
WHERE h.model_name = :model_name AND h.model_version = :model_version
GROUP BY d.weekday, d.weekday_name, t.hour"""
_QUALITY = """
SELECT location_id, date, images_expected, images_received, images_accepted, images_distorted, coverage,
       distorted_share, images_excluded_health, images_degraded, degraded_share, cadence_s, cadence_source,
       model_versions
FROM v_data_quality_daily ORDER BY date, location_id"""
_LOCATIONS = """
SELECT location_id, address, city, country, timezone, first_captured_at, last_captured_at, images_total,
       images_distorted, is_active
FROM v_locations ORDER BY country, city, address, location_id"""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    images_accepted: int
    computed_at: datetime | None


@dataclass(frozen=True)
class GalleryImage:
    key: str
    day: date  # the capture's local day, from the key
    stored_at: datetime  # UTC, the object's modification time
    jpeg: bytes  # the thumbnail


@dataclass
class DashboardData:
    """Everything one render needs; ``model is None`` means there is nothing counted yet."""

    generated_at: datetime
    model: ModelVersion | None = None
    other_models: list[ModelVersion] = field(default_factory=list)
    locations: list[dict[str, Any]] = field(default_factory=list)
    daily: list[dict[str, Any]] = field(default_factory=list)
    hourly: list[dict[str, Any]] = field(default_factory=list)
    week: list[dict[str, Any]] = field(default_factory=list)
    quality: list[dict[str, Any]] = field(default_factory=list)
    gallery: list[GalleryImage] = field(default_factory=list)
    problem: str | None = None  # why the views could not be read (the page says so)

    @property
    def empty(self) -> bool:
        return self.model is None

    def kpis(self) -> dict[str, float | int | None]:
        """The headline numbers: vehicles and road users are sums over accepted images (how many
        the images showed), ``vehicles_per_image`` is the busyness of one image."""
        accepted = sum(r["images_accepted"] for r in self.daily)
        vehicles = sum(r["vehicles"] for r in self.daily)
        received = sum(r["images_received"] for r in self.quality)
        distorted = sum(r["images_distorted"] for r in self.quality)
        rated = [r for r in self.quality if r["images_degraded"] is not None]  # days computed with the column
        degraded = sum(r["images_degraded"] for r in rated)
        counted = sum(r["images_accepted"] - r["images_excluded_health"] for r in rated)
        return {
            "locations": len(self.locations),
            "days": len({r["date"] for r in self.quality}),
            "images_received": received,
            "images_accepted": accepted,
            "images_distorted": distorted,
            "distorted_share": distorted / received if received else None,
            "images_degraded": degraded,
            "degraded_share": degraded / counted if counted else None,  # of the counted images
            "vehicles": vehicles,
            "people": sum(r["person"] for r in self.daily),
            "vehicles_per_image": vehicles / accepted if accepted else None,
        }

    def location_rows(self) -> list[dict[str, Any]]:
        """``v_locations`` with this model's accepted images, vehicles and people per location."""
        out = []
        for loc in self.locations:
            mine = [r for r in self.daily if r["location_id"] == loc["location_id"]]
            accepted = sum(r["images_accepted"] for r in mine)
            vehicles = sum(r["vehicles"] for r in mine)
            out.append({**loc, "images_accepted": accepted, "vehicles": vehicles,
                        "people": sum(r["person"] for r in mine),
                        "vehicles_per_image": vehicles / accepted if accepted else None})
        return out

    def class_totals(self) -> dict[str, int]:
        return {c: sum(r[c] for r in self.daily) for c in TRAFFIC_CLASSES}


def load(engine: Engine, store: ObjectStore | None, *, gallery_size: int = GALLERY_SIZE,
         now: datetime | None = None) -> DashboardData:
    """Read the views (and the newest annotated images from ``store``) into :class:`DashboardData`.

    Views that cannot be read (never created, or the database is down) give empty data whose
    ``problem`` says why; the page then says there is no data yet.
    """
    from sqlalchemy.exc import DBAPIError

    data = DashboardData(generated_at=now or datetime.now(UTC).replace(tzinfo=None, microsecond=0))
    try:
        with engine.connect() as conn:
            _read(conn, data)
    except DBAPIError as exc:
        reason = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
        return DashboardData(generated_at=data.generated_at, problem=(
            f"The reporting views cannot be read ({reason}): run `traffic-platform report` first, "
            "or check TRAFFIC_DATABASE_URL."))
    if store is not None and gallery_size > 0:
        data.gallery = newest_annotated(store, sorted({r["date"] for r in data.quality}, reverse=True), gallery_size)
    return data


def _read(conn: Connection, data: DashboardData) -> None:
    data.locations = _rows(conn, _LOCATIONS)
    for row in data.locations:
        for name in ("first_captured_at", "last_captured_at"):
            row[name] = as_datetime(row[name])
    data.quality = _rows(conn, _QUALITY)
    for row in data.quality:
        row["date"] = as_date(row["date"])
    models = [ModelVersion(r["model_name"], r["model_version"], int(r["images_accepted"] or 0), as_datetime(r["computed_at"]))
              for r in _rows(conn, _MODELS)]
    if not models:
        return
    models.sort(key=lambda m: (m.images_accepted, m.computed_at or datetime.min), reverse=True)
    data.model, data.other_models = models[0], models[1:]
    params = {"model_name": data.model.name, "model_version": data.model.version}
    data.daily = _rows(conn, _DAILY, params)
    for row in data.daily:
        row["date"] = as_date(row["date"])
    data.hourly = _rows(conn, _HOURLY, params)
    for row in data.hourly:
        row["window_start"] = as_datetime(row["window_start"])
    data.week = sorted(_rows(conn, _WEEK, params), key=lambda r: (r["weekday"], r["hour"]))


def _rows(conn: Connection, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    from sqlalchemy import text

    return [{k: _number(v) for k, v in r.items()} for r in conn.execute(text(sql), params or {}).mappings()]


def _number(value: Any) -> Any:
    """MySQL hands SUM() back as Decimal; the page wants int or float."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def as_datetime(value: Any) -> datetime | None:
    """A view's datetime on either database (SQLite hands back ISO text)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def newest_annotated(store: ObjectStore, days: Sequence[date], limit: int) -> list[GalleryImage]:
    """Up to ``limit`` annotated copies, newest day first and newest stored first within a day."""
    found: list[GalleryImage] = []
    for day in days:
        listing = store.scan(f"{ANNOTATED_PREFIX}{day:%Y/%m/%d}/")
        for info in sorted(listing.objects, key=lambda o: (o.modified, o.key), reverse=True):
            try:
                thumb = thumbnail_jpeg(store.get(info.key), THUMBNAIL_SIDE)
            except ObjectNotFound:  # deleted since the listing
                continue
            if thumb is None:
                continue
            found.append(GalleryImage(info.key, day, datetime.fromtimestamp(info.modified, UTC).replace(tzinfo=None, microsecond=0), thumb))
            if len(found) >= limit:
                return found
    return found
