"""GET /v1/counts and /v1/locations on SQLite and MariaDB: every format's rows equal the view's."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import sys
from datetime import datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import text

from traffic_platform.config import Settings
from traffic_platform.ingest.api import Request
from traffic_platform.ingest.lambda_handlers import ingest_handler
from traffic_platform.ingest.local import LocalPlatform
from traffic_platform_tests.orchestration import datagen, reporting_data
from traffic_platform_tests.orchestration.reporting_data import as_datetime

COLUMNS = ["address", "city", "country", "window_start", "traffic_class", "model_name", "model_version",
           "images_received", "images_accepted", "images_distorted", "images_degraded", "degraded_share",
           "images_excluded_health", "total_count", "mean_per_image", "max_per_image", "share_with_any",
           "expected_images", "coverage"]
INTS = {"images_received", "images_accepted", "images_distorted", "images_degraded", "images_excluded_health",
        "total_count", "max_per_image"}
FLOATS = {"degraded_share", "mean_per_image", "share_with_any", "expected_images", "coverage"}


@pytest.fixture
def dataset(repo, db_url):
    """datagen's records, reported (every reporting asset and view materialised)."""
    return reporting_data.build(repo, db_url)


@pytest.fixture
def platform(dataset, db_url, tmp_path):
    with LocalPlatform(Settings(home=tmp_path / "home", database_url=db_url), run_worker=False, load_detector=False) as p:
        yield p


def view_rows(engine, view: str, where: str = "", params: dict | None = None) -> list[dict]:
    """The view read directly, in the API's order."""
    sql = (f"SELECT {', '.join(COLUMNS)} FROM {view} WHERE window_start >= :start AND window_start < :end {where}"
           " ORDER BY window_start, location_id, model_name, model_version, traffic_class")
    bounds = {"start": "2022-10-11 00:00:00", "end": "2022-10-13 00:00:00"}
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            bounds = {k: v + ".000000" for k, v in bounds.items()}
        rows = [dict(r) for r in conn.execute(text(sql), {**bounds, **(params or {})}).mappings()]
    for row in rows:
        row["window_start"] = as_datetime(row["window_start"])
    return rows


def get(api, path: str, headers: dict | None = None):
    parts = urlsplit(path)
    return api.handle(Request("GET", parts.path, dict(parse_qsl(parts.query)), headers or {}))


def from_json(body: bytes) -> list[dict]:
    rows = json.loads(body)["rows"]
    for row in rows:
        row["window_start"] = datetime.fromisoformat(row["window_start"])
    return rows


def from_csv(body: bytes) -> list[dict]:
    reader = csv.DictReader(io.StringIO(body.decode("utf-8"), newline=""))
    assert reader.fieldnames == COLUMNS
    rows = []
    for raw in reader:
        row: dict = dict(raw)
        row["window_start"] = datetime.fromisoformat(row["window_start"])
        for name in INTS | FLOATS:
            row[name] = None if raw[name] == "" else (int(raw[name]) if name in INTS else float(raw[name]))
        rows.append(row)
    return rows


def from_parquet(body: bytes) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(body))
    assert table.column_names == COLUMNS
    assert table.schema.field("window_start").type == pa.timestamp("us")
    assert table.schema.field("total_count").type == pa.int64() and table.schema.field("coverage").type == pa.float64()
    return table.to_pylist()


PARSERS = {"json": from_json, "csv": from_csv, "parquet": from_parquet}


def pages(api, first: str, fmt: str, via_accept: bool = False) -> tuple[list[dict], int]:
    """Every row, following the cursor; and the number of pages."""
    rows, path, n = [], first, 0
    accept = {"json": "application/json", "csv": "text/csv", "parquet": "application/vnd.apache.parquet"}[fmt]
    while path:
        response = get(api, path, {"accept": accept} if via_accept else None)
        assert response.status == 200, response.body[:300]
        rows += PARSERS[fmt](response.body)
        n += 1
        if fmt == "json":
            path = json.loads(response.body)["next"]
        else:
            link = response.headers.get("Link")
            path = link[1:link.index(">")] if link else None
    return rows, n


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        assert list(g) == COLUMNS
        for name in COLUMNS:
            if isinstance(w[name], float):  # to the last digit
                assert isinstance(g[name], float) and g[name] == w[name] and math.copysign(1, g[name]) == math.copysign(1, w[name]), name
            else:
                assert g[name] == w[name], (name, g[name], w[name])


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
def test_every_format_equals_the_view_across_pages(platform, fmt):
    api = platform.api()
    want = view_rows(platform.engine, "v_traffic_counts_hourly")
    query = f"/v1/counts?window=hour&from=2022-10-11&to=2022-10-12&limit={len(want) // 3 + 1}"
    got, n = pages(api, query + ("" if fmt == "json" else f"&format={fmt}"), fmt)
    assert n == 3
    assert_same(got, want)
    got, _ = pages(api, query, fmt, via_accept=True)  # the Accept header chooses the same format
    assert_same(got, want)


