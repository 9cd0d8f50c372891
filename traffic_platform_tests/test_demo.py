"""The main job end to end: sample images -> ingest -> persistence -> Dagster reporting -> view."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, text

from traffic_platform import demo
from traffic_platform_tests import images


def test_demo_runs_end_to_end_on_generated_images(tmp_path, monkeypatch, tiny_detr_dir, capsys):
    monkeypatch.setattr(demo, "STREET", tmp_path / "no-photos")  # force generated street scenes
    monkeypatch.setenv("TRAFFIC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRAFFIC_DETECTOR", f"local:{tiny_detr_dir}")
    monkeypatch.setenv("TRAFFIC_DETECTOR_RUNTIME", "torch")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))

    assert demo.run_demo(count=9) == 0

    out = capsys.readouterr()
    assert "v_traffic_counts_hourly" in out.out
    assert "report 2022-10-12 .. 2022-10-13: 2 day(s)" in out.err and "result: ok" in out.err
    assert "0 blocking failure(s)" in out.err and "FAILED" not in out.err
    assert "rejected" in out.err and "file_name_missing_parts" in out.err  # the deliberately misnamed file
    engine = create_engine(f"sqlite:///{Path(tmp_path / 'home' / 'traffic.db')}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM captures")).scalar_one() == 9
        days = conn.execute(text("SELECT COUNT(DISTINCT window_start) FROM traffic_counts_daily")).scalar_one()
        per_class = conn.execute(text("SELECT COUNT(*) FROM v_traffic_counts_hourly")).scalar_one()
    assert days == 2 and per_class > 0 and per_class % 6 == 0
    engine.dispose()
    assert any((tmp_path / "dagster").iterdir())  # the runs are kept for the UI
    dashboard = tmp_path / "home" / "dashboard" / "index.html"  # the serving job's reporting/dashboard
    assert f"dashboard: {dashboard.resolve()} " in out.out
    html = dashboard.read_text(encoding="utf-8")
    assert 'data-kpi="images_accepted">9<' in html and html.count("data-location-id=") == 3  # 9 images, 3 locations
    assert html.count("<figure data-gallery-item") == 9  # every annotated copy (fewer than the gallery's 12)


def test_demo_output_is_ours_alone(tmp_path, tiny_detr_dir):
    """Run as a newcomer does (a fresh interpreter, the default Dagster home): no Dagster
    telemetry banner and no Beta/Preview warnings between our progress bar and summary."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAFFIC_", "PYTHON", "DAGSTER_"))}
    env.update(
        PYTHONPATH=str(root),
        TRAFFIC_HOME=str(tmp_path / "home"),
        TRAFFIC_SHARED_DIR=str(tmp_path / "no-shared"),  # generated street scenes
        TRAFFIC_DETECTOR=f"local:{tiny_detr_dir}",
        TRAFFIC_DETECTOR_RUNTIME="torch",
    )
    proc = subprocess.run([sys.executable, "-m", "traffic_platform.cli", "demo", "--count", "9"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "result: ok" in output and "v_traffic_counts_hourly" in output
    assert "Telemetry" not in output and "Welcome to Dagster" not in output, output
    assert [line for line in output.splitlines() if "Warning" in line] == [], output
    assert "enabled: false" in (tmp_path / "home" / "dagster" / "dagster.yaml").read_text()


def test_demo_samples_never_repeat_a_photo_byte_for_byte(tmp_path, monkeypatch):
    """Sample photos are used more than once (60 images from 29 photos): each reuse is another
    picture (mirrored, cropped), so the demo's no_duplicate_content check has nothing to warn about."""
    import hashlib

    from PIL import Image

    street = tmp_path / "street"
    street.mkdir()
    (street / "a.jpg").write_bytes(images.jpeg_bytes(images.street_scene(320, 240, seed=1)))
    buf = io.BytesIO()
    images.street_scene(320, 240, seed=2).save(buf, format="PNG")
    (street / "b.png").write_bytes(buf.getvalue())
    (street / "c.jpg").write_bytes(images.jpeg_bytes(images.street_scene(320, 240, seed=3))[:900])  # truncated
    monkeypatch.setattr(demo, "STREET", street)
    files = demo.prepare_images(tmp_path / "out", 10)  # each photo used three or four times
    captures = [f for f in files if f.name != "not-a-capture-name.jpg"]
    assert len({hashlib.sha256(f.read_bytes()).hexdigest() for f in captures}) == 10
    first, again = captures[0], captures[3]  # a.jpg and its mirror
    with Image.open(first) as one, Image.open(again) as two:
        assert two.format == "JPEG" and two.size == one.size
        assert np.abs(np.asarray(two.convert("L"), dtype=int)[:, ::-1] - np.asarray(one.convert("L"), dtype=int)).mean() < 4
    with Image.open(captures[4]) as png:  # b.png mirrored
        assert png.format == "PNG"
    assert captures[5].read_bytes().startswith((street / "c.jpg").read_bytes())  # still broken, but different
