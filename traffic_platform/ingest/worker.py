"""The local async worker: drains the spool into storage with retries, back-off and a dead letter."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from .failures import BACKOFF_BASE_S, BACKOFF_CAP_S, TRANSIENT, backoff_delay, decide, describe
from .handoff import CaptureJob
from .spool import Spool

log = logging.getLogger(__name__)

__all__ = ["PersistMany", "SpoolWorker", "backoff_delay"]

#: ``persist_many(jobs, map)``: store a batch, one outcome per job in order (an exception
#: instance: that job failed; anything else: its rows are committed). ``map`` runs per-job
#: work (e.g. the object puts) on the worker's pool. ``Persister.persist_many`` is one.
PersistMany = Callable[[Sequence[CaptureJob], Callable[..., Iterator]], Sequence[object]]
#: Jobs per ``persist_many`` call: enough to amortise the transaction, few enough that the
#: first job of a batch is not held long behind the others' objects.
BATCH_SIZE = 16


#: The worker threads' nice value: requests win the CPU, persistence uses what is left.
NICE = 10


def _lower_thread_priority(niceness: int = NICE) -> None:
    """Let requests win the CPU: on Linux a thread has its own nice value (by native id).
    At saturation the server's back-pressure (:mod:`.backpressure`) gives the worker room."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
        pass


