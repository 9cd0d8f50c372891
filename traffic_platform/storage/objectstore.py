"""Object stores: a local directory (embedded default) or S3 (production), one interface.

Keys are validated by :func:`~traffic_platform.storage.keys.validate_key` everywhere, so a
key can never escape the store. Create one store per process (:func:`open_object_store`)
and reuse it: the S3 client is created once.
"""

from __future__ import annotations

import os
import stat
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from ..domain.errors import ConfigurationError, ServiceUnavailable
from .keys import is_valid_key, validate_key, validate_prefix

if TYPE_CHECKING:
    from ..config import Settings

DEFAULT_CONTENT_TYPE = "application/octet-stream"
_TEMP_PREFIX = "~tmp-"  # the directory store's half-written files ("~" is never in a key)


class ObjectNotFound(KeyError):
    """No object under that key."""


@dataclass(frozen=True)
class ObjectInfo:
    """One object as a listing sees it. ``token`` changes whenever its content is replaced
    (S3: ETag and size; directory: size and mtime in ns); ``modified`` is POSIX seconds."""

    key: str
    token: str
    size: int
    modified: float


@dataclass(frozen=True)
class Listing:
    """The objects under a prefix, sorted by key, and how many keys were skipped because
    the store cannot address them (see :func:`~traffic_platform.storage.keys.validate_key`)."""

    objects: list[ObjectInfo] = field(default_factory=list)
    unaddressable: int = 0


class ObjectStore(ABC):
    """Bytes under safe keys. ``delete`` of a missing key is a no-op; ``list`` yields sorted keys;
    ``scan`` and ``stat`` add the change tokens a poller (the landing sensor) needs."""

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; raise :class:`ObjectNotFound` if absent."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix`` (plain string prefix, not only whole segments), sorted."""

    @abstractmethod
    def scan(self, prefix: str = "") -> Listing:
        """The objects under ``prefix`` with their change tokens (``"folder/"`` markers skipped)."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """The object under ``key`` now, or ``None`` if there is none."""

    @abstractmethod
    def move(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst`` (overwriting); raise :class:`ObjectNotFound` if ``src`` is absent."""

    can_presign = False  # S3 can hand out upload URLs; a directory cannot

    def presign_put(self, key: str, content_type: str, expires_s: int) -> str:
        """A URL a client may PUT ``key`` to for ``expires_s`` seconds (S3 only)."""
        raise NotImplementedError(f"{type(self).__name__} cannot presign uploads")

    @abstractmethod
    def ping(self) -> None:
        """Raise :class:`ServiceUnavailable` if the store cannot be used."""


