"""The spool worker in batches: objects per job, the rows of a batch in one transaction,
each job's failure handled alone, ``done`` only after its rows are committed."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from traffic_platform.ingest.persist import Persister
from traffic_platform.ingest.spool import Spool
from traffic_platform.ingest.worker import SpoolWorker
from traffic_platform.storage.objectstore import LocalObjectStore
from traffic_platform.storage.tables import capture_counts, captures, detections

from .jobs_factory import make_job


class Calls:
    """Records every ``save_captures`` batch on the way to the real repository."""

    def __init__(self, repo, monkeypatch):
        self.batches: list[list[str]] = []
        real = repo.save_captures

        def save_captures(records):
            self.batches.append([r.capture_id for r in records])
            return real(records)

        monkeypatch.setattr(repo, "save_captures", save_captures)


@pytest.fixture
def spool(tmp_path) -> Spool:
    return Spool(tmp_path / "spool")


@pytest.fixture
def store(tmp_path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects")


def batch_worker(spool, persister, **kwargs) -> SpoolWorker:
    return SpoolWorker(spool, persister.persist, persist_many=persister.persist_many, backoff_base=100,
                       backoff_cap=100, **kwargs)  # fmt: skip


def table_counts(engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.scalar(select(func.count()).select_from(t)) for t in (captures, detections, capture_counts))


def submit(spool, jobs) -> None:
    for job in jobs:
        spool.submit(job)


def test_due_jobs_go_in_batches_with_one_transaction_each(spool, store, repo, engine, monkeypatch):
    jobs = [make_job(i) for i in range(40)]
    submit(spool, jobs)
    calls = Calls(repo, monkeypatch)
    worker = batch_worker(spool, Persister(repo, store), batch_size=16, concurrency=4)
    try:
        assert worker.run_once() == 40
    finally:
        worker.stop()
    assert [len(b) for b in calls.batches] == [16, 16, 8]
    assert sorted(sum(calls.batches, [])) == sorted(j.capture_id for j in jobs)
    assert spool.depth() == 0 and worker.persisted == 40
    assert table_counts(engine) == (40, 80, 40 * 6)  # 2 boxes each, a count row per class


def test_a_failing_job_fails_alone_and_backs_off(spool, store, repo, engine, monkeypatch):
    jobs = [make_job(i) for i in range(6)]
    submit(spool, jobs)
    bad = jobs[2]
    real_put = store.put

    def put(key, data, content_type=None):
        if bad.capture_id in key:
            raise OSError("disk full")
        return real_put(key, data, content_type)

    monkeypatch.setattr(store, "put", put)
    calls = Calls(repo, monkeypatch)
    worker = batch_worker(spool, Persister(repo, store))
    assert worker.run_once() == 5
    assert len(calls.batches) == 1 and bad.capture_id not in calls.batches[0]
    assert list(spool.ready(now=1e18)) == [bad.capture_id]  # kept, retried after its back-off
    info = spool.attempts(bad.capture_id)
    assert info["count"] == 1 and "disk full" in info["last_error"]
    assert worker.failures == 1 and spool.dead_count() == 0
    assert not repo.capture_exists(bad.capture_id)
    assert all(repo.capture_exists(j.capture_id) for j in jobs if j is not bad)


def test_a_failing_row_fails_alone(spool, store, repo, monkeypatch):
    jobs = [make_job(i) for i in range(4)]
    submit(spool, jobs)
    bad = jobs[1].capture_id
    real_insert = repo._insert_new

    def insert_new(*records):
        if any(r.capture_id == bad for r in records):
            raise ValueError("constraint violated")
        return real_insert(*records)

    monkeypatch.setattr(repo, "_insert_new", insert_new)
    worker = batch_worker(spool, Persister(repo, store), max_attempts=1)
    assert worker.run_once() == 3
    assert spool.depth() == 0 and spool.dead_count() == 1  # max_attempts=1: dead at once
    assert "constraint violated" in spool.dead_reason(bad)["reason"]
    assert [repo.capture_exists(j.capture_id) for j in jobs] == [True, False, True, True]


def test_a_corrupt_job_is_dead_lettered_alone(spool, store, repo):
    jobs = [make_job(i) for i in range(5)]
    submit(spool, jobs)
    corrupt = "f" * 32
    (spool.pending / f"{corrupt}.job").write_bytes(b"garbage")
    worker = batch_worker(spool, Persister(repo, store))
    assert worker.run_once() == 5
    assert spool.depth() == 0 and spool.dead_count() == 1
    assert "unreadable" in spool.dead_reason(corrupt)["reason"]
    assert all(repo.capture_exists(j.capture_id) for j in jobs)


def test_replaying_a_batch_changes_nothing(spool, store, repo, engine):
    jobs = [make_job(i) for i in range(8)]
    persister = Persister(repo, store)
    submit(spool, jobs)
    assert batch_worker(spool, persister).run_once() == 8
    before = table_counts(engine)
    objects = sorted(store.list(""))
    submit(spool, jobs)  # the same jobs again (a crash after the commit, before done)
    submit(spool, [make_job(8)])  # with a new one in the same batch
    outcomes = []
    worker = SpoolWorker(spool, persister.persist,
                         persist_many=lambda js, m: outcomes.extend(persister.persist_many(js, m)) or outcomes)
    assert worker.run_once() == 9
    assert sorted(outcomes) == [False] * 8 + [True]
    assert table_counts(engine) == (before[0] + 1, before[1] + 2, before[2] + 6)
    assert set(objects) <= set(store.list(""))


def test_rows_are_committed_before_any_job_of_the_batch_is_done(spool, store, repo, monkeypatch):
    jobs = [make_job(i) for i in range(6)]
    submit(spool, jobs)
    real_done_many = spool.done_many
    seen = []

    def done_many(capture_ids):
        seen.append((len(capture_ids), all(repo.capture_exists(j.capture_id) for j in jobs)))  # another connection
        return real_done_many(capture_ids)

    monkeypatch.setattr(spool, "done_many", done_many)
    assert batch_worker(spool, Persister(repo, store)).run_once() == 6
    assert seen == [(6, True)]  # one call (one directory fsync) for the batch


def test_a_job_that_cannot_leave_the_spool_is_replayed_as_a_no_op(spool, store, repo, engine, monkeypatch):
    jobs = [make_job(i) for i in range(4)]
    submit(spool, jobs)
    stuck = jobs[3].capture_id
    real_done_many = spool.done_many

    def done_many(capture_ids):
        failed = real_done_many([c for c in capture_ids if c != stuck])
        return failed | {stuck: PermissionError(13, "read-only")}

    monkeypatch.setattr(spool, "done_many", done_many)
    worker = batch_worker(spool, Persister(repo, store))
    assert worker.run_once() == 3
    assert list(spool.ready()) == [stuck] and worker.failures == 0  # stored, only its job file stayed
    before = table_counts(engine)
    monkeypatch.undo()
    assert worker.run_once() == 1
    assert spool.depth() == 0 and table_counts(engine) == before


def test_a_database_outage_keeps_the_whole_batch(spool, store, repo, monkeypatch):
    import sqlite3

    from sqlalchemy.exc import OperationalError

    jobs = [make_job(i) for i in range(5)]
    submit(spool, jobs)
    down = {"on": True}

    def cut(real):
        def call(*args, **kwargs):
            if down["on"]:
                raise OperationalError("INSERT", {}, sqlite3.OperationalError("unable to open database file"))
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(repo, "_insert_new", cut(repo._insert_new))
    monkeypatch.setattr(repo, "_save_capture", cut(repo._save_capture))
    worker = SpoolWorker(spool, None, persist_many=Persister(repo, store).persist_many, backoff_base=0, backoff_cap=0)
    assert worker.run_once() == 0
    assert spool.depth() == 5 and spool.dead_count() == 0
    assert worker.failures == 5 and worker.transient_streak == 5
    down["on"] = False
    assert worker.drain(timeout=10)
    assert all(repo.capture_exists(j.capture_id) for j in jobs) and worker.transient_streak == 0


def test_a_raising_persist_many_fails_every_job_of_the_batch(spool):
    jobs = [make_job(i) for i in range(3)]
    submit(spool, jobs)

    def broken(jobs, map):
        raise ConnectionError("store unreachable")

    worker = SpoolWorker(spool, None, persist_many=broken, backoff_base=100, backoff_cap=100)
    assert worker.run_once() == 0
    assert spool.depth() == 3 and worker.failures == 3
    assert all(spool.attempts(j.capture_id)["count"] == 1 for j in jobs)
    assert list(spool.ready()) == []


def test_short_outcomes_are_a_failure_not_a_silent_done(spool):
    submit(spool, [make_job(i) for i in range(3)])
    worker = SpoolWorker(spool, None, persist_many=lambda jobs, map: [True], backoff_base=100, backoff_cap=100)
    assert worker.run_once() == 0
    assert spool.depth() == 3 and worker.failures == 3


def _niceness() -> int:
    import os
    import threading

    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def run_in_background(worker, spool) -> None:
    import time

    worker.start(poll_interval=0.02)
    try:
        deadline = time.monotonic() + 20
        while spool.depth() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
    assert spool.depth() == 0


def test_worker_threads_run_nice_by_default(spool):
    submit(spool, [make_job(i) for i in range(6)])
    seen = []

    def persist_many(jobs, map):
        seen.append(_niceness())
        seen.extend(map(lambda job: _niceness(), jobs))
        return [True] * len(jobs)

    run_in_background(SpoolWorker(spool, None, persist_many=persist_many, batch_size=2, concurrency=2), spool)
    assert seen and set(seen) == {10}
