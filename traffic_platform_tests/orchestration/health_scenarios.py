"""Generated camera-health scenarios with known problems, stored through the real repository and
object store, and the precision/recall of the flags against that ground truth.

One local day (06:00-18:00, an image every 5 minutes) at five locations, with injected
outages (no images), frozen runs (the same bytes again, or the same frame re-encoded at
another JPEG quality with slight noise), slates ("NO SIGNAL" on grey, colour bars), a moved
camera (another scene from 13:00 on), an obstructed lens (heavy blur) and clock drift (the
file name's time off the arrival time by -25 or +40 minutes). Live frames change from image
to image (traffic moves, light drifts, sensor noise), like a real street.

Scoring (:func:`score`): frozen, slate, obstructed and clock_drift per capture (a capture
is a true positive when a detected episode of that state at its location covers its arrival);
offline and moved per episode (a detected episode matches a true one of the same location
and state whose start is within two cadences of its own; precision = matched detected /
detected, recall = matched true / true).
"""

from __future__ import annotations

import hashlib
import io
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from traffic_platform.domain.captures import CaptureRecord
from traffic_platform.domain.classes import TrafficClass
from traffic_platform.domain.detections import Detection
from traffic_platform.domain.metadata import format_file_name, parse_file_name
from traffic_platform.domain.quality import QualityThresholds, evaluate, measure
from traffic_platform.domain.timezones import local_to_utc, resolve_timezone
from traffic_platform.storage import keys
from traffic_platform.storage.objectstore import ObjectStore
from traffic_platform.storage.repository import Repository
from traffic_platform_tests.images import street_scene

DAY = datetime(2022, 10, 12)
PARTITION = "2022-10-12"
CADENCE_S = 300
FIRST, LAST = timedelta(hours=6), timedelta(hours=18)
SIZE = (480, 270)
MODEL = ("health-test-model", "v1")
LOCATIONS = [
    ("tiensevest", "Leuven", "Belgium"),
    ("rue_de_la_loi", "Liège", "Belgium"),
    ("meir", "Antwerpen", "Belgium"),
    ("korenmarkt", "Gent", "Belgium"),
    ("grote_markt", "Brugge", "Belgium"),  # healthy all day: the control
]


def _at(h: int, m: int = 0) -> timedelta:
    return timedelta(hours=h, minutes=m)


# location index -> [(state, first local offset, end local offset (exclusive), option)]
PROBLEMS: dict[int, list[tuple[str, timedelta, timedelta, object]]] = {
    0: [("offline", _at(8), _at(9, 30), None), ("frozen", _at(11), _at(11, 40), "identical"),
        ("slate", _at(14), _at(14, 30), "no_signal")],
    1: [("frozen", _at(9), _at(9, 45), "reencoded"), ("moved", _at(13), LAST, None)],
    2: [("clock_drift", _at(10), _at(12), -25 * 60), ("slate", _at(15), _at(15, 20), "colour_bars"),
        ("offline", _at(16), _at(16, 45), None)],
    3: [("obstructed", _at(10), _at(10, 40), None), ("frozen", _at(12), _at(12, 30), "identical"),
        ("clock_drift", _at(14), _at(15), 40 * 60)],
    4: [],
}


@dataclass(frozen=True)
class TrueEpisode:
    location: int
    state: str
    started_at: datetime  # UTC arrival of the first affected image (offline: the last one before)


@dataclass
class Scenario:
    records: list[CaptureRecord] = field(default_factory=list)
    # capture_id -> the states it truly has (frame states only)
    truth: dict[str, set[str]] = field(default_factory=dict)
    episodes: list[TrueEpisode] = field(default_factory=list)
    location_of: dict[str, int] = field(default_factory=dict)  # capture_id -> location index
    location_ids: dict[int, int] = field(default_factory=dict)  # location index -> database id
    as_of: datetime = DAY  # UTC, just after the last image

    def excluded(self) -> set[str]:
        return {cid for cid, states in self.truth.items() if states & {"frozen", "slate"}}


