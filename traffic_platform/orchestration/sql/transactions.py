"""One transaction per partition write."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from ...storage.database import writer
from .dialects import MYSQL, dialect_of


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction for DELETE + INSERT … SELECT.

    SQLite takes the write lock up front (``BEGIN IMMEDIATE``). MySQL runs it at READ
    COMMITTED so that ``INSERT … SELECT`` reads the ingest tables without the shared
    next-key locks REPEATABLE READ would hold on them, i.e. without blocking ingest.
    """
    bind = writer(engine)
    if dialect_of(engine) == MYSQL:
        bind = bind.execution_options(isolation_level="READ COMMITTED")
    with bind.begin() as conn:
        yield conn
