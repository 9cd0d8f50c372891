"""Synthetic captures for the orchestration tests, written through the real Repository.

The generated records are also the ground truth: :func:`expected_counts` recomputes every
reporting figure from them in plain Python, independently of the SQL under test.
"""

from __future__ import annotations

import hashlib
import random
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from traffic_platform.domain.captures import CaptureRecord
from traffic_platform.domain.classes import TRAFFIC_CLASSES, TrafficClass
from traffic_platform.domain.detections import Detection
from traffic_platform.domain.metadata import format_file_name, parse_file_name
from traffic_platform.domain.timezones import local_to_utc, resolve_timezone
from traffic_platform.orchestration.windows import ReportingWindow, window_named
from traffic_platform.storage.repository import Repository

WIDTH, HEIGHT = 1280, 720
INGEST_V1 = ("detr-resnet-50", "v1")
INGEST_V2 = ("detr-resnet-50", "v2")
REDETECT_V3 = ("rtdetr-r18", "v3")

# (address, city, country): a plain one, unicode names, a zone east of UTC, unknown (UTC).
LOCATIONS = [
    ("tiensevest", "Leuven", "Belgium"),
    ("rue_de_la_loi", "Liège", "Belgium"),
    ("渋谷_交差点", "東京", "Japan"),
    ("main_street", "Springfield", "Atlantis"),
]
DAYS = [datetime(2022, 10, 11), datetime(2022, 10, 12), datetime(2022, 10, 13)]
DAY = "2022-10-12"  # the partition most tests look at
DST_DAY = "2022-10-30"  # Europe/Brussels falls back at 03:00 -> 02:00


@dataclass
class Dataset:
    records: list[CaptureRecord] = field(default_factory=list)
    # capture_id -> {(model_name, model_version): [Detection, ...]} for every model that ran
    detections: dict[str, dict[tuple[str, str], list[Detection]]] = field(default_factory=dict)
    location_ids: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def by_id(self) -> dict[str, CaptureRecord]:
        return {r.capture_id: r for r in self.records}


def _detections(rng: random.Random, n: int) -> list[Detection]:
    found = []
    for _ in range(n):
        w, h = rng.uniform(5, 200), rng.uniform(5, 200)
        x1, y1 = rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h)
        cls = rng.choice(list(TrafficClass))
        found.append(Detection(cls, cls.value, round(rng.uniform(0.5, 1.0), 4), (round(x1, 2), round(y1, 2), round(x1 + w, 2), round(y1 + h, 2))))
    return found


# Degraded flags of the i-th image of a location-day (accepted ones only): some foggy, some at night with glare.
def flags_for(i: int) -> list[str]:
    return ["fog"] if i % 4 == 1 else ["low_light", "glare"] if i % 6 == 2 else []


def make_record(rng: random.Random, loc: tuple[str, str, str], local: datetime, *, ingested_at: datetime,
                distorted: bool, model: tuple[str, str], n_detections: int, content: str | None = None,
                flags: list[str] | None = None) -> tuple[CaptureRecord, list[Detection]]:
    address, city, country = loc
    meta = parse_file_name(format_file_name(address, city, country, local))
    zone = resolve_timezone(city, country)
    capture_id = f"{rng.getrandbits(128):032x}"
    found = [] if distorted else _detections(rng, n_detections)
    record = CaptureRecord(
        capture_id=capture_id,
        metadata=meta,
        timezone=zone,
        captured_at_utc=local_to_utc(local, zone),
        content_sha256=hashlib.sha256((content or capture_id).encode()).hexdigest(),
        status="distorted" if distorted else "accepted",
        quality_reasons=["blurred"] if distorted else [],
        quality_flags=[] if distorted else list(flags or []),
        ingested_at=ingested_at,
        width=WIDTH,
        height=HEIGHT,
        model_name=None if distorted else model[0],
        model_version=None if distorted else model[1],
        detections=found,
    )
    return record, found


