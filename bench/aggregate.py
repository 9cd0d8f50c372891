"""Benchmark: one day's reporting partition on MariaDB at production scale.

Generates one local day for 100 locations at one image a minute (144 000 captures, ~2 %
distorted, ~10 detections per accepted image ≈ 1.4 M detections, 846 720 count rows) into
a fresh database with set-based INSERT … SELECT, materialises the day's capture features
once (camera health; timed on its own: it reads images, here all missing), then times
materialising the day's aggregation (capture summary + the one pass that writes the
15-min, hourly and daily counts) with Dagster in-process, cold, again, and with every
partition check, and compares with a baseline in the same run: pulling the rows into
Python and aggregating the 15-minute table with pandas (no write). A last run with every
check records each SQL statement's time and MariaDB's EXPLAIN of the slowest. States the
CPU and the host load (``os.getloadavg()`` before and after). Writes the numbers to
bench/RESULTS.md under "## Aggregation" (replacing only that section, which also keeps
the EXPLAIN from before issue 19, ``bench/aggregate_explain_before.txt``) and drops the
database.

    .venv/bin/python bench/aggregate.py [--admin-url mysql+pymysql://root:@127.0.0.1:3306] [--no-write]
        [--buffer-pool-mib N] [--history-days N] [--baseline REF]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOCATIONS = 100
PER_DAY = 1440  # one image a minute
DAY = "2022-10-12"
TARGET_COLD_S = 10.0  # the whole partition, cold
TARGET_CHECKED_S = 20.0  # the whole partition with all its checks
EXPLAIN_BEFORE = Path(__file__).with_name("aggregate_explain_before.txt")
MODEL = ("detr-resnet-50", "v1")
CLASSES = ("car", "truck", "bus", "person", "bicycle", "motorcycle")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def generate(engine, history_days: int = 0) -> dict[str, float]:
    """Fill the ingest tables set-based, the ``history_days`` before the bench's day first (the
    same volume each, in time order as ingest would); return the row counts and seconds taken."""
    from sqlalchemy import text

    began = time.perf_counter()
    n = LOCATIONS * PER_DAY
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_digits (d INT NOT NULL PRIMARY KEY)"))
        conn.execute(text("INSERT INTO bench_digits (d) VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)"))
        conn.execute(text("CREATE TABLE bench_numbers (n INT NOT NULL PRIMARY KEY)"))
        conn.execute(text(
            "INSERT INTO bench_numbers (n) SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 100000 * g.d"
            " FROM bench_digits a, bench_digits b, bench_digits c, bench_digits e, bench_digits f, bench_digits g"
            " WHERE a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 100000 * g.d < :n"
        ), {"n": n})
        conn.execute(text("CREATE TABLE bench_classes (k INT NOT NULL PRIMARY KEY, name VARCHAR(16) NOT NULL)"))
        conn.execute(text("INSERT INTO bench_classes (k, name) VALUES (:k, :name)"), [{"k": i, "name": c} for i, c in enumerate(CLASSES)])
        conn.execute(
            text("INSERT INTO locations (address, address_display, city, country, timezone, created_at)"
                 " VALUES (:a, :d, :c, 'Belgium', 'Europe/Brussels', :t)"),
            [{"a": f"street_{i:03d}", "d": f"street {i:03d}", "c": "Leuven" if i % 2 else "Liège", "t": datetime(2022, 1, 1)}
             for i in range(LOCATIONS)],
        )
        for back in range(history_days, -1, -1):
            _generate_day(conn, datetime.fromisoformat(DAY) - timedelta(days=back))
        counts = {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() for t in ("captures", "detections", "capture_counts")}
        for t in ("bench_numbers", "bench_classes", "bench_digits"):
            conn.execute(text(f"DROP TABLE {t}"))
    for t in ("captures", "detections", "capture_counts"):
        with engine.connect() as conn:
            conn.execute(text(f"ANALYZE TABLE {t}")).all()
    return {**counts, "seconds": time.perf_counter() - began}


def _generate_day(conn, day: datetime) -> None:
    """One local day of captures, detections and counts (ids and file names differ per day),
    inserted in the order of their capture time, as ingest writes them."""
    from sqlalchemy import text

    params = {"day": day, "next": day + timedelta(days=1), "tag": day.strftime("%Y%m%d"), "dmy": day.strftime("%d-%m-%Y"),
              "path": day.strftime("%Y/%m/%d"), "model_name": MODEL[0], "model_version": MODEL[1]}
    # One image a minute per location; every 50th distorted. captured_at is local (Brussels, UTC+2 in October).
    conn.execute(text(
        """
