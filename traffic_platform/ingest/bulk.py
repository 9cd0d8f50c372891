"""`traffic-platform ingest PATH…`: files and directories through the same ingest service."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..config import Settings
from ..domain.captures import ACCEPTED, DISTORTED


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
    try:
        if own:
            platform.__enter__()
        items = ((path.name, path.read_bytes(), path) for path in _progress(files, progress))
        outcomes = platform.ingest_batch(items, wait_s=600.0 if wait else None)
    finally:
        if own:
            platform.__exit__(None, None, None)
    rejected: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for outcome in outcomes:
        if outcome.record is not None:
            totals.update(outcome.record.counts)
        elif outcome.status != DISTORTED:
            rejected[outcome.error.code if outcome.error else "internal_error"] += 1
    return {
        "files": len(files),
        "accepted": sum(o.status == ACCEPTED for o in outcomes),
        "distorted": sum(o.status == DISTORTED for o in outcomes),
        "rejected": dict(rejected),
        "counts": dict(totals),
        "persisted": all(o.stored for o in outcomes if o.capture_id) if wait else None,
        "problems": [
            {"file": o.file_name, "code": o.error.code if o.error else "internal_error",
             "message": o.error.message if o.error else o.problem}
            for o in outcomes if o.error is not None or (o.status not in (ACCEPTED, DISTORTED))
        ][:50],
    }  # fmt: skip


def _progress(files: list[Path], enabled: bool):
    if not enabled:
        return files
    from tqdm import tqdm

    return tqdm(files, desc="ingest", unit="img", file=sys.stderr)
