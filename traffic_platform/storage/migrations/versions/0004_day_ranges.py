"""A day's detections and counts as one index range each: the partition checks stay bounded.

Revision ID: 0004_day_ranges
Revises: 0003_aggregation_indexes
Create Date: 2026-12-01

* ``detections.captured_at`` and ``capture_counts.captured_at``: the capture's local
  ``captured_at``, copied at insert (existing rows are filled from their capture).
* ``ix_detections_day`` ``(captured_at, capture_id, model_name, model_version,
  traffic_class, score, x1, y1, x2, y2)`` and ``ix_capture_counts_day`` ``(captured_at,
  capture_id, model_name, model_version, traffic_class, count)``: everything the checks
  read of a day's rows, in one range, however many days the tables hold. They replace the
  per-row probe of ``ix_detections_capture_model_class`` (dropped).
* ``ix_captures_captured_at`` also covers ``width, height, model_name, model_version,
  content_sha256`` (the boxes, the ingest-model and the duplicate-content checks).

On MySQL the new columns are ``NOT NULL`` without a default once filled. SQLite can only add
a ``NOT NULL`` column with a default (changing it later means copying the table), so there
it keeps ``'1970-01-01 00:00:00'``, which every insert overrides.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004_day_ranges"
down_revision = "0003_aggregation_indexes"
branch_labels = None
depends_on = None

COMMENT = "the capture's captured_at, copied: a day's rows are one index range"
EPOCH = "1970-01-01 00:00:00"
DETECTIONS_DAY = ["captured_at", "capture_id", "model_name", "model_version", "traffic_class",
                  "score", "x1", "y1", "x2", "y2"]
COUNTS_DAY = ["captured_at", "capture_id", "model_name", "model_version", "traffic_class", "count"]
CAPTURES_DAY_BEFORE = ["captured_at", "location_id", "status", "captured_at_utc", "quality_flags"]
CAPTURES_DAY = [*CAPTURES_DAY_BEFORE, "width", "height", "model_name", "model_version", "content_sha256"]
DETECTIONS_CLASS = ["capture_id", "model_name", "model_version", "traffic_class"]
TABLES = ("detections", "capture_counts")


def _datetime() -> sa.DateTime:
    return sa.DateTime().with_variant(mysql.DATETIME(), "mysql", "mariadb")


def upgrade() -> None:
    is_mysql = op.get_context().dialect.name in ("mysql", "mariadb")
    for table in TABLES:
        if is_mysql:
            op.add_column(table, sa.Column("captured_at", _datetime(), nullable=True, comment=COMMENT))
            op.execute(f"UPDATE {table} t JOIN captures c ON c.capture_id = t.capture_id SET t.captured_at = c.captured_at")
            op.alter_column(table, "captured_at", existing_type=_datetime(), nullable=False, existing_comment=COMMENT,
                            comment=COMMENT)
        else:
            op.add_column(table, sa.Column("captured_at", _datetime(), nullable=False, server_default=EPOCH,
                                           comment=COMMENT))
            op.execute(f"UPDATE {table} SET captured_at = (SELECT c.captured_at FROM captures c"
                       f" WHERE c.capture_id = {table}.capture_id)")
    op.drop_index("ix_detections_capture_model_class", table_name="detections")
    op.create_index("ix_detections_day", "detections", DETECTIONS_DAY)
    op.create_index("ix_capture_counts_day", "capture_counts", COUNTS_DAY)
    op.drop_index("ix_captures_captured_at", table_name="captures")
    op.create_index("ix_captures_captured_at", "captures", CAPTURES_DAY)


def downgrade() -> None:
    op.drop_index("ix_captures_captured_at", table_name="captures")
    op.create_index("ix_captures_captured_at", "captures", CAPTURES_DAY_BEFORE)
    op.drop_index("ix_capture_counts_day", table_name="capture_counts")
    op.drop_index("ix_detections_day", table_name="detections")
    op.create_index("ix_detections_capture_model_class", "detections", DETECTIONS_CLASS)
    for table in TABLES:
        op.drop_column(table, "captured_at")
