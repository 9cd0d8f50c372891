"""The analysts' views (the Power BI contract): where their SQL lives and how it is applied.

The view files are package data, ``traffic_platform/orchestration/sql/views/*.sql``, read
with :mod:`importlib.resources`, so an installed (non-editable) package has them. The
per-window views ``v_traffic_counts_<window>.sql`` (long: one row per class) and
``v_traffic_counts_<window>_wide.sql`` (one column per class) are rendered from
``templates/v_traffic_counts.sql.template`` and ``templates/v_traffic_counts_wide.sql.template``
for every window in :data:`traffic_platform.orchestration.windows.WINDOWS`, and
``v_data_quality_daily.sql`` from its template (it reads the longest window's table); the
other views are written by hand. ``sql/views/`` at the repository root is a plain copy of the package folder for
reviewers and Power BI analysts (a copy, not a symlink: Git for Windows checks symlinks out
as one-line text files by default). Tests keep the rendered files and the copy equal to
this module. After changing a view or a window, regenerate both with::

    .venv/bin/python -m traffic_platform.orchestration.sql.view_files

Each file holds one ``CREATE OR REPLACE VIEW <name> AS SELECT …;`` whose name is the
file's stem, in SQL both MySQL and SQLite accept. MySQL runs the file as written; SQLite
(which has no ``OR REPLACE`` for views) gets ``DROP VIEW IF EXISTS <name>`` and
``CREATE VIEW <name> AS …``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from sqlalchemy.engine import Connection

from ...domain.classes import TRAFFIC_CLASSES, VEHICLE_CLASSES
from ..windows import WINDOWS, ReportingWindow
from .dialects import SQLITE, dialect_of

VIEWS: Traversable = files(__package__) / "views"
TEMPLATES: Traversable = files(__package__) / "templates"
COUNTS_VIEW_TEMPLATE: Traversable = TEMPLATES / "v_traffic_counts.sql.template"
WIDE_VIEW_TEMPLATE: Traversable = TEMPLATES / "v_traffic_counts_wide.sql.template"
DATA_QUALITY_VIEW_TEMPLATE: Traversable = TEMPLATES / "v_data_quality_daily.sql.template"
# Every generated view file starts with this; write_view_files drops generated files it no longer renders.
GENERATED_MARK = "-- Generated from traffic_platform/orchestration/sql/templates/"
_NAME = re.compile(r"^v_[a-z0-9_]+$")
_HEAD = re.compile(r"^\s*CREATE\s+OR\s+REPLACE\s+VIEW\s+([a-z0-9_]+)\s+AS\s+(.*?);?\s*$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class ViewFile:
    name: str
    select: str  # the SELECT after "AS"
    source: str  # where it was read from


def generated_header(template: Traversable) -> str:
    return (
        f"{GENERATED_MARK}{template.name}; do not edit.\n"
        "-- Regenerate: .venv/bin/python -m traffic_platform.orchestration.sql.view_files\n"
    )


GENERATED_HEADER = generated_header(COUNTS_VIEW_TEMPLATE)


def date_sql(col: str) -> str:
    """The local calendar day of a local datetime column, the key of ``v_dim_date`` (both dialects)."""
    return f"DATE({col})"


def time_slot_sql(col: str) -> str:
    """The 15-minute slot (0-95) a local datetime column falls in, the key of ``v_dim_time_of_day``.

    Portable: both dialects render a datetime cast to text as ``YYYY-MM-DD HH:MM:SS…``, take
    ``SUBSTR``, ``CAST(… AS SIGNED)`` (SQLite: numeric affinity) and ``CASE``.
    """
    text = f"CAST({col} AS CHAR)"
    minute = f"SUBSTR({text}, 15, 2)"
    return (f"CAST(SUBSTR({text}, 12, 2) AS SIGNED) * 4 + CASE WHEN {minute} < '15' THEN 0"
            f" WHEN {minute} < '30' THEN 1 WHEN {minute} < '45' THEN 2 ELSE 3 END")


def _render(template: Traversable, **values: str) -> str:
    return generated_header(template) + Template(template.read_text(encoding="utf-8")).substitute(**values)


def render_counts_view(window: ReportingWindow) -> str:
    """The text of ``v_traffic_counts_<window>.sql``: the template filled in for ``window``."""
    return _render(COUNTS_VIEW_TEMPLATE, window=window.name, view=window.view, table=window.table,
                   date=date_sql("t.window_start"), time_slot=time_slot_sql("t.window_start"))


def render_wide_view(window: ReportingWindow) -> str:
    """The text of ``v_traffic_counts_<window>_wide.sql``: one column per traffic class, plus ``vehicles``."""
    classes = ",\n".join(
        f"        CAST(SUM(CASE WHEN t.traffic_class = '{cls}' THEN t.total_count ELSE 0 END) AS SIGNED) AS {cls}"
        for cls in TRAFFIC_CLASSES)
    return _render(WIDE_VIEW_TEMPLATE, window=window.name, view=window.wide_view, table=window.table,
                   date=date_sql("w.window_start"), time_slot=time_slot_sql("w.window_start"),
                   class_sums=classes, class_columns=",\n".join(f"    w.{cls}" for cls in TRAFFIC_CLASSES),
                   vehicles=" + ".join(f"w.{cls}" for cls in VEHICLE_CLASSES),
                   vehicle_names=", ".join(VEHICLE_CLASSES))


def render_data_quality_view(windows: Sequence[ReportingWindow]) -> str:
    """The text of ``v_data_quality_daily.sql``; model versions come from the longest window's table
    (every window reports the same models for a day, the longest has the fewest rows)."""
    longest = max(windows, key=lambda w: w.seconds)
    return _render(DATA_QUALITY_VIEW_TEMPLATE, table=longest.table, day=date_sql("m.window_start"))


def render_counts_views(windows: Sequence[ReportingWindow] = WINDOWS) -> dict[str, str]:
    """File name -> text of every generated view: per window the counts and the wide view, and the
    data-quality view."""
    rendered = {f"{window.view}.sql": render_counts_view(window) for window in windows}
    rendered |= {f"{window.wide_view}.sql": render_wide_view(window) for window in windows}
    if windows:
        rendered["v_data_quality_daily.sql"] = render_data_quality_view(windows)
    return dict(sorted(rendered.items()))


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def parse_view(file_name: str, sql: str, source: str = "") -> ViewFile:
    """Validate one view file; raise ``ValueError`` naming it if it breaks the contract above."""
    stem = file_name.removesuffix(".sql")
    if not _NAME.match(stem):
        raise ValueError(f"{file_name}: a view file must be named v_<lower_snake_case>.sql")
    match = _HEAD.match(_strip_comments(sql))
    if not match or match.group(1) != stem:
        raise ValueError(f"{file_name}: expected exactly one 'CREATE OR REPLACE VIEW {stem} AS SELECT …;'")
    body = match.group(2).strip()
    if ";" in body:
        raise ValueError(f"{file_name}: one statement per file")
    return ViewFile(stem, body, source or file_name)


def load_views(directory: Traversable | Path = VIEWS) -> list[ViewFile]:
    """Parse and validate every view file, sorted by name; raise ``ValueError`` naming a bad one."""
    if not directory.is_dir():
        raise FileNotFoundError(f"view directory {directory} does not exist (the views ship as package data)")
    entries = sorted((entry for entry in directory.iterdir() if entry.name.endswith(".sql")), key=lambda e: e.name)
    return [parse_view(entry.name, entry.read_text(encoding="utf-8"), str(entry)) for entry in entries]


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


def write_view_files(package_dir: Path, copies: Sequence[Path], windows: Sequence[ReportingWindow] = WINDOWS) -> list[Path]:
    """Render the per-window views into ``package_dir`` (dropping generated ones of windows no longer
    declared), then make every directory in ``copies`` hold exactly the package's view files."""
    rendered = render_counts_views(windows)
    for path in package_dir.glob("*.sql"):
        if path.name not in rendered and path.read_text(encoding="utf-8").startswith(GENERATED_MARK):
            path.unlink()
    written = []
    for name, text in rendered.items():
        (package_dir / name).write_text(text, encoding="utf-8")
        written.append(package_dir / name)
    sources = {path.name: path.read_bytes() for path in package_dir.glob("*.sql")}
    for copy in copies:
        copy.mkdir(parents=True, exist_ok=True)
        for path in copy.glob("*.sql"):
            if path.name not in sources:
                path.unlink()
        for name, data in sources.items():
            (copy / name).write_bytes(data)
            written.append(copy / name)
    return written


if __name__ == "__main__":  # python -m traffic_platform.orchestration.sql.view_files (in a source checkout)
    here = Path(__file__).resolve().parent
    for path in write_view_files(here / "views", [here.parents[2] / "sql" / "views"]):
        sys.stdout.write(f"wrote {path}\n")
