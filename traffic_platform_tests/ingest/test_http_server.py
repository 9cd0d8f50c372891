"""The HTTP server defends itself: raw-socket clients on 127.0.0.1 for each malformed case."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from traffic_platform.config import Settings
from traffic_platform.domain.errors import ServiceUnavailable
from traffic_platform.ingest.api import Api, Request
from traffic_platform.ingest.http_server import ApiServer, AsgiAdapter
from traffic_platform.ingest.local import LocalPlatform
from traffic_platform.ingest.service import PixelBudget

from .. import images
from .conftest import http

NAME = "rue_de_la_loi_Brussels_Belgium_12-10-2022_10-51-38.jpg"
PATH = f"/v1/images?filename={NAME}"


@pytest.fixture
def lp(tmp_path: Path, tiny_detector, tiny_detr_dir: Path):
    """One platform on SQLite and a directory store (the server, not the storage, is under test)."""
    settings = Settings(home=tmp_path, detector=f"local:{tiny_detr_dir}", detector_runtime="torch", max_upload_bytes=200_000)
    with LocalPlatform(settings, detector=tiny_detector) as p:
        yield p


def connect(server: ApiServer) -> socket.socket:
    host, port = server.server_address[:2]
    return socket.create_connection((host, port), timeout=10)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response (Content-Length framed) from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def json_error(body: bytes) -> dict:
    payload = json.loads(body)
    assert set(payload["error"]) >= {"code", "message"} and payload["error"]["message"]
    return payload["error"]


def raw_request(server: ApiServer, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(server) as sock:
        sock.sendall(raw)
        return read_response(sock)


def nothing_stored(p: LocalPlatform) -> bool:
    from sqlalchemy import func, select

    from traffic_platform.storage.tables import captures

    with p.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(captures)).scalar_one()
    return rows == 0 and p.spool.depth() == 0 and p.spool.dead_count() == 0


def street_jpeg() -> bytes:
    return images.jpeg_bytes(images.street_scene(640, 360, seed=5))


def test_slowloris_holds_no_thread_and_is_cut_at_the_header_timeout(lp):
    with ApiServer(lp.api(), header_timeout_s=1.5, max_body=lp.settings.max_upload_bytes) as server:
        loris = []
        for _ in range(200):
            s = connect(server)
            s.sendall(b"POST /v1/images HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            loris.append(s)
        started = time.monotonic()
        # A normal upload is answered while 200 half-sent requests are open.
        status, body, _ = http("POST", f"{server.url}{PATH}", street_jpeg())
        assert status == 201, body
        assert time.monotonic() - started < 1.5
        # A dripping client is cut too: bytes keep arriving, the headers never complete.
        drip = connect(server)
        drip.sendall(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(6):
            time.sleep(0.3)
            try:
                drip.sendall(b"X")
            except OSError:
                break
        for s in [*loris[:5], drip]:
            status, headers, raw = read_response(s)
            assert status == 408 and json_error(raw)["code"] == "header_timeout"
            assert headers["connection"] == "close"
        for s in loris:
            s.settimeout(5)
            try:
                while s.recv(65536):
                    pass  # the 408, then EOF
            except ConnectionResetError:
                pass
            s.close()
        drip.close()
        assert http("GET", f"{server.url}/healthz")[0] == 200


def test_the_worker_is_woken_once_the_answer_is_sent_not_during_the_request(lp):
    """Issue 19: a worker woken inside the hand-off took the GIL and a core while the answer
    was encoded and sent; now the server wakes it after the answer went to the transport."""
    events: list[str] = []
    real_notify = lp.worker.notify

    def notify() -> None:
        events.append("worker woken")
        real_notify()

    lp.worker.notify = notify  # before the Api is built: it takes the worker's notify
    adapter = AsgiAdapter(lp.api(), max_body=lp.settings.max_upload_bytes, max_concurrency=4, body_timeout_s=5)
    data = street_jpeg()
    scope = {"type": "http", "method": "POST", "path": "/v1/images", "raw_path": b"/v1/images",
             "query_string": f"filename={NAME}".encode(),
             "headers": [(b"content-type", b"image/jpeg"), (b"content-length", str(len(data)).encode())]}
    answer: dict = {}

    async def receive() -> dict:
        return {"type": "http.request", "body": data, "more_body": False}

    async def send(message: dict) -> None:
        events.append(message["type"])
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        else:
            answer["body"] = message["body"]

    asyncio.run(adapter(scope, receive, send))
    adapter.pool.shutdown()
    assert answer["status"] == 201, answer
    assert events == ["http.response.start", "http.response.body", "worker woken"]
    assert lp.worker.drain(timeout=10) and lp.repo.capture_exists(json.loads(answer["body"])["capture_id"])


def test_idle_connection_is_closed_without_an_answer(lp):
    with ApiServer(lp.api(), header_timeout_s=0.5) as server, connect(server) as sock:
        sock.settimeout(5)
        assert sock.recv(100) == b""  # EOF: never sent a byte, gets none


@pytest.mark.parametrize("value", ["-1", "abc", "12, 13", "1e3"])
def test_bad_content_length_gets_400_json(lp, value):
    with ApiServer(lp.api()) as server:
        status, headers, body = raw_request(server, f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\nabc".encode())
        assert status == 400 and json_error(body)["code"] == "bad_content_length"
        assert headers["content-type"] == "application/json"
        assert nothing_stored(lp)


@pytest.mark.parametrize(
    "raw, code",
    [
        (b"POST /v1/images HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "bad_transfer_encoding"),
        (b"NOT HTTP AT ALL\r\n\r\n", "bad_http_request"),
        (b"GET /healthz HTTP/1.1\r\nBad Header Without Colon\r\n\r\n", "bad_http_request"),
    ],
)
def test_malformed_framing_gets_400_json(lp, raw, code):
    with ApiServer(lp.api()) as server:
        status, _, body = raw_request(server, raw)
        assert status == 400 and json_error(body)["code"] == code


def test_huge_headers_get_431(lp):
    with ApiServer(lp.api()) as server:
        status, _, body = raw_request(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        assert status == 431 and json_error(body)["code"] == "headers_too_large"


def chunked(data: bytes, size: int = 7000) -> bytes:
    out = b""
    for i in range(0, len(data), size):
        piece = data[i : i + size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def test_chunked_upload_is_one_body_and_the_connection_stays_usable(lp):
    data = street_jpeg()
    with ApiServer(lp.api(), max_body=lp.settings.max_upload_bytes) as server, connect(server) as sock:
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: image/jpeg\r\n\r\n".encode() + chunked(data))
        status, _, body = read_response(sock)
        open("/tmp/wake.log", "a").write(f"{time.time():.4f} read {status} {len(body)}\n")
        assert status == 201, body
        assert json.loads(body)["width"] == 640
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # the chunks were not parsed as a request
        assert read_response(sock)[0] == 200


def test_chunked_upload_over_the_limit_gets_413(lp):
    with ApiServer(lp.api(), max_body=10_000) as server:
        status, headers, body = raw_request(server, f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + chunked(b"\xff" * 30_000))
        assert status == 413 and json_error(body)["code"] == "upload_too_large"
        assert headers["connection"] == "close"


def test_short_body_stores_nothing(lp):
    data = street_jpeg()
    with ApiServer(lp.api(), body_timeout_s=1.0, max_body=lp.settings.max_upload_bytes) as server:
        head = f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        with connect(server) as sock:  # the client closes half-way
            sock.sendall(head + data[: len(data) // 2])
        with connect(server) as sock:  # the client stops sending: 408 at the body timeout
            sock.sendall(head + data[: len(data) // 2])
            status, _, body = read_response(sock)
            assert status == 408 and json_error(body)["code"] == "body_timeout"
        time.sleep(0.3)
        assert lp.worker.drain(timeout=10)
        assert nothing_stored(lp)
        assert http("POST", f"{server.url}{PATH}", data)[0] == 201  # the full upload still works


def test_upload_over_the_limit_gets_a_readable_413_before_its_body(lp):
    with ApiServer(lp.api(), max_body=10_000) as server:
        with connect(server) as sock:  # headers only: the answer comes without waiting for the body
            sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 30000000\r\n\r\n".encode())
            status, headers, body = read_response(sock)
            assert status == 413 and json_error(body)["code"] == "upload_too_large"
            assert headers["connection"] == "close"
        with connect(server) as sock:  # a client that sends all 3 MB before reading still reads the 413
            payload = b"\xff" * 3_000_000
            sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
            status, _, body = read_response(sock)
            assert status == 413 and json_error(body)["code"] == "upload_too_large"
    assert nothing_stored(lp)


class _BlockingService:
    """An ingest service that waits until released (to fill the server's request slots)."""

    def __init__(self):
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def ingest(self, file_name, data, content_type=None):
        self.entered.release()
        self.release.wait(30)
        raise ServiceUnavailable("released")


def test_over_concurrency_gets_503_with_retry_after():
    service = _BlockingService()
    with ApiServer(Api(service), max_concurrency=2) as server:
        results = []
        threads = [threading.Thread(target=lambda: results.append(http("POST", f"{server.url}{PATH}", b"x"))) for _ in range(2)]
        for t in threads:
            t.start()
        for _ in range(2):
            assert service.entered.acquire(timeout=10)
        status, headers, body = raw_request(server, f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx".encode())
        assert status == 503 and json_error(body)["code"] == "server_busy"
        assert int(headers["retry-after"]) >= 1
        assert http("GET", f"{server.url}/healthz")[0] == 200  # probes are never refused
        metrics = http("GET", f"{server.url}/metrics")[1].decode()
        assert 'traffic_requests_total{route="images",status="503",code="server_busy"} 1' in metrics
        service.release.set()
        for t in threads:
            t.join(10)
        assert [r[0] for r in results] == [503, 503] and all(r[2]["Retry-After"] for r in results)


def test_over_the_connection_cap_gets_503_with_retry_after(lp):
    with ApiServer(lp.api(), max_connections=3) as server:
        held = [connect(server) for _ in range(3)]
        time.sleep(0.2)
        status, headers, body = raw_request(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 503 and json_error(body)["code"] == "server_busy" and headers["retry-after"]
        for s in held:
            s.close()


def test_decode_budget_refuses_with_503_and_retry_after(lp):
    data = street_jpeg()
    api = lp.api()
    lp.service.decode_budget = PixelBudget(1_000_000, wait_s=0.2)
    with lp.service.decode_budget.hold(900_000):  # another image is being decoded
        response = api.handle(Request("POST", "/v1/images", {"filename": NAME}, {}, data))
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert json_error(response.body)["code"] == "decode_budget_exhausted"
    assert lp.service.decode_budget.in_use == 0
    assert api.handle(Request("POST", "/v1/images", {"filename": NAME}, {}, data)).status == 201


def test_pixel_budget_admits_up_to_its_size_and_one_oversized_image_alone():
    budget = PixelBudget(100, wait_s=0.05)
    with budget.hold(60), budget.hold(40):
        with pytest.raises(ServiceUnavailable):
            with budget.hold(1):
                pass
    with budget.hold(10_000):  # larger than the budget: runs alone
        assert budget.in_use == 100
    assert budget.in_use == 0


@pytest.mark.parametrize("size", [(20000, 1), (1, 20000), (8000, 2)])
def test_absurd_aspect_ratio_is_a_422_not_a_500(lp, size):
    w, h = size
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((h, w, 3)) * 255).astype("uint8")).save(buf, "PNG")
    name = NAME.replace(".jpg", ".png")
    with ApiServer(lp.api(), max_body=lp.settings.max_upload_bytes) as server:
        status, body, _ = http("POST", f"{server.url}/v1/images?filename={name}", buf.getvalue())
    assert status == 422 and body["error"]["code"] == "image_distorted"
    assert "too_small" in body["error"]["details"]["reasons"]


def test_server_and_budget_settings_come_from_the_environment():
    from traffic_platform.domain.errors import ConfigurationError

    s = Settings.from_env({
        "TRAFFIC_DECODE_BUDGET_PIXELS": "5000000", "TRAFFIC_HTTP_MAX_CONCURRENCY": "4",
        "TRAFFIC_HTTP_HEADER_TIMEOUT_S": "2.5", "TRAFFIC_HTTP_BODY_TIMEOUT_S": "30",
    })  # fmt: skip
    assert (s.decode_budget_pixels, s.http_max_concurrency, s.http_header_timeout_s, s.http_body_timeout_s) == (5_000_000, 4, 2.5, 30.0)
    with pytest.raises(ConfigurationError, match="TRAFFIC_HTTP_MAX_CONCURRENCY"):
        Settings.from_env({"TRAFFIC_HTTP_MAX_CONCURRENCY": "0"})
    with pytest.raises(ConfigurationError, match="TRAFFIC_DECODE_BUDGET_PIXELS"):
        Settings.from_env({"TRAFFIC_DECODE_BUDGET_PIXELS": "lots"})
