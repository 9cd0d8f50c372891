"""Engines and schema migrations.

* :func:`make_engine` — one engine per process (pooled, pre-pinged). SQLite gets WAL with
  ``synchronous=FULL`` (a commit survives a power cut before the spool forgets the job),
  foreign keys, a busy timeout and real transactions (SQLAlchemy emits ``BEGIN``);
  MySQL/MariaDB get ``utf8mb4``; ``?aws_secret=<ARN>`` in the URL takes user and password
  from Secrets Manager per new connection (:mod:`.credentials`).
* :func:`upgrade` / :func:`current_revision` — Alembic, configured in code (no ini file).
* :func:`render_mysql_ddl` — the DDL production runs, rendered offline; it is checked in
  as ``sql/schema.mysql.sql`` (regenerate: ``python -m traffic_platform.storage.database``).
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url

from ..domain.redact import redact

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATION_LOCK = "traffic_platform_migrate"
# Execution option: on SQLite, open the transaction with BEGIN IMMEDIATE (take the write
# lock up front) so a read-then-write transaction cannot fail with SQLITE_BUSY_SNAPSHOT.
SQLITE_IMMEDIATE = "traffic_sqlite_immediate"
# ``mysql+pymysql://host/db?aws_secret=<ARN>``: user and password come from that secret (.credentials)
AWS_SECRET_PARAMETER = "aws_secret"
DDL_HEADER = (
    "-- MySQL / Aurora MySQL DDL of the traffic platform's ingest tables.\n"
    "-- Generated from the Alembic migrations in traffic_platform/storage/migrations; do not edit.\n"
    "-- Regenerate: .venv/bin/python -m traffic_platform.storage.database > sql/schema.mysql.sql\n\n"
)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``mysql+pymysql://...``). Create once per process."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy's message quotes the whole URL, password included
        raise ValueError(redact(f"invalid database URL: {exc}")) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, pool_pre_ping=True, **kwargs)
        _configure_sqlite(engine)
        return engine
    if backend in ("mysql", "mariadb"):
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        secret = parsed.query.get(AWS_SECRET_PARAMETER)
        if secret is not None:
            parsed = parsed.difference_update_query([AWS_SECRET_PARAMETER])
        kwargs.setdefault("pool_recycle", 3600)  # below the server's wait_timeout
        engine = create_engine(parsed, pool_pre_ping=True, **kwargs)
        if secret is not None:
            from .credentials import SecretCredentials, install

            given = {k for k, v in (("host", parsed.host), ("port", parsed.port), ("database", parsed.database)) if v}
            install(engine, SecretCredentials(str(secret)), given)
        return engine
    raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # FULL, not NORMAL: with WAL, NORMAL may lose the last commits on a power cut, and the
        # spool worker deletes its job file (fsync'ed) right after the commit returns, so a
        # rolled-back commit would be a lost capture. FULL syncs the WAL on every commit (one
        # fsync per capture; readers pay nothing).
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(SQLITE_IMMEDIATE)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_database(engine: Engine, name: str) -> bool:
    """``CREATE DATABASE IF NOT EXISTS name`` (utf8mb4) on MySQL/MariaDB; True if it was created.

    For a second schema on the same server, e.g. Dagster's run storage beside ours (both use
    Alembic, whose ``alembic_version`` tables would collide in one schema).
    """
    from ..domain.errors import BadRequest

    if engine.dialect.name not in ("mysql", "mariadb"):
        raise BadRequest("Creating a database needs MySQL/MariaDB (TRAFFIC_DATABASE_URL); SQLite is one file.",
                         code="not_mysql")
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", name):
        raise BadRequest(f"A database name is 1-64 letters, digits or underscores, got {name!r}.",
                         code="bad_database_name")
    with engine.connect() as conn:
        exists = conn.scalar(text("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = :n"), {"n": name})
        conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
        conn.commit()
    return not exists


def writer(engine: Engine) -> Engine:
    """``engine`` for read-then-write transactions (on SQLite they take the write lock first)."""
    return engine.execution_options(**{SQLITE_IMMEDIATE: True})


def alembic_config(
    url: str | None = None,
    *,
    connection: Connection | None = None,
    output: io.StringIO | None = None,
):
    """An Alembic ``Config`` for the package's migrations, without an ini file."""
    from alembic.config import Config

    cfg = Config(output_buffer=output) if output is not None else Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision``; a no-op when it is already there.

    Concurrent callers are serialised (MySQL ``GET_LOCK``; SQLite ``BEGIN IMMEDIATE``).
    """
    from alembic import command

    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with writer(engine).begin() as conn:
            locked = conn.dialect.name in ("mysql", "mariadb")
            if locked and conn.scalar(text("SELECT GET_LOCK(:n, 300)"), {"n": MIGRATION_LOCK}) != 1:
                raise RuntimeError("timed out waiting for another process's schema migration")
            try:
                command.upgrade(alembic_config(connection=conn), revision)
            finally:
                if locked:
                    conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": MIGRATION_LOCK})
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` before the first migration."""
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision the code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def render_mysql_ddl() -> str:
    """The MySQL DDL of all migrations (Alembic offline mode), with a header; deterministic."""
    from alembic import command

    buffer = io.StringIO()
    command.upgrade(alembic_config("mysql+pymysql://", output=buffer), "head", sql=True)
    body = "\n".join(line.rstrip() for line in buffer.getvalue().strip().splitlines())
    return DDL_HEADER + body + "\n"


if __name__ == "__main__":  # python -m traffic_platform.storage.database > sql/schema.mysql.sql
    sys.stdout.write(render_mysql_ddl())
