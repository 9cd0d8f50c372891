import pytest

from traffic_platform.domain.classes import (
    TRAFFIC_CLASSES,
    TrafficClass,
    traffic_class_for,
    zero_counts,
)
from traffic_platform.domain.detections import (
    ClassThresholds,
    Detection,
    clip_box,
    count_by_class,
    to_traffic_detections,
)


@pytest.mark.parametrize(
    "label, expected",
    [
        ("car", "car"),
        ("Car", "car"),
        ("truck", "truck"),
        ("bus", "bus"),
        ("person", "person"),
        ("bicycle", "bicycle"),
        ("motorcycle", "motorcycle"),
        ("motorbike", "motorcycle"),
        ("Motor_Bike", "motorcycle"),
        ("dog", None),
        ("traffic light", None),
        ("N/A", None),
    ],
)
def test_label_mapping(label, expected):
    result = traffic_class_for(label)
    assert (result.value if result else None) == expected


def test_six_classes_zero_filled():
    assert TRAFFIC_CLASSES == ("car", "truck", "bus", "person", "bicycle", "motorcycle")
    assert zero_counts() == dict.fromkeys(TRAFFIC_CLASSES, 0)


def test_to_traffic_detections_maps_filters_and_clips():
    dets = to_traffic_detections(
        labels=["car", "dog", "motorbike", "person", "person"],
        scores=[0.9, 0.99, 0.55, 0.65, 0.2],
        boxes=[[-5, 10, 50, 60], [0, 0, 1, 1], [10, 10, 20, 20], [90, 40, 130, 120], [0, 0, 5, 5]],
        width=100,
        height=80,
        thresholds=ClassThresholds(default=0.5, per_class={"person": 0.6}),
    )
    assert [(d.traffic_class, d.label) for d in dets] == [
        (TrafficClass.CAR, "car"),
        (TrafficClass.MOTORCYCLE, "motorbike"),
        (TrafficClass.PERSON, "person"),
    ]
    assert dets[0].box == (0.0, 10.0, 50.0, 60.0)
    assert dets[2].box == (90.0, 40.0, 100.0, 80.0)
    assert count_by_class(dets) == {"car": 1, "truck": 0, "bus": 0, "person": 1, "bicycle": 0, "motorcycle": 1}


def test_per_class_threshold_can_be_lower_than_default():
    t = ClassThresholds(default=0.7, per_class={"bicycle": 0.3})
    assert t.minimum == 0.3
    dets = to_traffic_detections(["bicycle", "car"], [0.4, 0.4], [[0, 0, 1, 1]] * 2, width=10, height=10, thresholds=t)
    assert [d.traffic_class.value for d in dets] == ["bicycle"]


def test_detection_json_shape_round_trips():
    d = Detection(TrafficClass.BUS, "bus", 0.912345678, (1.0, 2.0, 30.5, 40.25))
    data = d.to_dict()
    assert data == {"class": "bus", "label": "bus", "score": 0.912346, "box": [1.0, 2.0, 30.5, 40.25]}
    assert Detection.from_dict(data).box == d.box


@pytest.mark.parametrize("score", [-0.1, 1.5, float("nan")])
def test_detection_rejects_bad_scores(score):
    with pytest.raises(ValueError):
        Detection(TrafficClass.CAR, "car", score, (0, 0, 1, 1))


def test_detection_rejects_inverted_box():
    with pytest.raises(ValueError):
        Detection(TrafficClass.CAR, "car", 0.5, (10, 0, 1, 1))


def test_clip_box_orders_corners():
    assert clip_box([50, 50, -10, 200], 40, 100) == (0.0, 50.0, 40.0, 100.0)
