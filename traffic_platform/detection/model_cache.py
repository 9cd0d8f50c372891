"""The one local cache of models fetched from S3, shared by every detector backend.

A backend says *which* objects make up the model (:class:`S3Object`: key, ETag, where it
goes in the model folder, whether it is a ``.tar.gz`` to unpack); :func:`fetch` does the rest:

* **key**: sha256 over the bucket and every object's key, ETag and destination. A model
  replaced under the same URI has a new ETag, hence a new entry, and is fetched again; two
  URIs naming the same objects (``s3://b/m/model.onnx`` and ``s3://b/m/``) share one entry.
  So every start asks S3 for the objects' ETags (one HEAD or LIST, plus HEADs of optional
  sidecars), and downloads only when they changed.
* **layout**: ``<TRAFFIC_MODEL_CACHE_DIR>/s3/<24 hex>/`` holds the model files (archives
  unpacked) and ``.complete`` (JSON: the URI, the objects and their ETags, the time);
  ``s3/uris/<24 hex of the URI>`` names the entry that URI last resolved to.
* **atomic**: downloads go to a staging sibling ``<entry>.<random>.part``; the marker is
  written last and the folder renamed into place, so a crash half-way never leaves an
  entry that looks usable, and two processes racing on one model both end with one
  complete copy. An entry without its marker (an older crash) is replaced.
* **offline start**: when S3 cannot be read (unreachable, no credentials, the artefact
  deleted), the entry the URI last resolved to is used, with a warning; without one, a
  :class:`~traffic_platform.domain.errors.ConfigurationError` says what failed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..domain.errors import ConfigurationError

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger(__name__)

COMPLETE_MARKER = ".complete"
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


@dataclass(frozen=True)
class S3Object:
    """One object of a model: ``key`` in the bucket, its ``etag``, and ``dest``, its path in the
    model folder (a ``.tar.gz`` with ``unpack`` is extracted into the folder instead)."""

    key: str
    etag: str
    dest: str
    unpack: bool = False


class ArtifactMissing(ConfigurationError):
    """Nothing (or not what the backend needs) exists at the URI; a cached copy may still serve."""


# A backend's choice of objects: (client, bucket, key) -> the objects to download.
Selector = Callable[[Any, str, str], Sequence[S3Object]]


def split_uri(uri: str, label: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; ``label`` starts the error message."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise ConfigurationError(f"{label}: {uri!r} names no bucket; expected s3://bucket/key.")
    return bucket, key


def cache_root(settings: Settings) -> Path:
    return Path(settings.model_cache_dir or "var/models") / "s3"


def entry_name(bucket: str, objects: Iterable[S3Object]) -> str:
    """The cache key: what is downloaded (bucket, keys, ETags, destinations), not how it was named."""
    manifest = json.dumps(
        [bucket, sorted([o.key, o.etag, o.dest, o.unpack] for o in objects)], ensure_ascii=True
    )
    return hashlib.sha256(manifest.encode()).hexdigest()[:24]


def is_complete(directory: Path) -> bool:
    return (directory / COMPLETE_MARKER).is_file()


def cached_entry_for(uri: str, settings: Settings) -> Path | None:
    """The complete entry ``uri`` last resolved to, if any (what an offline start uses)."""
    pointer = _pointer(uri, settings)
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    entry = cache_root(settings) / name
    return entry if name and is_complete(entry) else None


def cached_objects(entry: Path) -> dict[str, str]:
    """``{key: ETag}`` of the objects a complete entry was downloaded from."""
    marker = json.loads((entry / COMPLETE_MARKER).read_text(encoding="utf-8"))
    return dict(marker["objects"])


def fetch(
    uri: str,
    settings: Settings,
    select: Selector,
    *,
    label: str = "TRAFFIC_DETECTOR",
    check: Callable[[Path], object] | None = None,
    client: Any = None,
) -> Path:
    """The local folder holding the model at ``uri``, downloading it if its objects changed.

    ``select`` lists the objects (with their ETags) and raises :class:`ArtifactMissing` when
    they are not there; ``check`` validates a staged download before it is committed.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_uri(uri, label)
    try:
        client = client or s3_client(settings)
        objects = list(select(client, bucket, key))
        if not objects:
            raise ArtifactMissing(f"{label}: nothing found at {uri}.")
    except (ArtifactMissing, ClientError, BotoCoreError) as exc:
        cached = cached_entry_for(uri, settings)
        if cached is not None:
            log.warning(
                "model source unreadable; using the cached copy",
                extra={"uri": uri, "cached": str(cached), "error": str(exc)},
            )
            return cached
        if isinstance(exc, ConfigurationError):
            raise
        if isinstance(exc, ClientError):
            raise ConfigurationError(f"{label}: cannot read {uri}: {exc}") from None
        raise ConfigurationError(
            f"{label}: S3 is not reachable ({exc}); check TRAFFIC_S3_ENDPOINT_URL and AWS credentials."
        ) from None

    root = cache_root(settings)
    target = root / entry_name(bucket, objects)
    if not is_complete(target):
        try:
            _download_entry(client, uri, bucket, objects, target, check=check, label=label)
        except (ClientError, BotoCoreError) as exc:
            raise ConfigurationError(f"{label}: download of {uri} failed: {exc}") from None
    _write_pointer(uri, settings, target.name)
    return target