def test_the_quality_figures_are_the_records_and_match_the_schema(platform, dataset):
    """images_degraded, degraded_share and images_excluded_health of every daily row, against the
    records (datagen stores no images, so camera health excludes none)."""
    from jsonschema import Draft202012Validator

    from traffic_platform.ingest.openapi import DOCUMENT

    api = platform.api()
    location = {(r["address"], r["city"], r["country"]): r["location_id"] for r in json.loads(get(api, "/v1/locations").body)["rows"]}
    want = {}
    for day in reporting_data.DAYS:
        models = datagen.reported_models(dataset, day)
        want |= datagen.expected_counts(dataset, day, "daily", models, datagen.expected_cadences(dataset, day))
    body = json.loads(get(api, f"/v1/counts?window=day&from={reporting_data.DAYS[0]}&to={reporting_data.DAYS[-1]}").body)
    rows = body["rows"]
    assert len(rows) == len(want)
    for row in rows:
        key = (location[(row["address"], row["city"], row["country"])], datetime.fromisoformat(row["window_start"]),
               row["traffic_class"], row["model_name"], row["model_version"])
        assert row["images_degraded"] == want[key]["images_degraded"], key
        share = want[key]["degraded_share"]
        assert row["degraded_share"] is None if share is None else math.isclose(row["degraded_share"], share, rel_tol=1e-12), key
        assert row["images_excluded_health"] == 0, key
    assert any(row["images_degraded"] for row in rows) and any(row["degraded_share"] for row in rows)
    row_schema = Draft202012Validator({"$ref": "#/components/schemas/CountRow", "components": DOCUMENT["components"]})
    for row in rows:
        row_schema.validate(row)
    assert DOCUMENT["components"]["schemas"]["CountRow"]["required"] == COLUMNS  # every column, in the API's order


