"""The partition's captures, read once into a temporary table that the checks join to.

A check step reads a day's rows and nothing else: the captures from the covering
``ix_captures_captured_at`` into :data:`DAY_CAPTURES` (keyed by ``capture_id``), the
detections and counts from their own day indexes (``captured_at`` is copied onto them,
``storage/tables.py``). The joins then look up a small table of this day, never the whole
``captures`` table, so a check costs the same with one day of history as with a year.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, bindparam, text
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import TextClause

from ...storage.tables import exact_text, hex_id
from ..partitions import partition_bounds
from ..sql.dialects import dialect_of, drop_temporary_table
from ..sql.reporting_tables import local_datetime

DAY_CAPTURES = "tmp_check_captures"

_FILL = text(
    f"INSERT INTO {DAY_CAPTURES} (capture_id, captured_at, location_id, status, width, height, model_name, model_version)"
    " SELECT c.capture_id, c.captured_at, c.location_id, c.status, c.width, c.height, c.model_name, c.model_version"
    " FROM captures c WHERE c.captured_at >= :start AND c.captured_at < :end"
)


def partition_params(partition_key: str) -> list:
    """``:start`` and ``:end``: the partition's local day, as bound parameters."""
    start, end = partition_bounds(partition_key)
    return [bindparam("start", start, type_=DateTime), bindparam("end", end, type_=DateTime)]


def _table() -> Table:
    return Table(
        DAY_CAPTURES, MetaData(),
        Column("capture_id", hex_id(32), primary_key=True),
        Column("captured_at", local_datetime(), nullable=False),
        Column("location_id", Integer, nullable=False),
        Column("status", String(16), nullable=False),
        Column("width", Integer, nullable=True),
        Column("height", Integer, nullable=True),
        Column("model_name", exact_text(200), nullable=True),
        Column("model_version", exact_text(64), nullable=True),
        prefixes=["TEMPORARY"],
    )


@contextmanager
def temporary_table(conn: Connection, table: Table, fill: TextClause) -> Iterator[int]:
    """Create the temporary ``table``, fill it with ``fill`` (bound) and drop it after the block;
    yields how many rows it holds."""
    drop = text(drop_temporary_table(dialect_of(conn), table.name))
    conn.execute(drop)  # left over on this pooled connection by a failed run
    table.create(conn)
    try:
        yield int(conn.execute(fill).rowcount)
    finally:
        conn.execute(drop)


def day_captures(conn: Connection, partition_key: str) -> AbstractContextManager[int]:
    """:data:`DAY_CAPTURES` filled with the partition's captures for the block; yields how many."""
    return temporary_table(conn, _table(), _FILL.bindparams(*partition_params(partition_key)))
