"""Engines, migrations and the checked-in MySQL DDL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from traffic_platform.storage import tables
from traffic_platform.storage.database import (
    current_revision,
    head_revision,
    make_engine,
    render_mysql_ddl,
    upgrade,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DDL_FILE = REPO_ROOT / "sql" / "schema.mysql.sql"


def test_upgrade_creates_every_table_and_column(engine):
    inspector = inspect(engine)
    for table in tables.metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == set(table.c.keys()), table.name
    assert current_revision(engine) == head_revision() == "0004_day_ranges"
    indexes = {ix["name"] for ix in inspector.get_indexes("captures")}
    assert {
        "ix_captures_location_captured_at",
        "ix_captures_captured_at",
        "ix_captures_content_sha256",
        "ix_captures_status",
    } <= indexes
    # the covering indexes of the daily aggregation and its checks (0003, 0004): a day is one range of each
    found = {ix["name"]: ix["column_names"] for table in ("captures", "detections", "capture_counts")
             for ix in inspector.get_indexes(table)}
    assert found["ix_captures_captured_at"] == ["captured_at", "location_id", "status", "captured_at_utc", "quality_flags",
                                                "width", "height", "model_name", "model_version", "content_sha256"]
    assert found["ix_detections_day"] == ["captured_at", "capture_id", "model_name", "model_version", "traffic_class",
                                          "score", "x1", "y1", "x2", "y2"]
    assert found["ix_capture_counts_day"] == ["captured_at", "capture_id", "model_name", "model_version",
                                              "traffic_class", "count"]
    assert "ix_detections_capture_model_class" not in found


def test_upgrade_twice_is_a_no_op(engine):
    with engine.begin() as conn:
        conn.execute(
            tables.locations.insert().values(
                address="a",
                address_display="a",
                city="c",
                country="k",
                timezone="UTC",
                created_at=datetime(2024, 1, 1),
            )
        )
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        assert conn.execute(select(tables.locations.c.address)).scalars().all() == ["a"]


def test_upgrade_from_a_url_string(db_url):
    upgrade(db_url)  # creates and disposes its own engine (and the SQLite parent directory)
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_migrations_match_the_table_metadata(engine):
    """The frozen migration and ``tables.py`` describe the same schema (no autogenerate diff)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, tables.metadata)
    assert diff == []


@pytest.mark.mariadb
@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
def test_mysql_columns_are_utf8mb4_and_locations_exact(engine):
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT column_name, character_set_name, collation_name FROM information_schema.columns "
                "WHERE table_schema = DATABASE() AND table_name = 'locations' AND character_set_name IS NOT NULL"
            )
        ).all()
    collations = {name: collation for name, _charset, collation in rows}
    assert {collations[c] for c in ("address", "address_display", "city", "country")} == {
        "utf8mb4_bin"
    }
    assert {charset for _name, charset, _collation in rows} == {"utf8mb4"}


def test_sqlite_engine_uses_wal_foreign_keys_and_busy_timeout(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'b' / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        assert (tmp_path / "a" / "b" / "x.db").exists()
    finally:
        engine.dispose()


def test_sqlite_writer_commits_are_durable_before_the_spool_forgets_the_job(tmp_path):
    """synchronous=FULL (2) on every connection, the writer's included: a commit that returned
    survives a power cut, so the spool worker may delete the job file right after it."""
    from traffic_platform.storage.database import writer

    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with writer(engine).begin() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    finally:
        engine.dispose()


def test_sqlite_enforces_foreign_keys(engine):
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            tables.capture_counts.insert().values(
                capture_id="0" * 32, model_name="m", model_version="v", traffic_class="car", count=1,
                captured_at=datetime(2022, 10, 12),
            )
        )


def test_checked_in_mysql_ddl_matches_the_migrations():
    rendered = render_mysql_ddl()
    assert "CREATE TABLE captures" in rendered and "utf8mb4_bin" in rendered
    checked_in = DDL_FILE.read_text(encoding="utf-8") if DDL_FILE.exists() else ""
    assert checked_in == rendered, (
        f"{DDL_FILE.relative_to(REPO_ROOT)} is out of date with the migrations; regenerate it with\n"
        "    .venv/bin/python -m traffic_platform.storage.database > sql/schema.mysql.sql"
    )


def test_unsupported_url_is_refused():
    with pytest.raises(ValueError, match="unsupported database URL"):
        make_engine("postgresql://u:secret@host/db")


def _downgrade(engine, revision: str) -> None:
    from alembic import command

    from traffic_platform.storage.database import alembic_config, writer

    with writer(engine).begin() as conn:
        command.downgrade(alembic_config(connection=conn), revision)


