"""The six traffic classes and the one mapping from model labels onto them."""

from __future__ import annotations

from enum import StrEnum


class TrafficClass(StrEnum):
    CAR = "car"
    TRUCK = "truck"
    BUS = "bus"
    PERSON = "person"
    BICYCLE = "bicycle"
    MOTORCYCLE = "motorcycle"


TRAFFIC_CLASSES: tuple[str, ...] = tuple(c.value for c in TrafficClass)
# The motor vehicles among them (the reporting views' ``vehicles`` column): all but people and bicycles.
VEHICLE_CLASSES: tuple[str, ...] = (TrafficClass.CAR.value, TrafficClass.TRUCK.value, TrafficClass.BUS.value,
                                    TrafficClass.MOTORCYCLE.value)

# Model label (normalised: lower case, single spaces) -> traffic class.
# COCO names plus the variants other label maps use (VOC "motorbike", "bike", ...).
_LABEL_TO_CLASS: dict[str, TrafficClass] = {
    "car": TrafficClass.CAR,
    "truck": TrafficClass.TRUCK,
    "bus": TrafficClass.BUS,
    "person": TrafficClass.PERSON,
    "pedestrian": TrafficClass.PERSON,
    "people": TrafficClass.PERSON,
    "bicycle": TrafficClass.BICYCLE,
    "bike": TrafficClass.BICYCLE,
    "cycle": TrafficClass.BICYCLE,
    "motorcycle": TrafficClass.MOTORCYCLE,
    "motorbike": TrafficClass.MOTORCYCLE,
    "motor bike": TrafficClass.MOTORCYCLE,
    "motor cycle": TrafficClass.MOTORCYCLE,
}


def normalise_label(label: str) -> str:
    """``"Motor_Bike"`` -> ``"motor bike"``: lower case, ``_``/``-`` as spaces, single spaces."""
    return " ".join(label.replace("_", " ").replace("-", " ").lower().split())


def traffic_class_for(label: str) -> TrafficClass | None:
    """The traffic class a model label means, or ``None`` if it is not a road user we count."""
    return _LABEL_TO_CLASS.get(normalise_label(label))


def zero_counts() -> dict[str, int]:
    """Counts with every traffic class present, all zero (an absent class is never guessed)."""
    return {c: 0 for c in TRAFFIC_CLASSES}