def generate(repo: Repository, *, seed: int = 7, small: bool = False, redetect: bool = True) -> Dataset:
    """Several locations and days, distorted images, a mid-day model upgrade, late arrivals,
    a re-detection with a third version, and a DST fall-back pair; all saved via ``repo``."""
    rng = random.Random(seed)
    data = Dataset()
    ingest_clock = datetime(2022, 10, 11, 6, 0, 0)
    locations = LOCATIONS[:2] if small else LOCATIONS
    days = [DAYS[1]] if small else DAYS
    late: list[tuple[CaptureRecord, list[Detection]]] = []
    for day in days:
        for li, loc in enumerate(locations):
            cadence = [300, 420, 600, 900][li]  # seconds between images, differs per location
            t = day + timedelta(hours=6 + li, seconds=37 * li)
            end = day + timedelta(hours=9 if small else 13)
            i = 0
            while t < end:
                # an occasional irregular gap so the observed median is a real median
                t_local = t + timedelta(seconds=rng.choice([0, 0, 0, 20, -20]))
                model = INGEST_V2 if (li == 1 and t_local.hour >= 12) else INGEST_V1
                ingest_clock += timedelta(seconds=1)
                rec = make_record(rng, loc, t_local, ingested_at=ingest_clock, distorted=(i % 7 == 3), model=model,
                                  n_detections=rng.choice([0, 1, 2, 3, 5, 8]), flags=flags_for(i))
                if li == 0 and day == DAYS[1] and i % 5 == 1 and not small:
                    late.append(rec)  # ingested two days later (late arrival)
                else:
                    _save(repo, data, *rec)
                t += timedelta(seconds=cadence)
                i += 1
    for record, found in late:
        ingest_clock += timedelta(seconds=1)
        record = _replace(record, ingested_at=ingest_clock + timedelta(days=2))
        _save(repo, data, record, found)
    if not small:
        # DST fall-back: two images at 02:30 local on 30 Oct, an hour apart in UTC; both kept.
        for fold in (0, 1):
            loc = LOCATIONS[0]
            meta = parse_file_name(format_file_name(*loc, datetime(2022, 10, 30, 2, 30)))
            utc = datetime(2022, 10, 30, 0, 30) + timedelta(hours=fold)
            ingest_clock += timedelta(seconds=1)
            rec = CaptureRecord(capture_id=f"{rng.getrandbits(128):032x}", metadata=meta, timezone="Europe/Brussels",
                                captured_at_utc=utc, content_sha256=hashlib.sha256(f"dst{fold}".encode()).hexdigest(),
                                status="accepted", ingested_at=ingest_clock, width=WIDTH, height=HEIGHT,
                                model_name=INGEST_V1[0], model_version=INGEST_V1[1], detections=_detections(rng, 2 + fold))
            _save(repo, data, rec, rec.detections)
    if redetect:
        # Re-detection of the main day's accepted captures at one location with a third version.
        for record in list(data.records):
            if record.status == "accepted" and record.metadata.captured_at.date() == DAYS[1].date() and record.metadata.city == "Leuven":
                found = _detections(rng, rng.choice([0, 2, 4]))
                repo.save_detections(record.capture_id, *REDETECT_V3, found)
                data.detections[record.capture_id][REDETECT_V3] = found
    for loc in locations:
        data.location_ids[loc] = repo.get_location_id(*loc)
    return data


def _replace(record: CaptureRecord, **changes: Any) -> CaptureRecord:
    values = {name: getattr(record, name) for name in record.__dataclass_fields__} | changes
    return CaptureRecord(**values)


def _save(repo: Repository, data: Dataset, record: CaptureRecord, found: list[Detection]) -> None:
    repo.save_capture(record)
    data.records.append(record)
    data.detections[record.capture_id] = {} if record.model_name is None else {(record.model_name, record.model_version): found}


# -- brute force ----------------------------------------------------------------------

