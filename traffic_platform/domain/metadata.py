"""Where and when an image was taken, read from its file name.

    tiensevest_Leuven_Belgium_12-10-2022_10-51-38.jpg
    <address>_<city>_<country>_<DD-MM-YYYY>_<HH-MM-SS>.<jpg|jpeg|png>

The address may itself contain underscores (``rue_de_la_loi``), so the name is
parsed from the right. Every way a name can be wrong has its own error code.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from .errors import InvalidFileName

MAX_NAME_LENGTH = 255  # characters; also the usual file-system limit in bytes (checked too)
# The longest part of each kind; the ``locations`` columns are exactly this wide (storage/tables.py).
MAX_ADDRESS_LENGTH = 200
MAX_CITY_LENGTH = 100
MAX_COUNTRY_LENGTH = 100
EXTENSIONS = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png"}
_DATE = re.compile(r"^(\d{2})-(\d{2})-(\d{4})$")
_TIME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})$")
MIN_YEAR, MAX_YEAR = 1970, 2999

# Stable error codes, one per way a name can be wrong.
NAME_EMPTY = "file_name_empty"
NAME_TOO_LONG = "file_name_too_long"
NAME_PART_TOO_LONG = "file_name_part_too_long"
NAME_PATH = "file_name_path_component"
NAME_CONTROL = "file_name_control_character"
NAME_EXTENSION = "file_name_bad_extension"
NAME_PARTS = "file_name_missing_parts"
NAME_DATE_FORMAT = "file_name_bad_date_format"
NAME_DATE_INVALID = "file_name_impossible_date"
NAME_TIME_FORMAT = "file_name_bad_time_format"
NAME_TIME_INVALID = "file_name_impossible_time"

PATTERN_HINT = "<address>_<city>_<country>_<DD-MM-YYYY>_<HH-MM-SS>.<jpg|jpeg|png>"


@dataclass(frozen=True)
class CaptureMetadata:
    """What a file name says: the location (raw tokens kept exactly) and the local capture time."""

    file_name: str
    address: str  # raw token, underscores kept: "rue_de_la_loi"
    address_display: str  # human readable: "rue de la loi"
    city: str
    country: str
    captured_at: datetime  # local wall-clock time as stated (naive)
    extension: str  # lower case, without the dot
    content_type: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["captured_at"] = self.captured_at.isoformat()
        return data


def _fail(code: str, message: str, name: str) -> InvalidFileName:
    return InvalidFileName(message, code=code, details={"file_name": name, "expected": PATTERN_HINT})


def parse_file_name(name: str) -> CaptureMetadata:
    """Parse a capture file name; raise :class:`InvalidFileName` with a specific code if wrong.

    >>> parse_file_name("rue_de_la_loi_Brussels_Belgium_12-10-2022_10-51-38.jpg").address_display
    'rue de la loi'
    """
    if not name or not name.strip():
        raise _fail(NAME_EMPTY, "The file name is empty.", name)
    shown = name[:80] + ("…" if len(name) > 80 else "")
    if len(name) > MAX_NAME_LENGTH or len(name.encode("utf-8")) > MAX_NAME_LENGTH:
        raise _fail(NAME_TOO_LONG, f"The file name is longer than {MAX_NAME_LENGTH} characters/bytes: {shown!r}.", shown)
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise _fail(NAME_CONTROL, "The file name contains control or invisible formatting characters; send the plain name.", repr(name))
    if "/" in name or "\\" in name or name.startswith(".") or ".." in name:
        raise _fail(NAME_PATH, f"Send a bare file name without directories or '..': {name!r}.", name)

    stem, dot, ext = name.rpartition(".")
    if not dot or ext.lower() not in EXTENSIONS:
        raise _fail(NAME_EXTENSION, f"The file must end in .jpg, .jpeg or .png, got {name!r}.", name)

    parts = stem.split("_")
    if len(parts) < 5:
        raise _fail(NAME_PARTS, f"Expected {PATTERN_HINT}; {name!r} has {len(parts)} underscore-separated parts, needs at least 5.", name)
    date_s, time_s = parts[-2], parts[-1]
    country, city = parts[-3], parts[-4]
    address = "_".join(parts[:-4])
    for what, value, longest in (
        ("address", address, MAX_ADDRESS_LENGTH), ("city", city, MAX_CITY_LENGTH), ("country", country, MAX_COUNTRY_LENGTH)
    ):
        if not value.strip() or not value.strip("_"):
            raise _fail(NAME_PARTS, f"The {what} part of {name!r} is empty; expected {PATTERN_HINT}.", name)
        if len(value) > longest:
            raise _fail(NAME_PART_TOO_LONG, f"The {what} part of the file name is {len(value)} characters; at most {longest} are kept.", shown)

    m_date = _DATE.match(date_s)
    if not m_date:
        raise _fail(NAME_DATE_FORMAT, f"The date {date_s!r} is not DD-MM-YYYY.", name)
    m_time = _TIME.match(time_s)
    if not m_time:
        raise _fail(NAME_TIME_FORMAT, f"The time {time_s!r} is not HH-MM-SS.", name)
    day, month, year = (int(v) for v in m_date.groups())
    hour, minute, second = (int(v) for v in m_time.groups())
    if not (hour < 24 and minute < 60 and second < 60):
        raise _fail(NAME_TIME_INVALID, f"The time {time_s!r} is not a time of day (00-00-00 to 23-59-59).", name)
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise _fail(NAME_DATE_INVALID, f"The year {year} is outside {MIN_YEAR}–{MAX_YEAR}.", name)
    try:
        captured_at = datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise _fail(NAME_DATE_INVALID, f"The date {date_s!r} does not exist (day {day} of month {month} in {year}).", name) from None

    extension = ext.lower()
    return CaptureMetadata(
        file_name=name,
        address=address,
        address_display=" ".join(address.replace("_", " ").split()),
        city=city,
        country=country,
        captured_at=captured_at,
        extension=extension,
        content_type=EXTENSIONS[extension],
    )


def format_file_name(address: str, city: str, country: str, captured_at: datetime, ext: str = "jpg") -> str:
    """The inverse of :func:`parse_file_name` (used by tests, generators and the demo)."""
    return f"{address}_{city}_{country}_{captured_at:%d-%m-%Y}_{captured_at:%H-%M-%S}.{ext}"
