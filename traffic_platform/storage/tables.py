"""The ingest tables as SQLAlchemy Core metadata (MySQL dialect first, SQLite compatible).

The migrations in ``storage/migrations/versions`` create exactly these tables; a test
compares the two on SQLite and MariaDB so they cannot drift.

Design notes:

* Location names are stored exactly (``utf8mb4_bin`` on MySQL), so ``Liège`` and
  ``Liege`` are two locations and accents survive a round trip.
* ``captured_at`` is the local wall-clock time from the file name. Two captures may
  share location and ``captured_at`` (daylight-saving fall-back), so there is no
  unique constraint on them.
* Detections and counts carry ``model_name``/``model_version`` so a re-detection with
  another model version is kept apart from the original.
* Detections and counts also carry their capture's ``captured_at`` (copied at insert), so a
  partition's rows are one range of a covering index, whatever the history kept: the
  partition checks never scan a whole table (issue 19).
* Unique keys stay far below InnoDB's 3072-byte limit (utf8mb4 = 4 bytes/char):
  locations 400 chars = 1600 B, detections (32+200+64) chars + INT = 1188 B.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

from ..domain.captures import CAPTURE_STATUSES
from ..domain.classes import TRAFFIC_CLASSES
from ..domain.metadata import (
    MAX_ADDRESS_LENGTH,
    MAX_CITY_LENGTH,
    MAX_COUNTRY_LENGTH,
    MAX_NAME_LENGTH,
)

QUALITY_METRICS: tuple[str, ...] = (
    "sharpness",
    "brightness",
    "contrast",
    "clipped_share",
    "uniform_share",
)
TIMINGS: tuple[str, ...] = ("decode_ms", "quality_ms", "detect_ms", "total_ms")
# A day's detections and counts are one index range each (the partition checks read nothing
# else of them): ``captured_at`` is their capture's, copied at insert.
DAY_COPY = "the capture's captured_at, copied: a day's rows are one index range"
DETECTIONS_DAY = ("captured_at", "capture_id", "model_name", "model_version", "traffic_class",
                  "score", "x1", "y1", "x2", "y2")
COUNTS_DAY = ("captured_at", "capture_id", "model_name", "model_version", "traffic_class", "count")

MYSQL_TABLE_OPTIONS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}
_MYSQL = ("mysql", "mariadb")


def exact_text(length: int) -> String:
    """VARCHAR kept byte-exact and compared case/accent-sensitively (``utf8mb4_bin`` on MySQL)."""
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL
    )


def hex_id(length: int) -> String:
    """A fixed-length lower-case hex identifier (``CHAR(n)`` ascii on MySQL: 1 byte/char)."""
    return String(length).with_variant(
        mysql.CHAR(length, charset="ascii", collation="ascii_bin"), *_MYSQL
    )


def timestamp_us() -> DateTime:
    """A naive UTC timestamp with microseconds (``DATETIME(6)`` on MySQL)."""
    return DateTime().with_variant(mysql.DATETIME(fsp=6), *_MYSQL)


def plain_datetime() -> DateTime:
    """A naive timestamp to the second (``DATETIME`` on MySQL, spelled out: importing Dagster
    otherwise turns every generic ``DateTime`` into ``DATETIME(6)`` process-wide)."""
    return DateTime().with_variant(mysql.DATETIME(), *_MYSQL)


def real() -> Float:
    """A double-precision number (``DOUBLE`` on MySQL: no float noise in analysts' SQL)."""
    return Float(precision=53).with_variant(mysql.DOUBLE(asdecimal=False), *_MYSQL)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


metadata = MetaData()

locations = Table(
    "locations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "address",
        exact_text(MAX_ADDRESS_LENGTH),
        nullable=False,
        comment="raw token from the file name, underscores kept",
    ),
    Column("address_display", exact_text(MAX_ADDRESS_LENGTH), nullable=False),
    Column("city", exact_text(MAX_CITY_LENGTH), nullable=False),
    Column("country", exact_text(MAX_COUNTRY_LENGTH), nullable=False),
    Column(
        "timezone", String(64), nullable=False, comment="IANA zone of the local wall-clock times"
    ),
    Column("created_at", timestamp_us(), nullable=False),
    UniqueConstraint("address", "city", "country", name="uq_locations_address_city_country"),
    **MYSQL_TABLE_OPTIONS,
)

