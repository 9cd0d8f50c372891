"""The few SQL fragments that differ between MySQL/MariaDB and SQLite.

Every fragment is a fixed string from the tables below; ``{col}``/``{a}``/``{b}``/``{table}`` are
filled only with column and table names from the callers' own fixed SQL, never with values, and
``{s}`` only with a window length checked to be an integer.
SQLite keeps datetimes as text ``YYYY-MM-DD HH:MM:SS.ffffff`` (SQLAlchemy's format), so
its window starts are rendered in that same format to compare correctly with bound
datetimes.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection, Engine

MYSQL = "mysql"
SQLITE = "sqlite"

# Expression of the start of the window of ``{s}`` seconds (a divisor of a day) holding a
# local datetime column: its midnight plus its seconds since midnight rounded down to a
# multiple of {s}. Derived from the length only, so a new window needs no SQL of its own.
_WINDOW_START = {
    MYSQL: "TIMESTAMPADD(SECOND, ((HOUR({col}) * 3600 + MINUTE({col}) * 60 + SECOND({col})) DIV {s}) * {s},"
    " CAST(DATE({col}) AS DATETIME))",
    SQLITE: "strftime('%Y-%m-%d %H:%M:%S.000000', {col}, 'start of day', '+' || (((CAST(strftime('%H', {col}) AS INTEGER)"
    " * 3600 + CAST(strftime('%M', {col}) AS INTEGER) * 60 + CAST(strftime('%S', {col}) AS INTEGER)) / {s}) * {s}) || ' seconds')",
}
# Seconds from datetime a to datetime b.
_SECONDS_BETWEEN = {
    MYSQL: "TIMESTAMPDIFF(SECOND, {a}, {b})",
    SQLITE: "ROUND((julianday({b}) - julianday({a})) * 86400.0)",
}
# An inner join that keeps the written table order (the left side drives). MariaDB's estimates
# of a freshly loaded table can make it drive the day's join from all of capture_counts
# (a full scan and a capture lookup per count row) instead of from the day's captures.
_ORDERED_JOIN = {MYSQL: "STRAIGHT_JOIN", SQLITE: "JOIN"}
# A table read through one named index. MariaDB prefers the primary key for ``capture_id`` lookups
# even where a day index keeps them next to each other (random pages of the whole history).
_INDEXED = {MYSQL: "{table} {alias} FORCE INDEX ({index})", SQLITE: "{table} AS {alias} INDEXED BY {index}"}
# Drop a temporary table if this connection has one. MySQL needs TEMPORARY: a plain DROP TABLE
# commits the open transaction.
_DROP_TEMPORARY = {MYSQL: "DROP TEMPORARY TABLE IF EXISTS {table}", SQLITE: "DROP TABLE IF EXISTS temp.{table}"}
# The local calendar day of a datetime, as a DATE (MySQL) / 'YYYY-MM-DD' text (SQLite).
_DAY = {MYSQL: "DATE({col})", SQLITE: "date({col})"}


def dialect_of(bind: Engine | Connection) -> str:
    name = bind.dialect.name
    if name in ("mysql", "mariadb"):
        return MYSQL
    if name == "sqlite":
        return SQLITE
    raise ValueError(f"unsupported database dialect {name!r}")


def window_start(dialect: str, seconds: int, col: str) -> str:
    """The start of the ``seconds``-long window (aligned at midnight) that holds ``col``."""
    if not (isinstance(seconds, int) and 0 < seconds <= 86400 and 86400 % seconds == 0):
        raise ValueError(f"a window length must divide a day, got {seconds!r}")
    return _WINDOW_START[dialect].format(col=col, s=seconds)


def seconds_between(dialect: str, a: str, b: str) -> str:
    return _SECONDS_BETWEEN[dialect].format(a=a, b=b)


def ordered_join(dialect: str) -> str:
    """``JOIN`` that the database executes left side first (``STRAIGHT_JOIN`` on MySQL; SQLite keeps it)."""
    return _ORDERED_JOIN[dialect]


def indexed(dialect: str, table: str, alias: str, index: str) -> str:
    """``table alias`` in a FROM clause, read through ``index`` (fixed identifiers of the caller's)."""
    return _INDEXED[dialect].format(table=table, alias=alias, index=index)


def drop_temporary_table(dialect: str, table: str) -> str:
    """``DROP`` of the temporary table ``table`` (a fixed identifier of the caller's), without committing."""
    return _DROP_TEMPORARY[dialect].format(table=table)


def day_of(dialect: str, col: str) -> str:
    return _DAY[dialect].format(col=col)
