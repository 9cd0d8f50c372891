"""The main job, end to end on a laptop: ingest sample images, persist them, build the reports
and the dashboard (printing its path).

Sample images are the real street photos in ``../shared/data/street`` when present
(renamed to the platform's naming scheme across three locations and two days),
otherwise generated street scenes. The detector is ``TRAFFIC_DETECTOR`` when set,
else the real COCO-trained DEIMv2 ONNX graph in ``../shared/models`` when present,
else a tiny random-weight DETR built locally (its counts are meaningless; it only
shows the path works).
"""

from __future__ import annotations

import dataclasses
import io
import os
import random
import shutil
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

from .config import Settings
from .domain.metadata import format_file_name
from .domain.redact import redact

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRAFFIC_SHARED_DIR", REPO_ROOT.parent / "shared"))
DEIMV2 = SHARED / "models" / "deimv2-hgnetv2-atto-coco-onnx"
STREET = SHARED / "data" / "street"
LOCATIONS = [
    ("tiensevest", "Leuven", "Belgium"),
    ("rue_de_la_loi", "Brussels", "Belgium"),
    ("Bahnhofstrasse", "Zürich", "Switzerland"),
]
START = datetime(2022, 10, 12, 7, 0, 0)
# The demo's own Dagster instance: no usage statistics, so no telemetry banner in our output.
DAGSTER_YAML = "telemetry:\n  enabled: false\n"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def choose_detector(settings: Settings) -> Settings:
    """Keep TRAFFIC_DETECTOR if set; otherwise the best model this machine has."""
    if os.environ.get("TRAFFIC_DETECTOR"):
        return settings
    if (DEIMV2 / "deimv2_hgnetv2_atto_coco.onnx").exists():
        say(f"detector: real COCO-trained DEIMv2-Atto ONNX graph from {DEIMV2}")
        return dataclasses.replace(settings, detector=f"onnx:{DEIMV2}")
    target = settings.home / "models" / "demo-tiny-detr"
    if not (target / "config.json").exists():
        from .detection.tiny_models import build_tiny_detr

        build_tiny_detr(target, shortest_edge=320, longest_edge=512)
    say(f"detector: no pretrained model on this machine; a tiny RANDOM-weight DETR at {target} (counts are meaningless)")
    return dataclasses.replace(settings, detector=f"local:{target}")


