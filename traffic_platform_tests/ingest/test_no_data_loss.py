"""Nothing accepted is ever lost: outages and a killed worker only delay persistence.

Run against MariaDB and S3 over moto's HTTP server, each reached through a TCP proxy
that the tests cut off and restore.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import func, select

from traffic_platform.config import Settings
from traffic_platform.domain.errors import TrafficPlatformError
from traffic_platform.ingest.local import LocalPlatform
from traffic_platform.ingest.worker import BATCH_SIZE
from traffic_platform.storage.tables import capture_counts, captures, detections

from .. import images
from ..faults import TcpProxy

pytestmark = pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)


def _via(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@pytest.fixture
def proxied(db_url, s3_settings, tiny_detr_dir, tmp_path):
    """Settings whose database and object store are both behind cuttable proxies."""
    db = urlsplit(db_url)
    s3 = urlsplit(s3_settings.s3_endpoint_url)
    db_proxy, s3_proxy = TcpProxy(db.hostname, db.port or 3306), TcpProxy(s3.hostname, s3.port)
    settings = Settings(
        home=tmp_path,
        database_url=_via(db_url, db_proxy),
        object_store_uri=s3_settings.object_store_uri,
        s3_endpoint_url=_via(s3_settings.s3_endpoint_url, s3_proxy),
        s3_region=s3_settings.s3_region,
        detector=f"local:{tiny_detr_dir}",
        detector_runtime="torch",
    )
    yield settings, db_proxy, s3_proxy
    db_proxy.close()
    s3_proxy.close()


def uploads(n: int) -> list[tuple[str, bytes]]:
    return [
        (f"tiensevest_Leuven_Belgium_12-10-2022_10-{i:02d}-00.jpg", images.jpeg_bytes(images.street_scene(320, 240, seed=i)))
        for i in range(n)
    ]


def stored_state(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            "captures": conn.execute(select(func.count()).select_from(captures)).scalar_one(),
            "distinct": conn.execute(select(func.count(func.distinct(captures.c.capture_id)))).scalar_one(),
            "detections": conn.execute(select(func.count()).select_from(detections)).scalar_one(),
            "counts": conn.execute(select(func.count()).select_from(capture_counts)).scalar_one(),
        }


def assert_all_stored_once(platform: LocalPlatform, accepted: dict[str, int]) -> None:
    state = stored_state(platform.engine)
    assert state["captures"] == state["distinct"] == len(accepted)
    assert state["detections"] == sum(accepted.values())
    assert state["counts"] == 6 * len(accepted)
    for capture_id, n in accepted.items():
        row = platform.repo.get_capture(capture_id)
        assert row is not None and len(row["detections"]) == n
        assert platform.store.get(row["image_key"])
        assert platform.store.exists(row["annotated_key"])


def _fast_retries(platform: LocalPlatform) -> None:
    platform.worker.backoff_base, platform.worker.backoff_cap, platform.worker.max_attempts = 0.05, 0.3, 10_000


@pytest.mark.parametrize("outage", ["database", "object_store"])
def test_an_outage_only_delays_persistence(proxied, tiny_detector, outage):
    settings, db_proxy, s3_proxy = proxied
    proxy = db_proxy if outage == "database" else s3_proxy
    with LocalPlatform(settings, detector=tiny_detector) as platform:
        _fast_retries(platform)
        proxy.down()
        accepted: dict[str, int] = {}
        for name, data in uploads(8) * 2:  # every upload sent twice
            result = platform.service.ingest(name, data)  # the caller is answered during the outage
            accepted[result.capture_id] = len(result.detections)
        assert len(accepted) == 8
        deadline = time.monotonic() + 60  # the client's own retries take a while to give up
        while platform.worker.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert platform.worker.failures > 0
        assert platform.spool.depth() == 8  # nothing could be stored, nothing was dropped
        assert platform.spool.dead_count() == 0
        proxy.up()
        assert platform.worker.drain(timeout=60), f"still pending: {platform.spool.depth()}"
        assert_all_stored_once(platform, accepted)


def test_killed_worker_restarts_and_completes_without_duplicates(proxied, tiny_detector):
    settings, _, _ = proxied
    env = {**os.environ, "TRAFFIC_HOME": str(settings.home), "TRAFFIC_DATABASE_URL": settings.database_url,
           "TRAFFIC_OBJECT_STORE_URI": settings.object_store_uri, "TRAFFIC_S3_ENDPOINT_URL": settings.s3_endpoint_url,
           "TRAFFIC_S3_REGION": settings.s3_region}
    with LocalPlatform(settings, detector=tiny_detector, run_worker=False) as platform:
        accepted = {}
        for name, data in uploads(40):
            r = platform.service.ingest(name, data)
            accepted[r.capture_id] = len(r.detections)
        assert platform.spool.depth() == 40
        worker_cmd = [sys.executable, "-m", "traffic_platform.cli", "worker"]
        proc = subprocess.Popen(worker_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while stored_state(platform.engine)["captures"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        partial = stored_state(platform.engine)["captures"]
        assert 3 <= partial < 40, f"kill landed outside the batch ({partial} stored)"
        # Rows commit before a job leaves the spool: every job without rows is still there, and at
        # most one batch (rows committed, not yet marked done) is there with its rows.
        assert 40 - partial <= platform.spool.depth() <= 40 - partial + BATCH_SIZE

        done = subprocess.run([*worker_cmd, "--once", "--timeout", "120"], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert platform.spool.depth() == 0
        assert_all_stored_once(platform, accepted)


def test_rejections_never_reach_the_spool(proxied, tiny_detector):
    settings, _, _ = proxied
    with LocalPlatform(dataclasses.replace(settings), detector=tiny_detector, run_worker=False) as platform:
        for name, data in [("bad-name.jpg", b"x"), ("a_B_C_12-10-2022_10-00-00.jpg", b"not an image")]:
            with pytest.raises(TrafficPlatformError):
                platform.service.ingest(name, data)
        assert platform.spool.depth() == 0


# -- long outages with the DEFAULT settings -------------------------------------------------
# The database is cut at t=0 s, the object store at t=60 s; the database comes back at 130 s
# and the store at 190 s: each is down for 130 s (more than two minutes), both together for
# 70 s. One image is uploaded every UPLOAD_EVERY_S throughout and must be answered 201.
OUTAGE_PLAN = ((0.0, "database", "down"), (60.0, "object_store", "down"), (130.0, "database", "up"), (190.0, "object_store", "up"))
UPLOAD_EVERY_S = 6.0
BOTH_DOWN_AT_S = 100.0


def run_outage_plan(proxies: dict[str, TcpProxy], api, *, while_both_down=None) -> dict[str, int]:
    """Follow OUTAGE_PLAN while POSTing one image per UPLOAD_EVERY_S; returns {capture_id: detections}."""
    from traffic_platform.ingest.api import Request

    started = time.monotonic()
    plan, accepted, probed = list(OUTAGE_PLAN), {}, False
    items = iter(uploads(60))
    next_upload = 0.0
    while plan or next_upload <= OUTAGE_PLAN[-1][0]:
        now = time.monotonic() - started
        while plan and plan[0][0] <= now:
            _, name, action = plan.pop(0)
            getattr(proxies[name], action)()
        if while_both_down and not probed and now >= BOTH_DOWN_AT_S:
            while_both_down()
            probed = True
        if now >= next_upload:
            name, data = next(items)
            response = api.handle(Request("POST", "/v1/images", {"filename": name}, {"content-type": "image/jpeg"}, data))
            assert response.status == 201, response.body  # answered during the outage
            answer = json.loads(response.body)
            accepted[answer["capture_id"]] = len(answer["detections"])
            next_upload += UPLOAD_EVERY_S
        time.sleep(0.2)
    return accepted


def test_two_minute_outages_on_the_spool_path_lose_nothing(proxied, tiny_detector):
    settings, db_proxy, s3_proxy = proxied  # default retry settings: 8 attempts, back-off cap 30 s
    started = time.monotonic()
    with LocalPlatform(settings, detector=tiny_detector) as platform:
        def degraded_while_down():
            health = platform.spool_health()
            assert "failed transiently" in health.get("degraded", ""), health
            assert platform.spool.dead_count() == 0

        accepted = run_outage_plan({"database": db_proxy, "object_store": s3_proxy}, platform.api(),
                                   while_both_down=degraded_while_down)
        assert len(accepted) >= 30
        assert platform.worker.drain(timeout=600), f"still pending: {platform.spool.depth()}"
        assert platform.spool.dead_count() == 0 and platform.worker.dead_lettered == 0
        assert platform.worker.failures > 0
        assert_all_stored_once(platform, accepted)
    print(f"spool path: {len(accepted)} images, outage plan + drain took {time.monotonic() - started:.0f} s")


def test_two_minute_outages_on_the_sqs_path_lose_nothing(proxied, tiny_detector, s3_server):
    """Ingest Lambda -> SQS (moto over HTTP) -> persist Lambda, polled as Lambda's event source
    mapping does, with a DLQ after 2 receives: the outages must not walk anything into it."""
    import threading
    import uuid

    import boto3

    from traffic_platform.ingest.api import Api
    from traffic_platform.ingest.persist import Persister
    from traffic_platform.ingest.service import IngestService
    from traffic_platform.ingest.sqs_handoff import SqsHandoff
    from traffic_platform.storage.database import make_engine, upgrade
    from traffic_platform.storage.objectstore import open_object_store
    from traffic_platform.storage.repository import Repository

    from .sqs_lambda import create_queue_with_dlq, poll_once, queue_depth

    settings, db_proxy, s3_proxy = proxied
    started = time.monotonic()
    sqs = boto3.client("sqs", endpoint_url=s3_server, region_name=settings.s3_region)  # SQS itself stays up
    queue_url, dlq_url = create_queue_with_dlq(sqs, f"outage-{uuid.uuid4().hex[:8]}", max_receive_count=2)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    store = open_object_store(settings)
    persister = Persister(Repository(engine), store)
    api = Api(IngestService(settings, tiny_detector, SqsHandoff(sqs, queue_url, store)))
    stop, deliveries, problems = threading.Event(), [], []

    def lambda_service():
        while not stop.is_set():
            try:
                n, result = poll_once(sqs, queue_url, persister=persister, settings=Settings())  # default settings
            except Exception as exc:  # noqa: BLE001 - reported below, the poller keeps going
                problems.append(repr(exc))
                continue
            deliveries.append(n)
            problems.extend(result["batchItemFailures"])

    def nothing_dead_lettered():
        assert queue_depth(sqs, dlq_url) == 0 and not problems, problems

    poller = threading.Thread(target=lambda_service, daemon=True)
    poller.start()
    try:
        accepted = run_outage_plan({"database": db_proxy, "object_store": s3_proxy}, api, while_both_down=nothing_dead_lettered)
        assert len(accepted) >= 30
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not all(persister.repo.capture_exists(c) for c in accepted):
            time.sleep(1)
        stop.set()
        poller.join(120)
        assert not poller.is_alive()
        assert problems == []
        assert queue_depth(sqs, dlq_url) == 0 and queue_depth(sqs, queue_url) == 0
        assert_all_stored_once(SimpleNamespace(engine=engine, repo=persister.repo, store=store), accepted)
    finally:
        stop.set()
        for url in (queue_url, dlq_url):
            sqs.delete_queue(QueueUrl=url)
        engine.dispose()
    print(f"SQS path: {len(accepted)} images, {sum(deliveries)} deliveries, took {time.monotonic() - started:.0f} s")