captures = Table(
    "captures",
    metadata,
    Column("capture_id", hex_id(32), primary_key=True, autoincrement=False),
    Column("location_id", Integer, nullable=False),
    Column(
        "captured_at", plain_datetime(), nullable=False, comment="local wall-clock time from the file name"
    ),
    Column("captured_at_utc", plain_datetime(), nullable=False),
    Column("file_name", exact_text(MAX_NAME_LENGTH), nullable=False),
    Column("content_sha256", hex_id(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("quality_reasons", Text, nullable=False, comment="JSON list of reason codes"),
    Column(
        "quality_flags",
        String(255),
        nullable=False,
        server_default="[]",
        comment="JSON list of degraded flags (accepted images)",
    ),
    *(Column(name, real(), nullable=True) for name in QUALITY_METRICS),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("image_key", String(512), nullable=True),
    Column("annotated_key", String(512), nullable=True),
    Column("model_name", exact_text(200), nullable=True, comment="model that ran at ingest"),
    Column("model_version", exact_text(64), nullable=True),
    *(Column(name, real(), nullable=True) for name in TIMINGS),
    Column("ingested_at", timestamp_us(), nullable=False, comment="UTC"),
    Column("stored_at", timestamp_us(), nullable=False, comment="UTC"),
    ForeignKeyConstraint(["location_id"], ["locations.id"], name="fk_captures_location"),
    CheckConstraint(_in("status", CAPTURE_STATUSES), name="ck_captures_status"),
    Index("ix_captures_location_captured_at", "location_id", "captured_at"),
    # covering for the day's aggregation and checks: the rest of a capture's row is never read there
    Index("ix_captures_captured_at", "captured_at", "location_id", "status", "captured_at_utc", "quality_flags",
          "width", "height", "model_name", "model_version", "content_sha256"),
    Index("ix_captures_content_sha256", "content_sha256"),
    Index("ix_captures_status", "status"),
    Index("ix_captures_ingested_at", "ingested_at"),
    Index("ix_captures_stored_at", "stored_at"),
    **MYSQL_TABLE_OPTIONS,
)

detections = Table(
    "detections",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("capture_id", hex_id(32), nullable=False),
    Column("model_name", exact_text(200), nullable=False),
    Column("model_version", exact_text(64), nullable=False),
    Column("seq", Integer, nullable=False, comment="order within the image (0-based)"),
    Column("traffic_class", String(16), nullable=False),
    Column("label", String(64), nullable=False, comment="the model's own label"),
    Column("score", real(), nullable=False),
    Column("x1", real(), nullable=False),
    Column("y1", real(), nullable=False),
    Column("x2", real(), nullable=False),
    Column("y2", real(), nullable=False),
    Column("captured_at", plain_datetime(), nullable=False, comment=DAY_COPY),
    ForeignKeyConstraint(
        ["capture_id"], ["captures.capture_id"], name="fk_detections_capture", ondelete="CASCADE"
    ),
    UniqueConstraint(
        "capture_id", "model_name", "model_version", "seq", name="uq_detections_capture_model_seq"
    ),
    CheckConstraint(_in("traffic_class", TRAFFIC_CLASSES), name="ck_detections_traffic_class"),
    Index("ix_detections_traffic_class", "traffic_class"),
    # a day's detections, with all that the checks read: one range of one index
    Index("ix_detections_day", *DETECTIONS_DAY),
    **MYSQL_TABLE_OPTIONS,
)

capture_counts = Table(
    "capture_counts",
    metadata,
    Column("capture_id", hex_id(32), nullable=False),
    Column("model_name", exact_text(200), nullable=False),
    Column("model_version", exact_text(64), nullable=False),
    Column("traffic_class", String(16), nullable=False),
    Column("count", Integer, nullable=False),
    Column("captured_at", plain_datetime(), nullable=False, comment=DAY_COPY),
    PrimaryKeyConstraint(
        "capture_id", "model_name", "model_version", "traffic_class", name="pk_capture_counts"
    ),
    ForeignKeyConstraint(
        ["capture_id"],
        ["captures.capture_id"],
        name="fk_capture_counts_capture",
        ondelete="CASCADE",
    ),
    CheckConstraint(_in("traffic_class", TRAFFIC_CLASSES), name="ck_capture_counts_traffic_class"),
    CheckConstraint("count >= 0", name="ck_capture_counts_count"),
    Index("ix_capture_counts_day", *COUNTS_DAY),
    **MYSQL_TABLE_OPTIONS,
)

__all__ = [
    "CAPTURE_STATUSES",
    "QUALITY_METRICS",
    "TIMINGS",
    "capture_counts",
    "captures",
    "detections",
    "locations",
    "metadata",
]
