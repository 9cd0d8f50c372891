"""``traffic-platform deploy build``: the three artefacts ``deploy/template.yaml`` deploys."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from .lambda_packages import HANDLERS, build_lambda_package
from .model_archive import build_model_archive


def build_all(out: Path, model: str | None, stream: TextIO, *, wheel_cache: Path | None = None) -> list[Path]:
    """Both Lambda packages and, given a model, ``model.tar.gz``; prints each with its size."""
    built = []
    for name in HANDLERS:
        package = build_lambda_package(name, out, wheel_cache=wheel_cache or out / ".wheels")
        print(package.describe(), file=stream, flush=True)
        built.append(package.zip_path)
    if model:
        archive = build_model_archive(model, out / "model.tar.gz")
        print(archive.describe(), file=stream, flush=True)
        built.append(archive.path)
    else:
        print("SageMaker model: skipped (give --model DIR|HUB_ID)", file=stream, flush=True)
    return built
