"""Load benchmark: the real HTTP server at saturation with a fast detector.

    .venv/bin/python bench/load.py                    # 60 s, 16 clients, tiny end-to-end ONNX graph
    .venv/bin/python bench/load.py --seconds 20 --no-record

``LocalPlatform`` (SQLite + file store in a temporary home, the spool worker persisting in
the background) behind ``LocalPlatform.http_server()`` — uvicorn and its ASGI adapter, as
``traffic-platform serve`` runs it — on 127.0.0.1. ``--clients`` threads, each with one
keep-alive ``http.client`` connection, post street photos back to back for ``--seconds``
(every file name unique). The detector is the tiny end-to-end ONNX graph the tests use
(a few ms per image), so the server, decode, quality gate and the durable hand-off are
what saturates. Measured: requests/s, latency p50/p99, errors (any non-201: must be 0 for
these well-formed uploads), the spool depth when the load stops and the time the worker
then needs to drain it, and the process RSS at the start (after warm-up) and the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import ingest as bench_ingest  # bench/ingest.py: shared helpers
from ingest import NameMaker, fmt, loadavg, log, lscpu_model, machine, pct, post_image, record

DEFAULT_IMAGES = bench_ingest.DEFAULT_IMAGES
HEADING = "## Load (bench/load.py)"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--model", default=None, help="detector spec; default the tiny end-to-end ONNX graph built here")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)

    from traffic_platform.config import Settings
    from traffic_platform.ingest.local import LocalPlatform

    workdir = Path(tempfile.mkdtemp(prefix="tpbench-load-"))
    mach = machine()
    load_before = loadavg()
    model = args.model or bench_ingest.build_tiny_model(workdir)
    images, _, _ = bench_ingest.load_photos(args.images)
    log(f"{mach['cpu']} x{mach['cores']}, load {load_before}, model {model}, {len(images)} photos, {args.clients} clients for {args.seconds:g} s")
    names = NameMaker("loadbench", dt.datetime(2024, 3, 1, 0, 0, 0))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    try:
        settings = Settings(home=workdir / "home", detector=model)
        with LocalPlatform(settings) as lp, lp.http_server() as server:
            host, port = server.server_address[:2]
            for i in range(5):  # warm-up: model, connections, first spool writes
                conn = http.client.HTTPConnection(host, port, timeout=60)
                post_image(conn, names(images[i]["ext"], 0), images[i]["data"], images[i]["content_type"])
                conn.close()
            lp.worker.drain(timeout=60)
            rss_start = rss_mb()
            deadline = time.perf_counter() + args.seconds
            barrier = threading.Barrier(args.clients + 1)

            def client(k: int) -> None:
                conn = http.client.HTTPConnection(host, port, timeout=120)
                barrier.wait()
                i = k
                while time.perf_counter() < deadline:
                    img = images[i % len(images)]
                    i += args.clients
                    t = time.perf_counter()
                    try:
                        status, payload = post_image(conn, names(img["ext"], k % 5), img["data"], img["content_type"])
                        if status != 201:
                            log(f"  client {k}: HTTP {status} {str(payload)[:300]} ({img['name']})")
                    except (OSError, http.client.HTTPException) as exc:
                        log(f"  client {k}: {type(exc).__name__}: {exc}")
                        status = 0
                        conn.close()
                        conn = http.client.HTTPConnection(host, port, timeout=120)
                    ms = (time.perf_counter() - t) * 1e3
                    with lock:
                        statuses[status] = statuses.get(status, 0) + 1
                        if status == 201:
                            latencies.append(ms)
                conn.close()

            threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(args.clients)]
            for th in threads:
                th.start()
            barrier.wait()
            t0 = time.perf_counter()
            for th in threads:
                th.join()
            wall = time.perf_counter() - t0
            depth_at_end = lp.spool.depth()
            t_drain = time.perf_counter()
            drained = lp.worker.drain(timeout=300)
            drain_s = time.perf_counter() - t_drain
            rss_end = rss_mb()
            with lp.engine.connect() as db:
                stored = db.exec_driver_sql("SELECT COUNT(*) FROM captures").scalar_one()
            dead = lp.spool.dead_count()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    ok = statuses.get(201, 0)
    errors = sum(n for s, n in statuses.items() if s != 201)
    lines = [
        HEADING,
        "",
        f"**{mach['cpu']}, {mach['cores']} cores** (`lscpu`: {lscpu_model()}), Python {mach['python']}; load average {load_before} before, {loadavg()} after; "
        f"{dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}. `LocalPlatform.http_server()` (uvicorn + ASGI adapter, the `serve` server) on 127.0.0.1; "
        f"SQLite + file store, spool worker persisting meanwhile; detector: the tiny end-to-end ONNX graph (`{Path(model).name}`); {len(images)} street photos "
        f"(median {bench_ingest.p50([len(i['data']) for i in images]) / 1e3:.0f} KB); {args.clients} keep-alive clients (threads of the bench process, so they share its GIL) "
        f"back to back for {wall:.0f} s. Command: `.venv/bin/python bench/load.py --seconds {args.seconds:g} --clients {args.clients}`.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| requests answered 201 | {ok:,} |",
        f"| throughput | {ok / wall:.1f} req/s |",
        f"| latency p50 / p90 / p99 / max (ms) | {fmt(pct(latencies, 0.5))} / {fmt(pct(latencies, 0.9))} / {fmt(pct(latencies, 0.99))} / {fmt(max(latencies, default=float('nan')))} |",
        f"| errors (non-201) | {errors}{' ' + str({s: n for s, n in statuses.items() if s != 201}) if errors else ''} |",
        f"| spool depth when the load stopped | {depth_at_end} |",
        f"| time to drain it | {drain_s:.1f} s{'' if drained else ' (NOT drained)'} |",
        f"| captures stored (incl. 5 warm-up) / dead letters | {stored:,} / {dead} |",
        f"| RSS at start (after warm-up) / end | {rss_start:.0f} MB / {rss_end:.0f} MB |",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if not args.no_record:
        record(args.results, report, HEADING)
        log(f"recorded under '{HEADING}' in {args.results}")
    return 0 if errors == 0 and drained else 1


if __name__ == "__main__":
    sys.exit(main())
