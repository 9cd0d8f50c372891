"""The capture record: validation and the one serialisation the hand-off uses."""

from __future__ import annotations

import json

import pytest

from traffic_platform.domain.captures import CaptureRecord, capture_id_for
from traffic_platform.domain.classes import TrafficClass
from traffic_platform.domain.detections import Detection

CAR = Detection(TrafficClass.CAR, "car", 0.9, (1.0, 2.0, 30.0, 40.0))
PERSON = Detection(TrafficClass.PERSON, "person", 0.7, (5.0, 5.0, 10.0, 20.0))


def test_capture_id_depends_on_name_and_bytes_only():
    a = capture_id_for("x_Leuven_Belgium_12-10-2022_10-51-38.jpg", "ab" * 32)
    assert a == capture_id_for("x_Leuven_Belgium_12-10-2022_10-51-38.jpg", "ab" * 32)
    assert len(a) == 32 and int(a, 16) >= 0
    assert a != capture_id_for("y_Leuven_Belgium_12-10-2022_10-51-38.jpg", "ab" * 32)
    assert a != capture_id_for("x_Leuven_Belgium_12-10-2022_10-51-38.jpg", "cd" * 32)


def test_record_serialises_for_the_hand_off(make_record):
    record = make_record(
        "rue_de_la_loi_Liège_Belgium_12-10-2022_10-51-38.png",
        detections=[CAR, PERSON],
        quality_reasons=["x"],
        image_key="images/2022/10/12/x.png",
    )
    header = json.loads(json.dumps(record.header()))  # what a spool file or SQS message holds
    assert CaptureRecord.from_header(header) == record
    assert header["file_name"] == record.metadata.file_name and "metadata" not in header
    with pytest.raises(ValueError, match="version"):
        CaptureRecord.from_header({**header, "v": 99})
    with pytest.raises(ValueError, match="malformed"):
        CaptureRecord.from_header({k: v for k, v in header.items() if k != "status"})


def test_record_validation(make_record):
    with pytest.raises(ValueError, match="status"):
        make_record(status="maybe")
    with pytest.raises(ValueError, match="detections need"):
        make_record(model_name=None, model_version=None, detections=[CAR])




def test_quality_flags_travel_in_the_header_and_old_headers_load(make_record):
    foggy = make_record(quality_flags=["fog", "low_light"])
    assert foggy.quality_verdict == "degraded" and make_record().quality_verdict == "clear"
    header = json.loads(json.dumps(foggy.header()))
    assert header["quality_flags"] == ["fog", "low_light"]
    assert CaptureRecord.from_header(header) == foggy
    old = {k: v for k, v in header.items() if k != "quality_flags"}  # a header from before the field
    assert CaptureRecord.from_header(old).quality_flags == []
    assert CaptureRecord.from_header(old).quality_verdict == "clear"
    distorted = make_record(status="distorted", model_name=None, model_version=None, quality_reasons=["blurred"])
    assert distorted.quality_verdict == "unusable"
    with pytest.raises(ValueError, match="flags"):
        make_record(status="distorted", model_name=None, model_version=None, quality_flags=["fog"])


def test_content_type_is_a_field_defaulting_to_the_name(make_record):
    png_named_jpg = make_record(content_type="image/png")
    assert png_named_jpg.metadata.content_type == "image/jpeg" and png_named_jpg.extension == "png"
    header = json.loads(json.dumps(png_named_jpg.header()))
    assert header["content_type"] == "image/png"
    assert CaptureRecord.from_header(header).content_type == "image/png"
    old = {k: v for k, v in header.items() if k != "content_type"}  # a header from before the field
    assert CaptureRecord.from_header(old).content_type == "image/jpeg"
    assert make_record().content_type == "image/jpeg" and make_record().extension == "jpg"
    with pytest.raises(ValueError, match="content_type"):
        make_record(content_type="image/gif")
