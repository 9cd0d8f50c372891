"""A built wheel carries the package data the code reads at run time (the Power BI views)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VIEWS = "traffic_platform/orchestration/sql/views"
TEMPLATES = "traffic_platform/orchestration/sql/templates"


@pytest.mark.slow
def test_a_built_wheel_ships_and_loads_the_view_files(tmp_path):
    # Build from a copy, so the checkout gets no build/ or *.egg-info (and parallel runs don't collide).
    source = tmp_path / "source"
    shutil.copytree(ROOT / "traffic_platform", source / "traffic_platform",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(dist), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("traffic_platform-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")  # a wheel of pure Python is installed by unpacking it
    expected = {f"{VIEWS}/{p.name}" for p in (ROOT / VIEWS).glob("*.sql")}
    templates = {f"{TEMPLATES}/{p.name}" for p in (ROOT / TEMPLATES).glob("*.template")}
    from traffic_platform.orchestration.sql.view_files import load_views

    assert len(expected) == len(load_views()) >= 11 and expected <= names and len(templates) == 4 and templates <= names, sorted(n for n in names if "/sql/" in n)

    # The installed copy finds its views without the repository: no site (so no editable finder),
    # only the unpacked wheel and the third-party packages, run from elsewhere.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TRAFFIC_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), sysconfig.get_paths()["purelib"]])
    probe = (
        "import traffic_platform.orchestration.sql.view_files as v\n"
        "print(v.__file__)\n"
        "print(' '.join(view.name for view in v.load_views()))\n"
    )
    run = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    module_file, names_line = run.stdout.splitlines()
    assert Path(module_file).is_relative_to(tmp_path / "site")
    assert names_line.split() == sorted(p.stem for p in (ROOT / VIEWS).glob("*.sql"))
