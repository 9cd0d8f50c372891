"""Write data the schema would refuse (orphans, unknown classes) on purpose, to prove the checks fail."""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url


def execute_unchecked(engine: Engine, sql: str, params: dict[str, Any] | None = None) -> int:
    """Run one statement with foreign-key and CHECK constraints off; return the row count."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(make_url(url).database)
        try:
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("PRAGMA ignore_check_constraints = ON")
            cur = conn.execute(sql, params or {})
            conn.commit()
            return cur.rowcount
        finally:
            conn.close()
    with engine.connect() as conn:
        conn.execute(text("SET SESSION foreign_key_checks = 0, check_constraint_checks = 0"))
        try:
            result = conn.execute(text(sql), params or {})
            conn.commit()
            return result.rowcount
        finally:
            conn.execute(text("SET SESSION foreign_key_checks = 1, check_constraint_checks = 1"))
            conn.commit()