def test_quality_flags_migration_keeps_existing_rows(db_url, make_record):
    """0001 -> 0002 on a database with a capture: it reads as no flags, new ones keep theirs;
    the downgrade (from the head) drops only the columns (the detections and counts survive)."""
    from traffic_platform.domain.classes import TrafficClass
    from traffic_platform.domain.detections import Detection
    from traffic_platform.storage.repository import Repository

    engine = make_engine(db_url)
    try:
        upgrade(engine, "0001_initial")
        assert current_revision(engine) == "0001_initial"
        assert "quality_flags" not in {c["name"] for c in inspect(engine).get_columns("captures")}
        old = make_record(detections=[Detection(TrafficClass.CAR, "car", 0.9, (1.0, 2.0, 3.0, 4.0))])
        with engine.begin() as conn:  # a row as the 0001 code wrote it (no quality_flags column)
            conn.execute(text(
                "INSERT INTO locations (address, address_display, city, country, timezone, created_at)"
                " VALUES ('tiensevest', 'tiensevest', 'Leuven', 'Belgium', 'Europe/Brussels', :t)"), {"t": datetime(2022, 10, 12)})
            conn.execute(text(
                "INSERT INTO captures (capture_id, location_id, captured_at, captured_at_utc, file_name, content_sha256,"
                " status, quality_reasons, model_name, model_version, ingested_at, stored_at)"
                " VALUES (:id, 1, :local, :utc, :name, :sha, 'accepted', '[]', 'test-model', 'v1', :t, :t)"),
                {"id": old.capture_id, "local": old.metadata.captured_at, "utc": old.captured_at_utc,
                 "name": old.file_name, "sha": old.content_sha256, "t": datetime(2022, 10, 12, 9)})
            conn.execute(text(
                "INSERT INTO capture_counts (capture_id, model_name, model_version, traffic_class, count)"
                " VALUES (:id, 'test-model', 'v1', 'car', 1)"), {"id": old.capture_id})

        upgrade(engine, "0002_quality_flags")
        assert current_revision(engine) == "0002_quality_flags"
        repo = Repository(engine)
        before = repo.get_capture(old.capture_id)
        assert before["quality_flags"] == [] and before["quality"] == {"verdict": "clear", "flags": []}
        upgrade(engine)  # today's code writes today's schema
        foggy = make_record("tiensevest_Leuven_Belgium_12-10-2022_11-00-00.jpg", quality_flags=["fog", "glare"])
        repo.save_capture(foggy)
        assert repo.get_capture(foggy.capture_id)["quality"] == {"verdict": "degraded", "flags": ["fog", "glare"]}
        with engine.connect() as conn:
            stored = dict(conn.execute(text("SELECT capture_id, quality_flags FROM captures")).all())
        assert stored == {old.capture_id: "[]", foggy.capture_id: '["fog", "glare"]'}

        _downgrade(engine, "0001_initial")
        assert current_revision(engine) == "0001_initial"
        assert "quality_flags" not in {c["name"] for c in inspect(engine).get_columns("captures")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM captures")).scalar_one() == 2
            assert conn.execute(text("SELECT COUNT(*) FROM capture_counts WHERE capture_id = :id"),
                                {"id": old.capture_id}).scalar_one() == 1
        upgrade(engine)  # and up again
        assert repo.get_capture(foggy.capture_id)["quality_flags"] == []
    finally:
        engine.dispose()


def test_day_ranges_migration_copies_each_capture_s_day_onto_its_rows(db_url, make_record):
    """0003 -> 0004 on a database with detections and counts: each row gets its own capture's
    ``captured_at``, the day index finds exactly them, and the downgrade drops the copies."""
    from traffic_platform.domain.classes import TrafficClass
    from traffic_platform.domain.detections import Detection

    engine = make_engine(db_url)
    try:
        upgrade(engine, "0003_aggregation_indexes")
        records = [make_record(f"tiensevest_Leuven_Belgium_{day}-10-2022_10-51-38.jpg",
                               detections=[Detection(TrafficClass.CAR, "car", 0.9, (1.0, 2.0, 3.0, 4.0))])
                   for day in ("11", "12")]
        with engine.begin() as conn:  # rows as the 0003 code wrote them (no captured_at on detections/counts)
            conn.execute(text(
                "INSERT INTO locations (address, address_display, city, country, timezone, created_at)"
                " VALUES ('tiensevest', 'tiensevest', 'Leuven', 'Belgium', 'Europe/Brussels', :t)"), {"t": datetime(2022, 10, 1)})
            for r in records:
                conn.execute(text(
                    "INSERT INTO captures (capture_id, location_id, captured_at, captured_at_utc, file_name, content_sha256,"
                    " status, quality_reasons, model_name, model_version, ingested_at, stored_at)"
                    " VALUES (:id, 1, :local, :utc, :name, :sha, 'accepted', '[]', 'test-model', 'v1', :t, :t)"),
                    {"id": r.capture_id, "local": r.metadata.captured_at, "utc": r.captured_at_utc,
                     "name": r.file_name, "sha": r.content_sha256, "t": datetime(2022, 10, 12, 9)})
                conn.execute(text(
                    "INSERT INTO detections (capture_id, model_name, model_version, seq, traffic_class, label, score, x1, y1, x2, y2)"
                    " VALUES (:id, 'test-model', 'v1', 0, 'car', 'car', 0.9, 1, 2, 3, 4)"), {"id": r.capture_id})
                conn.execute(text(
                    "INSERT INTO capture_counts (capture_id, model_name, model_version, traffic_class, count)"
                    " VALUES (:id, 'test-model', 'v1', 'car', 1)"), {"id": r.capture_id})

        upgrade(engine)
        with engine.connect() as conn:
            for table in ("detections", "capture_counts"):
                copied = conn.execute(text(
                    f"SELECT t.capture_id, t.captured_at, c.captured_at FROM {table} t JOIN captures c ON c.capture_id = t.capture_id"
                )).all()
                assert len(copied) == 2 and all(str(mine) == str(theirs) for _, mine, theirs in copied), table
                day = conn.execute(text(f"SELECT capture_id FROM {table} WHERE captured_at >= :a AND captured_at < :b"),
                                   {"a": datetime(2022, 10, 12), "b": datetime(2022, 10, 13)}).scalars().all()
                assert day == [records[1].capture_id], table

        _downgrade(engine, "0003_aggregation_indexes")
        for table in ("detections", "capture_counts"):
            assert "captured_at" not in {c["name"] for c in inspect(engine).get_columns(table)}
        assert "ix_detections_capture_model_class" in {ix["name"] for ix in inspect(engine).get_indexes("detections")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM detections")).scalar_one() == 2
    finally:
        engine.dispose()