class LocalObjectStore(ObjectStore):
    """Objects as files under ``root``; writes are atomic (temp file, fsync, ``os.replace``)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        path = self.root / validate_key(key)
        if not path.resolve().is_relative_to(self.root):  # e.g. a symlink inside the root
            raise ValueError(f"object key {key!r} resolves outside the store")
        return path

    def put(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # "~" is not allowed in keys, so a leftover temp file is never listed as an object.
        fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError):
            return
        _fsync_dir(path.parent)

    def list(self, prefix: str = "") -> Iterator[str]:
        return iter(sorted(key for key in self._walk(prefix) if is_valid_key(key)))

    def scan(self, prefix: str = "") -> Listing:
        found, unaddressable = [], 0
        for key in self._walk(prefix):
            if not is_valid_key(key):
                unaddressable += not key.rpartition("/")[2].startswith(_TEMP_PREFIX)
                continue
            info = self.stat(key)
            if info is not None:
                found.append(info)
        return Listing(sorted(found, key=lambda o: o.key), unaddressable)

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(key, f"{st.st_size}:{st.st_mtime_ns}", st.st_size, st.st_mtime)

    def _walk(self, prefix: str) -> Iterator[str]:
        """Every file name under ``prefix`` as a key (valid or not), unsorted."""
        validate_prefix(prefix)
        base = self.root / prefix.rpartition("/")[0]
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    yield key

    def move(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        if not source.is_file():
            raise ObjectNotFound(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        _fsync_dir(target.parent)
        if source.parent != target.parent:
            _fsync_dir(source.parent)

    def ping(self) -> None:
        if not (self.root.is_dir() and os.access(self.root, os.W_OK)):
            raise ServiceUnavailable(
                f"object store directory {self.root} is missing or not writable"
            )


class S3ObjectStore(ObjectStore):
    """Objects in ``s3://bucket/prefix``; ``client`` is a boto3 S3 client created once.

    ``sse`` ("AES256" or "aws:kms") and ``kms_key_id`` are sent with every write.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: Any,
        *,
        sse: str | None = None,
        kms_key_id: str | None = None,
    ):
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.client = client
        self._write_args: dict[str, str] = {}
        if sse:
            self._write_args["ServerSideEncryption"] = sse
            if sse == "aws:kms" and kms_key_id:
                self._write_args["SSEKMSKeyId"] = kms_key_id

    def __repr__(self) -> str:
        return f"S3ObjectStore('s3://{self.bucket}/{self.prefix}')"

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def put(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            ContentType=content_type,
            **self._write_args,
        )

    can_presign = True

    def presign_put(self, key: str, content_type: str, expires_s: int) -> str:
        """Signed with the function's own credentials; the bucket's default encryption applies."""
        return self.client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": self._key(key), "ContentType": content_type},
            ExpiresIn=expires_s,
            HttpMethod="PUT",
        )

    def get(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            raise ObjectNotFound(key) from None
        return response["Body"].read()

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        for item in self._pages(prefix):
            yield item["Key"][len(self.prefix) :]

    def scan(self, prefix: str = "") -> Listing:
        found, unaddressable = [], 0
        for item in self._pages(prefix):
            key = item["Key"][len(self.prefix) :]
            if key.endswith("/"):  # a "folder" marker made by a console, not an upload
                continue
            if not is_valid_key(key):
                unaddressable += 1
                continue
            found.append(self._info(key, item.get("ETag"), item.get("Size"), item.get("LastModified")))
        return Listing(sorted(found, key=lambda o: o.key), unaddressable)

    def stat(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return self._info(key, head.get("ETag"), head.get("ContentLength"), head.get("LastModified"))

    def _pages(self, prefix: str) -> Iterator[dict[str, Any]]:
        validate_prefix(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            yield from page.get("Contents", [])

    @staticmethod
    def _info(key: str, etag: Any, size: Any, modified: Any) -> ObjectInfo:
        size = int(size or 0)
        return ObjectInfo(
            key,
            f"{str(etag or '').strip(chr(34))}:{size}",
            size,
            modified.timestamp() if modified is not None else 0.0,
        )

    def move(self, src: str, dst: str) -> None:
        from botocore.exceptions import ClientError

        source = {"Bucket": self.bucket, "Key": self._key(src)}
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=self._key(dst),
                CopySource=source,
                MetadataDirective="COPY",
                **self._write_args,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise ObjectNotFound(src) from None
            raise
        self.client.delete_object(**source)

    def ping(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise ServiceUnavailable(f"S3 bucket {self.bucket!r} is not reachable: {exc}") from exc


def open_object_store(settings: Settings) -> ObjectStore:
    """The store ``settings.object_store_uri`` names: ``file:///dir`` or ``s3://bucket/prefix``."""
    uri = settings.object_store_uri
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigurationError(
                f"TRAFFIC_OBJECT_STORE_URI {uri!r}: file:// URIs must be local (file:///path)."
            )
        return LocalObjectStore(unquote(parsed.path))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigurationError(
                f"TRAFFIC_OBJECT_STORE_URI {uri!r}: expected s3://bucket/prefix."
            )
        try:
            return S3ObjectStore(
                parsed.netloc,
                parsed.path,
                s3_client(settings),
                sse=settings.s3_sse,
                kms_key_id=settings.s3_kms_key_id,
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"TRAFFIC_OBJECT_STORE_URI {uri!r}: invalid prefix ({exc})."
            ) from None
    raise ConfigurationError(
        f"TRAFFIC_OBJECT_STORE_URI must start with file:// or s3://, got {uri!r}."
    )


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for ``settings`` (endpoint override, region, standard retries)."""
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=settings.s3_region,
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=32,
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=settings.s3_endpoint_url, config=config
    )


def _fsync_dir(path: Path) -> None:
    """Make a rename/unlink in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = [
    "Listing",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "S3ObjectStore",
    "open_object_store",
    "s3_client",
]
