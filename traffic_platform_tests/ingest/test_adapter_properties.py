"""Property-based: random file names and random or mutated image bytes through both adapters
(the HTTP server and the ingest Lambda handler, each over an injected :class:`Api`) only ever
get a documented status (the README's error table, or 201) with a JSON error body naming a
documented code; never a 500, never an exception."""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traffic_platform.config import Settings
from traffic_platform.ingest.api import Api
from traffic_platform.ingest.http_server import ApiServer
from traffic_platform.ingest.lambda_handlers import ingest_handler
from traffic_platform.ingest.service import IngestService

from .. import images
from .conftest import http

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLES = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def documented_errors() -> dict[int, set[str]]:
    """status -> codes, from the README's error table (``| 400 | `a`, `b` |``)."""
    text = README.read_text(encoding="utf-8")
    table = text.split("| status | codes |", 1)[1].split("\n\n", 1)[0]
    out: dict[int, set[str]] = {}
    for line in table.splitlines():
        cells = line.split("|")
        if len(cells) < 3 or not re.search(r"\d{3}", cells[1]):
            continue
        codes = set(re.findall(r"`([a-z_]+)`", cells[2]))
        for status in re.findall(r"\d{3}", cells[1]):
            out.setdefault(int(status), set()).update(codes)
    return out


DOCUMENTED = documented_errors()


class _ListHandoff:
    def __init__(self):
        self.jobs = []

    def submit(self, job) -> None:
        self.jobs.append(job)


@pytest.fixture(scope="module")
def api(tiny_detector, tmp_path_factory) -> Api:
    home = tmp_path_factory.mktemp("props")
    service = IngestService(Settings(home=home, max_upload_bytes=64_000), tiny_detector, _ListHandoff())
    yield Api(service)
    service.close()


@pytest.fixture(scope="module")
def server(api):
    with ApiServer(api, max_body=64_000) as srv:
        yield srv


def _base_images() -> list[bytes]:
    scene = images.street_scene(200, 150, seed=3)
    return [images.jpeg_bytes(scene), images.png_bytes(scene)]


BASES = _base_images()
NAME_PARTS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


@st.composite
def file_names(draw) -> str:
    if draw(st.booleans()):
        return draw(st.text(max_size=60))
    day, month = draw(st.integers(0, 40)), draw(st.integers(0, 14))
    hh, mm, ss = draw(st.integers(0, 30)), draw(st.integers(0, 70)), draw(st.integers(0, 70))
    ext = draw(st.sampled_from(["jpg", "jpeg", "png", "JPG", "gif", ""]))
    parts = [draw(NAME_PARTS) or "street", draw(st.sampled_from(["Leuven", "Brussels", draw(NAME_PARTS)])), draw(st.sampled_from(["Belgium", draw(NAME_PARTS)]))]
    return "_".join([*parts, f"{day:02d}-{month:02d}-2022", f"{hh:02d}-{mm:02d}-{ss:02d}"]) + (f".{ext}" if ext else "")


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["random", "mutated", "truncated", "intact"]))
    if kind == "random":
        return draw(st.binary(max_size=3000))
    data = bytearray(draw(st.sampled_from(BASES)))
    if kind == "truncated":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if kind == "mutated":
        for _ in range(draw(st.integers(1, 8))):
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] = draw(st.integers(0, 255))
    return bytes(data)


def check(status: int, body: bytes | dict) -> None:
    if status == 201:
        return
    assert status in DOCUMENTED, f"undocumented status {status}: {body!r}"[:500]
    payload = body if isinstance(body, dict) else json.loads(body)
    error = payload["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert error["code"] in DOCUMENTED[status], f"{status} {error['code']} is not in the README's table"


@EXAMPLES
@given(name=file_names(), data=bodies())
def test_http_adapter_answers_only_documented_errors(server, name, data):
    status, body, headers = http("POST", f"{server.url}/v1/images?filename={urllib.parse.quote(name, safe='')}", data, {"Content-Type": "image/jpeg"})
    if status != 201:
        assert headers["Content-Type"].startswith("application/json")
    check(status, body)


@EXAMPLES
@given(name=file_names(), data=bodies(), multipart=st.booleans())
def test_lambda_adapter_answers_only_documented_errors(api, name, data, multipart):
    headers = {"content-type": "image/jpeg"}
    query = {"filename": name}
    if multipart:
        boundary = "b0undary"
        data = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + data + f"\r\n--{boundary}--\r\n".encode()
        )  # fmt: skip
        headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    event = {
        "version": "2.0", "rawPath": "/v1/images", "headers": headers, "queryStringParameters": query,
        "requestContext": {"http": {"method": "POST", "path": "/v1/images"}, "stage": "$default"},
        "body": base64.b64encode(data).decode(), "isBase64Encoded": True,
    }  # fmt: skip
    result = ingest_handler(event, api=api)
    if result["statusCode"] != 201:
        assert result["headers"]["Content-Type"] == "application/json"
    check(result["statusCode"], result["body"].encode())