INSERT INTO captures (capture_id, location_id, captured_at, captured_at_utc, file_name, content_sha256, status,
    quality_reasons, sharpness, brightness, contrast, clipped_share, uniform_share, width, height, image_key,
    annotated_key, model_name, model_version, decode_ms, quality_ms, detect_ms, total_ms, ingested_at, stored_at)
SELECT MD5(CONCAT('capture', :tag, n.n)), l.id,
       TIMESTAMPADD(MINUTE, n.n MOD 1440, :day), TIMESTAMPADD(MINUTE, n.n MOD 1440 - 120, :day),
       CONCAT(l.address, '_', l.city, '_Belgium_', :dmy, '_', LPAD((n.n MOD 1440) DIV 60, 2, '0'), '-', LPAD(n.n MOD 60, 2, '0'), '-00.jpg'),
       SHA2(CONCAT('bytes', :tag, n.n), 256),
       CASE WHEN n.n MOD 50 = 0 THEN 'distorted' ELSE 'accepted' END,
       CASE WHEN n.n MOD 50 = 0 THEN '["blurred"]' ELSE '[]' END,
       120, 110, 48, 0.01, 0.02, 1280, 720,
       CONCAT('images/', :path, '/', MD5(CONCAT('capture', :tag, n.n)), '.jpg'),
       CASE WHEN n.n MOD 50 = 0 THEN NULL ELSE CONCAT('annotated/', :path, '/', MD5(CONCAT('capture', :tag, n.n)), '.jpg') END,
       CASE WHEN n.n MOD 50 = 0 THEN NULL ELSE :model_name END,
       CASE WHEN n.n MOD 50 = 0 THEN NULL ELSE :model_version END,
       4, 2, 70, 80, TIMESTAMPADD(SECOND, 2, TIMESTAMPADD(MINUTE, n.n MOD 1440 - 120, :day)),
       TIMESTAMPADD(SECOND, 3, TIMESTAMPADD(MINUTE, n.n MOD 1440 - 120, :day))
FROM bench_numbers n JOIN locations l ON l.id = 1 + n.n DIV 1440
ORDER BY n.n MOD 1440, n.n
"""), params)
    # 0..20 detections per accepted image (mean 10), class and box from the capture id.
    conn.execute(text(
        """
INSERT INTO detections (capture_id, model_name, model_version, seq, traffic_class, label, score, x1, y1, x2, y2, captured_at)
SELECT c.capture_id, c.model_name, c.model_version, s.n, k.name, k.name,
       0.5 + ((CRC32(c.capture_id) + 7 * s.n) MOD 500) / 1000,
       (CRC32(c.capture_id) + 97 * s.n) MOD 1000, (CRC32(c.capture_id) + 31 * s.n) MOD 600,
       (CRC32(c.capture_id) + 97 * s.n) MOD 1000 + 40 + s.n, (CRC32(c.capture_id) + 31 * s.n) MOD 600 + 30 + s.n,
       c.captured_at
FROM captures c
JOIN bench_numbers s ON s.n < CRC32(c.capture_id) MOD 21
JOIN bench_classes k ON k.k = (CRC32(c.capture_id) + s.n * s.n) MOD 6
WHERE c.status = 'accepted' AND c.captured_at >= :day AND c.captured_at < :next
ORDER BY c.captured_at, c.capture_id, s.n
"""), params)
    conn.execute(text(
        """
INSERT INTO capture_counts (capture_id, model_name, model_version, traffic_class, count, captured_at)
SELECT c.capture_id, c.model_name, c.model_version, k.name, COALESCE(g.n, 0), c.captured_at
FROM captures c CROSS JOIN bench_classes k
LEFT JOIN (SELECT capture_id, traffic_class, COUNT(*) AS n FROM detections
           WHERE captured_at >= :day AND captured_at < :next GROUP BY capture_id, traffic_class) g
       ON g.capture_id = c.capture_id AND g.traffic_class = k.name
