"""Durable local hand-off: a directory of job files, fsync'ed before the caller is answered.

Layout under the spool directory::

    pending/<capture_id>.job       waiting to be persisted (atomic: written to tmp/, fsync, rename)
    pending/<capture_id>.attempts  failed attempts so far (JSON: count, last error, next try)
    dead/<capture_id>.job          gave up after N attempts; ``.reason.json`` beside it says why
    tmp/                           half-written files (removed by the worker once an hour old)

A job file is ``b"TPJ1" + 4-byte header length + header JSON + image bytes``.
Submitting the same capture twice replaces the file with identical content.
"""

from __future__ import annotations

import json
import os
import struct
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from .handoff import CaptureJob

MAGIC = b"TPJ1"
#: A file in tmp/ younger than this may still be written by a request thread of another
#: process (``serve`` submitting while ``worker`` takes the lock): only older ones are removed.
TMP_MAX_AGE_S = 3600.0


def encode_job(job: CaptureJob) -> bytes:
    header = job.header_json()
    return MAGIC + struct.pack(">I", len(header)) + header + job.image


def decode_job(blob: bytes) -> CaptureJob:
    if blob[:4] != MAGIC or len(blob) < 8:
        raise ValueError("not a spool job file")
    (length,) = struct.unpack(">I", blob[4:8])
    header = json.loads(blob[8 : 8 + length])
    return CaptureJob.from_parts(header, blob[8 + length :])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """A crash-safe queue of capture jobs on the local disk."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.pending = self.root / "pending"
        self.dead = self.root / "dead"
        self.tmp = self.root / "tmp"
        for d in (self.pending, self.dead, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    # -- producer side (the request) ------------------------------------------------
    def submit(self, job: CaptureJob) -> None:
        """Write the job durably; when this returns, a crash cannot lose it."""
        self._write_atomic(self.pending / f"{job.capture_id}.job", encode_job(job))

    def _write_atomic(self, target: Path, data: bytes) -> None:
        tmp = self.tmp / f"{target.name}.{uuid.uuid4().hex}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)

    # -- consumer side (the worker) -------------------------------------------------
    def clean_tmp(self, max_age_s: float = TMP_MAX_AGE_S, now: float | None = None) -> int:
        """Remove half-written files left by a crash: only those older than ``max_age_s``
        (a live writer finishes in well under a second), so a submit in progress elsewhere
        is never cut off. Returns how many were removed."""
        now = time.time() if now is None else now
        removed = 0
        for p in self.tmp.iterdir():
            try:
                if now - p.stat().st_mtime > max_age_s:
                    p.unlink()
                    removed += 1
            except FileNotFoundError:  # renamed into place meanwhile
                continue
        return removed

    def ready(self, now: float | None = None) -> Iterator[str]:
        """Capture ids whose next attempt is due, oldest first."""
        now = time.time() if now is None else now
        entries = []
        for p in self.pending.glob("*.job"):
            try:
                entries.append((p.stat().st_mtime, p.stem))
            except FileNotFoundError:
                continue
        for _, capture_id in sorted(entries):
            if self.attempts(capture_id).get("next_at", 0) <= now:
                yield capture_id

    def load(self, capture_id: str) -> CaptureJob:
        return decode_job((self.pending / f"{capture_id}.job").read_bytes())

    def attempts(self, capture_id: str) -> dict:
        try:
            return json.loads((self.pending / f"{capture_id}.attempts").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def record_failure(self, capture_id: str, error: str, next_at: float) -> int:
        info = self.attempts(capture_id)
        info = {"count": info.get("count", 0) + 1, "last_error": error, "next_at": next_at}
        self._write_atomic(self.pending / f"{capture_id}.attempts", json.dumps(info).encode())
        return info["count"]

    def done(self, capture_id: str) -> None:
        failed = self.done_many([capture_id])
        if failed:
            raise failed[capture_id]

    def done_many(self, capture_ids: Sequence[str]) -> dict[str, OSError]:
        """Remove stored jobs with one directory fsync; the ones that could not be removed, with why."""
        failed: dict[str, OSError] = {}
        for capture_id in capture_ids:
            try:
                (self.pending / f"{capture_id}.job").unlink(missing_ok=True)
                (self.pending / f"{capture_id}.attempts").unlink(missing_ok=True)
            except OSError as exc:
                failed[capture_id] = exc
        try:
            _fsync_dir(self.pending)
        except OSError as exc:
            return dict.fromkeys(capture_ids, exc)
        return failed

    def dead_letter(self, capture_id: str, reason: str) -> None:
        """Move a job that keeps failing aside, with the reason, for an operator to replay."""
        info = self.attempts(capture_id) | {"reason": reason, "dead_at": time.time()}
        self._write_atomic(self.dead / f"{capture_id}.reason.json", json.dumps(info).encode())
        os.replace(self.pending / f"{capture_id}.job", self.dead / f"{capture_id}.job")
        (self.pending / f"{capture_id}.attempts").unlink(missing_ok=True)
        _fsync_dir(self.pending)
        _fsync_dir(self.dead)

    def replay_dead(self) -> int:
        """Put every dead-lettered job back into pending (after the cause is fixed)."""
        moved = 0
        for p in self.dead.glob("*.job"):
            os.replace(p, self.pending / p.name)
            (self.dead / f"{p.stem}.reason.json").unlink(missing_ok=True)
            moved += 1
        return moved

    # -- status ----------------------------------------------------------------------
    def is_pending(self, capture_id: str) -> bool:
        return (self.pending / f"{capture_id}.job").exists()

    def dead_reason(self, capture_id: str) -> dict | None:
        try:
            return json.loads((self.dead / f"{capture_id}.reason.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def depth(self) -> int:
        return sum(1 for _ in self.pending.glob("*.job"))

    def oldest_pending_age(self, now: float | None = None) -> float:
        """Seconds since the oldest pending job was submitted (0 when none is pending)."""
        now = time.time() if now is None else now
        oldest = None
        for p in self.pending.glob("*.job"):
            try:
                mtime = p.stat().st_mtime
            except FileNotFoundError:
                continue
            oldest = mtime if oldest is None else min(oldest, mtime)
        return 0.0 if oldest is None else max(0.0, now - oldest)

    def backlog(self, now: float | None = None) -> dict[str, float]:
        """Pending jobs, dead letters and the oldest pending job's age in seconds."""
        return {"pending": self.depth(), "dead": self.dead_count(), "oldest_pending_age_s": round(self.oldest_pending_age(now), 3)}

    def dead_count(self) -> int:
        return sum(1 for _ in self.dead.glob("*.job"))
