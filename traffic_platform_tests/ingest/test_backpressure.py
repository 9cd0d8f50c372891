"""Back-pressure: answers never run ahead of persistence by more than TRAFFIC_SPOOL_MAX_PENDING."""

from __future__ import annotations

import threading
import time

import pytest

from traffic_platform.config import Settings
from traffic_platform.domain.errors import ServiceUnavailable
from traffic_platform.ingest.backpressure import SpoolBound
from traffic_platform.ingest.local import LocalPlatform
from traffic_platform.ingest.spool import Spool
from traffic_platform_tests import images

from .conftest import http
from .jobs_factory import make_job


def _name(i: int) -> str:
    return f"tiensevest_Leuven_Belgium_12-10-2022_11-{i // 60:02d}-{i % 60:02d}.jpg"


def test_a_request_waits_for_room_and_is_admitted_once_the_worker_made_it(tmp_path):
    spool = Spool(tmp_path / "spool")
    jobs = [make_job(i) for i in range(4)]
    for job in jobs:
        spool.submit(job)
    bound = SpoolBound(spool, max_pending=4, wait_s=5.0, poll_s=0.01)
    stored = threading.Timer(0.3, lambda: spool.done(jobs[0].capture_id))
    stored.start()
    began = time.monotonic()
    bound.admit()
    assert 0.25 < time.monotonic() - began < 3.0 and bound.waited == 1 and bound.refused == 0
    assert bound.pending == 3


def test_a_full_spool_refuses_with_spool_full_after_the_wait(tmp_path):
    spool = Spool(tmp_path / "spool")
    for i in range(3):
        spool.submit(make_job(i))
    bound = SpoolBound(spool, max_pending=3, wait_s=0.2, poll_s=0.01)
    with pytest.raises(ServiceUnavailable) as caught:
        bound.admit()
    error = caught.value
    assert error.code == "spool_full" and error.http_status == 503
    assert error.details == {"retry_after_s": 1, "pending": 3, "max_pending": 3}
    assert "TRAFFIC_SPOOL_MAX_PENDING" in error.message and bound.refused == 1


def test_below_half_the_bound_admission_does_not_read_the_spool(tmp_path, monkeypatch):
    spool = Spool(tmp_path / "spool")
    stored = [0]
    bound = SpoolBound(spool, max_pending=8, stored_count=lambda: stored[0])
    monkeypatch.setattr(spool, "depth", lambda: pytest.fail("counted the directory below half the bound"))
    for _ in range(3):
        bound.admit()
        bound.submitted()
    stored[0] = 2  # the in-process worker stored two of them
    assert bound.pending == 1
    bound.admit()


def test_no_bound_admits_everything(tmp_path):
    spool = Spool(tmp_path / "spool")
    for i in range(5):
        spool.submit(make_job(i))
    bound = SpoolBound(spool, max_pending=0, wait_s=0.0)
    bound.admit()  # never raises
    assert bound.refused == 0


def _post(server, i: int, data: bytes):
    return http("POST", f"{server.url}/v1/images?filename={_name(i)}", data, {"Content-Type": "image/jpeg"})


def test_serve_holds_requests_while_the_worker_is_behind_and_admits_them_when_it_caught_up(tmp_path, tiny_detector):
    """Over HTTP with the worker running but slow (it succeeds, it does not keep up): the bound's
    worth of images is accepted, the next waits and is refused 503 spool_full + Retry-After while
    nothing gets stored, and is admitted once the worker stored some. Nothing accepted is lost."""
    settings = Settings(home=tmp_path, spool_max_pending=3)
    data = [images.jpeg_bytes(images.street_scene(320, 240, seed=i), quality=80) for i in range(6)]
    with LocalPlatform(settings, detector=tiny_detector) as platform, platform.http_server() as server:
        platform.bound.wait_s = 0.5
        release = threading.Event()
        persist_many = platform.worker.persist_many

        def behind(jobs, map):  # a worker that takes its time (CPU-bound behind the answers)
            release.wait(30)
            return persist_many(jobs, map)

        platform.worker.persist_many = behind
        for i in range(3):
            status, body, _ = _post(server, i, data[i])
            assert status == 201, body
        status, body, headers = _post(server, 3, data[3])
        assert status == 503 and body["error"]["code"] == "spool_full" and headers.get("Retry-After") == "1"
        assert body["error"]["details"] == {"retry_after_s": 1, "pending": 3, "max_pending": 3}
        assert platform.spool.depth() == 3  # the refused image was never handed off

        platform.bound.wait_s = 20.0
        threading.Timer(0.3, release.set).start()  # the worker catches up while the next request waits
        status, body, _ = _post(server, 4, data[4])
        assert status == 201, body
        assert platform.bound.waited >= 1 and platform.bound.refused == 1
        assert platform.worker.drain(timeout=30)
        assert platform.repo.get_capture(body["capture_id"]) is not None


def test_an_outage_is_buffered_by_the_spool_not_refused(tmp_path, tiny_detector):
    """While the store is down the worker is blocked, not behind: the spool keeps accepting past
    the bound (it is the outage buffer), and everything is stored once the store is back."""
    settings = Settings(home=tmp_path, spool_max_pending=2, persist_backoff_cap_s=0.2)
    data = [images.jpeg_bytes(images.street_scene(320, 240, seed=i), quality=80) for i in range(5)]
    with LocalPlatform(settings, detector=tiny_detector) as platform, platform.http_server() as server:
        platform.bound.wait_s = 0.5

        def down(*args, **kwargs):
            raise ConnectionRefusedError(111, "Connection refused")

        platform.store.put = down
        ids = []
        for i in range(5):
            status, body, _ = _post(server, i, data[i])
            assert status == 201, body
            ids.append(body["capture_id"])
            if i == 0:  # let the worker meet the outage before the spool fills
                deadline = time.monotonic() + 10
                while platform.worker.transient_streak == 0 and time.monotonic() < deadline:
                    time.sleep(0.02)
        assert platform.spool.depth() == 5 and platform.bound.refused == 0
        del platform.store.put  # the store is back
        assert platform.worker.drain(timeout=30)
        assert all(platform.repo.get_capture(capture_id) is not None for capture_id in ids)


def test_a_caller_that_stores_its_own_hand_offs_is_never_held(tmp_path, tiny_detector):
    """Landing runs and folder ingests persist after handing off (run_worker=False): the bound
    must not stall them, however many images they hand off."""
    settings = Settings(home=tmp_path, spool_max_pending=2)
    with LocalPlatform(settings, detector=tiny_detector, run_worker=False) as platform:
        platform.bound.wait_s = 0.1
        for i in range(5):
            platform.service.ingest(_name(i), images.jpeg_bytes(images.street_scene(320, 240, seed=i), quality=80), "image/jpeg")
        assert platform.spool.depth() == 5
