"""``GET /v1/counts`` and ``GET /v1/locations``: parameters, cursors and formats over the views.

Registered on the one :class:`~.api.Api` (local server and ingest Lambda alike) through its
``counts`` argument; the queries are :mod:`traffic_platform.storage.counts`.

* ``window`` = ``15min`` | ``hour`` | ``day`` -> the view ``v_traffic_counts_15min|hourly|daily``
  (the API's names are a public contract of their own, so they are spelled here).
* ``from`` / ``to``: local dates ``YYYY-MM-DD``, inclusive, at most :data:`MAX_DAYS` days.
* ``country``, ``city``, ``address``, ``model_version``: exact match; ``class``: comma-separated.
* ``format`` = ``json`` | ``csv`` | ``parquet``, else the ``Accept`` header, else JSON.
* ``limit`` (default 10 000, at most 100 000) and ``cursor``: an opaque keyset cursor, URL-safe
  base64 of ``{"w": window, "q": <hash of the filters>, "k": <last row's key>}``; it is refused
  (``bad_cursor``) with other filters than the ones it was made for.

Numbers are the view's own: floats are written with their shortest round-trip repr (JSON, CSV)
or as float64 (Parquet), so they equal the view's to the last digit.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from ..domain.classes import TRAFFIC_CLASSES
from ..domain.errors import BadRequest, NotAcceptable, ServiceUnavailable
from ..storage.counts import (
    COUNT_COLUMNS,
    DATETIME,
    DOUBLE,
    INTEGER,
    LOCATION_COLUMNS,
    TEXT,
    CountsQuery,
    CountsReader,
)
from .api import Request, Response

COUNTS_PATH, LOCATIONS_PATH = "/v1/counts", "/v1/locations"
WINDOW_VIEWS = {"15min": "v_traffic_counts_15min", "hour": "v_traffic_counts_hourly", "day": "v_traffic_counts_daily"}
MAX_DAYS = 366
DEFAULT_LIMIT, MAX_LIMIT = 10_000, 100_000
CONTENT_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
_ACCEPT = (("text/csv", "csv"), ("application/vnd.apache.parquet", "parquet"), ("application/x-parquet", "parquet"),
           ("application/parquet", "parquet"), ("application/json", "json"))
FILTERS = ("country", "city", "address", "class", "model_version")
COUNTS_PARAMETERS = frozenset({"window", "from", "to", *FILTERS, "format", "limit", "cursor"})


def _bad(code: str, message: str, **details: Any) -> BadRequest:
    return BadRequest(message, code=code, details=details or None)


def _day(query: Mapping[str, str], name: str) -> date:
    raw = query.get(name)
    if not raw:
        raise _bad("missing_parameter", f"Give '{name}' as a local date YYYY-MM-DD.", parameter=name)
    try:
        if len(raw) != 10:
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        raise _bad("bad_date", f"'{name}' must be a date YYYY-MM-DD, got {raw!r}.", parameter=name) from None


def choose_format(query: Mapping[str, str], headers: Mapping[str, str]) -> str:
    fmt = query.get("format")
    if fmt is not None:
        if fmt not in CONTENT_TYPES:
            raise _bad("bad_format", f"format must be one of {', '.join(CONTENT_TYPES)}.", parameter="format")
        return fmt
    accept = headers.get("accept", "").lower()
    for media, name in _ACCEPT:
        if media in accept:
            return name
    return "json"


def _filters_hash(window: str, query: Mapping[str, str]) -> str:
    canonical = json.dumps([window, query.get("from"), query.get("to"), *(query.get(f) for f in FILTERS)])
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_cursor(window: str, query: Mapping[str, str], key: tuple) -> str:
    when, *rest = key
    payload = {"w": window, "q": _filters_hash(window, query), "k": [when.isoformat(), *rest]}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()).decode().rstrip("=")


def decode_cursor(window: str, query: Mapping[str, str], cursor: str) -> tuple:
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        when, location_id, model_name, model_version, traffic_class = payload["k"]
        key = (datetime.fromisoformat(when), int(location_id), str(model_name), str(model_version), str(traffic_class))
        ok = payload["w"] == window and payload["q"] == _filters_hash(window, query)
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise _bad("bad_cursor", "The cursor is not one this query returned; follow 'next' without changing the other parameters.",
                   parameter="cursor")
    return key


def parse_counts_query(query: Mapping[str, str]) -> tuple[str, CountsQuery]:
    """(window, the query) from the request parameters; :class:`BadRequest` with a stable code otherwise."""
    unknown = sorted(set(query) - COUNTS_PARAMETERS)
    if unknown:
        raise _bad("unknown_parameter", f"Unknown parameter(s) {', '.join(unknown)}; see /openapi.json.", parameters=unknown)
    window = query.get("window")
    if not window:
        raise _bad("missing_parameter", "Give 'window': 15min, hour or day.", parameter="window")
    if window not in WINDOW_VIEWS:
        raise _bad("bad_window", f"window must be one of {', '.join(WINDOW_VIEWS)}, got {window!r}.", parameter="window")
    first, last = _day(query, "from"), _day(query, "to")
    if first > last:
        raise _bad("bad_date_range", "'from' must not be after 'to'.")
    if (last - first).days + 1 > MAX_DAYS:
        raise _bad("date_range_too_long", f"Ask for at most {MAX_DAYS} days at a time.", max_days=MAX_DAYS)
    classes = None
    if query.get("class"):
        classes = [c.strip() for c in query["class"].split(",") if c.strip()]
        wrong = [c for c in classes if c not in TRAFFIC_CLASSES]
        if wrong or not classes:
            raise _bad("bad_class", f"class must be among {', '.join(TRAFFIC_CLASSES)}.", parameter="class", unknown=wrong)
    raw_limit = query.get("limit")
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise _bad("bad_limit", f"limit must be a whole number from 1 to {MAX_LIMIT}.", parameter="limit")
        limit = int(raw_limit)
    after = decode_cursor(window, query, query["cursor"]) if query.get("cursor") else None
    start = datetime.combine(first, datetime.min.time())
    return window, CountsQuery(
        view=WINDOW_VIEWS[window], start=start, end=datetime.combine(last + timedelta(days=1), datetime.min.time()),
        country=query.get("country") or None, city=query.get("city") or None, address=query.get("address") or None,
        classes=classes, model_version=query.get("model_version") or None, limit=limit, after=after,
    )


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else value


def render_rows(fmt: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, Any]],
                envelope: Mapping[str, Any] | None = None) -> Response:
    """``rows`` as JSON (inside ``envelope``), CSV with a header row, or typed Parquet."""
    names = [name for name, _ in columns]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow(["" if row[n] is None else repr(row[n]) if isinstance(row[n], float) else _plain(row[n]) for n in names])
        return Response(200, buf.getvalue().encode("utf-8"), CONTENT_TYPES["csv"])
    if fmt == "parquet":
        return Response(200, _parquet(rows, columns), CONTENT_TYPES["parquet"])
    envelope = dict(envelope or {})
    last = {"next": envelope.pop("next")} if "next" in envelope else {}
    return Response.json(200, {**envelope, "rows": [{n: _plain(row[n]) for n in names} for row in rows], **last})


def _parquet(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, Any]]) -> bytes:
    try:  # lazy: the Lambda imports this module without pyarrow being loaded
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # the Lambda package leaves pyarrow out (170 MB of Lambda's 250 MB)
        raise NotAcceptable(
            "Parquet is not available on this deployment (pyarrow is not installed); "
            "ask for format=csv or format=json.", details={"format": "parquet"}
        ) from None

    types = {DATETIME: pa.timestamp("us"), INTEGER: pa.int64(), DOUBLE: pa.float64(), TEXT: pa.string()}
    schema = pa.schema([(name, types[kind]) for name, kind in columns])
    data = {name: [row[name] for row in rows] for name, _ in columns}
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pydict(data, schema=schema), buf)
    return buf.getvalue()


class CountsApi:
    """The read routes of the analysts' contract, for :class:`~.api.Api` (``counts=``)."""

    paths = (COUNTS_PATH, LOCATIONS_PATH)

    def __init__(self, reader: CountsReader):
        self.reader = reader

    @classmethod
    def for_url(cls, database_url: str) -> CountsApi:
        return cls(CountsReader.for_url(database_url))

    def handle(self, req: Request, path: str) -> Response:
        if req.method not in ("GET", "HEAD"):
            body = {"error": {"code": "method_not_allowed", "message": "Use GET on this path."}}
            return Response(405, json.dumps(body).encode(), headers={"Allow": "GET"})
        fmt = choose_format(req.query, req.headers)
        if path == LOCATIONS_PATH:
            return render_rows(fmt, self._read(self.reader.locations), LOCATION_COLUMNS, {})
        window, query = parse_counts_query(req.query)
        page = self._read(lambda: self.reader.counts(query))
        next_path = None
        if page.last_key is not None:
            params = {k: v for k, v in req.query.items() if k != "cursor"}
            next_path = f"{COUNTS_PATH}?{urlencode({**params, 'cursor': encode_cursor(window, req.query, page.last_key)})}"
        response = render_rows(fmt, page.rows, COUNT_COLUMNS, {"window": window, "next": next_path})
        if next_path and fmt != "json":
            response.headers["Link"] = f'<{next_path}>; rel="next"'
        return response

    @staticmethod
    def _read(call):
        from sqlalchemy.exc import DBAPIError

        try:
            return call()
        except DBAPIError as exc:
            raise ServiceUnavailable(
                "The reporting views cannot be read (not created yet, or the database is down); "
                "run `traffic-platform report` or retry shortly.", code="reporting_unavailable",
                details={"error": type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__}) from None
