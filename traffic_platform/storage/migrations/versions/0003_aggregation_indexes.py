"""Covering indexes for the daily aggregation and its checks.

Revision ID: 0003_aggregation_indexes
Revises: 0002_quality_flags
Create Date: 2026-12-01

* ``ix_captures_captured_at`` becomes ``(captured_at, location_id, status, captured_at_utc,
  quality_flags)``: the day's captures are read from the index alone (the summary and the
  one pass of the counts), not from the wide rows. Same name, same leading column, so every
  range query on ``captured_at`` keeps using it.
* ``ix_detections_capture_model_class`` ``(capture_id, model_name, model_version,
  traffic_class)``: a count row's detections are counted in the index alone
  (``counts_reconcile_with_detections``).

Measured in ``bench/RESULTS.md`` (## Aggregation, with the ``EXPLAIN`` before and after).
"""

from __future__ import annotations

from alembic import op

revision = "0003_aggregation_indexes"
down_revision = "0002_quality_flags"
branch_labels = None
depends_on = None

CAPTURES_DAY = ["captured_at", "location_id", "status", "captured_at_utc", "quality_flags"]
DETECTIONS_CLASS = ["capture_id", "model_name", "model_version", "traffic_class"]


def upgrade() -> None:
    op.drop_index("ix_captures_captured_at", table_name="captures")
    op.create_index("ix_captures_captured_at", "captures", CAPTURES_DAY)
    op.create_index("ix_detections_capture_model_class", "detections", DETECTIONS_CLASS)


def downgrade() -> None:
    op.drop_index("ix_detections_capture_model_class", table_name="detections")
    op.drop_index("ix_captures_captured_at", table_name="captures")
    op.create_index("ix_captures_captured_at", "captures", ["captured_at"])
