"""The camera-health rules: pure functions over one location's frames in arrival order.

A *frame* is one capture with its features (:mod:`.features`), its arrival time
(``ingested_at``, UTC), its file-name time (``captured_at_utc``) and its stored sharpness.
Frames are ordered by arrival: that is the order the camera sent them in, even when its
clock (and so the file name) is wrong.

Per frame (:func:`flag_frames`):

* **slate**: ``uniform_share >= slate_uniform_share`` or ``repeated_line_share >=
  slate_repeated_lines`` (a "no signal" card, colour bars).
* **frozen**: the frame repeats the one before it (same bytes, or dHash distance <=
  ``frozen_hash_distance`` and 16x9 thumbnail MAD <= ``frozen_thumb_mad``; re-encoding flips up
  to ~9 hash bits in flat areas, so the MAD decides), in a chain of at least
  ``frozen_min_frames`` such frames; the chain's first frame is the last live one and is not
  flagged. Slate frames never count as frozen.
* **moved**: the dHash distance to the location's reference (bitwise majority of its last
  ``reference_frames`` normal frames) exceeds ``moved_hash_distance`` for at least
  ``moved_min_frames`` frames in a row. After ``moved_rebase_frames`` such frames in a row the
  new scene becomes the reference (the camera was re-aimed for good) and the episode ends.
* **obstructed**: sharpness below ``obstructed_sharpness_ratio`` x the median sharpness of
  the reference frames, for at least ``moved_min_frames`` frames in a row.
* **clock_drift**: over the ``drift_window`` frames centred on this one, the median of
  ``arrival - file-name time`` exceeds ``clock_drift_s`` in magnitude, is stable (median absolute
  deviation <= ``drift_stability_s``: a replayed backlog is not), and so does this frame's own.

Frozen and slate frames are *excluded* from the counts. :func:`episodes` turns the flags into
episodes (runs of flagged frames), :func:`offline_episodes` the arrival gaps longer than
``offline_cadences`` x the cadence.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .features import hamming, thumb_mad

FRAME_STATES = ("frozen", "slate", "moved", "obstructed", "clock_drift")
STATES = ("offline", *FRAME_STATES)
EXCLUDING_STATES = ("frozen", "slate")


@dataclass(frozen=True)
class HealthThresholds:
    """The rules' thresholds, each with its reason; every field is settable as
    ``TRAFFIC_HEALTH_<FIELD>`` (:class:`~traffic_platform.orchestration.settings.OrchestrationSettings`)."""

    offline_cadences: float = 3.0  # offline after 3 missed images
    frozen_min_frames: int = 3  # the frame and two repeats of it
    frozen_hash_distance: int = 12  # dHash bits; re-encoding the same frame flips up to ~9
    frozen_thumb_mad: float = 1.0  # grey levels; same frame re-encoded <= 0.5, live frames >= 1.4
    # flat blocks: real photos <= 0.67 (sand storm; 1079 real street and adverse-weather photos), slates ~1
    slate_uniform_share: float = 0.8
    # repeated rows/columns: real photos <= 0.92 (fog, sand), colour bars ~1
    slate_repeated_lines: float = 0.97
    reference_frames: int = 9  # the rolling reference: majority of the last 9 normal frames
    moved_hash_distance: int = 16  # bits off the reference; another scene is ~32, live frames <= ~12
    moved_min_frames: int = 2  # one odd frame (a bus filling the view) is not a move
    moved_rebase_frames: int = 30  # a new scene stable this long becomes the reference
    obstructed_sharpness_ratio: float = 0.35  # of the reference frames' median sharpness
    clock_drift_s: float = 600.0  # |arrival - file-name time| beyond 10 minutes
    drift_window: int = 5  # frames centred on the one judged
    drift_stability_s: float = 30.0  # a replayed backlog spreads its offsets wider: not drift


@dataclass(frozen=True)
class Frame:
    capture_id: str
    arrived_at: datetime  # ingested_at, UTC
    captured_at_utc: datetime  # from the file name
    content_sha256: str
    dhash: int | None = None
    thumb: bytes | None = None
    uniform_share: float | None = None
    repeated_line_share: float | None = None
    sharpness: float | None = None


@dataclass
class Flags:
    states: set[str] = field(default_factory=set)
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def excluded(self) -> bool:
        return bool(self.states & set(EXCLUDING_STATES))


def majority_hash(hashes: Sequence[int]) -> int:
    """Bitwise majority (more than half) of 64-bit hashes."""
    out = 0
    for bit in range(64):
        if 2 * sum((h >> bit) & 1 for h in hashes) > len(hashes):
            out |= 1 << bit
    return out


def _is_slate(f: Frame, t: HealthThresholds) -> bool:
    return (f.uniform_share is not None and f.uniform_share >= t.slate_uniform_share) or (
        f.repeated_line_share is not None and f.repeated_line_share >= t.slate_repeated_lines)


def _repeats(prev: Frame, cur: Frame, t: HealthThresholds, ev: dict[str, Any]) -> bool:
    if prev.content_sha256 == cur.content_sha256:
        ev["identical_bytes"] = True
        return True
    if prev.dhash is None or cur.dhash is None or prev.thumb is None or cur.thumb is None:
        return False
    distance, mad = hamming(prev.dhash, cur.dhash), thumb_mad(prev.thumb, cur.thumb)
    ev["prev_hash_distance"], ev["prev_thumb_mad"] = distance, round(mad, 3)
    return distance <= t.frozen_hash_distance and mad <= t.frozen_thumb_mad


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """(first, last) index of each run of True."""
    runs, start = [], None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


def flag_frames(frames: Sequence[Frame], t: HealthThresholds) -> list[Flags]:
    """The flags of each frame of one location (arrival order; context frames included)."""
    n = len(frames)
    out = [Flags() for _ in frames]
    slate = [_is_slate(f, t) for f in frames]
    for i in range(n):
        if slate[i]:
            out[i].states.add("slate")
            out[i].evidence["uniform_share"] = round(frames[i].uniform_share or 0.0, 3)
            out[i].evidence["repeated_line_share"] = round(frames[i].repeated_line_share or 0.0, 3)
    # frozen: chains of repeats
    link = [False] * n
    for i in range(1, n):
        if not slate[i] and not slate[i - 1]:
            link[i] = _repeats(frames[i - 1], frames[i], t, out[i].evidence)
    for first, last in _runs(link):
        if last - first + 2 >= t.frozen_min_frames:  # the chain includes the frame before `first`
            for i in range(first, last + 1):
                out[i].states.add("frozen")
    # moved / obstructed against a rolling reference of normal frames
    reference: deque[int] = deque(maxlen=t.reference_frames)
    moved_c, obstructed_c = [False] * n, [False] * n
    pending: list[int] = []
    for i, f in enumerate(frames):
        if slate[i] or "frozen" in out[i].states or f.dhash is None:
            continue
        candidate = False
        if len(reference) >= max(3, t.reference_frames // 2):
            sharp = [frames[j].sharpness for j in reference if frames[j].sharpness is not None]
            ref_sharp = statistics.median(sharp) if sharp else None
            if f.sharpness is not None and ref_sharp and f.sharpness < t.obstructed_sharpness_ratio * ref_sharp:
                obstructed_c[i] = candidate = True
                out[i].evidence["sharpness_ratio"] = round(f.sharpness / ref_sharp, 3)
            distance = hamming(f.dhash, majority_hash([frames[j].dhash for j in reference]))  # type: ignore[misc]
            out[i].evidence["ref_hash_distance"] = distance
            if not candidate and distance > t.moved_hash_distance:
                moved_c[i] = candidate = True
        if candidate:
            pending.append(i)
            if moved_c[i] and len(pending) >= t.moved_rebase_frames and all(moved_c[j] for j in pending):
                reference.clear()
                reference.extend(pending[-t.reference_frames:])  # the new scene is the reference now
                pending = []
        else:
            pending = []
            reference.append(i)
    for state, candidates in (("moved", moved_c), ("obstructed", obstructed_c)):
        # runs over the frames that were judged (slate/frozen/unhashed frames do not break a run)
        judged = [i for i in range(n) if not (slate[i] or "frozen" in out[i].states or frames[i].dhash is None)]
        for first, last in _runs([candidates[i] for i in judged]):
            if last - first + 1 >= t.moved_min_frames:
                for k in range(first, last + 1):
                    out[judged[k]].states.add(state)
    # clock drift: a stable offset between arrival and the file name's time
    offsets = [(f.arrived_at - f.captured_at_utc).total_seconds() for f in frames]
    half = t.drift_window // 2
    for i in range(n):
        window = offsets[max(0, i - half): i + half + 1]
        med = statistics.median(window)
        mad = statistics.median(abs(x - med) for x in window)
        if abs(med) > t.clock_drift_s and mad <= t.drift_stability_s and abs(offsets[i]) > t.clock_drift_s:
            out[i].states.add("clock_drift")
            out[i].evidence["drift_s"] = round(offsets[i], 1)
    return out


@dataclass(frozen=True)
class Episode:
    state: str
    started_at: datetime
    ended_at: datetime | None
    reason: str
    evidence: dict[str, Any]


def _reason(state: str, ev: dict[str, Any], t: HealthThresholds) -> str:
    if state == "frozen":
        what = "identical bytes" if ev.get("identical_bytes") else (
            f"near-identical frames (hash distance <= {t.frozen_hash_distance}, grey MAD <= {t.frozen_thumb_mad:g})")
        return f"frozen: {ev['frames']} frames repeat the one before ({what})"
    if state == "slate":
        return f"slate: {ev['frames']} placeholder frames (flat share {ev['max_uniform_share']:.2f}, " \
               f"repeated lines {ev['max_repeated_line_share']:.2f})"
    if state == "moved":
        return f"moved: the scene differs from the location's reference (hash distance up to {ev['max_ref_hash_distance']}/64)"
    if state == "obstructed":
        return f"obstructed: sharpness down to {ev['min_sharpness_ratio']:.0%} of the location's recent median"
    return f"clock_drift: the file name's time is {ev['median_drift_s']:.0f} s off the arrival time"


def _evidence(state: str, run: Sequence[Flags]) -> dict[str, Any]:
    ev: dict[str, Any] = {"frames": len(run)}
    values = lambda key: [f.evidence[key] for f in run if key in f.evidence]  # noqa: E731
    if state == "frozen":
        ev["identical_bytes"] = all(f.evidence.get("identical_bytes") for f in run)
        if values("prev_hash_distance"):
            ev["max_hash_distance"] = max(values("prev_hash_distance"))
            ev["max_thumb_mad"] = max(values("prev_thumb_mad"))
    elif state == "slate":
        ev["max_uniform_share"] = max(values("uniform_share"))
        ev["max_repeated_line_share"] = max(values("repeated_line_share"))
    elif state == "moved":
        ev["max_ref_hash_distance"] = max(values("ref_hash_distance"))
    elif state == "obstructed":
        ev["min_sharpness_ratio"] = min(values("sharpness_ratio"))
    else:
        ev["median_drift_s"] = statistics.median(values("drift_s"))
    return ev


def episodes(frames: Sequence[Frame], flags: Sequence[Flags], t: HealthThresholds) -> list[Episode]:
    """Runs of flagged frames per state: start = the first flagged frame's arrival, end = the
    arrival of the first frame after the run (``None`` while the run reaches the last frame)."""
    out = []
    for state in FRAME_STATES:
        for first, last in _runs([state in f.states for f in flags]):
            ev = _evidence(state, flags[first:last + 1])
            ev["first_capture_id"] = frames[first].capture_id
            ended = frames[last + 1].arrived_at if last + 1 < len(frames) else None
            out.append(Episode(state, frames[first].arrived_at, ended, _reason(state, ev, t), ev))
    return out


def offline_episodes(arrivals: Sequence[datetime], cadences: Sequence[float], as_of: datetime,
                     t: HealthThresholds) -> list[Episode]:
    """Gaps between consecutive arrivals (and from the last one to ``as_of``) longer than
    ``offline_cadences`` x the cadence in force at the gap's start (``cadences[i]`` for the gap
    after ``arrivals[i]``). Start: the last arrival before the gap; end: the next one (``None``
    while it lasts)."""
    out = []
    for i, start in enumerate(arrivals):
        end = arrivals[i + 1] if i + 1 < len(arrivals) else None
        limit = t.offline_cadences * cadences[i]
        gap = ((end or as_of) - start).total_seconds()
        if gap > limit:
            ev = {"gap_s": round(gap, 1), "cadence_s": round(cadences[i], 1), "threshold_s": round(limit, 1)}
            reason = f"offline: no image for {gap:.0f} s ({gap / cadences[i]:.1f} x the cadence of {cadences[i]:.0f} s)"
            out.append(Episode("offline", start, end, reason, ev))
    return out


def window_start(as_of: datetime, lookback_days: float) -> datetime:
    return as_of - timedelta(days=lookback_days)
