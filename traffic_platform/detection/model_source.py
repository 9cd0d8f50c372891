"""Where a model comes from: a hub id, a local directory, or an ``s3://`` artifact.

An ``s3://bucket/key`` reference is fetched through the shared model cache
(:mod:`.model_cache`: one entry per set of objects and ETags, so a model replaced under
the same URI is fetched again, an unchanged one never; atomic, with a ``.complete``
marker). Two shapes are accepted:

* a SageMaker-style archive: the URI names a ``*.tar.gz`` object, or the prefix holds a
  ``model.tar.gz`` -> it is extracted (safely: no absolute paths, no ``..``, no links);
* a prefix of files (``config.json``, ``model.safetensors``, ``preprocessor_config.json``…)
  -> each object is downloaded under its relative key.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..domain.errors import ConfigurationError
from . import model_cache

if TYPE_CHECKING:
    from ..config import Settings

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


def fetch_s3_model(uri: str, settings: Settings, *, client: Any = None) -> Path:
    """The local directory holding ``config.json`` of the model at ``uri`` (fetched if it changed)."""
    entry = model_cache.fetch(
        uri, settings, _select_objects, label="TRAFFIC_DETECTOR", check=_model_root, client=client
    )
    return _model_root(entry)


def _select_objects(client: Any, bucket: str, key: str) -> list[model_cache.S3Object]:
    """The object ``key`` if it exists, else the objects under the prefix ``key``; an archive
    (the ``*.tar.gz`` the URI names, or the prefix's ``model.tar.gz``) alone if there is one."""
    found = model_cache.head(client, bucket, key, "") if key and not key.endswith("/") else None
    prefix = key if key.endswith("/") or not key else key + "/"
    listed = [found] if found else [
        model_cache.listed(o, "") for o in model_cache.listing(client, bucket, prefix)
    ]
    archives = [
        o
        for o in listed
        if o.key.endswith(".tar.gz")
        and (o.key == key or o.key.rsplit("/", 1)[-1] == "model.tar.gz")
    ]
    if archives:
        return [dataclasses.replace(archives[0], dest="model.tar.gz", unpack=True)]
    objects = []
    for obj in listed:
        rel = obj.key[len(prefix) :] if obj.key.startswith(prefix) else obj.key.rsplit("/", 1)[-1]
        if rel and not rel.endswith("/"):
            objects.append(dataclasses.replace(obj, dest=rel))
    return objects


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
    "ResolvedModel",
    "fetch_s3_model",
    "model_version",
    "resolve_model",
    "weights_digest",
]
