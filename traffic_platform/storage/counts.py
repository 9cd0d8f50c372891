"""Reads the analysts' count views with keyset pagination (the counts API's queries).

Rows come from ``v_traffic_counts_<window>`` exactly as the view has them, in the order of
the counts tables' primary key (``window_start, location_id, model_name, model_version,
traffic_class``), so a page ends at a key and the next page starts strictly after it: a
stable keyset, however many rows are written meanwhile elsewhere. The views are created by
the Dagster ``reporting/views`` asset; this module only reads them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

# Column types by name; SQLAlchemy is imported only when a query runs, so the ingest Lambda
# (which registers the counts routes) starts without it.
TEXT, DATETIME, INTEGER, DOUBLE = "text", "datetime", "integer", "double"

# The columns the counts API returns, in order, with their types.
COUNT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("address", TEXT), ("city", TEXT), ("country", TEXT), ("window_start", DATETIME),
    ("traffic_class", TEXT), ("model_name", TEXT), ("model_version", TEXT),
    ("images_received", INTEGER), ("images_accepted", INTEGER), ("images_distorted", INTEGER),
    ("images_degraded", INTEGER), ("degraded_share", DOUBLE), ("images_excluded_health", INTEGER),
    ("total_count", INTEGER), ("mean_per_image", DOUBLE), ("max_per_image", INTEGER),
    ("share_with_any", DOUBLE), ("expected_images", DOUBLE), ("coverage", DOUBLE),
)
# The keyset: the counts tables' primary key.
KEY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("window_start", DATETIME), ("location_id", INTEGER), ("model_name", TEXT), ("model_version", TEXT),
    ("traffic_class", TEXT),
)
LOCATION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("location_id", INTEGER), ("address", TEXT), ("address_token", TEXT), ("city", TEXT),
    ("country", TEXT), ("timezone", TEXT), ("first_captured_at", DATETIME), ("last_captured_at", DATETIME),
    ("last_ingested_at", DATETIME), ("images_total", INTEGER), ("images_distorted", INTEGER),
    ("is_active", INTEGER), ("refreshed_at", DATETIME),
)
_COUNTS_VIEW = re.compile(r"^v_traffic_counts_[a-z0-9]+$")


@dataclass(frozen=True)
class CountsQuery:
    """``start <= window_start < end`` (local times) in ``view``, exact-match filters, after ``after``."""

    view: str
    start: datetime
    end: datetime
    country: str | None = None
    city: str | None = None
    address: str | None = None
    classes: Sequence[str] | None = None
    model_version: str | None = None
    limit: int = 10_000
    after: tuple | None = None  # the key of the last row of the previous page


@dataclass(frozen=True)
class CountsPage:
    rows: list[dict[str, Any]]
    last_key: tuple | None  # the key of the last row when more rows follow, else None


def _view(name: str, columns: Sequence[tuple[str, str]]):
    from sqlalchemy import DateTime, Double, Integer, String, column, table

    types = {TEXT: String, DATETIME: DateTime, INTEGER: Integer, DOUBLE: Double}
    seen: dict[str, str] = {}
    for col, kind in columns:
        seen.setdefault(col, kind)
    return table(name, *(column(col, types[kind]()) for col, kind in seen.items()))


class CountsReader:
    """Queries over the reporting views; the engine is made on first use (``engine`` may be a factory)."""

    def __init__(self, engine: Engine | Callable[[], Engine]):
        self._engine = None if callable(engine) and not hasattr(engine, "connect") else engine
        self._factory = engine if self._engine is None else None

    @classmethod
    def for_url(cls, url: str) -> CountsReader:
        """A reader that connects to ``url`` at its first query (the Lambda starts without a database round trip)."""

        def connect() -> Engine:
            from .database import make_engine

            return make_engine(url)

        return cls(connect)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._factory()
        return self._engine

    def counts(self, query: CountsQuery) -> CountsPage:
        from sqlalchemy import DateTime, bindparam, select, tuple_

        if not _COUNTS_VIEW.match(query.view):
            raise ValueError(f"not a counts view: {query.view!r}")
        view = _view(query.view, (*COUNT_COLUMNS, *KEY_COLUMNS))
        c = view.c
        key = [c[name] for name, _ in KEY_COLUMNS]
        names = dict.fromkeys([name for name, _ in (*COUNT_COLUMNS, *KEY_COLUMNS)])
        stmt = select(*(c[name] for name in names)).where(
            c.window_start >= bindparam("start", query.start, type_=DateTime),
            c.window_start < bindparam("end", query.end, type_=DateTime),
        )
        for name in ("country", "city", "address", "model_version"):
            value = getattr(query, name)
            if value is not None:
                stmt = stmt.where(c[name] == value)
        if query.classes:
            stmt = stmt.where(c.traffic_class.in_(list(query.classes)))
        if query.after is not None:
            stmt = stmt.where(tuple_(*key) > tuple_(*(bindparam(None, v, type_=col.type) for col, v in zip(key, query.after, strict=True))))
        stmt = stmt.order_by(*key).limit(query.limit + 1)
        with self.engine.connect() as conn:
            found = [dict(r) for r in conn.execute(stmt).mappings()]
        more = len(found) > query.limit
        found = found[: query.limit]
        last = tuple(found[-1][name] for name, _ in KEY_COLUMNS) if more and found else None
        rows = [{name: row[name] for name, _ in COUNT_COLUMNS} for row in found]
        return CountsPage(rows, last)

    def locations(self) -> list[dict[str, Any]]:
        from sqlalchemy import select

        view = _view("v_locations", LOCATION_COLUMNS)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(view).order_by(view.c.location_id)).mappings()]
