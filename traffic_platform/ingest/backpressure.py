"""Back-pressure for the local hand-off: answers never run ahead of persistence by more than a bound.

On a small host the sync path (decode, gate, model) and the worker (annotated copy, object
store, database) share the cores; at saturation the answers came ~2x faster than the worker
stored them and the spool grew without end (`bench/RESULTS.md`, *Persistence*). A request is
admitted while the spool holds fewer than ``TRAFFIC_SPOOL_MAX_PENDING`` jobs; beyond that it
waits, before decoding (its CPU goes to the worker meanwhile), until the worker has made
room, for up to :data:`WAIT_S`, then gets 503 ``spool_full`` with ``Retry-After``. So at
saturation answers come as fast as captures are stored, and an answered image is stored
within about ``max_pending / drain rate`` seconds. Requests already past admission add at
most ``TRAFFIC_HTTP_MAX_CONCURRENCY`` jobs above the bound.

The bound is for a worker that is *behind*, not one that is *blocked*: while the database or
the store is down the worker uses no CPU and the spool is the buffer that keeps accepting
(that is what it is for), so the caller's ``hold`` predicate (``LocalPlatform``: the worker
runs and its last attempt did not fail transiently) decides whether a full spool holds a
request at all.

The count is kept in memory (+1 per hand-off, -1 per job the in-process worker stored, read
off its counter) and taken again from the spool directory whenever it reaches half the
bound, so jobs stored by another process (``traffic-platform worker``) or dead-lettered are
seen; a waiting request counts the directory every :data:`POLL_S`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..domain.errors import ServiceUnavailable
from .spool import Spool

#: How long a request waits for room in the spool before 503 ``spool_full``.
WAIT_S = 10.0
#: While waiting, the spool directory is counted again this often (a worker in another
#: process does not wake us).
POLL_S = 0.05


class SpoolBound:
    """Admission by spool depth; ``max_pending`` 0 admits everything. ``stored_count``: the
    in-process worker's running count of stored jobs (``SpoolWorker.persisted``)."""

    def __init__(self, spool: Spool, max_pending: int, stored_count: Callable[[], int] = lambda: 0, *,
                 wait_s: float = WAIT_S, poll_s: float = POLL_S):
        self.spool = spool
        self.max_pending = max(0, int(max_pending))
        self.stored_count = stored_count
        self.wait_s = wait_s
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._recount()
        self.waited = 0  # requests that had to wait for room
        self.refused = 0  # requests refused with spool_full

    def _recount(self) -> int:
        self._base, self._stored_at_base = (self.spool.depth() if self.max_pending else 0), self.stored_count()
        return self._base

    @property
    def pending(self) -> int:
        """Jobs waiting to be stored, as counted in memory."""
        return max(0, self._base - (self.stored_count() - self._stored_at_base))

    def submitted(self) -> None:
        """A job went into the spool."""
        with self._lock:
            self._base += 1

    def admit(self, hold: Callable[[], bool] = lambda: True) -> None:
        """Return when there is room, or as soon as ``hold()`` is false; raise
        ``ServiceUnavailable`` (``spool_full``) after ``wait_s``."""
        if not self.max_pending or self.pending < self.max_pending // 2 or not hold():
            return
        deadline = time.monotonic() + self.wait_s
        waited = False
        while True:
            with self._lock:
                pending = self._recount()  # the truth: other processes write and store too
            if pending < self.max_pending or not hold():
                if waited:
                    with self._lock:
                        self.waited += 1
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                with self._lock:
                    self.refused += 1
                raise ServiceUnavailable(
                    f"{pending} accepted images are still being stored (the limit is {self.max_pending}, "
                    "TRAFFIC_SPOOL_MAX_PENDING); retry in a moment.",
                    code="spool_full",
                    details={"retry_after_s": 1, "pending": pending, "max_pending": self.max_pending},
                )
            waited = True
            time.sleep(min(self.poll_s, remaining))
