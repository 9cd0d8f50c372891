"""The local HTTP API over the real service, tiny transformers model, database and object store."""

from __future__ import annotations

import io
import uuid

import pytest
from PIL import Image

from traffic_platform.domain.classes import TRAFFIC_CLASSES
from traffic_platform.storage import keys

from .. import images
from .conftest import http

NAME = "rue_de_la_loi_Brussels_Belgium_12-10-2022_10-51-38.jpg"


def street_jpeg(seed: int = 7) -> bytes:
    return images.jpeg_bytes(images.street_scene(640, 360, seed=seed))


def multipart(field: str, filename: str, data: bytes, content_type: str = "image/jpeg") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_accepted_image_is_answered_then_stored(platform):
    data = street_jpeg()
    with platform.http_server() as server:
        status, body, _ = http("POST", f"{server.url}/v1/images?filename={NAME}", data, {"Content-Type": "image/jpeg"})
        assert status == 201, body
        capture_id = body["capture_id"]
        assert len(capture_id) == 32
        assert body["metadata"]["address_display"] == "rue de la loi"
        assert body["metadata"]["captured_at"] == "2022-10-12T10:51:38"
        assert set(body["counts"]) == set(TRAFFIC_CLASSES)
        assert sum(body["counts"].values()) == len(body["detections"])
        assert body["model"]["name"].endswith(platform.detector.model_name.split("/")[-1])
        assert {"decode_ms", "quality_ms", "detect_ms", "handoff_ms", "total_ms"} <= set(body["timings_ms"])
        assert body["quality"] == {"verdict": "clear", "flags": []}
        for det in body["detections"]:
            assert set(det) == {"class", "label", "score", "box"}
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= 640 and 0 <= y1 <= y2 <= 360

        assert platform.worker.drain(timeout=30)
        status, stored, _ = http("GET", f"{server.url}/v1/captures/{capture_id}")
        assert status == 200 and stored["status"] == "stored"
        assert stored["counts"] == body["counts"]
        assert stored["detections"] == body["detections"]
        assert stored["quality"] == body["quality"]

        status, original, hdrs = http("GET", f"{server.url}/v1/captures/{capture_id}/image")
        assert status == 200 and original == data and hdrs["Content-Type"] == "image/jpeg"
        status, annotated, _ = http("GET", f"{server.url}/v1/captures/{capture_id}/annotated")
        assert status == 200 and Image.open(io.BytesIO(annotated)).size == (640, 360)
        assert Image.open(io.BytesIO(annotated)).format == "JPEG"


def test_degraded_image_is_accepted_with_its_flags_stored(platform):
    from PIL import ImageEnhance

    dusk = ImageEnhance.Brightness(images.street_scene(640, 360, seed=5)).enhance(0.35)  # mean grey < 64
    with platform.http_server() as server:
        status, body, _ = http("POST", f"{server.url}/v1/images?filename={NAME}", images.jpeg_bytes(dusk))
        assert status == 201, body
        assert body["quality"] == {"verdict": "degraded", "flags": ["low_light"]}
        assert platform.worker.drain(timeout=30)
        status, stored, _ = http("GET", f"{server.url}/v1/captures/{body['capture_id']}")
        assert status == 200 and stored["status"] == "stored"
        assert stored["quality"] == {"verdict": "degraded", "flags": ["low_light"]}
        assert stored["quality_flags"] == ["low_light"] and stored["quality_reasons"] == []


def test_same_upload_twice_is_one_capture(platform):
    data = street_jpeg(3)
    with platform.http_server() as server:
        ids = [http("POST", f"{server.url}/v1/images?filename={NAME}", data)[1]["capture_id"] for _ in range(2)]
        body, ctype = multipart("image", NAME, data)
        status, third, _ = http("POST", f"{server.url}/v1/images", body, {"Content-Type": ctype})
        assert status == 201
        ids.append(third["capture_id"])
        assert len(set(ids)) == 1
        assert platform.worker.drain(timeout=30)
    with platform.engine.connect() as conn:
        from sqlalchemy import func, select

        from traffic_platform.storage.tables import captures, detections

        assert conn.execute(select(func.count()).select_from(captures)).scalar_one() == 1
        n_det = conn.execute(select(func.count()).select_from(detections)).scalar_one()
    assert n_det == len(third["detections"])


def test_distorted_image_is_kept_and_refused_with_reasons(platform):
    data = images.jpeg_bytes(images.blurred(images.street_scene(640, 360), radius=8))
    with platform.http_server() as server:
        status, body, _ = http("POST", f"{server.url}/v1/images?filename={NAME}", data)
        assert status == 422
        assert body["error"]["code"] == "image_distorted"
        assert "blurred" in body["error"]["details"]["reasons"]
        capture_id = body["error"]["details"]["capture_id"]
        assert platform.worker.drain(timeout=30)
        status, stored, _ = http("GET", f"{server.url}/v1/captures/{capture_id}")
        assert status == 200 and stored["status"] == "distorted"
        assert "blurred" in stored["quality_reasons"]
        assert stored["quality"] == {"verdict": "unusable", "flags": []}
    key = keys.distorted_key(capture_id, stored_date(stored), "jpg")
    assert key.startswith("distorted/")
    assert platform.store.get(key) == data


