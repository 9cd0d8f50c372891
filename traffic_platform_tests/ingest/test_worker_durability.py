"""The spool worker under failures: outages retried until they pass, one bad job never blocks
the others, live writers' temporary files kept, a locked spool waited for."""

from __future__ import annotations

import json
import logging
import os
import struct
import time

from traffic_platform.ingest.spool import MAGIC, Spool
from traffic_platform.ingest.worker import SpoolWorker

from .jobs_factory import make_job


def test_transient_failures_are_never_dead_lettered(tmp_path):
    spool = Spool(tmp_path)
    job = make_job(1)
    spool.submit(job)
    calls = []

    def down_for_a_while(j):
        calls.append(1)
        if len(calls) <= 25:
            raise ConnectionRefusedError(111, "Connection refused")

    worker = SpoolWorker(spool, down_for_a_while, max_attempts=3, backoff_base=0, backoff_cap=0)
    for _ in range(25):
        worker.run_once()
    assert spool.is_pending(job.capture_id) and spool.dead_count() == 0
    assert spool.attempts(job.capture_id)["count"] == 25
    assert worker.transient_streak == 25 and "transient" in worker.last_transient_error
    assert worker.run_once() == 1 and worker.transient_streak == 0
    assert spool.dead_count() == 0 and spool.depth() == 0


def _corrupt_header_job(spool: Spool, capture_id: str) -> None:
    header = json.dumps({"capture_id": capture_id}).encode()  # valid framing, a record without fields
    (spool.pending / f"{capture_id}.job").write_bytes(MAGIC + struct.pack(">I", len(header)) + header + b"img")


def test_one_bad_job_does_not_block_the_others(tmp_path):
    spool = Spool(tmp_path)
    _corrupt_header_job(spool, "a" * 32)
    os.utime(spool.pending / ("a" * 32 + ".job"), (1, 1))  # the oldest: first in line
    poison, good = make_job(1), [make_job(i) for i in range(2, 6)]
    spool.submit(poison)
    os.utime(spool.pending / f"{poison.capture_id}.job", (2, 2))
    for j in good:
        spool.submit(j)
    stored = []

    def persist(j):
        if j.capture_id == poison.capture_id:
            raise RuntimeError("a bug of ours")
        stored.append(j.capture_id)

    worker = SpoolWorker(spool, persist, max_attempts=8, backoff_base=100, backoff_cap=100, concurrency=1)
    assert worker.run_once() == 4  # one pass: the corrupt and the failing job did not stop it
    assert sorted(stored) == sorted(j.capture_id for j in good)
    assert "unreadable job" in spool.dead_reason("a" * 32)["reason"]
    info = spool.attempts(poison.capture_id)  # backed off, not retried on every poll
    assert info["count"] == 1 and info["next_at"] > time.time() and "unknown: RuntimeError" in info["last_error"]
    assert list(spool.ready()) == []
    assert worker.run_once() == 0 and spool.attempts(poison.capture_id)["count"] == 1


def test_clean_tmp_keeps_files_a_live_writer_is_writing(tmp_path):
    spool = Spool(tmp_path)
    fresh, stale = spool.tmp / "x.job.fresh", spool.tmp / "y.job.stale"
    fresh.write_bytes(b"half written by serve's request thread")
    stale.write_bytes(b"left by a crash")
    os.utime(stale, (time.time() - 2 * 3600,) * 2)
    worker = SpoolWorker(spool, lambda j: None)
    worker.acquire()  # cleans tmp/ on every acquire
    try:
        assert fresh.exists() and not stale.exists()
    finally:
        worker.release()
    assert spool.clean_tmp(max_age_s=0, now=time.time() + 1) == 1 and not fresh.exists()


def test_start_waits_for_a_locked_spool_then_takes_over(tmp_path, caplog):
    spool = Spool(tmp_path)
    holder = SpoolWorker(spool, lambda j: None)  # e.g. a landing run
    holder.acquire()
    stored = []
    waiting = SpoolWorker(spool, stored.append)
    try:
        with caplog.at_level(logging.INFO, logger="traffic_platform.ingest.worker"):
            waiting.start(poll_interval=0.05)  # raised BlockingIOError before
            job = make_job(1)
            spool.submit(job)
            waiting.notify()
            time.sleep(0.3)
            assert stored == [] and spool.is_pending(job.capture_id) and not waiting.holds_lock
            holder.release()
            assert waiting.drain(timeout=10)
        assert [j.capture_id for j in stored] == [job.capture_id] and waiting.holds_lock
        messages = [r.getMessage() for r in caplog.records]
        assert sum("locked by another worker" in m for m in messages) == 1
        assert sum("took over" in m for m in messages) == 1
    finally:
        waiting.stop()
        holder.release()


def test_stop_while_waiting_for_the_lock(tmp_path):
    spool = Spool(tmp_path)
    holder = SpoolWorker(spool, lambda j: None)
    holder.acquire()
    waiting = SpoolWorker(spool, lambda j: None)
    waiting.start(poll_interval=0.05)
    waiting.stop(timeout=5)
    assert not waiting.running and not waiting.holds_lock
    holder.release()


def test_serve_starts_while_a_landing_run_holds_the_spool(tmp_path):
    from traffic_platform.config import Settings
    from traffic_platform.ingest.api import Request
    from traffic_platform.ingest.local import LocalPlatform

    settings = Settings(home=tmp_path)
    holder = SpoolWorker(Spool(settings.spool_dir), lambda j: None)
    holder.acquire()
    try:
        with LocalPlatform(settings, load_detector=False) as platform:  # what `serve` does
            assert platform.worker.running and not platform.worker.holds_lock
            ready = json.loads(platform.api().handle(Request("GET", "/readyz")).body)
            assert ready["checks"]["spool"]["ok"] and ready["checks"]["spool"]["pending"] == 0
            holder.release()
            deadline = time.monotonic() + 10
            while not platform.worker.holds_lock and time.monotonic() < deadline:
                time.sleep(0.05)
            assert platform.worker.holds_lock
    finally:
        holder.release()


def test_the_job_file_is_removed_only_after_the_persist_returned(tmp_path):
    spool = Spool(tmp_path)
    job = make_job(3)
    spool.submit(job)
    seen = []

    def persist(j):
        seen.append(spool.is_pending(j.capture_id))  # still durable while the commit runs

    assert SpoolWorker(spool, persist).run_once() == 1
    assert seen == [True] and not spool.is_pending(job.capture_id)
