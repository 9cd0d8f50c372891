"""The one classifier of persistence failures (spool worker and persist Lambda)."""

from __future__ import annotations

import errno
import sqlite3

import pymysql
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from sqlalchemy import exc as sa_exc

from traffic_platform.domain.errors import BadRequest, ServiceUnavailable
from traffic_platform.ingest.failures import PERMANENT, TRANSIENT, UNKNOWN, classify, decide


def _sa(cls, orig):
    return cls("INSERT ...", {}, orig)


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def _wrapped(inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise RuntimeError("persist failed") from exc
    except RuntimeError as outer:
        return outer


TRANSIENTS = [
    ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
    ConnectionResetError(errno.ECONNRESET, "reset"),
    TimeoutError("timed out"),
    ServiceUnavailable("database is not reachable"),
    EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    _client_error("SlowDown", 503),
    _client_error("InternalError", 500),
    _client_error("ThrottlingException", 400),
    *(_sa(sa_exc.OperationalError, pymysql.err.OperationalError(code, "x")) for code in (2003, 2006, 2013, 1205, 1213)),
    _sa(sa_exc.OperationalError, sqlite3.OperationalError("database is locked")),
    _sa(sa_exc.InterfaceError, pymysql.err.InterfaceError(0, "")),
    sa_exc.TimeoutError("QueuePool limit reached"),
    _wrapped(ConnectionRefusedError(errno.ECONNREFUSED, "refused")),
    OSError(errno.EIO, "disk"),
    # a duplicate key: a concurrent save of the same capture won; the next attempt is a no-op
    _sa(sa_exc.IntegrityError, pymysql.err.IntegrityError(1062, "Duplicate entry 'x' for key 'PRIMARY'")),
    _sa(sa_exc.IntegrityError, sqlite3.IntegrityError("UNIQUE constraint failed: captures.capture_id")),
]
PERMANENTS = [
    ValueError("job abc: image bytes do not match content_sha256"),
    KeyError("capture_id"),
    _sa(sa_exc.IntegrityError, pymysql.err.IntegrityError(1452, "foreign key")),
    _sa(sa_exc.IntegrityError, sqlite3.IntegrityError("NOT NULL constraint failed: captures.file_name")),
    _sa(sa_exc.DataError, pymysql.err.DataError(1406, "Data too long for column 'file_name'")),
    _sa(sa_exc.OperationalError, pymysql.err.OperationalError(1366, "Incorrect string value")),
    BadRequest("bad file name"),
]
UNKNOWNS = [RuntimeError("bug"), _client_error("AccessDenied", 403), _sa(sa_exc.OperationalError, sqlite3.OperationalError("no such table: captures"))]


@pytest.mark.parametrize("exc", TRANSIENTS, ids=lambda e: type(e).__name__)
def test_outages_are_transient(exc):
    assert classify(exc) == TRANSIENT
    decision = decide(exc, attempt=10_000, max_attempts=8)
    assert decision.retry and 0 <= decision.delay_s <= 30  # never dead-lettered; back-off capped at 30 s


@pytest.mark.parametrize("exc", PERMANENTS, ids=lambda e: type(e).__name__)
def test_data_that_can_never_be_written_is_permanent(exc):
    assert classify(exc) == PERMANENT
    assert decide(exc, attempt=7, max_attempts=8).retry
    last = decide(exc, attempt=8, max_attempts=8)
    assert not last.retry and last.reason.startswith("permanent: ")


@pytest.mark.parametrize("exc", UNKNOWNS, ids=lambda e: type(e).__name__)
def test_unknown_failures_back_off_then_give_up(exc):
    assert classify(exc) == UNKNOWN
    assert decide(exc, attempt=3, max_attempts=8, base=1, cap=5).delay_s <= 4
    assert not decide(exc, attempt=8, max_attempts=8).retry


def test_an_outage_anywhere_in_the_chain_wins():
    try:
        try:
            raise ConnectionResetError("reset")
        except ConnectionResetError:
            raise ValueError("while parsing the answer")  # noqa: B904 - implicit __context__ on purpose
    except ValueError as exc:
        assert classify(exc) == TRANSIENT
