"""The read-only reporting user: DDL from one template, and the code that runs it (MySQL/MariaDB).

``templates/reporting_user.mysql.sql.template`` gets one ``GRANT SELECT`` per view file
(:func:`.view_files.load_views`); the result, with ``${user}``, ``${host}``, ``${database}`` and
``${password}`` left to fill, is checked in as ``sql/reporting_user.mysql.sql`` (a test keeps it
equal)::

    .venv/bin/python -m traffic_platform.orchestration.sql.reporting_user > sql/reporting_user.mysql.sql

:func:`create_reporting_user` (``traffic-platform db create-reporting-user NAME``) creates the
views first (a grant needs its object), then the user, with the password bound as a parameter.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from string import Template

from sqlalchemy import Engine, text

from ...domain.errors import BadRequest
from .dialects import MYSQL, dialect_of
from .reporting_tables import ensure_reporting_tables
from .transactions import write_transaction
from .view_files import TEMPLATES, ViewFile, apply_views, load_views

USER_TEMPLATE = TEMPLATES / "reporting_user.mysql.sql.template"
_USER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
_HOST = re.compile(r"^[A-Za-z0-9_.%:-]{1,255}$")


def render_reporting_user_sql(views: Sequence[ViewFile] | None = None) -> str:
    """The DDL with a grant per view and the other placeholders left in."""
    names = [v.name for v in (load_views() if views is None else views)]
    grants = "\n".join(f"GRANT SELECT ON `${{database}}`.`{name}` TO '${{user}}'@'${{host}}';" for name in names)
    return Template(USER_TEMPLATE.read_text(encoding="utf-8")).safe_substitute(grants=grants)


def reporting_user_statements(user: str, host: str, database: str, views: Sequence[ViewFile] | None = None) -> list[str]:
    """The statements for ``user@host`` on ``database``; the password is the bind parameter ``:password``."""
    if not _USER.match(user):
        raise BadRequest("A user name is a letter, then up to 31 letters, digits or underscores.", code="bad_user_name")
    if not _HOST.match(host):
        raise BadRequest(f"Not a host pattern: {host!r}.", code="bad_user_host")
    if not re.match(r"^[A-Za-z0-9_$]+$", database):
        raise BadRequest(f"Unexpected database name {database!r}.", code="bad_database_name")
    filled = Template(render_reporting_user_sql(views)).substitute(user=user, host=host, database=database, password=":password")
    body = "\n".join(line for line in filled.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in body.split(";\n") if statement.strip().rstrip(";")]


def create_reporting_user(engine: Engine, user: str, password: str, host: str = "%") -> list[str]:
    """Create (or reset) ``user`` so that it can SELECT every view and nothing else; return the views."""
    if dialect_of(engine) != MYSQL:
        raise BadRequest("A reporting user needs MySQL/MariaDB (TRAFFIC_DATABASE_URL); SQLite has no users.", code="not_mysql")
    views = load_views()
    ensure_reporting_tables(engine)
    with write_transaction(engine) as conn:
        apply_views(conn, views)
    database = engine.url.database or ""
    with engine.connect() as conn:
        for statement in reporting_user_statements(user, host, database, views):
            conn.execute(text(statement.rstrip(";")), {"password": password} if ":password" in statement else {})
        conn.commit()
    return [v.name for v in views]


if __name__ == "__main__":  # python -m traffic_platform.orchestration.sql.reporting_user > sql/reporting_user.mysql.sql
    sys.stdout.write(render_reporting_user_sql())
