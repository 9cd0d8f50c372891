"""Which persistence failures a retry can fix: one classifier for the spool worker and the persist Lambda.

* **transient** — the database, the object store or the network is down, slow or
  throttling (connection refused/reset, timeouts, S3/HTTP 5xx and throttling codes,
  MySQL "can't connect"/"gone away"/"lost connection"/lock wait/deadlock, SQLite
  "database is locked"). Retried with capped back-off **until it succeeds**; never
  dead-lettered: an outage only delays persistence.
* **permanent** — the data can never be written as it is (a constraint violation other
  than a duplicate key — that one is a race with a concurrent save of the same capture,
  which the next, idempotent attempt resolves — a value too long or out of range, a
  corrupt job, our own validation's ``ValueError``). Dead-lettered with the reason after
  ``TRAFFIC_PERSIST_MAX_ATTEMPTS``.
* **unknown** — anything else (most likely a bug of ours). Treated like a permanent
  failure, with back-off: a bug does not heal by retrying forever, and a dead letter
  keeps the job (``traffic-platform spool replay-dead`` after the fix), so nothing is
  lost, while an endless retry would hide the bug behind a growing backlog.

The whole exception chain (``__cause__``/``__context__``) is looked at: wrappers such
as SQLAlchemy's ``OperationalError`` or our ``ServiceUnavailable`` keep the driver's
error there.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from typing import Literal

Kind = Literal["transient", "permanent", "unknown"]
TRANSIENT: Kind = "transient"
PERMANENT: Kind = "permanent"
UNKNOWN: Kind = "unknown"

#: Default back-off cap. 30 s, not 60: once an outage ends, every waiting job is tried
#: again within the cap, so the cap is the longest extra delay a job sees after service
#: returns; 30 s keeps that short while a down dependency still sees at most one try per
#: job every ~15 s on average (full jitter).
BACKOFF_CAP_S = 30.0
BACKOFF_BASE_S = 0.5

# MySQL/MariaDB error codes that mean "try again": the server is unreachable or restarting,
# the connection broke, or the transaction was rolled back for a lock/deadlock/overload.
MYSQL_TRANSIENT = frozenset({
    1040,  # too many connections
    1053,  # server shutdown in progress
    1077,  # normal shutdown
    1078,  # got signal, aborting
    1079,  # shutdown complete
    1152,  # aborted connection
    1158, 1159, 1160, 1161,  # network read/write errors and timeouts
    1180,  # got error during COMMIT
    1203,  # max_user_connections
    1205,  # lock wait timeout
    1213,  # deadlock
    1317,  # query execution interrupted
    1614,  # transaction branch was rolled back: deadlock
    1927,  # connection was killed (MariaDB)
    2002, 2003, 2004, 2005, 2006, 2013, 2014, 2024, 2026, 2027, 2048, 2055,  # client: can't connect, gone away, lost
    3024,  # query execution was interrupted (max_execution_time)
    4031,  # disconnected by the server because of inactivity
})
# Codes of writes that can never succeed as sent.
MYSQL_PERMANENT = frozenset({1048, 1054, 1264, 1265, 1292, 1366, 1406, 1451, 1452, 3819, 4025})
# A duplicate key that escapes the repository's idempotent writes is a race with a concurrent
# save of the same capture: the next attempt finds the row and changes nothing.
MYSQL_DUPLICATE = frozenset({1022, 1062, 1586})
SQLITE_TRANSIENT = ("database is locked", "database table is locked", "disk i/o error", "unable to open database file",
                    "database or disk is full", "busy")
S3_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestLimitExceeded", "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "RequestTimeout", "RequestTimeoutException", "ServiceUnavailable", "InternalError", "InternalFailure",
    "BandwidthLimitExceeded", "EC2ThrottledException", "PriorRequestNotComplete", "OperationAborted",
})


@dataclass(frozen=True)
class Decision:
    """What to do after a failed attempt: retry after ``delay_s``, or give up (dead-letter)."""

    kind: Kind
    retry: bool
    delay_s: float
    reason: str


def backoff_delay(attempt: int, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Exponential back-off with full jitter: attempt 1 -> up to ``base``, doubling up to ``cap``."""
    return random.uniform(0, min(cap, base * 2 ** min(attempt - 1, 62)))


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def decide(exc: BaseException, attempt: int, max_attempts: int, *, base: float = BACKOFF_BASE_S,
           cap: float = BACKOFF_CAP_S) -> Decision:
    """The one retry policy: ``attempt`` is the number of the attempt that just failed (1-based)."""
    kind = classify(exc)
    retry = kind == TRANSIENT or attempt < max_attempts
    return Decision(kind, retry, backoff_delay(attempt, base, cap) if retry else 0.0, f"{kind}: {describe(exc)}")


