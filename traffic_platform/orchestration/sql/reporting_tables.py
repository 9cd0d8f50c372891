"""The reporting tables Dagster writes, as SQLAlchemy Core metadata.

They are created by the assets themselves (``create_all(checkfirst=True)``): the
reporting schema is owned by the code that fills it, and every table here can be
rebuilt from the ingest tables. The counts tables are one per
reporting window (:data:`traffic_platform.orchestration.windows.WINDOWS`). The MySQL DDL is checked in as
``sql/reporting_tables.mysql.sql`` (a test keeps it equal to this module)::

    .venv/bin/python -m traffic_platform.orchestration.sql.reporting_tables > sql/reporting_tables.mysql.sql

Times are local wall-clock (naive), like ``captures.captured_at``; ``computed_at`` is UTC.
No foreign keys: these tables are derived and are replaced partition by partition.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    inspect,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.schema import CreateIndex, CreateTable

from ...storage.tables import MYSQL_TABLE_OPTIONS, exact_text, hex_id, timestamp_us
from ..windows import WINDOWS, ReportingWindow


def local_datetime() -> DateTime:
    """A naive local wall-clock time, whole seconds (``DATETIME`` on MySQL).

    Spelled as an explicit MySQL variant because importing Dagster registers a global
    ``@compiles(DateTime, "mysql")`` hook that turns every plain ``DateTime`` into
    ``DATETIME(6)``; the variant keeps the DDL the same with or without Dagster loaded.
    """
    return DateTime().with_variant(mysql.DATETIME(), "mysql", "mariadb")


def _capture_summary_table(metadata: MetaData) -> Table:
    return Table(
        "capture_summary_daily",
        metadata,
        Column("location_id", Integer, nullable=False),
        Column("day", Date, nullable=False, comment="local calendar day of captured_at"),
        Column("images_received", Integer, nullable=False),
        Column("images_accepted", Integer, nullable=False),
        Column("images_distorted", Integer, nullable=False),
        Column("first_captured_at", local_datetime(), nullable=False),
        Column("last_captured_at", local_datetime(), nullable=False),
        Column("observed_cadence_s", Double, nullable=True, comment="median gap between consecutive images (UTC), NULL if < 2 images"),
        Column("cadence_s", Double, nullable=False, comment="cadence used for expected_images"),
        Column("cadence_source", String(16), nullable=False, comment="setting | observed | fallback"),
        Column("expected_images", Double, nullable=False, comment="86400 / cadence_s"),
        Column("coverage", Double, nullable=False, comment="images_received / expected_images"),
        Column("computed_at", timestamp_us(), nullable=False, comment="UTC"),
        Column("images_excluded_health", Integer, nullable=True, comment="accepted images of frozen or slate frames"),
        Column("images_degraded", Integer, nullable=True,
               comment="accepted images not excluded by camera health that the gate flagged (fog, low light, ...)"),
        PrimaryKeyConstraint("day", "location_id", name="pk_capture_summary_daily"),
        Index("ix_capture_summary_daily_location_day", "location_id", "day"),
        **MYSQL_TABLE_OPTIONS,
    )


def _counts_table(metadata: MetaData, window: ReportingWindow) -> Table:
    name = window.table
    return Table(
        name,
        metadata,
        Column("location_id", Integer, nullable=False),
        Column("window_start", local_datetime(), nullable=False, comment="local wall-clock start of the window"),
        Column("traffic_class", String(16), nullable=False),
        Column("model_name", exact_text(200), nullable=False),
        Column("model_version", exact_text(64), nullable=False),
        Column("images_received", Integer, nullable=False, comment="all images of the window, accepted or distorted"),
        Column("images_accepted", Integer, nullable=False, comment="accepted images this model processed"),
        Column("images_distorted", Integer, nullable=False),
        Column("total_count", Integer, nullable=False),
        Column("mean_per_image", Double, nullable=True, comment="total_count / images_accepted; NULL without accepted images"),
        Column("max_per_image", Integer, nullable=True),
        Column("share_with_any", Double, nullable=True, comment="share of accepted images with >= 1 of the class"),
        Column("expected_images", Double, nullable=True, comment="window seconds / the location-day cadence"),
        Column("coverage", Double, nullable=True, comment="images_received / expected_images"),
        Column("computed_at", timestamp_us(), nullable=False, comment="UTC"),
        Column("images_excluded_health", Integer, nullable=True,
               comment="accepted images left out of images_accepted and the counts: frozen or slate frames"),
        Column("images_degraded", Integer, nullable=True,
               comment="of images_accepted, those the gate flagged (fog, low light, ...)"),
        PrimaryKeyConstraint("window_start", "location_id", "model_name", "model_version", "traffic_class", name=f"pk_{name}"),
        Index(f"ix_{name}_location_window", "location_id", "window_start"),
        **MYSQL_TABLE_OPTIONS,
    )


def _location_dimension_table(metadata: MetaData) -> Table:
    return Table(
        "dim_locations",
        metadata,
        Column("location_id", Integer, primary_key=True, autoincrement=False),
        Column("address", exact_text(200), nullable=False),
        Column("address_display", exact_text(200), nullable=False),
        Column("city", exact_text(100), nullable=False),
        Column("country", exact_text(100), nullable=False),
        Column("timezone", String(64), nullable=False),
        Column("first_captured_at", local_datetime(), nullable=True),
        Column("last_captured_at", local_datetime(), nullable=True),
        Column("last_ingested_at", timestamp_us(), nullable=True, comment="UTC"),
        Column("images_total", Integer, nullable=False),
        Column("images_distorted", Integer, nullable=False),
        Column("is_active", Integer, nullable=False, comment="1 if an image arrived in the last TRAFFIC_ACTIVE_LOCATION_DAYS days"),
        Column("refreshed_at", timestamp_us(), nullable=False, comment="UTC"),
        **MYSQL_TABLE_OPTIONS,
    )


def _date_dimension_table(metadata: MetaData) -> Table:
    return Table(
        "dim_date",
        metadata,
        Column("date", Date, primary_key=True, comment="local calendar day"),
        Column("year", Integer, nullable=False),
        Column("quarter", Integer, nullable=False, comment="1-4"),
        Column("month", Integer, nullable=False, comment="1-12"),
        Column("month_name", String(9), nullable=False, comment="January..December"),
        Column("day_of_month", Integer, nullable=False),
        Column("iso_year", Integer, nullable=False, comment="ISO 8601 week-numbering year"),
        Column("iso_week", Integer, nullable=False, comment="ISO 8601 week, 1-53"),
        Column("weekday", Integer, nullable=False, comment="ISO 8601: 1 = Monday .. 7 = Sunday"),
        Column("weekday_name", String(9), nullable=False, comment="Monday..Sunday"),
        Column("is_weekend", Integer, nullable=False, comment="1 on Saturday and Sunday"),
        **MYSQL_TABLE_OPTIONS,
    )


def _time_of_day_dimension_table(metadata: MetaData) -> Table:
    return Table(
        "dim_time_of_day",
        metadata,
        Column("time_slot", Integer, primary_key=True, autoincrement=False, comment="15-minute slot of the day, 0-95"),
        Column("slot_start", String(5), nullable=False, comment="HH:MM, local wall clock"),
        Column("slot_end", String(5), nullable=False, comment="HH:MM, exclusive (24:00 for the last slot)"),
        Column("hour", Integer, nullable=False, comment="0-23"),
        Column("minute", Integer, nullable=False, comment="0, 15, 30 or 45"),
        Column("part_of_day", String(16), nullable=False, comment="night | morning | afternoon | evening"),
        **MYSQL_TABLE_OPTIONS,
    )


def _capture_features_table(metadata: MetaData) -> Table:
    flags = ("frozen", "slate", "moved", "obstructed", "clock_drift")
    return Table(
        "capture_features",
        metadata,
        Column("capture_id", hex_id(32), primary_key=True),
        Column("location_id", Integer, nullable=False),
        Column("day", Date, nullable=False, comment="local calendar day of captured_at (the partition)"),
        Column("arrived_at", timestamp_us(), nullable=False, comment="captures.ingested_at, UTC"),
        Column("dhash", String(16), nullable=True, comment="64-bit difference hash, hex"),
        Column("thumb", String(288), nullable=True, comment="16x9 grey thumbnail, hex"),
        Column("uniform_share", Double, nullable=True),
        Column("repeated_line_share", Double, nullable=True),
        Column("mean_level", Double, nullable=True),
        Column("sharpness", Double, nullable=True, comment="captures.sharpness"),
        Column("feature_error", String(32), nullable=True, comment="no_image | image_missing | undecodable"),
        *(Column(flag, Integer, nullable=False, comment="1 if the frame has this camera-health state") for flag in flags),
        Column("excluded", Integer, nullable=False, comment="1 if frozen or slate: left out of the counts"),
        Column("evidence", Text, nullable=False, comment="JSON: the numbers behind the flags"),
        Column("computed_at", timestamp_us(), nullable=False, comment="UTC"),
        Index("ix_capture_features_day", "day"),
        Index("ix_capture_features_location_arrived", "location_id", "arrived_at"),
        **MYSQL_TABLE_OPTIONS,
    )


def _camera_health_table(metadata: MetaData) -> Table:
    return Table(
        "camera_health",
        metadata,
        Column("location_id", Integer, nullable=False),
        Column("state", String(16), nullable=False, comment="offline | frozen | slate | moved | obstructed | clock_drift"),
        Column("started_at", timestamp_us(), nullable=False, comment="UTC arrival of the first affected image"),
        Column("ended_at", timestamp_us(), nullable=True, comment="UTC arrival of the first image after it; NULL while open"),
        Column("reason", String(400), nullable=False),
        Column("evidence", Text, nullable=False, comment="JSON"),
        Column("computed_at", timestamp_us(), nullable=False, comment="UTC"),
        PrimaryKeyConstraint("location_id", "state", "started_at", name="pk_camera_health"),
        Index("ix_camera_health_started_at", "started_at"),
        **MYSQL_TABLE_OPTIONS,
    )


def build_metadata(windows: Sequence[ReportingWindow] = WINDOWS) -> MetaData:
    """The reporting tables: the capture summary, the location, date and time-of-day dimensions and
    one counts table per window."""
    metadata = MetaData()
    _capture_summary_table(metadata)
    _location_dimension_table(metadata)
    _date_dimension_table(metadata)
    _time_of_day_dimension_table(metadata)
    _capture_features_table(metadata)
    _camera_health_table(metadata)
    for window in windows:
        _counts_table(metadata, window)
    return metadata


metadata = build_metadata()
capture_summary_daily = metadata.tables["capture_summary_daily"]
location_dimension = metadata.tables["dim_locations"]
date_dimension = metadata.tables["dim_date"]
time_of_day_dimension = metadata.tables["dim_time_of_day"]
capture_features = metadata.tables["capture_features"]
camera_health = metadata.tables["camera_health"]
# Window name -> its counts table, for the declared windows.
counts_tables: dict[str, Table] = {window.name: metadata.tables[window.table] for window in WINDOWS}


def _metadata_for(windows: Sequence[ReportingWindow]) -> MetaData:
    return metadata if tuple(windows) == WINDOWS else build_metadata(windows)


DDL_HEADER = (
    "-- MySQL / Aurora MySQL DDL of the reporting tables written by Dagster.\n"
    "-- Generated from traffic_platform/orchestration/sql/reporting_tables.py; do not edit.\n"
    "-- The assets create these tables when absent (CREATE TABLE only if missing).\n"
    "-- Regenerate: .venv/bin/python -m traffic_platform.orchestration.sql.reporting_tables > sql/reporting_tables.mysql.sql\n"
)


def ensure_reporting_tables(engine: Engine, windows: Sequence[ReportingWindow] = WINDOWS) -> None:
    """Create the reporting tables that do not exist yet; add the nullable columns a table
    created by an older version lacks (nothing else is ever altered)."""
    chosen = _metadata_for(windows)
    chosen.create_all(engine, checkfirst=True)
    found = inspect(engine)
    with engine.begin() as conn:
        for table in chosen.sorted_tables:
            have = {c["name"] for c in found.get_columns(table.name)}
            for column in table.columns:
                if column.name not in have and column.nullable:
                    kind = column.type.compile(dialect=engine.dialect)
                    conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")


def render_mysql_ddl(windows: Sequence[ReportingWindow] = WINDOWS) -> str:
    """The MySQL DDL of the reporting tables for ``windows``, deterministic, with a header."""
    dialect = mysql.dialect()
    parts = [DDL_HEADER]
    for table in _metadata_for(windows).sorted_tables:
        parts.append(str(CreateTable(table).compile(dialect=dialect)).strip() + ";\n")
        for index in sorted(table.indexes, key=lambda i: i.name or ""):
            parts.append(str(CreateIndex(index).compile(dialect=dialect)).strip() + ";\n")
    body = "\n".join(parts)
    return "\n".join(line.rstrip() for line in body.splitlines()) + "\n"


if __name__ == "__main__":  # python -m traffic_platform.orchestration.sql.reporting_tables > sql/reporting_tables.mysql.sql
    sys.stdout.write(render_mysql_ddl())