def as_window(window: str | ReportingWindow) -> ReportingWindow:
    """A declared window by name, or the window itself (e.g. one a test declares)."""
    return window if isinstance(window, ReportingWindow) else window_named(window)


def window_start(local: datetime, window: str | ReportingWindow) -> datetime:
    """Local midnight plus the whole windows elapsed since it (windows divide a day)."""
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = int((local - midnight).total_seconds())
    return midnight + timedelta(seconds=elapsed - elapsed % as_window(window).seconds)


def partition_records(data: Dataset, day: str) -> list[CaptureRecord]:
    return [r for r in data.records if r.metadata.captured_at.date().isoformat() == day]


def expected_cadences(data: Dataset, day: str, fallback: float = 60.0, configured: dict[int, float] | None = None) -> dict[int, tuple[float | None, float, str]]:
    """location_id -> (observed median gap, cadence used, source)."""
    by_loc: dict[int, list[datetime]] = defaultdict(list)
    for r in partition_records(data, day):
        by_loc[_loc_id(data, r)].append(r.captured_at_utc)
    out = {}
    for loc_id, times in by_loc.items():
        times.sort()
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False) if (b - a).total_seconds() > 0]
        observed = statistics.median(gaps) if gaps else None
        if configured and loc_id in configured:
            out[loc_id] = (observed, configured[loc_id], "setting")
        elif observed is not None:
            out[loc_id] = (observed, observed, "observed")
        else:
            out[loc_id] = (None, fallback, "fallback")
    return out


def reported_models(data: Dataset, day: str) -> list[tuple[str, str]]:
    models = sorted({(r.model_name, r.model_version) for r in partition_records(data, day) if r.status == "accepted"})
    if models:
        return models
    accepted = [r for r in data.records if r.status == "accepted"]
    if not accepted:
        return []
    latest = max(accepted, key=lambda r: r.ingested_at)
    return [(latest.model_name, latest.model_version)]


def expected_counts(data: Dataset, day: str, window: str | ReportingWindow, models: list[tuple[str, str]],
                    cadences: dict[int, tuple[float | None, float, str]], excluded: frozenset[str] = frozenset()) -> dict[tuple, dict[str, Any]]:
    """(location_id, window_start, class, model_name, model_version) -> figures, recomputed in Python;
    ``excluded``: the captures camera health leaves out (counted only as received and excluded)."""
    windows: dict[tuple[int, datetime], list[CaptureRecord]] = defaultdict(list)
    for r in partition_records(data, day):
        windows[(_loc_id(data, r), window_start(r.metadata.captured_at, window))].append(r)
    out = {}
    for (loc_id, start), records in windows.items():
        cadence = cadences[loc_id][1]
        expected = as_window(window).seconds / cadence
        for model in models:
            kept = [r for r in records if r.status == "accepted" and r.capture_id not in excluded
                    and model in data.detections[r.capture_id]]
            processed = [data.detections[r.capture_id][model] for r in kept]
            degraded = sum(bool(r.quality_flags) for r in kept)
            for cls in TRAFFIC_CLASSES:
                per_image = [sum(1 for d in found if d.traffic_class.value == cls) for found in processed]
                n = len(per_image)
                out[(loc_id, start, cls, *model)] = {
                    "images_received": len(records),
                    "images_accepted": n,
                    "images_distorted": sum(r.status == "distorted" for r in records),
                    "images_excluded_health": sum(r.status == "accepted" and r.capture_id in excluded for r in records),
                    "images_degraded": degraded,
                    "degraded_share": degraded / n if n else None,
                    "total_count": sum(per_image),
                    "mean_per_image": sum(per_image) / n if n else None,
                    "max_per_image": max(per_image) if n else None,
                    "share_with_any": sum(c > 0 for c in per_image) / n if n else None,
                    "expected_images": expected,
                    "coverage": len(records) / expected,
                }
    return out


def _loc_id(data: Dataset, r: CaptureRecord) -> int:
    m = r.metadata
    return data.location_ids[(m.address, m.city, m.country)]