class SpoolWorker:
    """Persists spooled jobs; one worker per spool directory (an exclusive file lock guards it)."""

    def __init__(
        self,
        spool: Spool,
        persist: Callable[[CaptureJob], object],
        *,
        max_attempts: int = 8,
        backoff_base: float = BACKOFF_BASE_S,
        backoff_cap: float = BACKOFF_CAP_S,
        on_persisted: Callable[[CaptureJob], None] | None = None,
        concurrency: int = 1,
        persist_many: PersistMany | None = None,
        batch_size: int = BATCH_SIZE,
    ):
        self.spool = spool
        self.persist = persist  # one job at a time, when ``persist_many`` is None
        self.persist_many = persist_many
        self.batch_size = max(1, batch_size)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.on_persisted = on_persisted
        # Persisting is mostly waiting (object store, database): a few jobs at once keep up
        # with intake; each job's own writes stay ordered and idempotent.
        self.concurrency = max(1, concurrency)
        self._pool = (
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="persist", initializer=_lower_thread_priority)
            if self.concurrency > 1
            else None
        )
        self._counts = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_file = None
        self.persisted = 0
        self.failures = 0
        self.dead_lettered = 0
        # Consecutive transient failures since the last success, and the last of them
        # (for /readyz: "degraded" while a dependency is down).
        self.transient_streak = 0
        self.last_transient_error: str | None = None

    # -- lifecycle --------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the spool's worker lock (raises BlockingIOError if another worker has it)."""
        lock_file = open(self.spool.root / "worker.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            lock_file.close()
            raise
        self._lock_file = lock_file
        self.spool.clean_tmp()

    @property
    def running(self) -> bool:
        """Whether this worker's background thread is draining the spool."""
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def release(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def start(self, poll_interval: float = 0.25) -> None:
        """Drain the spool in a background thread. If another process holds the spool's lock
        (a landing run, ``traffic-platform worker``), the thread waits for it and takes over
        when it is free; submitting jobs works meanwhile (the holder stores them)."""
        try:
            self.acquire()
        except BlockingIOError:
            log.info("spool %s is locked by another worker; this one waits and takes over when it is free", self.spool.root)
        self._thread = threading.Thread(target=self.run_forever, args=(poll_interval,), name="spool-worker", daemon=True)
        self._thread.start()

    @property
    def holds_lock(self) -> bool:
        return self._lock_file is not None

    def _wait_for_lock(self, poll_interval: float) -> bool:
        """Try to take the lock until it is ours (True) or the worker is stopped (False)."""
        while not self._stop.is_set():
            try:
                self.acquire()
            except BlockingIOError:
                self._stop.wait(max(poll_interval, 0.5))
                continue
            log.info("spool %s: took over the worker lock", self.spool.root)
            return True
        return False

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.release()

    def notify(self) -> None:
        """Wake the worker now (a job was just submitted)."""
        self._wake.set()

    def run_forever(self, poll_interval: float = 0.25) -> None:
        _lower_thread_priority()
        if not self.holds_lock and not self._wait_for_lock(poll_interval):
            return
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the loop itself must never die
                log.exception("spool worker iteration failed")
            self._wake.wait(poll_interval)
            self._wake.clear()

    # -- work ---------------------------------------------------------------------------
    def run_once(self) -> int:
        """Try every due job once; return how many were persisted. With ``persist_many``, in
        batches of ``batch_size`` (objects on the pool, the rows of a batch in one transaction)."""
        due = list(self.spool.ready())
        if self.persist_many is None:
            return sum(self._map(self._process_unless_stopped, due))
        persisted = 0
        for start in range(0, len(due), self.batch_size):
            if self._stop.is_set():
                break
            persisted += self._process_batch(due[start : start + self.batch_size])
        return persisted

    def _map(self, fn: Callable, items: Iterable) -> Iterator:
        """``map`` on the worker's pool (in this thread when ``concurrency`` is 1)."""
        items = list(items)
        return self._pool.map(fn, items) if self._pool is not None and len(items) > 1 else map(fn, items)

    def _process_unless_stopped(self, capture_id: str) -> int:
        return 0 if self._stop.is_set() else self._process(capture_id)

    def drain(self, timeout: float = 30.0) -> bool:
        """Process until the spool is empty or ``timeout`` passes (tests, CLI ingest); when the
        background thread runs, wait for it instead of working beside it."""
        deadline = time.monotonic() + timeout
        while self.spool.depth() and time.monotonic() < deadline:
            if self.running:
                self.notify()
                time.sleep(0.05)
            elif not self.run_once():
                time.sleep(0.05)
        return self.spool.depth() == 0

    def _count(self, name: str) -> None:
        with self._counts:
            setattr(self, name, getattr(self, name) + 1)

    def _process(self, capture_id: str) -> int:
        """Try one job; never raises, so one bad job cannot stop the others."""
        job = self._load(capture_id)
        if job is None:
            return 0
        try:
            self.persist(job)
        except Exception as exc:
            self._failed(capture_id, exc)
            return 0
        try:
            self.spool.done(capture_id)
        except OSError as exc:
            return self._finish(job, exc)
        return self._finish(job)

    def _process_batch(self, capture_ids: Sequence[str]) -> int:
        """Try a batch of jobs; each one's outcome is handled alone, exactly as in :meth:`_process`."""
        jobs = [job for job in map(self._load, capture_ids) if job is not None]
        if not jobs:
            return 0
        try:
            outcomes = list(self.persist_many(jobs, self._map))
            if len(outcomes) != len(jobs):
                raise RuntimeError(f"persist_many returned {len(outcomes)} outcomes for {len(jobs)} jobs")
        except Exception as exc:  # the call itself failed: every job of the batch failed with it
            outcomes = [exc] * len(jobs)
        stored = []
        for job, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, Exception):
                self._failed(job.capture_id, outcome)
            else:
                stored.append(job)
        try:
            not_removed = self.spool.done_many([job.capture_id for job in stored]) if stored else {}
        except Exception as exc:  # noqa: BLE001 - as an OSError of each: the next attempt is a no-op
            not_removed = dict.fromkeys((job.capture_id for job in stored), exc)
        return sum(self._finish(job, not_removed.get(job.capture_id)) for job in stored)

    def _load(self, capture_id: str) -> CaptureJob | None:
        """The spooled job, or None (gone, dead-lettered when corrupt, backed off on a disk error)."""
        try:
            return self.spool.load(capture_id)
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, IndexError) as exc:  # corrupt file: nothing a retry can fix
            self._give_up(capture_id, f"unreadable job: {describe(exc)}", attempt=1)
        except Exception as exc:  # the disk (EIO, ...): back off like any other failure
            self._failed(capture_id, exc)
        return None

    def _finish(self, job: CaptureJob, not_removed: Exception | None = None) -> int:
        """After the job's rows are committed and ``spool.done`` was tried: count, tell the listener."""
        capture_id = job.capture_id
        if not_removed is not None:  # stored, but the job file stays: the next attempt is an idempotent no-op
            log.error("capture %s stored but its spool job could not be removed: %s", capture_id, describe(not_removed))
            return 0
        with self._counts:
            self.persisted += 1
            self.transient_streak = 0
        if self.on_persisted:
            try:
                self.on_persisted(job)
            except Exception:  # a listener's bug must not stop the worker
                log.exception("on_persisted failed for capture %s", capture_id)
        return 1

    def _failed(self, capture_id: str, exc: Exception) -> None:
        attempt = self.spool.attempts(capture_id).get("count", 0) + 1
        decision = decide(exc, attempt, self.max_attempts, base=self.backoff_base, cap=self.backoff_cap)
        with self._counts:
            self.failures += 1
            if decision.kind == TRANSIENT:
                self.transient_streak += 1
                self.last_transient_error = decision.reason
        if not decision.retry:
            self._give_up(capture_id, decision.reason, attempt)
            return
        log.warning("capture %s attempt %d failed (%s); retry in %.2fs", capture_id, attempt, decision.reason, decision.delay_s)
        try:
            self.spool.record_failure(capture_id, decision.reason, time.time() + decision.delay_s)
        except OSError:  # cannot even write the attempts file: the poll interval paces the retries
            log.exception("capture %s: could not record the failed attempt", capture_id)

    def _give_up(self, capture_id: str, reason: str, attempt: int) -> None:
        log.error("capture %s dead-lettered after %d attempts: %s", capture_id, attempt, reason)
        try:
            self.spool.record_failure(capture_id, reason, 0)
            self.spool.dead_letter(capture_id, reason)
        except OSError:
            log.exception("capture %s: could not move the job to dead/", capture_id)
            return
        self._count("dead_lettered")
