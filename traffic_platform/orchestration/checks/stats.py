"""Robust anomaly score used by the anomaly checks.

Rule: compare a day's value ``x`` with the same location's previous days ``h`` (those
with data, at most ``TRAFFIC_ANOMALY_HISTORY_DAYS``). Say nothing until at least
``TRAFFIC_ANOMALY_MIN_HISTORY_DAYS`` days exist. Otherwise

    z = (x - median(h)) / max(1.4826 * MAD(h), floor)

(1.4826·MAD estimates the standard deviation of normal data while ignoring outliers;
``floor`` stops a perfectly steady history from turning a tiny change into a huge z)
and flag the day when ``|z|`` exceeds ``TRAFFIC_ANOMALY_Z`` (4 by default).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import TypeVar

MAD_TO_SIGMA = 1.4826
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class RobustScore:
    value: float
    median: float
    scale: float
    z: float
    history_days: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "value": round(self.value, 6),
            "median": round(self.median, 6),
            "scale": round(self.scale, 6),
            "z": round(self.z, 3),
            "history_days": self.history_days,
        }


def robust_z(value: float, history: Sequence[float], *, floor: float) -> RobustScore:
    """The robust z-score of ``value`` against ``history`` (must not be empty)."""
    if not history:
        raise ValueError("robust_z needs at least one day of history")
    if floor <= 0 or math.isnan(floor):
        raise ValueError("floor must be positive")
    centre = median(history)
    mad = median(abs(h - centre) for h in history)
    scale = max(MAD_TO_SIGMA * mad, floor)
    return RobustScore(float(value), float(centre), float(scale), (value - centre) / scale, len(history))


def score_today(series: Mapping[K, Mapping[str, float]], today: str, *, min_history_days: int,
                floor: Callable[[Sequence[float]], float]) -> tuple[list[tuple[K, RobustScore]], int]:
    """Score each series' value on ``today`` against its other days, in key order.

    Series with no value today are left out; those with fewer than ``min_history_days``
    other days are only counted (the second item). ``floor(history)`` gives each series' floor.
    """
    scores: list[tuple[K, RobustScore]] = []
    too_short = 0
    for key, by_day in sorted(series.items()):
        if today not in by_day:
            continue
        history = [value for day, value in by_day.items() if day != today]
        if len(history) < min_history_days:
            too_short += 1
            continue
        scores.append((key, robust_z(by_day[today], history, floor=floor(history))))
    return scores, too_short