def test_parquet_without_pyarrow_is_406_and_names_the_formats_that_work(platform, monkeypatch):
    """The ingest Lambda's package leaves pyarrow out; asking it for Parquet is a clear 406."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    response = get(platform.api(), "/v1/counts?window=hour&from=2022-10-11&to=2022-10-12&format=parquet")
    error = json.loads(response.body)["error"]
    assert (response.status, error["code"]) == (406, "format_unavailable")
    assert "format=csv" in error["message"]
    assert get(platform.api(), "/v1/counts?window=hour&from=2022-10-11&to=2022-10-12&format=csv").status == 200


def test_filters_and_windows(platform):
    api = platform.api()
    want = view_rows(platform.engine, "v_traffic_counts_15min", "AND city = :city AND traffic_class IN ('car', 'bus') AND model_version = :v",
                     {"city": "Liège", "v": "v2"})
    got, _ = pages(api, "/v1/counts?window=15min&from=2022-10-11&to=2022-10-12&city=Li%C3%A8ge&class=car,bus&model_version=v2&limit=50", "json")
    assert_same(got, want)
    want = view_rows(platform.engine, "v_traffic_counts_daily", "AND country = :c AND address = :a", {"c": "Belgium", "a": "tiensevest"})
    got, _ = pages(api, "/v1/counts?window=day&from=2022-10-11&to=2022-10-12&country=Belgium&address=tiensevest", "json")
    assert_same(got, want)
    body = json.loads(get(api, "/v1/counts?window=day&from=2022-10-11&to=2022-10-12").body)
    assert body["window"] == "day" and body["next"] is None and list(body) == ["window", "rows", "next"]


def test_locations_and_the_lambda_answer_the_same(platform):
    api = platform.api()
    response = get(api, "/v1/locations")
    assert response.status == 200
    rows = json.loads(response.body)["rows"]
    with platform.engine.connect() as conn:
        assert [r["location_id"] for r in rows] == [r[0] for r in conn.execute(text("SELECT location_id FROM v_locations ORDER BY location_id"))]
    assert {"address", "city", "country", "timezone", "is_active"} <= set(rows[0])
    event = {"version": "2.0", "rawPath": "/v1/counts", "requestContext": {"http": {"method": "GET", "path": "/v1/counts"}},
             "queryStringParameters": {"window": "hour", "from": "2022-10-11", "to": "2022-10-12", "format": "parquet"}}
    answer = ingest_handler(event, api=api)
    assert answer["statusCode"] == 200 and answer["isBase64Encoded"]
    local = get(api, "/v1/counts?window=hour&from=2022-10-11&to=2022-10-12&format=parquet")
    assert from_parquet(base64.b64decode(answer["body"])) == from_parquet(local.body)


@pytest.mark.parametrize(("query", "code"), [
    ("from=2022-10-11&to=2022-10-12", "missing_parameter"),
    ("window=week&from=2022-10-11&to=2022-10-12", "bad_window"),
    ("window=hour&to=2022-10-12", "missing_parameter"),
    ("window=hour&from=12-10-2022&to=2022-10-12", "bad_date"),
    ("window=hour&from=2022-10-13&to=2022-10-12", "bad_date_range"),
    ("window=hour&from=2022-01-01&to=2023-01-02", "date_range_too_long"),
    ("window=hour&from=2022-10-11&to=2022-10-12&class=car,tram", "bad_class"),
    ("window=hour&from=2022-10-11&to=2022-10-12&format=xml", "bad_format"),
    ("window=hour&from=2022-10-11&to=2022-10-12&limit=100001", "bad_limit"),
    ("window=hour&from=2022-10-11&to=2022-10-12&limit=0", "bad_limit"),
    ("window=hour&from=2022-10-11&to=2022-10-12&limit=%C2%B2", "bad_limit"),
    ("window=hour&from=2022-10-11&to=2022-10-12&cursor=garbage", "bad_cursor"),
    ("window=hour&from=2022-10-11&to=2022-10-12&clas=car", "unknown_parameter"),
])
def test_bad_parameters_get_400_with_stable_codes(tmp_path, query, code):
    with LocalPlatform(Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}"), run_worker=False,
                       load_detector=False) as platform:
        response = get(platform.api(), f"/v1/counts?{query}")
        assert response.status == 400 and json.loads(response.body)["error"]["code"] == code
        if code == "missing_parameter":  # a full year (366 days) is fine; the views are missing here: 503
            response = get(platform.api(), "/v1/counts?window=hour&from=2024-01-01&to=2024-12-31")
            assert response.status == 503 and json.loads(response.body)["error"]["code"] == "reporting_unavailable"


def test_a_cursor_only_fits_its_own_query(platform):
    api = platform.api()
    first = json.loads(get(api, "/v1/counts?window=hour&from=2022-10-11&to=2022-10-12&limit=5").body)
    cursor = dict(parse_qsl(urlsplit(first["next"]).query))["cursor"]
    response = get(api, f"/v1/counts?window=hour&from=2022-10-11&to=2022-10-12&city=Leuven&limit=5&cursor={cursor}")
    assert response.status == 400 and json.loads(response.body)["error"]["code"] == "bad_cursor"
    response = get(api, f"/v1/counts?window=hour&from=2022-10-11&to=2022-10-12&limit=7&cursor={cursor}")  # a new page size is fine
    assert response.status == 200


def test_the_ingest_lambda_serves_the_counts_routes(monkeypatch, tmp_path):
    from traffic_platform.ingest import lambda_handlers

    for fn in (lambda_handlers._settings, lambda_handlers._aws_clients, lambda_handlers._ingest_api):
        fn.cache_clear()
    monkeypatch.setenv("TRAFFIC_HOME", str(tmp_path))
    monkeypatch.setenv("TRAFFIC_DATABASE_URL", f"sqlite:///{tmp_path / 'lambda.db'}")
    monkeypatch.setenv("TRAFFIC_DETECTOR", "sagemaker:none")
    monkeypatch.setenv("TRAFFIC_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/000000000000/persist")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    class Unused:  # neither client is reached by the counts routes
        def ping(self) -> None:
            raise AssertionError("not reached")

    monkeypatch.setattr(lambda_handlers, "_aws_clients", lambda: {"sqs": Unused(), "store": Unused()})
    try:
        def ask(query: dict) -> tuple[int, str]:
            event = {"httpMethod": "GET", "path": "/v1/counts", "queryStringParameters": query}
            answer = lambda_handlers.ingest_handler(event)
            return answer["statusCode"], json.loads(answer["body"])["error"]["code"]

        assert ask({"window": "week", "from": "2022-10-11", "to": "2022-10-12"}) == (400, "bad_window")
        # the database is reached only now, and it has no views yet
        assert ask({"window": "hour", "from": "2022-10-11", "to": "2022-10-12"}) == (503, "reporting_unavailable")
    finally:
        for fn in (lambda_handlers._settings, lambda_handlers._ingest_api):
            fn.cache_clear()


def test_registering_the_counts_routes_loads_neither_pyarrow_nor_sqlalchemy():
    """The ingest Lambda builds its Api with the counts routes at a cold start: that stays light."""
    import subprocess
    import sys
    from pathlib import Path

    probe = ("import sys\n"
             "import traffic_platform.ingest.lambda_handlers\n"
             "from traffic_platform.ingest.counts_api import CountsApi\n"
             "CountsApi.for_url('sqlite:///nowhere.db')\n"
             "print([m for m in ('pyarrow', 'sqlalchemy') if m in sys.modules])\n")
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
