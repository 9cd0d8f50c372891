"""The one detection type that flows from every detector to counting, annotation and storage.

Its JSON shape is the same everywhere (HTTP and Lambda answers, SageMaker output,
re-detection job)::

    {"class": "car", "label": "car", "score": 0.91, "box": [x1, y1, x2, y2]}

``class`` is the traffic class, ``label`` the model's own label, ``box`` in
original-image pixels, clipped to the image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .classes import TRAFFIC_CLASSES, TrafficClass, traffic_class_for, zero_counts


@dataclass(frozen=True, slots=True)
class Detection:
    """One road user found in one image."""

    traffic_class: TrafficClass
    label: str
    score: float
    box: tuple[float, float, float, float]

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0 or math.isnan(self.score):
            raise ValueError(f"score must be within [0, 1], got {self.score}")
        x1, y1, x2, y2 = self.box
        if not (x1 <= x2 and y1 <= y2):
            raise ValueError(f"box must be (x1, y1, x2, y2) with x1<=x2, y1<=y2, got {self.box}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.traffic_class.value,
            "label": self.label,
            "score": round(float(self.score), 6),
            "box": [round(float(v), 2) for v in self.box],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Detection:
        return cls(
            traffic_class=TrafficClass(data["class"]),
            label=str(data["label"]),
            score=float(data["score"]),
            box=tuple(float(v) for v in data["box"]),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class ClassThresholds:
    """Minimum score per traffic class; classes not listed use ``default``."""

    default: float = 0.5
    per_class: Mapping[str, float] = field(default_factory=dict)

    def for_class(self, traffic_class: str) -> float:
        return self.per_class.get(traffic_class, self.default)

    @property
    def minimum(self) -> float:
        """The lowest threshold of any class: what a backend may pre-filter at."""
        return min([self.default, *self.per_class.values()])


def clip_box(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """Clip an ``xyxy`` box to the image ``[0, width] x [0, height]``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def to_traffic_detections(
    labels: Iterable[str],
    scores: Iterable[float],
    boxes: Iterable[Sequence[float]],
    *,
    width: int,
    height: int,
    thresholds: ClassThresholds,
) -> list[Detection]:
    """Keep the road users among raw model outputs: map labels, apply thresholds, clip boxes.

    Every backend ends here, so the class mapping and thresholds live in one place.
    The order of the input (usually score-descending) is kept.
    """
    kept: list[Detection] = []
    for label, score, box in zip(labels, scores, boxes, strict=True):
        traffic_class = traffic_class_for(label)
        if traffic_class is None:
            continue
        score = float(score)
        if score < thresholds.for_class(traffic_class):
            continue
        kept.append(Detection(traffic_class, str(label), min(max(score, 0.0), 1.0), clip_box(box, width, height)))
    return kept


def count_by_class(detections: Iterable[Detection]) -> dict[str, int]:
    """Counts per traffic class with all six classes present."""
    counts = zero_counts()
    for d in detections:
        counts[d.traffic_class.value] += 1
    return counts


__all__ = [
    "TRAFFIC_CLASSES",
    "ClassThresholds",
    "Detection",
    "clip_box",
    "count_by_class",
    "to_traffic_detections",
]
