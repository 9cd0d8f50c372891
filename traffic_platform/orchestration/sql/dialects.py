"""The few SQL fragments that differ between MySQL/MariaDB and SQLite.

Every fragment is a fixed string from the tables below; ``{col}``/``{a}``/``{b}`` are
filled only with column names from the callers' own fixed SQL, never with values.
SQLite keeps datetimes as text ``YYYY-MM-DD HH:MM:SS.ffffff`` (SQLAlchemy's format), so
its window starts are rendered in that same format to compare correctly with bound
datetimes.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection, Engine

MYSQL = "mysql"
SQLITE = "sqlite"

# (dialect, window) -> expression of the window's local start from a local datetime column.
_WINDOW_START = {
    (MYSQL, "15min"): "TIMESTAMPADD(MINUTE, HOUR({col}) * 60 + (MINUTE({col}) DIV 15) * 15, CAST(DATE({col}) AS DATETIME))",
    (MYSQL, "hourly"): "TIMESTAMPADD(HOUR, HOUR({col}), CAST(DATE({col}) AS DATETIME))",
    (MYSQL, "daily"): "CAST(DATE({col}) AS DATETIME)",
    (SQLITE, "15min"): "strftime('%Y-%m-%d %H:%M:00.000000', {col}, '-' || (CAST(strftime('%M', {col}) AS INTEGER) % 15) || ' minutes')",
    (SQLITE, "hourly"): "strftime('%Y-%m-%d %H:00:00.000000', {col})",
    (SQLITE, "daily"): "strftime('%Y-%m-%d 00:00:00.000000', {col})",
}
# Seconds from datetime a to datetime b.
_SECONDS_BETWEEN = {
    MYSQL: "TIMESTAMPDIFF(SECOND, {a}, {b})",
    SQLITE: "ROUND((julianday({b}) - julianday({a})) * 86400.0)",
}
# The local calendar day of a datetime, as a DATE (MySQL) / 'YYYY-MM-DD' text (SQLite).
_DAY = {MYSQL: "DATE({col})", SQLITE: "date({col})"}


def dialect_of(bind: Engine | Connection) -> str:
    name = bind.dialect.name
    if name in ("mysql", "mariadb"):
        return MYSQL
    if name == "sqlite":
        return SQLITE
    raise ValueError(f"unsupported database dialect {name!r}")


def window_start(dialect: str, window: str, col: str) -> str:
    return _WINDOW_START[(dialect, window)].format(col=col)


def seconds_between(dialect: str, a: str, b: str) -> str:
    return _SECONDS_BETWEEN[dialect].format(a=a, b=b)


def day_of(dialect: str, col: str) -> str:
    return _DAY[dialect].format(col=col)
