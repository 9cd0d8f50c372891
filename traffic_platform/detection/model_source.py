"""Where a model comes from: a hub id, a local directory, or an ``s3://`` artifact.

An ``s3://bucket/key`` reference is downloaded **once** into
``settings.model_cache_dir/s3/<sha256 of the URI>/`` and reused by every later start.
Two shapes are accepted:

* a SageMaker-style archive: the URI names a ``*.tar.gz`` object, or the prefix holds a
  ``model.tar.gz`` -> it is extracted (safely: no absolute paths, no ``..``, no links);
* a prefix of files (``config.json``, ``model.safetensors``, ``preprocessor_config.json``…)
  -> each object is downloaded under its relative key.

The download goes to a temporary sibling directory, a ``.complete`` marker (JSON with
the URI and the objects' ETags) is written last and the directory is renamed into
place, so a crash half-way never leaves a cache entry that looks usable, and two
processes racing on the same URI both end with one complete copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..domain.errors import ConfigurationError

if TYPE_CHECKING:
    from ..config import Settings

COMPLETE_MARKER = ".complete"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx")


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference made loadable: ``location`` is what ``from_pretrained`` gets."""

    reference: str  # what the settings said (hub id, path or s3:// URI)
    location: str  # hub id or local directory
    is_local: bool


def resolve_model(reference: str, settings: Settings) -> ResolvedModel:
    """Turn a model reference into something ``from_pretrained`` can load (downloading S3 once)."""
    if reference.startswith("s3://"):
        return ResolvedModel(reference, str(fetch_s3_model(reference, settings)), True)
    path = Path(reference).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigurationError(
                f"TRAFFIC_DETECTOR: {reference!r} is a file; point it at the model directory."
            )
        return ResolvedModel(reference, str(path.resolve()), True)
    if reference.startswith((".", "/", "~")) or reference.count("/") > 1:
        raise ConfigurationError(f"TRAFFIC_DETECTOR: model directory {reference!r} does not exist.")
    return ResolvedModel(reference, reference, False)  # a hub id: transformers resolves it


def cache_dir_for(uri: str, settings: Settings) -> Path:
    """The cache directory of one URI (keyed by the URI, so a new artifact URI is a new entry)."""
    digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()[:24]
    return Path(settings.model_cache_dir or "var/models") / "s3" / digest


def is_complete(directory: Path) -> bool:
    return (directory / COMPLETE_MARKER).is_file()


def fetch_s3_model(uri: str, settings: Settings, *, client: Any = None) -> Path:
    """Download (once) the model at ``uri`` and return the directory that holds ``config.json``."""
    target = cache_dir_for(uri, settings)
    if is_complete(target):
        return _model_root(target)
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ConfigurationError(f"TRAFFIC_DETECTOR: {uri!r} names no bucket.")
    client = client or _s3_client(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", suffix=".part", dir=target.parent))
    try:
        objects = _list_objects(client, bucket, key)
        if not objects:
            raise ConfigurationError(f"TRAFFIC_DETECTOR: nothing found at {uri}.")
        archives = [
            o
            for o in objects
            if o["Key"].endswith(".tar.gz")
            and (o["Key"] == key or o["Key"].rsplit("/", 1)[-1] == "model.tar.gz")
        ]
        if archives:
            archive = staging / "model.tar.gz"
            client.download_file(bucket, archives[0]["Key"], str(archive))
            _safe_extract(archive, staging)
            archive.unlink()
            fetched = [archives[0]]
        else:
            prefix = key if key.endswith("/") or not key else key + "/"
            fetched = []
            for obj in objects:
                rel = (
                    obj["Key"][len(prefix) :]
                    if obj["Key"].startswith(prefix)
                    else obj["Key"].rsplit("/", 1)[-1]
                )
                if not rel or rel.endswith("/"):
                    continue
                dest = (staging / rel).resolve()
                if staging.resolve() not in dest.parents:
                    raise ConfigurationError(
                        f"TRAFFIC_DETECTOR: unsafe object key {obj['Key']!r} under {uri}."
                    )
                dest.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, obj["Key"], str(dest))
                fetched.append(obj)
        _model_root(staging)  # fails clearly if the artifact holds no config.json
        marker = {
            "uri": uri,
            "downloaded_at": time.time(),
            "objects": {o["Key"]: o.get("ETag", "").strip('"') for o in fetched},
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
    return _model_root(target)


def _s3_client(settings: Settings):
    import boto3

    return boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)


def _list_objects(client, bucket: str, key: str) -> list[dict[str, Any]]:
    """The object ``key`` itself if it exists, else every object under the prefix ``key``."""
    if key and not key.endswith("/"):
        try:
            head = client.head_object(Bucket=bucket, Key=key)
            return [{"Key": key, "ETag": head.get("ETag", "")}]
        except Exception as exc:  # noqa: BLE001 - botocore ClientError 404: treat as a prefix
            if (
                "404" not in str(exc)
                and "Not Found" not in str(exc)
                and "NoSuchKey" not in str(exc)
            ):
                raise
    prefix = key if key.endswith("/") or not key else key + "/"
    out: list[dict[str, Any]] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.extend(page.get("Contents", []))
    return out


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


def _model_root(directory: Path) -> Path:
    """The directory holding ``config.json`` (the archive root or its single sub-folder)."""
    if (directory / "config.json").is_file():
        return directory
    candidates = sorted(p.parent for p in directory.rglob("config.json"))
    if len(candidates) == 1:
        return candidates[0]
    raise ConfigurationError(
        f"TRAFFIC_DETECTOR: the model artifact in {directory} holds {len(candidates)} config.json files; expected one."
    )


def weights_digest(directory: str | Path, length: int = 16) -> str:
    """sha256 over the weight files of a model directory (names and bytes), first ``length`` hex."""
    directory = Path(directory)
    digest = hashlib.sha256()
    files = sorted(
        p for p in directory.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
    )
    if not files:
        raise ConfigurationError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) in {directory}")
    for path in files:
        digest.update(path.relative_to(directory).as_posix().encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:length]


def model_version(config: Any, resolved: ResolvedModel) -> str:
    """The checkpoint's hub revision if known, else a hash of its weight files."""
    commit = getattr(config, "_commit_hash", None)
    if commit:
        return str(commit)
    location = Path(resolved.location)
    if not resolved.is_local:  # a hub id: hash the snapshot transformers downloaded
        try:
            from transformers.utils import cached_file

            location = Path(cached_file(resolved.location, "config.json")).parent
        except Exception:  # noqa: BLE001
            return "unknown"
    return weights_digest(location)


__all__ = [
    "COMPLETE_MARKER",
    "ResolvedModel",
    "cache_dir_for",
    "fetch_s3_model",
    "model_version",
    "resolve_model",
    "weights_digest",
]