def classify(exc: BaseException) -> Kind:
    """``transient``, ``permanent`` or ``unknown`` (see the module docstring)."""
    verdict: Kind = UNKNOWN
    for link in _chain(exc):
        kind = _classify_one(link)
        if kind == TRANSIENT:
            return TRANSIENT  # an outage anywhere in the chain: retry
        if kind == PERMANENT and verdict == UNKNOWN:
            verdict = PERMANENT
    return verdict


def _chain(exc: BaseException):
    seen: set[int] = set()
    stack = [exc]
    while stack:
        link = stack.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        stack += [link.__cause__, link.__context__, getattr(link, "orig", None)]


def _classify_one(exc: BaseException) -> Kind:  # noqa: PLR0911 - a table of cases
    from ..domain.errors import ServiceUnavailable, TrafficPlatformError

    if isinstance(exc, ServiceUnavailable):
        return TRANSIENT
    if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, socket.gaierror)):
        return TRANSIENT
    kind = _classify_sqlalchemy(exc) or _classify_dbapi(exc) or _classify_aws(exc)
    if kind:
        return kind
    if isinstance(exc, TrafficPlatformError):  # input errors of ours (4xx): the job itself is wrong
        return PERMANENT if exc.http_status < 500 else UNKNOWN
    if isinstance(exc, (ValueError, KeyError, TypeError, UnicodeError)):
        return PERMANENT  # our own validation, a corrupt job, an object that is gone for good
    if isinstance(exc, OSError) and exc.errno is not None:
        import errno

        if exc.errno in (errno.EIO, errno.ENOSPC, errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                         errno.ENETUNREACH, errno.ENETDOWN, errno.ECONNABORTED, errno.EDQUOT, errno.ESTALE):
            return TRANSIENT
    return UNKNOWN


def _classify_sqlalchemy(exc: BaseException) -> Kind | None:
    try:
        from sqlalchemy import exc as sa_exc
    except ImportError:  # pragma: no cover - always installed
        return None
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return TRANSIENT
    if isinstance(exc, (sa_exc.DisconnectionError, sa_exc.TimeoutError, sa_exc.InterfaceError)):
        return TRANSIENT  # pool timeout, lost connection
    if isinstance(exc, sa_exc.IntegrityError) and _is_duplicate(exc.orig):
        return TRANSIENT
    if isinstance(exc, (sa_exc.DataError, sa_exc.IntegrityError)):
        return PERMANENT
    if isinstance(exc, sa_exc.OperationalError):
        return _classify_dbapi(exc.orig) or UNKNOWN
    return None


def _is_duplicate(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    if type(exc).__module__.startswith("pymysql"):
        return bool(exc.args) and exc.args[0] in MYSQL_DUPLICATE
    return "unique constraint failed" in str(exc).lower()


def _classify_dbapi(exc: BaseException | None) -> Kind | None:
    if exc is None:
        return None
    if type(exc).__name__ == "IntegrityError" and _is_duplicate(exc):
        return TRANSIENT
    module = type(exc).__module__
    if module.startswith("pymysql"):
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if code in MYSQL_TRANSIENT:
            return TRANSIENT
        if code in MYSQL_PERMANENT or type(exc).__name__ in ("DataError", "IntegrityError"):
            return PERMANENT
        if type(exc).__name__ == "InterfaceError":  # (0, '') and friends: the connection is gone
            return TRANSIENT
        return None
    if module.startswith("sqlite3"):
        name, message = type(exc).__name__, str(exc).lower()
        if name == "OperationalError" and any(m in message for m in SQLITE_TRANSIENT):
            return TRANSIENT
        if name in ("IntegrityError", "DataError"):
            return PERMANENT
    return None


def _classify_aws(exc: BaseException) -> Kind | None:
    if not type(exc).__module__.startswith(("botocore", "urllib3", "s3transfer")):
        return None
    from botocore import exceptions as bc

    if isinstance(exc, (bc.ConnectionError, bc.HTTPClientError)):  # endpoint, connect/read timeout, closed
        return TRANSIENT
    if isinstance(exc, bc.ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if status >= 500 or status == 429 or error.get("Code") in S3_TRANSIENT_CODES:
            return TRANSIENT
        return None
    if type(exc).__module__.startswith("urllib3"):
        return TRANSIENT  # urllib3 only raises for the transport (protocol, timeout, connection)
    return None
