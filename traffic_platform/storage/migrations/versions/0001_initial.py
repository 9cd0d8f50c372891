"""Ingest tables: locations, captures, detections, capture_counts.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-25

Frozen copy of the schema at this revision (does not import ``tables.py``, which may
move on); a test checks that head matches ``tables.metadata``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

_MYSQL = ("mysql", "mariadb")
_OPTIONS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}
_CLASSES = "('car', 'truck', 'bus', 'person', 'bicycle', 'motorcycle')"


def _exact(n: int):
    return sa.String(n).with_variant(
        mysql.VARCHAR(n, charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL
    )


def _hex(n: int):
    return sa.String(n).with_variant(mysql.CHAR(n, charset="ascii", collation="ascii_bin"), *_MYSQL)


def _ts():
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *_MYSQL)


def _plain_datetime():
    return sa.DateTime().with_variant(mysql.DATETIME(), *_MYSQL)


def _real():
    return sa.Float(precision=53).with_variant(mysql.DOUBLE(asdecimal=False), *_MYSQL)


def upgrade() -> None:
    op.create_table(
        "locations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "address",
            _exact(200),
            nullable=False,
            comment="raw token from the file name, underscores kept",
        ),
        sa.Column("address_display", _exact(200), nullable=False),
        sa.Column("city", _exact(100), nullable=False),
        sa.Column("country", _exact(100), nullable=False),
        sa.Column(
            "timezone",
            sa.String(64),
            nullable=False,
            comment="IANA zone of the local wall-clock times",
        ),
        sa.Column("created_at", _ts(), nullable=False),
        sa.UniqueConstraint("address", "city", "country", name="uq_locations_address_city_country"),
        **_OPTIONS,
    )
    op.create_table(
        "captures",
        sa.Column("capture_id", _hex(32), primary_key=True, autoincrement=False),
        sa.Column("location_id", sa.Integer, nullable=False),
        sa.Column(
            "captured_at",
            _plain_datetime(),
            nullable=False,
            comment="local wall-clock time from the file name",
        ),
        sa.Column("captured_at_utc", _plain_datetime(), nullable=False),
        sa.Column("file_name", _exact(255), nullable=False),
        sa.Column("content_sha256", _hex(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("quality_reasons", sa.Text, nullable=False, comment="JSON list of reason codes"),
        sa.Column("sharpness", _real(), nullable=True),
        sa.Column("brightness", _real(), nullable=True),
        sa.Column("contrast", _real(), nullable=True),
        sa.Column("clipped_share", _real(), nullable=True),
        sa.Column("uniform_share", _real(), nullable=True),
        sa.Column("width", sa.Integer, nullable=True),
        sa.Column("height", sa.Integer, nullable=True),
        sa.Column("image_key", sa.String(512), nullable=True),
        sa.Column("annotated_key", sa.String(512), nullable=True),
        sa.Column("model_name", _exact(200), nullable=True, comment="model that ran at ingest"),
        sa.Column("model_version", _exact(64), nullable=True),
        sa.Column("decode_ms", _real(), nullable=True),
        sa.Column("quality_ms", _real(), nullable=True),
        sa.Column("detect_ms", _real(), nullable=True),
        sa.Column("total_ms", _real(), nullable=True),
        sa.Column("ingested_at", _ts(), nullable=False, comment="UTC"),
        sa.Column("stored_at", _ts(), nullable=False, comment="UTC"),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"], name="fk_captures_location"),
        sa.CheckConstraint("status IN ('accepted', 'distorted')", name="ck_captures_status"),
        **_OPTIONS,
    )
    op.create_index("ix_captures_location_captured_at", "captures", ["location_id", "captured_at"])
    op.create_index("ix_captures_captured_at", "captures", ["captured_at"])
    op.create_index("ix_captures_content_sha256", "captures", ["content_sha256"])
    op.create_index("ix_captures_status", "captures", ["status"])
    op.create_index("ix_captures_ingested_at", "captures", ["ingested_at"])
    op.create_index("ix_captures_stored_at", "captures", ["stored_at"])
    op.create_table(
        "detections",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("capture_id", _hex(32), nullable=False),
        sa.Column("model_name", _exact(200), nullable=False),
        sa.Column("model_version", _exact(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, comment="order within the image (0-based)"),
        sa.Column("traffic_class", sa.String(16), nullable=False),
        sa.Column("label", sa.String(64), nullable=False, comment="the model's own label"),
        sa.Column("score", _real(), nullable=False),
        sa.Column("x1", _real(), nullable=False),
        sa.Column("y1", _real(), nullable=False),
        sa.Column("x2", _real(), nullable=False),
        sa.Column("y2", _real(), nullable=False),
        sa.ForeignKeyConstraint(
            ["capture_id"],
            ["captures.capture_id"],
            name="fk_detections_capture",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "capture_id",
            "model_name",
            "model_version",
            "seq",
            name="uq_detections_capture_model_seq",
        ),
        sa.CheckConstraint(f"traffic_class IN {_CLASSES}", name="ck_detections_traffic_class"),
        **_OPTIONS,
    )
    op.create_index("ix_detections_traffic_class", "detections", ["traffic_class"])
    op.create_table(
        "capture_counts",
        sa.Column("capture_id", _hex(32), nullable=False),
        sa.Column("model_name", _exact(200), nullable=False),
        sa.Column("model_version", _exact(64), nullable=False),
        sa.Column("traffic_class", sa.String(16), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint(
            "capture_id", "model_name", "model_version", "traffic_class", name="pk_capture_counts"
        ),
        sa.ForeignKeyConstraint(
            ["capture_id"],
            ["captures.capture_id"],
            name="fk_capture_counts_capture",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(f"traffic_class IN {_CLASSES}", name="ck_capture_counts_traffic_class"),
        sa.CheckConstraint("count >= 0", name="ck_capture_counts_count"),
        **_OPTIONS,
    )


def downgrade() -> None:
    for table in ("capture_counts", "detections", "captures", "locations"):
        op.drop_table(table)
