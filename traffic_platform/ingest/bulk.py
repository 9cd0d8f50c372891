"""`traffic-platform ingest PATH…`: files and directories through the same ingest service."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..config import Settings
from ..domain.errors import DistortedImage, TrafficPlatformError


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Every regular file named or under a named directory, sorted, hidden files skipped."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            yield path


def ingest_paths(paths: list[Path], *, settings: Settings, wait: bool = True, progress: bool = True, platform=None) -> dict[str, Any]:
    """Ingest every file; return a summary: accepted, distorted, rejected by error code, counts."""
    from .local import LocalPlatform

    files = list(iter_files(paths))
    own = platform is None
    platform = platform or LocalPlatform(settings, run_worker=True)
    rejected: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    accepted = distorted = 0
    errors: list[dict[str, str]] = []
    try:
        if own:
            platform.__enter__()
        bar = _progress(files, progress)
        for path in bar:
            try:
                result = platform.service.ingest(path.name, path.read_bytes())
            except DistortedImage as exc:
                distorted += 1
                errors.append({"file": path.name, "code": exc.code, "message": exc.message})
                continue
            except TrafficPlatformError as exc:
                rejected[exc.code] += 1
                errors.append({"file": path.name, "code": exc.code, "message": exc.message})
                continue
            accepted += 1
            totals.update(result.counts)
        persisted = platform.worker.drain(timeout=600) if wait else None
    finally:
        if own:
            platform.__exit__(None, None, None)
    return {
        "files": len(files),
        "accepted": accepted,
        "distorted": distorted,
        "rejected": dict(rejected),
        "counts": dict(totals),
        "persisted": persisted,
        "problems": errors[:50],
    }


def _progress(files: list[Path], enabled: bool):
    if not enabled:
        return files
    from tqdm import tqdm

    return tqdm(files, desc="ingest", unit="img", file=sys.stderr)
