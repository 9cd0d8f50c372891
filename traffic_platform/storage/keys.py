"""Object keys: built from capture ids and dates only; user text is percent-encoded.

A valid key is 1-512 characters of ``[A-Za-z0-9._/-]`` plus ``%XX`` escapes, without a
leading ``/``, empty segments or ``..``, so it is the same safe path on S3 and on disk.

>>> image_key("0123456789abcdef0123456789abcdef", datetime(2022, 10, 12, 10, 51, 38), "jpg")
'images/2022/10/12/0123456789abcdef0123456789abcdef.jpg'
>>> escape_component("rue_de_la_loi_Liège_..jpg")
'rue_de_la_loi_Li%C3%A8ge_.%2Ejpg'
"""

from __future__ import annotations

import re
from datetime import date, datetime

MAX_KEY_LENGTH = 512  # the captures.*_key columns are VARCHAR(512); S3 allows 1024 bytes
IMAGE_PREFIX = "images/"
ANNOTATED_PREFIX = "annotated/"
DISTORTED_PREFIX = "distorted/"
LANDING_PREFIX = "landing/"  # dropped images, ingested by the landing job (orchestration/landing.py)

_KEY = re.compile(r"^(?:[A-Za-z0-9._/-]|%[0-9A-F]{2})+$")
_PREFIX = re.compile(r"^(?:[A-Za-z0-9._/-]|%[0-9A-F]{2})*$")
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")
_CAPTURE_ID = re.compile(r"^[0-9a-f]{32}$")
_EXT = re.compile(r"^[a-z0-9]{1,8}$")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe object key, else raise ``ValueError`` saying why."""
    if not isinstance(key, str) or not key:
        raise ValueError("an object key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"object key longer than {MAX_KEY_LENGTH} characters: {key[:60]!r}…")
    if not _KEY.match(key):
        raise ValueError(f"object key {key!r} may only contain A-Z a-z 0-9 . _ - / and %XX escapes")
    if key.startswith("/") or key.endswith("/") or "//" in key:
        raise ValueError(
            f"object key {key!r} must be relative, without empty segments or a trailing '/'"
        )
    if ".." in key or any(segment == "." for segment in key.split("/")):
        raise ValueError(f"object key {key!r} must not contain '..' or '.' segments")
    return key


def is_valid_key(key: str) -> bool:
    """Whether :func:`validate_key` accepts ``key``."""
    try:
        validate_key(key)
    except ValueError:
        return False
    return True


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` (may be empty or end in ``/``) if it can only match safe keys."""
    if not _PREFIX.match(prefix) or prefix.startswith("/") or ".." in prefix or "//" in prefix:
        raise ValueError(f"invalid object key prefix {prefix!r}")
    return prefix


def escape_component(text: str) -> str:
    """Percent-encode ``text`` (UTF-8) into one key segment: keeps ``[A-Za-z0-9_.-]``,
    encodes everything else, a leading ``.`` and any ``.`` that would follow another."""
    if not text:
        raise ValueError("cannot escape an empty key component")
    out: list[str] = []
    for ch in text:
        if ch in _SAFE and not (ch == "." and (not out or out[-1].endswith("."))):
            out.append(ch)
        else:
            out.extend(f"%{byte:02X}" for byte in ch.encode("utf-8"))
    return "".join(out)


def _dated(prefix: str, capture_id: str, captured_at: date | datetime, ext: str) -> str:
    if not _CAPTURE_ID.match(capture_id):
        raise ValueError(f"capture id must be 32 lower-case hex characters, got {capture_id!r}")
    ext = ext.lower().lstrip(".")
    if not _EXT.match(ext):
        raise ValueError(f"invalid file extension {ext!r}")
    return validate_key(f"{prefix}{captured_at:%Y/%m/%d}/{capture_id}.{ext}")


def image_key(capture_id: str, captured_at: date | datetime, ext: str) -> str:
    """``images/YYYY/MM/DD/<id>.<ext>`` — the original image of an accepted capture."""
    return _dated(IMAGE_PREFIX, capture_id, captured_at, ext)


def annotated_key(capture_id: str, captured_at: date | datetime) -> str:
    """``annotated/YYYY/MM/DD/<id>.jpg`` — the copy with the boxes drawn."""
    return _dated(ANNOTATED_PREFIX, capture_id, captured_at, "jpg")


def distorted_key(capture_id: str, captured_at: date | datetime, ext: str) -> str:
    """``distorted/YYYY/MM/DD/<id>.<ext>`` — an image that failed the quality gate."""
    return _dated(DISTORTED_PREFIX, capture_id, captured_at, ext)


__all__ = [
    "ANNOTATED_PREFIX",
    "DISTORTED_PREFIX",
    "IMAGE_PREFIX",
    "MAX_KEY_LENGTH",
    "annotated_key",
    "distorted_key",
    "escape_component",
    "image_key",
    "validate_key",
    "validate_prefix",
]


def upload_key(file_name: str, token: str) -> str:
    """Where a presigned upload puts ``file_name``: its own folder below ``landing/``, so two
    uploads of one name never overwrite each other; the landing job reads the name back."""
    if not re.fullmatch(r"[0-9a-f]{16,32}", token):
        raise ValueError(f"upload token must be 16-32 lower-case hex characters, got {token!r}")
    return validate_key(f"{LANDING_PREFIX}uploads/{token}/{escape_component(file_name)}")