def prepare_images(out: Path, count: int) -> list[Path]:
    """Write sample images named ``<address>_<city>_<country>_<date>_<time>.<ext>`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(p for p in STREET.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if STREET.is_dir() else []
    files: list[Path] = []
    for i in range(count):
        address, city, country = LOCATIONS[i % len(LOCATIONS)]
        when = START + timedelta(days=(i // len(LOCATIONS)) % 2, minutes=15 * (i // (2 * len(LOCATIONS))))
        if sources:
            src = sources[i % len(sources)]
            target = out / format_file_name(address, city, country, when, src.suffix.lower().lstrip("."))
            use = i // len(sources)
            if use == 0:
                shutil.copyfile(src, target)
            else:  # a photo used again: another picture, so no_duplicate_content has nothing to flag
                target.write_bytes(variant(src.read_bytes(), use))
        else:
            target = out / format_file_name(address, city, country, when, "jpg")
            target.write_bytes(synthetic_street(seed=i))
        files.append(target)
    bad = out / "not-a-capture-name.jpg"  # shows a rejection with its error code
    bad.write_bytes(files[0].read_bytes())
    return [*files, bad]


def variant(data: bytes, use: int) -> bytes:
    """Another picture from a photo for its ``use``-th reuse (1, 2, …): mirrored on odd uses,
    and from the second on, ``8 * use`` pixel columns cut off the right. Bytes that do not
    decode (the sample truncated JPEG) get ``use`` trailing bytes instead: still broken, but
    different."""
    from PIL import ImageOps

    from .domain.errors import DistortedImage
    from .domain.images import open_stored, sniff_format

    try:
        picture = open_stored(data)
    except DistortedImage:
        return data + b"\0" * use
    if use % 2:
        picture = ImageOps.mirror(picture)
    if use >= 2:
        picture = picture.crop((0, 0, max(1, picture.width - 8 * use), picture.height))
    buf = io.BytesIO()
    fmt = sniff_format(data) or "JPEG"  # "JPEG" or "PNG": the photo's own format
    picture.save(buf, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buf.getvalue()


def synthetic_street(seed: int, size: tuple[int, int] = (960, 540)) -> bytes:
    """A generated street: textured sky and asphalt, lane marks, box-shaped vehicles with windows."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size, (135, 170, 205))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, h // 2, w, h], fill=(70, 70, 75))
    for x in range(0, w, 80):
        draw.rectangle([x, int(h * 0.74), x + 40, int(h * 0.76)], fill=(230, 230, 230))
    for _ in range(rng.randint(2, 6)):
        x, y = rng.randint(0, w - 160), rng.randint(h // 2, h - 80)
        cw, ch = rng.randint(90, 160), rng.randint(40, 70)
        draw.rectangle([x, y, x + cw, y + ch], fill=tuple(rng.randint(20, 230) for _ in range(3)), outline=(10, 10, 10), width=2)
        draw.rectangle([x + 10, y + 6, x + cw // 2, y + ch // 2], fill=(40, 60, 80))
    grain = Image.effect_noise(size, 24).convert("RGB")  # sensor noise and texture: real frames are never flat
    img = Image.blend(img, grain, 0.12)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def run_demo(images: Path | None = None, count: int = 60) -> int:
    import json

    from .ingest.bulk import ingest_paths
    from .ingest.local import LocalPlatform

    settings = choose_detector(Settings.from_env())
    say(f"home: {settings.home.resolve()}  database: {redact(settings.database_url)}  objects: {settings.object_store_uri}")
    paths = [images] if images else prepare_images(settings.home / "demo" / "incoming", count)
    with LocalPlatform(settings) as platform:
        summary = ingest_paths(paths, settings=settings, platform=platform)
    say("ingest summary: " + json.dumps({k: summary[k] for k in ("files", "accepted", "distorted", "rejected", "counts", "persisted")}, ensure_ascii=False))
    days = sorted({day for p in (paths if not images else list(Path(images).iterdir())) if (day := _day_of(p))})
    ok = materialise_days(settings, days)
    print(hourly_report(settings))
    dashboard = settings.dashboard_path.resolve()  # written by the serving job's reporting/dashboard asset
    if dashboard.is_file():
        print(f"dashboard: {dashboard} (one offline HTML file; open it in a browser)")
    elif days:
        say(f"dashboard: not written ({dashboard} is missing)")
        ok = False
    say(f"annotated copies: {settings.object_store_uri}/annotated/ ; API: traffic-platform serve ; "
        f"UI: DAGSTER_HOME={os.environ['DAGSTER_HOME']} .venv/bin/dagster dev -w workspace.yaml (http://127.0.0.1:3000)")
    return 0 if ok else 1


def materialise_days(settings: Settings, days: list[str]) -> bool:
    """``traffic-platform report`` over the demo's days (the reporting job per day, then the serving
    job), in a persistent instance (``DAGSTER_HOME``, default ``<home>/dagster``) so the runs show
    in the UI afterwards."""
    if not days:
        say("no capture days to report")
        return True
    home = Path(os.environ.setdefault("DAGSTER_HOME", str((settings.home / "dagster").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or not config.read_text(encoding="utf-8").strip():  # never rewrite someone's own instance config
        config.write_text(DAGSTER_YAML, encoding="utf-8")
    from dagster import DagsterInstance

    from .orchestration.report import run_report

    with DagsterInstance.get() as instance:
        summary = run_report(date.fromisoformat(min(days)), date.fromisoformat(max(days)), instance=instance)
    say(summary.render())
    return summary.ok


def hourly_report(settings: Settings, limit: int = 30) -> str:
    """The analysts' hourly view, as a small text table."""
    from sqlalchemy import text

    from .storage.database import make_engine

    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            for where in ("WHERE total_count > 0", ""):  # road users first; all-zero windows otherwise
                result = conn.execute(text(f"SELECT * FROM v_traffic_counts_hourly {where} ORDER BY city, address, window_start, traffic_class LIMIT :n"), {"n": limit})
                columns = list(result.keys())
                rows = [list(r) for r in result]
                if rows:
                    break
    finally:
        engine.dispose()
    shown = [c for c in columns if c in ("city", "address", "window_start", "traffic_class", "images_accepted", "total_count", "mean_per_image", "max_per_image", "coverage")] or columns
    idx = [columns.index(c) for c in shown]
    lines = [" | ".join(shown), " | ".join("---" for _ in shown)]
    lines += [" | ".join(_fmt(row[i]) for i in idx) for row in rows]
    return "v_traffic_counts_hourly (first rows):\n" + "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    return str(value).removesuffix(".000000")


def _day_of(path: Path) -> str | None:
    from .domain.errors import InvalidFileName
    from .domain.metadata import parse_file_name

    try:
        return parse_file_name(path.name).captured_at.date().isoformat()
    except InvalidFileName:
        return None