def _live(base: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The base scene with this minute's traffic, light and sensor noise."""
    img = base.copy()
    draw = ImageDraw.Draw(img)
    w, h = img.size
    for _ in range(int(rng.integers(2, 7))):
        cw = int(rng.integers(w // 14, w // 6))
        cx, cy = int(rng.integers(0, w - cw)), int(rng.integers(int(h * 0.5), h - cw // 2))
        draw.rectangle([cx, cy, cx + cw, cy + cw // 2], fill=tuple(int(c) for c in rng.integers(20, 230, 3)),
                       outline=(20, 20, 20))
    arr = np.asarray(img, dtype=np.float32) * rng.uniform(0.9, 1.1) + rng.normal(0, 3, (h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def no_signal(size: tuple[int, int] = SIZE) -> Image.Image:
    img = Image.new("RGB", size, (118, 118, 118))
    draw = ImageDraw.Draw(img)
    w, h = size
    draw.rectangle([w // 3, h // 2 - 12, 2 * w // 3, h // 2 + 12], fill=(30, 30, 30))
    draw.text((w // 3 + 20, h // 2 - 6), "NO SIGNAL", fill=(235, 235, 235))
    return img


def colour_bars(size: tuple[int, int] = SIZE) -> Image.Image:
    colours = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0), (192, 0, 192), (192, 0, 0), (0, 0, 192)]
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    w, h = size
    for i, colour in enumerate(colours):
        draw.rectangle([i * w // 7, 0, (i + 1) * w // 7, h], fill=colour)
    return img


def _jpeg(image: Image.Image, quality: int = 88) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _detections(rng: random.Random) -> list[Detection]:
    found = []
    for _ in range(rng.choice([0, 1, 2, 3, 5])):
        x, y = rng.uniform(0, 400), rng.uniform(100, 220)
        cls = rng.choice(list(TrafficClass))
        found.append(Detection(cls, cls.value, 0.9, (round(x, 1), round(y, 1), round(x + 40, 1), round(y + 30, 1))))
    return found


def _problem(li: int, offset: timedelta) -> tuple[str, object] | None:
    for state, start, end, option in PROBLEMS[li]:
        if start <= offset < end:
            return state, option
    return None


def generate(repo: Repository, store: ObjectStore, *, seed: int = 11) -> Scenario:
    """Store the scenario's captures (images in ``store``, rows through ``repo``); return the truth."""
    rng, prng = np.random.default_rng(seed), random.Random(seed)
    scenario = Scenario()
    thresholds = QualityThresholds()
    last_arrival = DAY
    for li, loc in enumerate(LOCATIONS):
        zone = resolve_timezone(loc[1], loc[2])
        base, moved_base = street_scene(*SIZE, seed=100 + li), street_scene(*SIZE, seed=200 + li)
        previous: tuple[Image.Image, bytes] | None = None
        in_outage, before_outage, prev_state = False, None, None
        offset = FIRST
        while offset < LAST:
            local = DAY + offset
            true_utc = local_to_utc(local, zone)
            arrival = true_utc + timedelta(seconds=float(rng.uniform(1, 20)))
            problem = _problem(li, offset)
            state, option = problem if problem else (None, None)
            states: set[str] = set()
            if state == "offline":
                if not in_outage:
                    scenario.episodes.append(TrueEpisode(li, "offline", before_outage))
                in_outage, prev_state = True, state
                offset += timedelta(seconds=CADENCE_S)
                continue
            in_outage = False
            file_local = local
            if state == "frozen" and previous is not None:
                picture, data = previous
                if option == "reencoded":
                    noisy = np.asarray(picture, np.float32) + rng.normal(0, 1, (SIZE[1], SIZE[0], 3))
                    data = _jpeg(Image.fromarray(noisy.clip(0, 255).astype(np.uint8)), quality=int(rng.integers(70, 80)))
                states.add("frozen")
            elif state == "slate":
                picture = no_signal() if option == "no_signal" else colour_bars()
                data = _jpeg(picture)
                states.add("slate")
            else:
                scene = moved_base if state == "moved" else base
                picture = _live(scene, rng)
                if state == "obstructed":
                    picture = picture.filter(ImageFilter.GaussianBlur(6))
                    states.add("obstructed")
                if state == "moved":
                    states.add("moved")
                if state == "clock_drift":
                    file_local = local + timedelta(seconds=int(option))  # type: ignore[call-overload]
                    states.add("clock_drift")
                data = _jpeg(picture)
                previous = (picture, data)
            if state and state != prev_state:
                scenario.episodes.append(TrueEpisode(li, state, arrival))
            prev_state = state
            metrics = measure(picture)
            report = evaluate(metrics, thresholds)
            meta = parse_file_name(format_file_name(*loc, file_local))
            sha = hashlib.sha256(data).hexdigest()
            capture_id = hashlib.sha256(f"{meta.file_name}\x00{sha}".encode()).hexdigest()[:32]
            accepted = report.ok
            found = _detections(prng) if accepted else []
            record = CaptureRecord(
                capture_id=capture_id, metadata=meta, timezone=zone,
                captured_at_utc=local_to_utc(file_local, zone), content_sha256=sha,
                status="accepted" if accepted else "distorted", quality_reasons=report.reasons,
                quality_metrics=metrics, ingested_at=arrival, width=SIZE[0], height=SIZE[1],
                model_name=MODEL[0] if accepted else None, model_version=MODEL[1] if accepted else None,
                detections=found,
            )
            key = (keys.image_key if accepted else keys.distorted_key)(capture_id, meta.captured_at, "jpg")
            store.put(key, data, "image/jpeg")
            repo.save_capture(_with_key(record, key))
            scenario.records.append(record)
            scenario.truth[capture_id] = states
            scenario.location_of[capture_id] = li
            before_outage = arrival
            last_arrival = max(last_arrival, arrival)
            offset += timedelta(seconds=CADENCE_S)
        scenario.location_ids[li] = repo.get_location_id(*loc)
    scenario.as_of = last_arrival + timedelta(seconds=CADENCE_S)
    return scenario


def _with_key(record: CaptureRecord, key: str) -> CaptureRecord:
    values = {name: getattr(record, name) for name in record.__dataclass_fields__}
    return CaptureRecord(**(values | {"image_key": key}))


# -- scoring ------------------------------------------------------------------------------

CAPTURE_LEVEL = ("frozen", "slate", "obstructed", "clock_drift")
EPISODE_LEVEL = ("offline", "moved")


@dataclass(frozen=True)
class Score:
    state: str
    level: str  # "capture" or "episode"
    hits_detected: int  # detected items that are true
    detected: int
    hits_true: int  # true items that were detected
    truth: int

    @property
    def precision(self) -> float:
        return self.hits_detected / self.detected if self.detected else 1.0

    @property
    def recall(self) -> float:
        return self.hits_true / self.truth if self.truth else 1.0


def score(scenario: Scenario, detected: list[dict]) -> dict[str, Score]:
    """Per state, the precision and recall of ``detected`` episodes (rows of ``camera_health``:
    location_id, state, started_at, ended_at) against the scenario's truth."""
    index = {db_id: li for li, db_id in scenario.location_ids.items()}
    by_key: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for row in detected:
        by_key[(index[row["location_id"]], row["state"])].append(row)
    arrival = {r.capture_id: r.ingested_at for r in scenario.records}
    out = {}
    for state in CAPTURE_LEVEL:
        flagged = {cid for cid, li in scenario.location_of.items()
                   if any(row["started_at"] <= arrival[cid] and (row["ended_at"] is None or arrival[cid] < row["ended_at"])
                          for row in by_key[(li, state)])}
        truth = {cid for cid, states in scenario.truth.items() if state in states}
        hits = len(flagged & truth)
        out[state] = Score(state, "capture", hits, len(flagged), hits, len(truth))
    tolerance = timedelta(seconds=2 * CADENCE_S)
    for state in EPISODE_LEVEL:
        truth = [e for e in scenario.episodes if e.state == state]
        rows = [row for (_, s), found in by_key.items() if s == state for row in found]

        def matches(row: dict, e: TrueEpisode) -> bool:
            return index[row["location_id"]] == e.location and abs(row["started_at"] - e.started_at) <= tolerance

        out[state] = Score(state, "episode", sum(any(matches(r, e) for e in truth) for r in rows), len(rows),
                           sum(any(matches(r, e) for r in rows) for e in truth), len(truth))
    return out


def format_scores(scores: dict[str, Score], label: str) -> str:
    lines = [f"camera health on {label}: state, level, hits/detected, hits/true, precision, recall"]
    for s in scores.values():
        lines.append(f"  {s.state:<12} {s.level:<8} {s.hits_detected:>4}/{s.detected:<4} {s.hits_true:>4}/{s.truth:<4}"
                     f"  {s.precision:.3f}  {s.recall:.3f}")
    return "\n".join(lines)
