import pytest

from traffic_platform.ingest.spool import Spool, decode_job, encode_job
from traffic_platform.ingest.worker import SpoolWorker, backoff_delay

from .jobs_factory import make_job


def test_job_round_trips_through_the_spool_format():
    job = make_job(3)
    again = decode_job(encode_job(job))
    assert again == job
    assert again.record.metadata.city == "Leuven"


def test_tampered_image_is_refused():
    blob = bytearray(encode_job(make_job(1)))
    blob[-5] ^= 0xFF
    with pytest.raises(ValueError, match="content_sha256"):
        decode_job(bytes(blob))


def test_submit_is_durable_and_idempotent(tmp_path):
    spool = Spool(tmp_path)
    job = make_job(1)
    spool.submit(job)
    spool.submit(job)
    assert spool.depth() == 1
    assert list(spool.ready()) == [job.capture_id]
    assert spool.load(job.capture_id) == job
    assert not any(spool.tmp.iterdir())


def test_worker_persists_each_job_once(tmp_path):
    spool = Spool(tmp_path)
    jobs = [make_job(i) for i in range(5)]
    for j in jobs:
        spool.submit(j)
    stored = []
    worker = SpoolWorker(spool, stored.append)
    assert worker.run_once() == 5
    assert sorted(j.capture_id for j in stored) == sorted(j.capture_id for j in jobs)
    assert spool.depth() == 0
    assert worker.run_once() == 0


def test_failures_back_off_then_succeed(tmp_path):
    spool = Spool(tmp_path)
    job = make_job(2)
    spool.submit(job)
    calls = []

    def flaky(j):
        calls.append(j.capture_id)
        if len(calls) < 3:
            raise ConnectionError("database down")

    worker = SpoolWorker(spool, flaky, backoff_base=0.01, backoff_cap=0.02)
    assert worker.drain(timeout=5)
    assert len(calls) == 3
    assert worker.failures == 2 and worker.persisted == 1
    assert spool.dead_count() == 0


def test_back_off_defers_the_next_attempt(tmp_path):
    spool = Spool(tmp_path)
    job = make_job(2)
    spool.submit(job)

    def failing(j):
        raise OSError("store down")

    worker = SpoolWorker(spool, failing, backoff_base=100, backoff_cap=100)
    worker.run_once()
    info = spool.attempts(job.capture_id)
    assert info["count"] == 1 and "store down" in info["last_error"]
    # the job is kept, but not retried before its time
    assert spool.is_pending(job.capture_id)
    assert list(spool.ready(now=info["next_at"] - 0.001)) == []
    assert list(spool.ready(now=info["next_at"] + 0.001)) == [job.capture_id]


def test_dead_letter_after_max_attempts_and_replay(tmp_path):
    spool = Spool(tmp_path)
    job = make_job(4)
    spool.submit(job)

    def broken(j):
        raise ValueError("constraint violated")

    worker = SpoolWorker(spool, broken, max_attempts=3, backoff_base=0, backoff_cap=0)
    for _ in range(3):
        worker.run_once()
    assert spool.depth() == 0 and spool.dead_count() == 1
    reason = spool.dead_reason(job.capture_id)
    assert "constraint violated" in reason["reason"] and reason["count"] == 3
    assert spool.replay_dead() == 1
    stored = []
    assert SpoolWorker(spool, stored.append).run_once() == 1
    assert stored[0] == job


def test_corrupt_job_file_goes_to_dead_letter(tmp_path):
    spool = Spool(tmp_path)
    (spool.pending / ("f" * 32 + ".job")).write_bytes(b"garbage")
    worker = SpoolWorker(spool, lambda j: None)
    worker.run_once()
    assert spool.dead_count() == 1
    assert "unreadable" in spool.dead_reason("f" * 32)["reason"]


def test_one_worker_per_spool(tmp_path):
    spool = Spool(tmp_path)
    first = SpoolWorker(spool, lambda j: None)
    first.acquire()
    try:
        with pytest.raises(BlockingIOError):
            SpoolWorker(spool, lambda j: None).acquire()
    finally:
        first.release()
    SpoolWorker(spool, lambda j: None).acquire()


def test_backoff_grows_and_is_capped():
    assert all(0 <= backoff_delay(1, 1, 60) <= 1 for _ in range(50))
    assert all(0 <= backoff_delay(10, 1, 5) <= 5 for _ in range(50))
    assert max(backoff_delay(4, 1, 60) for _ in range(200)) > 1


def test_concurrent_worker_persists_each_job_exactly_once(tmp_path):
    import threading
    import time

    spool = Spool(tmp_path)
    jobs = [make_job(i) for i in range(20)]
    for j in jobs:
        spool.submit(j)
    lock = threading.Lock()
    state = {"in_flight": 0, "most": 0}
    stored = []

    def slow_store(job):
        with lock:
            state["in_flight"] += 1
            state["most"] = max(state["most"], state["in_flight"])
        time.sleep(0.02)  # an object-store round trip
        with lock:
            state["in_flight"] -= 1
            stored.append(job.capture_id)

    worker = SpoolWorker(spool, slow_store, concurrency=4)
    assert worker.drain(timeout=30)
    worker.stop()
    assert sorted(stored) == sorted(j.capture_id for j in jobs)  # each once, none lost
    assert worker.persisted == 20 and spool.depth() == 0
    assert state["most"] > 1  # jobs really overlapped


def test_the_persist_path_reads_decodes_and_checks_each_job_once(tmp_path, monkeypatch):
    """One spool read, one sha256 over the image, one file-name parse, one decode (annotation)."""
    import hashlib

    from PIL import Image

    from traffic_platform.domain import captures
    from traffic_platform.ingest import handoff
    from traffic_platform.ingest.persist import Persister
    from traffic_platform.storage.database import make_engine, upgrade
    from traffic_platform.storage.objectstore import LocalObjectStore
    from traffic_platform.storage.repository import Repository

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    repo, store = Repository(engine), LocalObjectStore(tmp_path / "objects")
    spool = Spool(tmp_path / "spool")
    job = make_job(5)
    spool.submit(job)

    counts = {"open": 0, "sha256": 0, "parse": 0}
    real_open, real_parse = Image.open, captures.parse_file_name

    def counting_open(*args, **kwargs):
        counts["open"] += 1
        return real_open(*args, **kwargs)

    def counting_parse(name):
        counts["parse"] += 1
        return real_parse(name)

    class CountingHashlib:
        @staticmethod
        def sha256(data=b""):
            counts["sha256"] += data == job.image
            return hashlib.sha256(data)

    monkeypatch.setattr(Image, "open", counting_open)
    monkeypatch.setattr(captures, "parse_file_name", counting_parse)
    monkeypatch.setattr(handoff, "hashlib", CountingHashlib)
    worker = SpoolWorker(spool, Persister(repo, store).persist)
    assert worker.run_once() == 1
    assert counts == {"open": 1, "sha256": 1, "parse": 1}
    stored = repo.get_capture(job.capture_id)
    assert stored["status"] == "accepted" and store.get(stored["image_key"]) == job.image
    assert store.get(stored["annotated_key"])[:3] == b"\xff\xd8\xff"
    engine.dispose()