WHERE c.status = 'accepted' AND c.captured_at >= :day AND c.captured_at < :next
ORDER BY c.captured_at, c.capture_id, k.name
"""), params)


def _module(package: str, name: str):
    import importlib

    return importlib.import_module(f"{package}.orchestration.{name}")


def _assets_and_checks(with_checks: bool, package: str = "traffic_platform") -> tuple[list, list]:
    """The capture features asset, and the aggregation assets (+ the partition checks) of
    ``package`` (``traffic_platform``, or a baseline commit's copy, see :func:`baseline_package`)."""
    CAPTURE_FEATURES = _module(package, "assets.camera_health").CAPTURE_FEATURES
    reporting_assets = _module(package, "assets.reporting").reporting_assets
    ingest_health_checks = _module(package, "checks.ingest_health").ingest_health_checks
    ingest_quality_checks = _module(package, "checks.ingest_quality").ingest_quality_checks
    reporting_checks = _module(package, "checks.reporting").reporting_checks
    daily_partitions = _module(package, "partitions").daily_partitions

    partitions = daily_partitions()
    assets = reporting_assets(partitions)
    features = [a for a in assets if CAPTURE_FEATURES in a.keys]
    aggregation = [a for a in assets if CAPTURE_FEATURES not in a.keys]
    # the partitioned checks only (freshness and the spool backlog are about now, not the day)
    health = [c for c in ingest_health_checks(partitions) if any(k.asset_key.path[-1] == "capture_summary_daily" for k in c.check_keys)]
    checks = [*ingest_quality_checks(partitions), *reporting_checks(partitions), *health] if with_checks else []
    return features, [*aggregation, *checks]


def _resources(url: str, package: str = "traffic_platform") -> dict:
    import tempfile

    resources = _module(package, "resources")
    DatabaseResource, ObjectStoreResource = resources.DatabaseResource, resources.ObjectStoreResource
    objects = Path(tempfile.mkdtemp(prefix="bench-objects-")).as_uri()  # empty: every image is missing
    return {"database": DatabaseResource(url=url), "object_store": ObjectStoreResource(uri=objects)}


def materialize_features(url: str) -> float:
    import dagster as dg

    features, _ = _assets_and_checks(False)
    began = time.perf_counter()
    assert dg.materialize(features, partition_key=DAY, resources=_resources(url)).success
    return time.perf_counter() - began


def materialize(url: str, with_checks: bool, package: str = "traffic_platform") -> tuple[float, dict[str, float], dict[str, bool]]:
    import dagster as dg

    _, selected = _assets_and_checks(with_checks, package)
    began = time.perf_counter()
    result = dg.materialize(selected, partition_key=DAY, resources=_resources(url, package))
    total = time.perf_counter() - began
    steps = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        steps[mat.asset_key.path[-1]] = mat.metadata["seconds"].value
    passed = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    return total, steps, passed


def baseline_package(ref: str) -> str:
    """git ``ref``'s ``traffic_platform``, importable as ``traffic_platform_base`` (relative imports)."""
    import tempfile

    dest = Path(tempfile.mkdtemp(prefix="bench-aggregate-base-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "traffic_platform"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    (dest / "traffic_platform").rename(dest / "traffic_platform_base")
    sys.path.insert(0, str(dest))
    return "traffic_platform_base"


class StatementLog:
    """Every SQL statement's time (any engine of this process) and, on MariaDB, its EXPLAIN,
    taken on the same connection just before it runs (so temporary tables exist)."""

    def __init__(self) -> None:
        self.timed: list[tuple[float, str, list]] = []

    def __enter__(self) -> StatementLog:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.remove(Engine, "before_cursor_execute", self._before)
        event.remove(Engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        plan = []
        if not executemany and re.match(r"\s*(INSERT INTO \w+ \(.*?\)\s*)?(WITH|SELECT)\b", statement, re.S | re.I) \
                and conn.dialect.name in ("mysql", "mariadb"):
            cursor.execute("EXPLAIN " + statement, parameters)
            plan = [" | ".join("" if v is None else str(v) for v in row) for row in cursor.fetchall()]
        conn.info["bench_statement"] = (time.perf_counter(), plan)

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        began, plan = conn.info.pop("bench_statement", (time.perf_counter(), []))
        self.timed.append((time.perf_counter() - began, " ".join(statement.split()), plan))

    def slowest(self, n: int) -> list[tuple[float, str, list]]:
        return sorted(self.timed, key=lambda t: -t[0])[:n]


def _explain_block(plan: list[str]) -> list[str]:
    header = "id | select_type | table | type | possible_keys | key | key_len | ref | rows | Extra"
    return ["```", header, *plan, "```"]


def pandas_baseline(engine) -> tuple[float, int]:
    """Pull the day's count rows into Python and aggregate the 15-minute table with pandas."""
    import pandas as pd
    from sqlalchemy import text

    began = time.perf_counter()
    with engine.connect() as conn:
        frame = pd.read_sql(text(
            "SELECT c.location_id, c.captured_at, c.status, k.traffic_class, k.count FROM captures c"
            " LEFT JOIN capture_counts k ON k.capture_id = c.capture_id AND k.model_name = c.model_name"
            " AND k.model_version = c.model_version WHERE c.captured_at >= :s AND c.captured_at < :e"),
            conn, params={"s": datetime.fromisoformat(DAY), "e": datetime.fromisoformat("2022-10-13")})
    frame["window_start"] = frame["captured_at"].dt.floor("15min")
    out = frame.dropna(subset=["traffic_class"]).groupby(["location_id", "window_start", "traffic_class"])["count"].agg(["sum", "max", "mean"])
    return time.perf_counter() - began, len(out)


def write_results(section: str) -> Path:
    path = ROOT / "bench" / "RESULTS.md"
    current = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    pattern = re.compile(r"^## Aggregation\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(current):
        updated = pattern.sub(lambda _: section, current, count=1)
    else:
        updated = current.rstrip("\n") + "\n\n" + section
    path.write_text(updated, encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default=os.environ.get("TRAFFIC_TEST_MARIADB_URL", "mysql+pymysql://root:@127.0.0.1:3306"))
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    parser.add_argument("--buffer-pool-mib", type=int, default=0, metavar="N", help="run with the server's InnoDB buffer pool set to N MiB (SET GLOBAL; put back afterwards): Aurora's is ~3/4 of the instance's memory; 0: leave it")
    parser.add_argument("--history-days", type=int, default=0, metavar="N", help="also fill the N days before the bench's day, the same volume each: the partition and its checks should not slow down with the history kept")
    parser.add_argument("--baseline", default="ef91b32", metavar="REF", help="also run git REF's aggregation and checks on the same data, same run ('' to skip; default: before issue 19's rewrite)")
    args = parser.parse_args()

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from traffic_platform.storage.database import make_engine, upgrade

    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    name = f"tp_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        pool_before = int(conn.execute(text("SELECT @@innodb_buffer_pool_size")).scalar())
        if args.buffer_pool_mib:
            conn.execute(text("SET GLOBAL innodb_buffer_pool_size = :b"), {"b": args.buffer_pool_mib * 2**20})
            time.sleep(2)  # the resize runs in the background
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    url = make_url(args.admin_url).set(database=name).update_query_dict({"charset": "utf8mb4"}).render_as_string(hide_password=False)
    engine = make_engine(url)
    load_before = os.getloadavg()
    try:
        with engine.connect() as conn:
            server = conn.execute(text("SELECT VERSION()")).scalar()
            pool_mib = int(conn.execute(text("SELECT @@innodb_buffer_pool_size")).scalar()) / 2**20
        upgrade(engine)
        generated = generate(engine, args.history_days)
        features_s = materialize_features(url)
        load_start = os.getloadavg()
        cold, steps, _ = materialize(url, with_checks=False)
        base = baseline_package(args.baseline) if args.baseline else None
        base_cold = materialize(url, with_checks=False, package=base)[0] if base else float("nan")  # after ours: a warmer cache
        warm, steps_warm, _ = materialize(url, with_checks=False)
        checked, _, passed = materialize(url, with_checks=True)
        base_checked = materialize(url, with_checks=True, package=base)[0] if base else float("nan")
        baseline_s, baseline_rows = pandas_baseline(engine)
        load_end = os.getloadavg()
        with StatementLog() as log:
            materialize(url, with_checks=True)
        with engine.connect() as conn:
            rows = {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar()
                    for t in ("capture_summary_daily", "traffic_counts_15min", "traffic_counts_hourly", "traffic_counts_daily")}
            data_mib = float(conn.execute(text(
                "SELECT SUM(data_length + index_length) FROM information_schema.tables WHERE table_schema = DATABASE()"
                " AND table_name IN ('captures', 'detections', 'capture_counts', 'capture_features')")).scalar()) / 2**20
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            if args.buffer_pool_mib:
                conn.execute(text("SET GLOBAL innodb_buffer_pool_size = :b"), {"b": pool_before})
        admin.dispose()

    def load(values: tuple[float, float, float]) -> str:
        return " / ".join(f"{v:.2f}" for v in values)

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    counts_s = steps.get("traffic_counts_15min", float("nan"))
    met_cold, met_checked = cold <= TARGET_COLD_S, checked <= TARGET_CHECKED_S
    lines = [
        "## Aggregation",
        "",
        f"`bench/aggregate.py`, {when}; CPU: {cpu_model()} ({os.cpu_count()} cores); database: MariaDB {server} on the same host;",
        f"Python {platform.python_version()}. One day, {LOCATIONS} locations × one image a minute"
        + (f", after {args.history_days} days of history of the same volume (`--history-days {args.history_days}`): the tables hold "
           if args.history_days else ": ")
        + f"{generated['captures']:,} captures, {generated['detections']:,} detections, {generated['capture_counts']:,} count rows "
        f"(generated set-based in {generated['seconds']:.1f} s).",
        "",
        f"**Host load** (`os.getloadavg()`, 1 / 5 / 15 min): {load(load_before)} before the run, {load(load_start)} when the timed "
        f"runs began, {load(load_end)} after them (the bench's own data generation raises the first two). The host's cores "
        "are shared with other work: read the seconds with the load.",
        f"InnoDB buffer pool {pool_mib:.0f} MiB{' (set for this run with --buffer-pool-mib; the server default is ' + format(pool_before / 2**20, '.0f') + ' MiB)' if args.buffer_pool_mib else ''}; the captures, detections, counts and capture features with their "
        f"indexes take {data_mib:.0f} MiB, so the scans also read from the OS cache.",
        "",
        "| what | seconds | rows written |",
        "|---|---:|---:|",
        f"| capture_features (camera health, before the timed runs; reads {generated['captures']:,} images, all missing here) "
        f"| {features_s:.2f} | |",
        f"| capture_summary_daily (cold run) | {steps.get('capture_summary_daily', float('nan')):.2f} | {rows['capture_summary_daily']:,} |",
        f"| traffic_counts 15min + hourly + daily, one pass (cold run) | {counts_s:.2f} | "
        f"{rows['traffic_counts_15min']:,} + {rows['traffic_counts_hourly']:,} + {rows['traffic_counts_daily']:,} |",
        f"| **whole partition (summary + counts), Dagster in-process (cold)** | **{cold:.2f}** | |",
        f"| whole partition again (replaces the same rows) | {warm:.2f} | |",
        f"| **whole partition + all {len(passed)} partition checks** | **{checked:.2f}** | |",
        f"| baseline: pull rows into pandas, 15-min aggregate only, no write | {baseline_s:.2f} | {baseline_rows:,} groups |",
        *([f"| baseline: `{args.baseline}`'s aggregation (one INSERT … SELECT per window), whole partition, right after ours' cold run | {base_cold:.2f} | |",
           f"| baseline: `{args.baseline}`'s partition + its checks | {base_checked:.2f} | |"] if base else []),
        "",
        *([f"Same run, same data: cold partition {base_cold / cold:.1f}× faster than `{args.baseline}`, with checks "
           f"{base_checked / checked:.1f}× faster.", ""] if base else []),
        f"Targets: cold ≤ {TARGET_COLD_S:.0f} s **{'met' if met_cold else 'NOT met'}**; with all checks ≤ {TARGET_CHECKED_S:.0f} s "
        f"**{'met' if met_checked else 'NOT met'}**. Checks passed: {sum(passed.values())}/{len(passed)}. SQL of the warm run: "
        f"summary {steps_warm.get('capture_summary_daily', 0):.2f} s + counts {steps_warm.get('traffic_counts_15min', 0):.2f} s; "
        "the rest is Dagster's in-process run overhead.",
        "",
        "### Slowest statements (a last run with every check; EXPLAIN taken just before each ran)",
        "",
        "| seconds | statement (start) |",
        "|---:|---|",
        *(f"| {seconds:.2f} | `{statement[:110].replace('|', '¦')}…` |" for seconds, statement, _ in log.slowest(10)),
        "",
    ]
    for seconds, statement, plan in log.slowest(10)[:6]:
        if plan:
            lines += [f"`{statement[:90].replace('|', '¦')}…` ({seconds:.2f} s):", "", *_explain_block(plan), ""]
    if EXPLAIN_BEFORE.exists():
        lines += ["### EXPLAIN before issue 19 (pasted from a measured run)", "", EXPLAIN_BEFORE.read_text(encoding="utf-8").rstrip(), ""]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        print(f"written to {write_results(section)}")
    return 0 if met_cold and met_checked else 1


if __name__ == "__main__":
    sys.exit(main())
