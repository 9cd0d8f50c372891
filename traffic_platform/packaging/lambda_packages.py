"""The ingest and persist Lambda packages: our code without Dagster, plus pinned light wheels.

Each package is a directory tree (``build/<name>/``, what ``CodeUri`` in
``deploy/template.yaml`` points at) and a reproducible zip of it. Wheels are taken for the
Lambda runtime's platform (``python3.12`` on Amazon Linux 2023: CPython 3.12, manylinux_2_28
x86_64), not this machine's, with
``--no-deps`` from a fully pinned list, so the same pins give the same bytes. boto3 is the
runtime's own. Left out on purpose: torch, transformers, pandas, pyarrow (Parquet answers
become 406 ``format_unavailable``), onnxruntime and Dagster — the detector is the SageMaker
endpoint, and the package must stay under Lambda's 250 MB unzipped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .archives import files_under, write_zip

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # .../traffic_platform
LAMBDA_PYTHON = "3.12"  # deploy/template.yaml: Runtime python3.12
LAMBDA_PLATFORM = "manylinux_2_28_x86_64"  # glibc 2.34 on Amazon Linux 2023
UNZIPPED_LIMIT = 250 * 1024 * 1024  # Lambda: function + layers, unzipped
ZIP_DIRECT_LIMIT = 50 * 1024 * 1024  # Lambda: a zip uploaded directly (larger ones go through S3)
# What both functions import: images and quality (Pillow, NumPy), rows (SQLAlchemy, PyMySQL), zones.
WHEELS = (
    "pillow==13.0.0",
    "numpy==2.4.6",
    "sqlalchemy==2.1.9",
    "typing-extensions==4.16.0",
    "pymysql==1.2.4",
    "tzdata==2026.6",
)
HANDLERS = {
    "ingest": "traffic_platform.ingest.lambda_handlers.ingest_handler",
    "persist": "traffic_platform.ingest.lambda_handlers.persist_handler",
}
# Our modules a function needs; orchestration, the dashboard, the CLI and the demo stay out.
SOURCE_PARTS = ("__init__.py", "py.typed", "config.py", "logs.py", "domain", "detection", "ingest", "storage")
FORBIDDEN = ("torch", "transformers", "pandas", "pyarrow", "onnxruntime", "dagster")


@dataclass(frozen=True)
class LambdaPackage:
    name: str
    handler: str
    directory: Path
    zip_path: Path
    unzipped_bytes: int
    zip_bytes: int

    def describe(self) -> str:
        return (f"{self.name} Lambda: {self.zip_path} {self.zip_bytes / 2**20:.1f} MiB zipped, "
                f"{self.unzipped_bytes / 2**20:.1f} MiB unzipped (limit 250), handler {self.handler}")


def build_lambda_package(
    name: str, out_dir: Path, *, wheel_cache: Path | None = None, python_version: str = LAMBDA_PYTHON
) -> LambdaPackage:
    """Build ``out_dir/<name>/`` and ``out_dir/<name>.zip``; raise if it breaks a Lambda limit.

    ``python_version``: the runtime's by default; the tests build for this interpreter to import it."""
    if name not in HANDLERS:
        raise ValueError(f"unknown Lambda package {name!r}; one of {sorted(HANDLERS)}")
    tree = out_dir / name
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    install_wheels(tree, wheel_cache, python_version)
    copy_source(tree / "traffic_platform")
    found = [part for part in FORBIDDEN if (tree / part).exists()]
    if found:
        raise RuntimeError(f"the {name} package must not contain {found}")
    unzipped = sum(path.stat().st_size for _, path in files_under(tree))
    if unzipped > UNZIPPED_LIMIT:
        raise RuntimeError(f"the {name} package is {unzipped / 2**20:.0f} MiB unzipped, over Lambda's 250 MiB")
    zip_path = write_zip(tree, out_dir / f"{name}.zip")
    return LambdaPackage(name, HANDLERS[name], tree, zip_path, unzipped, zip_path.stat().st_size)


def install_wheels(target: Path, wheel_cache: Path | None = None, python_version: str = LAMBDA_PYTHON) -> None:
    """The pinned wheels for the Lambda platform into ``target`` (``wheel_cache``: reuse downloads)."""
    platform = ["--platform", LAMBDA_PLATFORM, "--implementation", "cp", "--python-version", python_version,
                "--only-binary=:all:", "--no-deps"]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    source: list[str] = []
    if wheel_cache is not None:
        wheel_cache.mkdir(parents=True, exist_ok=True)
        _run([*pip, "download", *platform, "--dest", str(wheel_cache), *WHEELS])
        source = ["--no-index", "--find-links", str(wheel_cache)]
    _run([*pip, "install", *platform, *source, "--no-compile", "--target", str(target), *WHEELS])
    for junk in target.glob("bin"):
        shutil.rmtree(junk)


def copy_source(target: Path) -> None:
    for part in SOURCE_PARTS:
        src = PACKAGE_ROOT / part
        if src.is_dir():
            shutil.copytree(src, target / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.exists():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target / part)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:5])} ... failed:\n{result.stderr.strip()[-2000:]}")