def s3_client(settings: Settings):
    import boto3

    return boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)


def head(
    client: Any, bucket: str, key: str, dest: str, *, optional: bool = False, **kw: Any
) -> S3Object | None:
    """The object ``key`` (its ETag from a HEAD request), or ``None`` if it does not exist
    (``optional``: also if reading it is forbidden, as S3 answers for a missing key when the
    caller may not list the bucket)."""
    from botocore.exceptions import ClientError

    absent = NOT_FOUND_CODES | ({"403", "Forbidden", "AccessDenied"} if optional else set())
    try:
        found = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in absent:
            return None
        raise
    return S3Object(key, _etag(found), dest, **kw)


def listing(client: Any, bucket: str, prefix: str, *, delimiter: str = "") -> list[dict[str, Any]]:
    """Every object under ``prefix`` (only the first level with ``delimiter="/"``)."""
    extra = {"Delimiter": delimiter} if delimiter else {}
    out: list[dict[str, Any]] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, **extra
    ):
        out.extend(page.get("Contents", []))
    return out


def listed(obj: dict[str, Any], dest: str, **kw: Any) -> S3Object:
    """An :class:`S3Object` from a ``list_objects_v2`` entry."""
    return S3Object(obj["Key"], _etag(obj), dest, **kw)


def _etag(meta: dict[str, Any]) -> str:
    return str(meta.get("ETag", "")).strip('"')


def _download(client: Any, bucket: str, key: str, dest: Path) -> None:
    client.download_file(bucket, key, str(dest))


def _download_entry(
    client: Any,
    uri: str,
    bucket: str,
    objects: Sequence[S3Object],
    target: Path,
    *,
    check: Callable[[Path], object] | None,
    label: str,
) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", suffix=".part", dir=target.parent))
    try:
        for obj in objects:
            dest = (staging / obj.dest).resolve()
            if staging.resolve() not in dest.parents:
                raise ConfigurationError(f"{label}: unsafe object key {obj.key!r} under {uri}.")
            dest.parent.mkdir(parents=True, exist_ok=True)
            _download(client, bucket, obj.key, dest)
            if obj.unpack:
                _safe_extract(dest, staging)
                dest.unlink()
        if check is not None:
            check(staging)  # fails clearly if the artefact is not a usable model
        marker = {
            "uri": uri,
            "downloaded_at": time.time(),
            "objects": {o.key: o.etag for o in objects},
        }
        (staging / COMPLETE_MARKER).write_text(json.dumps(marker, indent=1), encoding="utf-8")
        try:
            os.rename(staging, target)  # atomic; fails if another process already put one there
        except OSError:
            if not is_complete(target):  # a stale, incomplete entry left by a crash: replace it
                shutil.rmtree(target, ignore_errors=True)
                os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _pointer(uri: str, settings: Settings) -> Path:
    return cache_root(settings) / "uris" / hashlib.sha256(uri.encode("utf-8")).hexdigest()[:24]


def _write_pointer(uri: str, settings: Settings, name: str) -> None:
    pointer = _pointer(uri, settings)
    try:
        if pointer.read_text(encoding="utf-8").strip() == name:
            return
    except OSError:
        pass
    pointer.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=pointer.parent, prefix=pointer.name + ".", suffix=".part")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(name + "\n")
    os.replace(tmp, pointer)


def _safe_extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        try:
            tar.extractall(dest, filter="data")  # refuses absolute paths, "..", links out of dest
        except TypeError:  # pragma: no cover - Python without extraction filters
            for member in tar.getmembers():
                target = (dest / member.name).resolve()
                if dest.resolve() not in target.parents or member.issym() or member.islnk():
                    raise ConfigurationError(
                        f"unsafe member {member.name!r} in {archive.name}"
                    ) from None
            tar.extractall(dest)  # noqa: S202 - checked above


__all__ = [
    "COMPLETE_MARKER",
    "ArtifactMissing",
    "S3Object",
    "cached_entry_for",
    "cached_objects",
    "entry_name",
    "fetch",
    "head",
    "listed",
    "listing",
    "split_uri",
]
