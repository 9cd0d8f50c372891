"""The analysts' views (``sql/views/*.sql``, the Power BI contract) and how they are applied.

Each file holds one ``CREATE OR REPLACE VIEW <name> AS SELECT …;`` whose name is the
file's stem, in SQL both MySQL and SQLite accept. MySQL runs the file as written; SQLite
(which has no ``OR REPLACE`` for views) gets ``DROP VIEW IF EXISTS <name>`` and
``CREATE VIEW <name> AS …``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Connection

from .dialects import SQLITE, dialect_of

VIEWS_DIR = Path(__file__).resolve().parents[3] / "sql" / "views"
_NAME = re.compile(r"^v_[a-z0-9_]+$")
_HEAD = re.compile(r"^\s*CREATE\s+OR\s+REPLACE\s+VIEW\s+([a-z0-9_]+)\s+AS\s+(.*?);?\s*$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class ViewFile:
    name: str
    select: str  # the SELECT after "AS"
    path: Path


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def load_views(directory: Path = VIEWS_DIR) -> list[ViewFile]:
    """Parse and validate every view file, sorted by name; raise ``ValueError`` naming a bad one."""
    if not directory.is_dir():
        raise FileNotFoundError(f"view directory {directory} does not exist (the views ship with the repository's sql/)")
    views = []
    for path in sorted(directory.glob("*.sql")):
        if not _NAME.match(path.stem):
            raise ValueError(f"{path.name}: a view file must be named v_<lower_snake_case>.sql")
        match = _HEAD.match(_strip_comments(path.read_text(encoding="utf-8")))
        if not match or match.group(1) != path.stem:
            raise ValueError(f"{path.name}: expected exactly one 'CREATE OR REPLACE VIEW {path.stem} AS SELECT …;'")
        body = match.group(2).strip()
        if ";" in body:
            raise ValueError(f"{path.name}: one statement per file")
        views.append(ViewFile(path.stem, body, path))
    return views


def apply_views(conn: Connection, views: list[ViewFile]) -> list[str]:
    """Create or replace ``views`` on ``conn``; return their names. Names are validated by :func:`load_views`."""
    sqlite = dialect_of(conn) == SQLITE
    for view in views:
        if not _NAME.match(view.name):
            raise ValueError(f"invalid view name {view.name!r}")
        if sqlite:
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {view.name}")
            conn.exec_driver_sql(f"CREATE VIEW {view.name} AS {view.select}")
        else:
            conn.exec_driver_sql(f"CREATE OR REPLACE VIEW {view.name} AS {view.select}")
    return [view.name for view in views]
