"""Persistence benchmark: one ``Persister.persist`` step by step, and the spool drain rate.

    .venv/bin/python bench/persist.py                          # this checkout vs its base, interleaved
    .venv/bin/python bench/persist.py --baseline HEAD~3 --jobs 200 --store s3

Each side runs in a fresh interpreter whose ``traffic_platform`` is either this checkout
("new") or ``git archive <baseline>`` unpacked in a temp dir ("base"), against a fresh
MariaDB database (created and dropped) and a local object store (``--store dir``, fsync'ed)
or moto's S3 in a child process (``--store s3``, what ``bench/ingest.py`` uses). Sides
alternate ``--rounds`` times so the shared host's noise falls on both.

Profile: the median over ``--profile-runs`` persists of a 1280x720 street photo with
``--detections`` synthetic boxes (all six classes): object puts, the decode, drawing,
JPEG encode, ``save_capture``, and the SQL statements plus pool checkouts per capture
(each a round trip on MariaDB; checkouts also ping). Drain: ``--jobs`` jobs spooled
first, then ``SpoolWorker(concurrency=4)`` (the platform default; in batches where the
side's worker has ``persist_many``, as ``LocalPlatform`` builds it) drains them; img/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "street"
DEFAULT_MARIADB = os.environ.get("TRAFFIC_TEST_MARIADB_URL", "mysql+pymysql://root:@127.0.0.1:3306")


def _photos(folder: Path) -> list[bytes]:
    from PIL import Image

    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("BAD_") or p.suffix.lower() not in (".jpg", ".jpeg"):
            continue
        with Image.open(p) as im:
            if im.size == (1280, 720):
                out.append(p.read_bytes())
    return out


def _job(data: bytes, index: int, n_det: int, address: str):
    import hashlib
    from datetime import datetime, timedelta

    from traffic_platform.domain.captures import ACCEPTED, CaptureRecord, capture_id_for
    from traffic_platform.domain.classes import TrafficClass
    from traffic_platform.domain.detections import Detection
    from traffic_platform.domain.metadata import parse_file_name
    from traffic_platform.ingest.handoff import CaptureJob

    t = datetime(2024, 3, 1) + timedelta(seconds=index)
    name = f"{address}_Leuven_Belgium_{t:%d-%m-%Y_%H-%M-%S}.jpg"
    sha = hashlib.sha256(data).hexdigest()
    classes = list(TrafficClass)
    dets = [
        Detection(classes[i % len(classes)], classes[i % len(classes)].value, 0.3 + 0.6 * (i % 7) / 7,
                  (40.0 + 70 * (i % 15), 200.0 + 20 * (i % 5), 140.0 + 70 * (i % 15), 330.0 + 25 * (i % 5)))
        for i in range(n_det)
    ]
    record = CaptureRecord(
        capture_id=capture_id_for(name, sha), metadata=parse_file_name(name), content_sha256=sha,
        status=ACCEPTED, timezone="Europe/Brussels", captured_at_utc=t, ingested_at=datetime(2026, 12, 1),
        width=1280, height=720, quality_metrics={"sharpness": 100.0}, model_name="bench", model_version="v1",
        detections=dets, timings={"total_ms": 12.5},
    )
    return CaptureJob(record, data)


def _side(args: argparse.Namespace) -> dict:
    """One measurement in this interpreter (``traffic_platform`` from ``sys.path``)."""
    from sqlalchemy import create_engine, event, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    from traffic_platform.domain.images import open_stored
    from traffic_platform.ingest import persist as persist_mod
    from traffic_platform.ingest.persist import Persister
    from traffic_platform.ingest.spool import Spool
    from traffic_platform.ingest.worker import SpoolWorker
    from traffic_platform.storage.database import make_engine, upgrade
    from traffic_platform.storage.objectstore import LocalObjectStore
    from traffic_platform.storage.repository import Repository

    photos = _photos(args.images)
    admin = create_engine(args.mariadb_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    db = f"tpbench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    work = Path(tempfile.mkdtemp(prefix="tpbench-persist-"))
    try:
        url = make_url(args.mariadb_url).set(database=db).update_query_dict({"charset": "utf8mb4"})
        engine = make_engine(url.render_as_string(hide_password=False))
        upgrade(engine)
        if args.store == "s3":
            import boto3

            from traffic_platform.storage.objectstore import S3ObjectStore

            bucket = f"tpbench-{uuid.uuid4().hex[:10]}"
            client = boto3.client("s3", endpoint_url=args.s3_url, region_name="eu-west-1")
            client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
            store = S3ObjectStore(bucket, "bench", client)
        else:
            store = LocalObjectStore(work / "store")
        repo = Repository(engine)
        persister = Persister(repo, store)
        stats = {"statements": 0, "checkouts": 0}
        event.listen(engine, "before_cursor_execute", lambda *a: stats.__setitem__("statements", stats["statements"] + 1))
        event.listen(engine.pool, "checkout", lambda *a: stats.__setitem__("checkouts", stats["checkouts"] + 1))

        # -- profile: one photo, step by step
        from traffic_platform.detection import annotate as annotate_mod

        steps: dict[str, list[float]] = {k: [] for k in ("put_image", "annotate", "decode", "render", "encode", "put_annotated", "save_capture", "persist")}
        real_put, real_save, real_render = store.put, repo.save_capture, annotate_mod.render
        real_open = persist_mod.__dict__.get("open_stored")

        def timed(name, fn):
            def inner(*a, **k):
                t = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    steps[name].append((time.perf_counter() - t) * 1e3)
            return inner

        def put(key, data, content_type="application/octet-stream"):
            return timed("put_annotated" if key.startswith("annotated") or "/annotated/" in key else "put_image", real_put)(key, data, content_type)

        store.put = put
        repo.save_capture = timed("save_capture", real_save)
        annotate_mod.render = timed("render", real_render)
        import traffic_platform.domain.images as images_mod

        images_mod.open_stored = timed("decode", open_stored)
        if real_open is not None:
            persist_mod.open_stored = images_mod.open_stored
        if hasattr(persister, "_annotated"):
            persister._annotated = timed("annotate", persister._annotated)
        data = photos[0]
        per_capture = []
        for i in range(args.profile_runs):
            job = _job(data, i, args.detections, "profbench")
            before = dict(stats)
            t = time.perf_counter()
            persister.persist(job)
            steps["persist"].append((time.perf_counter() - t) * 1e3)
            per_capture.append({k: stats[k] - before[k] for k in stats})
        store.put, repo.save_capture, annotate_mod.render = real_put, real_save, real_render
        images_mod.open_stored = open_stored
        if real_open is not None:
            persist_mod.open_stored = real_open
        persister.__dict__.pop("_annotated", None)
        profile = {k: statistics.median(v) for k, v in steps.items() if v}
        # encode = annotate - decode - render (the JPEG save inside annotate)
        if "annotate" in profile:
            profile["encode"] = profile["annotate"] - profile.get("decode", 0) - profile["render"]
        profile["statements"] = statistics.median(p["statements"] for p in per_capture)
        profile["checkouts"] = statistics.median(p["checkouts"] for p in per_capture)

        # -- drain: spool first, then the worker drains it
        spool = Spool(work / "spool")
        for i in range(args.jobs):
            spool.submit(_job(photos[i % len(photos)], i, args.detections, "drainbench"))
        import inspect

        batched = "persist_many" in inspect.signature(SpoolWorker).parameters  # as LocalPlatform builds it
        worker = SpoolWorker(spool, persister.persist, concurrency=4, **({"persist_many": persister.persist_many} if batched else {}))
        t = time.perf_counter()
        worker.acquire()
        ok = worker.drain(timeout=600)
        wall = time.perf_counter() - t
        worker.stop()
        with engine.connect() as conn:
            rows = conn.scalar(text("SELECT COUNT(*) FROM captures WHERE file_name LIKE 'drainbench%'"))
            dets = conn.scalar(text("SELECT COUNT(*) FROM detections"))
        engine.dispose()
        return {"profile": profile, "drain_img_s": args.jobs / wall, "drained": ok, "rows": rows, "detections": dets}
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{db}`"))
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def _baseline_tree(ref: str) -> Path:
    dest = Path(tempfile.mkdtemp(prefix="tpbench-base-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "traffic_platform"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--baseline", default="2b05a70", help="git ref of the 'base' side (default: before issue 19)")
    parser.add_argument("--jobs", type=int, default=120, help="jobs per drain measurement")
    parser.add_argument("--detections", type=int, default=15, help="synthetic detections per capture")
    parser.add_argument("--profile-runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2, help="base/new alternations")
    parser.add_argument("--store", choices=("dir", "s3"), default="dir")
    parser.add_argument("--mariadb-url", default=DEFAULT_MARIADB)
    parser.add_argument("--side", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--s3-url", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        sys.path.insert(0, args.side)
        print(json.dumps(_side(args)))
        return 0

    base = _baseline_tree(args.baseline)
    moto = None
    if args.store == "s3":
        sys.path.insert(0, str(ROOT / "bench"))
        from ingest import FAKE_AWS_ENV, start_moto

        os.environ.update(FAKE_AWS_ENV)
        moto, args.s3_url = start_moto()
    results: dict[str, list[dict]] = {"base": [], "new": []}
    try:
        for r in range(args.rounds):
            for name, tree in (("base", base), ("new", ROOT)):
                cmd = [sys.executable, __file__, "--side", str(tree), "--images", str(args.images), "--jobs", str(args.jobs),
                       "--detections", str(args.detections), "--profile-runs", str(args.profile_runs), "--store", args.store,
                       "--mariadb-url", args.mariadb_url] + (["--s3-url", args.s3_url] if args.s3_url else [])
                env = os.environ | {"PYTHONPATH": str(tree)}
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode:
                    sys.exit(proc.stderr[-3000:])
                out = proc.stdout
                res = json.loads(out.strip().splitlines()[-1])
                results[name].append(res)
                print(f"round {r + 1} {name}: drain {res['drain_img_s']:.1f} img/s, persist p50 {res['profile']['persist']:.1f} ms, "
                      f"{res['profile']['statements']:.0f} statements + {res['profile']['checkouts']:.0f} checkouts/capture", file=sys.stderr)
    finally:
        if moto is not None:
            from ingest import stop_moto

            stop_moto(moto)
    keys = ("put_image", "decode", "render", "encode", "annotate", "put_annotated", "save_capture", "persist", "statements", "checkouts")
    print(f"| step (median, ms) | base {args.baseline} | new |\n|---|---|---|")
    for k in keys:
        vals = {n: statistics.median(r["profile"][k] for r in results[n]) if all(k in r["profile"] for r in results[n]) else float("nan") for n in results}
        print(f"| {k} | {vals['base']:.2f} | {vals['new']:.2f} |")
    for n in results:
        rates = [r["drain_img_s"] for r in results[n]]
        print(f"| drain img/s ({n}, {args.jobs} jobs x {args.rounds}) | {', '.join(f'{x:.1f}' for x in rates)} | rows ok: {all(r['rows'] == args.jobs for r in results[n])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
