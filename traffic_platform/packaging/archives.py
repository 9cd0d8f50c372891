"""Byte-reproducible zip and tar.gz archives of a directory tree."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
SKIPPED = ("__pycache__",)


def files_under(root: Path) -> Iterator[tuple[str, Path]]:
    """``(posix path relative to root, path)`` of every regular file, sorted, caches left out."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not any(part in SKIPPED for part in rel.parts) and path.suffix != ".pyc":
            yield rel.as_posix(), path


def write_zip(root: Path, target: Path) -> Path:
    """``root``'s files in ``target`` (deflated), each with the same time and mode."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, path in files_under(root):
            info = zipfile.ZipInfo(name, ZIP_EPOCH)
            info.external_attr = (0o100755 if path.stat().st_mode & 0o111 else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    return target


def write_tar_gz(root: Path, target: Path) -> Path:
    """``root``'s files in ``target``: owner 0, mtime 0, mode 644, gzip header without a time."""
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, path in files_under(root):
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, 0, "", ""
            with path.open("rb") as handle:
                archive.addfile(info, handle)
    with target.open("wb") as out, gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as packed:
        packed.write(raw.getvalue())
    return target
