"""Structured logs: one line per image with its timings; JSON lines on Lambda."""

from __future__ import annotations

import io
import json
import logging

import pytest

from traffic_platform.config import Settings
from traffic_platform.ingest import lambda_handlers
from traffic_platform.ingest.local import LocalPlatform
from traffic_platform.logs import JsonFormatter, configure_logging

from .. import images

NAME = "tiensevest_Leuven_Belgium_12-10-2022_10-{:02d}-00.jpg"


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    handler = configure_logging(json_lines=True, level="INFO", stream=stream)
    yield stream
    logging.getLogger().removeHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)


def _events(stream: io.StringIO, event: str) -> list[dict]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line.get("event") == event]


def test_one_json_line_per_image_with_its_timings(tmp_path, tiny_detector, log_stream):
    settings = Settings(home=tmp_path)
    with LocalPlatform(settings, detector=tiny_detector) as platform:
        assert platform.service is platform.service  # one service (and thread pool) per platform
        outcomes = platform.ingest_batch(
            [
                (NAME.format(1), images.jpeg_bytes(images.street_scene(320, 240)), 1),
                (NAME.format(2), images.jpeg_bytes(images.uniform_grey()), 2),
                ("no-metadata.jpg", images.jpeg_bytes(images.street_scene(320, 240)), 3),
            ],
            wait_s=60,
        )
    assert [o.status for o in outcomes] == ["accepted", "distorted", "rejected"]
    lines = _events(log_stream, "ingest")
    assert [(line["outcome"], line["file_name"]) for line in lines] == [
        ("accepted", NAME.format(1)), ("distorted", NAME.format(2)), ("rejected", "no-metadata.jpg"),
    ]  # fmt: skip
    accepted, distorted, rejected = lines
    assert accepted["capture_id"] == outcomes[0].capture_id and accepted["level"] == "INFO"
    assert {"decode_ms", "detect_ms", "quality_ms", "handoff_ms", "total_ms"} <= set(accepted["timings_ms"])
    assert accepted["timings_ms"]["total_ms"] >= accepted["timings_ms"]["detect_ms"] > 0
    assert set(accepted["counts"]) == {"car", "truck", "bus", "person", "bicycle", "motorcycle"}
    assert distorted["capture_id"] == outcomes[1].capture_id and distorted["code"] == "image_distorted"
    assert "total_ms" in distorted["timings_ms"]
    assert rejected["code"].startswith("file_name") or rejected["http_status"] == 400
    stored = _events(log_stream, "persist")
    assert sorted(line["capture_id"] for line in stored) == sorted([outcomes[0].capture_id, outcomes[1].capture_id])
    assert all(line["persist_ms"] > 0 and line["new_capture"] is True for line in stored)


def test_key_value_lines_for_a_terminal():
    stream = io.StringIO()
    handler = configure_logging(json_lines=False, level="INFO", stream=stream)
    try:
        logging.getLogger("traffic_platform.ingest").info(
            "accepted %s", "x.jpg", extra={"capture_id": "ab", "timings_ms": {"total_ms": 12.5}}
        )
    finally:
        logging.getLogger().removeHandler(handler)
    line = stream.getvalue().strip()
    assert line.endswith('accepted x.jpg capture_id=ab timings_ms={"total_ms":12.5}'), line


def test_lambda_logs_json_lines_only(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAFFIC_HOME", str(tmp_path))
    root = logging.getLogger()
    before = list(root.handlers)
    lambda_handlers._settings.cache_clear()
    try:
        lambda_handlers._settings()
        ours = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]
        assert len(ours) == 1 and root.handlers == ours  # the runtime's plain handler is gone
    finally:
        lambda_handlers._settings.cache_clear()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in before:
            root.addHandler(handler)
        root.setLevel(logging.WARNING)