def stored_date(stored):
    from datetime import datetime

    return datetime.fromisoformat(stored["metadata"]["captured_at"])


def test_truncated_jpeg_is_distorted_undecodable(platform):
    with platform.http_server() as server:
        status, body, _ = http("POST", f"{server.url}/v1/images?filename={NAME}", images.truncated_jpeg(images.street_scene(640, 360)))
        assert status == 422 and body["error"]["code"] == "image_undecodable"


@pytest.mark.parametrize(
    "name, data, status, code",
    [
        ("tiensevest_Leuven_Belgium_31-02-2022_10-51-38.jpg", b"x", 400, "file_name_impossible_date"),
        ("..%2Fetc_Leuven_Belgium_12-10-2022_10-51-38.jpg", b"x", 400, "file_name_path_component"),
        (NAME, images.random_bytes(), 415, "not_an_image"),
        (NAME, b"", 415, "empty_body"),
    ],
)
def test_bad_input_gets_a_clear_error_and_the_server_survives(platform, name, data, status, code):
    with platform.http_server() as server:
        got, body, _ = http("POST", f"{server.url}/v1/images?filename={name}", data)
        assert got == status and body["error"]["code"] == code and body["error"]["message"]
        assert http("GET", f"{server.url}/healthz")[0] == 200


def test_missing_file_name_and_unknown_routes(platform):
    with platform.http_server() as server:
        status, body, _ = http("POST", f"{server.url}/v1/images", b"data")
        assert status == 400 and body["error"]["code"] == "missing_file_name"
        status, body, _ = http("GET", f"{server.url}/v1/captures/{'0' * 32}")
        assert status == 404 and body["error"]["code"] == "capture_not_found"
        status, body, _ = http("GET", f"{server.url}/v1/captures/not-an-id")
        assert status == 404
        status, body, hdrs = http("GET", f"{server.url}/v1/images")
        assert status == 405 and hdrs["Allow"] == "POST"


def test_upload_over_the_limit_is_refused_before_reading(platform_settings, tiny_detector):
    import dataclasses

    from traffic_platform.ingest.local import LocalPlatform

    settings = dataclasses.replace(platform_settings, max_upload_bytes=10_000)
    with LocalPlatform(settings, detector=tiny_detector) as p, p.http_server() as server:
        status, body, _ = http("POST", f"{server.url}/v1/images?filename={NAME}", street_jpeg() + b"\0" * 20_000)
        assert status == 413 and body["error"]["code"] == "upload_too_large"


def test_api_key_is_required_when_configured(platform_settings, tiny_detector):
    import dataclasses

    from traffic_platform.ingest.local import LocalPlatform

    settings = dataclasses.replace(platform_settings, api_key="s3cret")
    with LocalPlatform(settings, detector=tiny_detector) as p, p.http_server() as server:
        url = f"{server.url}/v1/images?filename={NAME}"
        assert http("POST", url, street_jpeg())[1]["error"]["code"] == "unauthorized"
        status, body, _ = http("POST", url, street_jpeg(), {"x-api-key": "wrong"})
        assert status == 403 and body["error"]["code"] == "forbidden"
        assert http("POST", url, street_jpeg(), {"x-api-key": "s3cret"})[0] == 201
        assert http("GET", f"{server.url}/healthz")[0] == 200  # probes stay open


def test_readiness_and_metrics(platform):
    with platform.http_server() as server:
        status, body, _ = http("GET", f"{server.url}/readyz")
        assert status == 200 and body["ready"] is True
        assert set(body["checks"]) == {"database", "object_store", "model", "spool"}
        http("POST", f"{server.url}/v1/images?filename=bad.jpg", b"x")
        http("POST", f"{server.url}/v1/images?filename={NAME}", street_jpeg())
        status, text, _ = http("GET", f"{server.url}/metrics")
        text = text.decode()
        assert 'traffic_requests_total{route="images",status="400",code="file_name_missing_parts"} 1' in text
        assert 'traffic_requests_total{route="images",status="201",code="ok"} 1' in text
        assert "traffic_spool_pending" in text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # one database is enough to show a failing probe
def test_readiness_fails_when_the_database_is_gone(platform_settings, tiny_detector, tmp_path):

    from traffic_platform.ingest.local import LocalPlatform

    with LocalPlatform(platform_settings, detector=tiny_detector) as p:
        p.repo.engine.dispose()
        p.repo.engine = __import__("sqlalchemy").create_engine("mysql+pymysql://nobody@127.0.0.1:1/none")
        with p.http_server() as server:
            status, body, _ = http("GET", f"{server.url}/readyz")
    assert status == 503 and body["checks"]["database"]["ok"] is False
