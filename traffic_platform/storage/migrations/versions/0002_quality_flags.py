"""captures.quality_flags: the distortion gate's degraded flags of an accepted image.

Revision ID: 0002_quality_flags
Revises: 0001_initial
Create Date: 2026-12-02

A JSON list of flag names (``["fog", "low_light"]``), ``'[]'`` for a clear or distorted
image. NOT NULL with a server default, so rows stored before this revision read as having
no flags. ``VARCHAR``, not ``TEXT``: MySQL refuses a literal default on a ``TEXT`` column
(the longest list of today's flags is 46 characters).

Both directions alter the table in place (``ADD``/``DROP COLUMN``, SQLite >= 3.35): a
batch copy would drop and recreate ``captures``, and with foreign keys on, dropping it
would cascade to the detections and counts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_quality_flags"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "captures",
        sa.Column(
            "quality_flags",
            sa.String(255),
            nullable=False,
            server_default="[]",
            comment="JSON list of degraded flags (accepted images)",
        ),
    )


def downgrade() -> None:
    op.drop_column("captures", "quality_flags")
