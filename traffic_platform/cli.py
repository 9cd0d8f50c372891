"""The `traffic-platform` command: one entry point for operators and the demo."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from .domain.errors import TrafficPlatformError


def _settings():
    from .config import Settings

    return Settings.from_env()


def cmd_parse_name(args: argparse.Namespace) -> int:
    from .domain.metadata import parse_file_name

    try:
        print(json.dumps(parse_file_name(args.name).to_dict(), ensure_ascii=False, indent=2))
    except TrafficPlatformError as exc:
        print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return 2
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from .storage.database import current_revision, make_engine, upgrade

    settings = _settings()
    engine = make_engine(settings.database_url)
    upgrade(engine, args.revision)
    print(f"database at revision {current_revision(engine)} ({engine.url.render_as_string(hide_password=True)})")
    return 0


def cmd_db_create_database(args: argparse.Namespace) -> int:
    from .storage.database import create_database, make_engine

    engine = make_engine(_settings().database_url)
    try:
        created = create_database(engine, args.name)
    finally:
        engine.dispose()
    print(f"database {args.name} {'created' if created else 'exists'} on {engine.url.host}")
    return 0


def cmd_db_ddl(args: argparse.Namespace) -> int:
    from .storage.database import render_mysql_ddl

    print(render_mysql_ddl())
    return 0


def cmd_db_create_reporting_user(args: argparse.Namespace) -> int:
    import secrets

    from .orchestration.sql.reporting_user import create_reporting_user
    from .storage.database import make_engine

    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            print(f"missing_password: the variable {args.password_env} is not set or empty", file=sys.stderr)
            return 2
    else:
        password = secrets.token_urlsafe(24)
    engine = make_engine(_settings().database_url)
    try:
        views = create_reporting_user(engine, args.name, password, host=args.host)
    finally:
        engine.dispose()
    print(f"user '{args.name}'@'{args.host}' may SELECT {len(views)} views: {', '.join(views)}")
    if not args.password_env:
        print(f"password (shown once): {password}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .ingest.local import LocalPlatform

    settings = _settings()
    host = args.host or settings.http_host
    port = args.port if args.port is not None else settings.http_port
    with LocalPlatform(settings, run_worker=not args.no_worker) as platform:
        server = platform.http_server(host, port)
        print(f"traffic-platform serving on {server.url} (POST /v1/images, GET /readyz)", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        server.start()
        stop.wait()
        server.stop()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from .ingest.local import LocalPlatform

    with LocalPlatform(_settings(), run_worker=True, load_detector=False) as platform:
        print(f"worker draining {platform.spool.root}", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        if args.once:
            platform.worker.drain(timeout=args.timeout)
        else:
            stop.wait()
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from .ingest.bulk import ingest_paths

    summary = ingest_paths([Path(p) for p in args.paths], settings=_settings(), wait=not args.no_wait, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0 if summary["accepted"] + summary["distorted"] > 0 or not summary["files"] else 1


def cmd_spool(args: argparse.Namespace) -> int:
    from .ingest.spool import Spool

    spool = Spool(_settings().spool_dir)
    if args.action == "replay-dead":
        print(f"moved {spool.replay_dead()} dead-lettered job(s) back to pending")
    else:
        print(json.dumps({**spool.backlog(), "root": str(spool.root)}))
    return 0


def cmd_model_export(args: argparse.Namespace) -> int:
    from .detection.onnx_export import export_onnx

    out = export_onnx(args.model, Path(args.out), int8=args.int8, opset=args.opset)
    print(f"exported {args.model} -> {out}")
    return 0


def cmd_model_serve(args: argparse.Namespace) -> int:
    from .detection.model_server import serve

    serve(args.model_dir, args.host, args.port)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .orchestration.report import run_report

    summary = run_report(args.first, args.last, progress=not args.quiet)
    print(summary.render(), flush=True)
    return 0 if summary.ok else 1


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .dashboard import write_dashboard
    from .storage.database import make_engine
    from .storage.objectstore import open_object_store

    settings = _settings()
    engine = make_engine(settings.database_url)
    try:
        written = write_dashboard(engine, open_object_store(settings), Path(args.out) if args.out else settings.dashboard_path,
                                  gallery_size=args.gallery)
    finally:
        engine.dispose()
    if written.data.problem:
        print(f"no data: {written.data.problem}", file=sys.stderr)
    elif written.data.empty:
        print("no data: the reporting views hold no counted images yet", file=sys.stderr)
    print(written.path)
    return 0


def _day(raw: str):
    from datetime import date

    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a date YYYY-MM-DD") from None


def _count(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or not 0 <= int(raw) <= 200:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number from 0 to 200")
    return int(raw)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(images=Path(args.images) if args.images else None, count=args.count)


def cmd_deploy_build(args: argparse.Namespace) -> int:
    from .packaging.build import build_all

    try:
        build_all(Path(args.out), args.model, sys.stdout)
    except (RuntimeError, ValueError) as exc:  # a pip failure, a limit broken, a model not found
        raise TrafficPlatformError(str(exc), code="deploy_build_failed") from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="traffic-platform", description="Traffic-monitoring data platform. Settings come from TRAFFIC_* variables (see README).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("parse-name", help="parse a capture file name and print its metadata as JSON")
    p.add_argument("name")
    p.set_defaults(func=cmd_parse_name)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True, metavar="ACTION")
    p = db.add_parser("upgrade", help="apply migrations (TRAFFIC_DATABASE_URL)")
    p.add_argument("revision", nargs="?", default="head")
    p.set_defaults(func=cmd_db_upgrade)
    db.add_parser("ddl", help="print the MySQL DDL the migrations produce").set_defaults(func=cmd_db_ddl)
    p = db.add_parser("create-database", help="create another database on the MySQL server if missing (e.g. Dagster's)")
    p.add_argument("name")
    p.set_defaults(func=cmd_db_create_database)
    p = db.add_parser("create-reporting-user", help="create (or reset) a MySQL user that can only SELECT the reporting views")
    p.add_argument("name")
    p.add_argument("--password-env", metavar="VAR", help="read the password from this variable (default: generate and print one)")
    p.add_argument("--host", default="%", help="host pattern of the account (default %%)")
    p.set_defaults(func=cmd_db_create_reporting_user)

    p = sub.add_parser("serve", help="run the local HTTP API with its persistence worker")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--no-worker", action="store_true", help="do not drain the spool in this process")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="drain the local spool into the database and object store")
    p.add_argument("--once", action="store_true", help="drain what is there, then exit")
    p.add_argument("--timeout", type=float, default=300.0)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("ingest", help="ingest image files or directories through the ingest service")
    p.add_argument("paths", nargs="+")
    p.add_argument("--no-wait", action="store_true", help="do not wait for persistence to finish")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("spool", help="inspect the local spool or replay its dead letters")
    p.add_argument("action", choices=["status", "replay-dead"])
    p.set_defaults(func=cmd_spool)

    model = sub.add_parser("model", help="detector models").add_subparsers(dest="model_command", required=True, metavar="ACTION")
    p = model.add_parser("export", help="export a transformers detector to ONNX")
    p.add_argument("model", help="hub id, local directory or s3:// artifact")
    p.add_argument("--out", required=True)
    p.add_argument("--int8", action="store_true", help="also write an int8 dynamically quantised copy")
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(func=cmd_model_export)
    p = model.add_parser("serve", help="serve a model with the SageMaker container contract (/ping, /invocations)")
    p.add_argument("model_dir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.set_defaults(func=cmd_model_serve)

    p = sub.add_parser("report", help="materialise the reporting assets for local days in-process (Dagster), then check them")
    p.add_argument("--from", dest="first", type=_day, required=True, metavar="DATE", help="first local day, YYYY-MM-DD")
    p.add_argument("--to", dest="last", type=_day, required=True, metavar="DATE", help="last local day, inclusive")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_report)

    deploy = sub.add_parser("deploy", help="AWS deployment").add_subparsers(dest="deploy_command", required=True, metavar="ACTION")
    p = deploy.add_parser("build", help="build the ingest and persist Lambda packages and the SageMaker model.tar.gz")
    p.add_argument("--out", default="build", help="output directory (deploy/template.yaml reads build/)")
    p.add_argument("--model", help="transformers checkpoint directory or hub id for model.tar.gz")
    p.set_defaults(func=cmd_deploy_build)

    p = sub.add_parser("dashboard", help="render the built-in dashboard (one offline HTML file) from the views; print its path")
    p.add_argument("--out", metavar="PATH", help="where to write it (default: TRAFFIC_DASHBOARD_PATH, else <home>/dashboard/index.html)")
    p.add_argument("--gallery", type=_count, default=12, metavar="N", help="newest annotated images to show (default 12)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("demo", help="ingest sample images end to end, then materialise the reporting assets")
    p.add_argument("--images", help="directory of images (default: generated street scenes)")
    p.add_argument("--count", type=int, default=60, help="number of sample images to generate")
    p.set_defaults(func=cmd_demo)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    """Servers log every image (INFO) by default, interactive commands only warnings;
    ``TRAFFIC_LOG_LEVEL`` and ``-v`` override; ``TRAFFIC_LOG_JSON=true`` writes JSON lines."""
    from .logs import configure_logging

    try:
        json_lines = _settings().log_json
    except TrafficPlatformError:  # the command itself reports bad settings
        json_lines = False
    default = "INFO" if args.func in (cmd_serve, cmd_worker) else "WARNING"
    level = logging.DEBUG if args.verbose else os.environ.get("TRAFFIC_LOG_LEVEL", default)
    configure_logging(json_lines=json_lines, level=level)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args)
    try:
        return args.func(args)
    except TrafficPlatformError as exc:
        print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
