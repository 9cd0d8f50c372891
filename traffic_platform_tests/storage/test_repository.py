"""The repository on SQLite and MariaDB: idempotent saves, exact locations, re-detection."""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime

import pytest
from sqlalchemy import event, func, select

from traffic_platform.domain.captures import CaptureRecord
from traffic_platform.domain.classes import TRAFFIC_CLASSES, TrafficClass
from traffic_platform.domain.detections import Detection
from traffic_platform.domain.errors import NotFound
from traffic_platform.storage import tables
from traffic_platform.storage.repository import Repository

CAR = Detection(TrafficClass.CAR, "car", 0.91, (10.0, 20.5, 110.25, 80.0))
BUS = Detection(TrafficClass.BUS, "bus", 0.77, (300.0, 40.0, 600.0, 300.0))
PERSON = Detection(TrafficClass.PERSON, "person", 0.66, (700.5, 100.0, 740.0, 210.75))


def _count(engine, table, **where) -> int:
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with engine.connect() as conn:
        return conn.scalar(query)


def test_save_capture_round_trips_every_field(repo, make_record):
    record = make_record(
        detections=[CAR, BUS, PERSON],
        image_key="images/2022/10/12/x.jpg",
        annotated_key="annotated/2022/10/12/x.jpg",
    )
    assert repo.save_capture(record) is True
    got = repo.get_capture(record.capture_id)
    assert got is not None
    assert got["capture_id"] == record.capture_id
    assert got["file_name"] == "tiensevest_Leuven_Belgium_12-10-2022_10-51-38.jpg"
    assert got["captured_at"] == "2022-10-12T10:51:38"
    assert got["captured_at_utc"] == "2022-10-12T08:51:38"  # Brussels summer time is UTC+2
    assert got["location"] | {"id": None} == {
        "id": None,
        "address": "tiensevest",
        "address_display": "tiensevest",
        "city": "Leuven",
        "country": "Belgium",
        "timezone": "Europe/Brussels",
    }
    assert got["metadata"] == record.metadata.to_dict()
    assert got["status"] == "accepted" and got["quality_reasons"] == []
    assert got["quality_flags"] == [] and got["quality"] == {"verdict": "clear", "flags": []}
    assert got["quality_metrics"] == pytest.approx(record.quality_metrics)
    assert got["timings"] == pytest.approx(record.timings)
    assert (got["width"], got["height"]) == (1920, 1080)
    assert (
        got["image_key"] == "images/2022/10/12/x.jpg"
        and got["annotated_key"] == "annotated/2022/10/12/x.jpg"
    )
    assert (got["model_name"], got["model_version"]) == ("test-model", "v1")
    assert got["counts"] == {
        "car": 1,
        "truck": 0,
        "bus": 1,
        "person": 1,
        "bicycle": 0,
        "motorcycle": 0,
    }
    assert got["detections"] == [CAR.to_dict(), BUS.to_dict(), PERSON.to_dict()]
    assert got["models"] == [{"model_name": "test-model", "model_version": "v1"}]
    assert datetime.fromisoformat(got["ingested_at"]) == record.ingested_at
    assert datetime.fromisoformat(got["stored_at"]) >= record.ingested_at


def test_saving_twice_changes_nothing(repo, engine, make_record):
    record = make_record(detections=[CAR, CAR, PERSON])
    assert repo.save_capture(record) is True
    first = repo.get_capture(record.capture_id)
    assert repo.save_capture(record) is False
    assert _count(engine, tables.captures) == 1
    assert _count(engine, tables.locations) == 1
    assert _count(engine, tables.detections) == 3
    assert _count(engine, tables.capture_counts) == len(TRAFFIC_CLASSES)
    assert repo.get_capture(record.capture_id) == first


def test_counts_are_zero_filled_without_detections(repo, engine, make_record):
    record = make_record(detections=[])
    repo.save_capture(record)
    assert repo.get_capture(record.capture_id)["counts"] == {c: 0 for c in TRAFFIC_CLASSES}
    assert _count(engine, tables.capture_counts, capture_id=record.capture_id) == 6


def test_distorted_capture_without_a_model(repo, engine, make_record):
    record = make_record(
        status="distorted",
        quality_reasons=["blurred", "underexposed"],
        model_name=None,
        model_version=None,
        quality_metrics={"sharpness": 1.5, "brightness": 4.0},
        timings={"decode_ms": 3.0, "quality_ms": 1.0, "total_ms": 4.5},
        image_key="distorted/2022/10/12/x.jpg",
    )
    assert repo.save_capture(record) is True
    assert repo.save_capture(record) is False
    got = repo.get_capture(record.capture_id)
    assert got["status"] == "distorted"
    assert got["quality_reasons"] == ["blurred", "underexposed"]
    assert got["quality_metrics"]["contrast"] is None and got["timings"]["detect_ms"] is None
    assert got["counts"] is None and got["detections"] == [] and got["models"] == []
    assert _count(engine, tables.capture_counts) == 0


@pytest.mark.parametrize(
    "address, city, country",
    [
        ("place_Saint-Lambert", "Liège", "Belgium"),
        ("Bahnhofstraße", "Zürich", "Switzerland"),
        ("Rynek_Główny", "Kraków", "Poland"),
    ],
)
def test_unicode_locations_round_trip_exactly(repo, make_record, address, city, country):
    record = make_record(f"{address}_{city}_{country}_01-02-2023_08-00-00.jpg")
    repo.save_capture(record)
    location = repo.get_capture(record.capture_id)["location"]
    assert (location["address"], location["city"], location["country"]) == (address, city, country)
    assert location["address_display"] == address.replace("_", " ")
    assert repo.get_capture(record.capture_id)["metadata"] == record.metadata.to_dict()
    assert repo.get_location_id(address, city, country) == location["id"]


def test_accents_and_case_make_different_locations(repo, engine, make_record):
    names = ["x_Liège_Belgium", "x_Liege_Belgium", "x_liège_Belgium", "x_LIÈGE_Belgium"]
    for name in names:
        repo.save_capture(make_record(f"{name}_01-02-2023_08-00-00.jpg"))
    assert _count(engine, tables.locations) == 4
    ids = {
        repo.get_location_id("x", city, "Belgium") for city in ("Liège", "Liege", "liège", "LIÈGE")
    }
    assert len(ids) == 4 and None not in ids
    assert repo.get_location_id("x", "Liége", "Belgium") is None


def test_two_images_with_the_same_local_time_are_both_kept(repo, engine, make_record):
    """30-10-2022 02:30 happened twice in Brussels (daylight-saving fall-back)."""
    name = "tiensevest_Leuven_Belgium_30-10-2022_02-30-00.jpg"
    first = make_record(name, captured_at_utc=datetime(2022, 10, 30, 0, 30))
    second = make_record(
        name, captured_at_utc=datetime(2022, 10, 30, 1, 30), content_sha256="b" * 64
    )
    assert repo.save_capture(first) and repo.save_capture(second)
    assert _count(engine, tables.captures, captured_at=datetime(2022, 10, 30, 2, 30)) == 2
    assert repo.get_capture(second.capture_id)["captured_at_utc"] == "2022-10-30T01:30:00"
    assert _count(engine, tables.locations) == 1


def test_redetection_keeps_model_versions_apart(repo, engine, make_record):
    record = make_record(detections=[CAR, BUS])
    repo.save_capture(record)
    repo.save_detections(record.capture_id, "test-model", "v2", [PERSON])
    repo.save_detections(
        record.capture_id, "test-model", "v2", [PERSON, PERSON, CAR]
    )  # replaced, not appended
    original = repo.get_capture(record.capture_id)
    assert original["counts"] == {
        "car": 1,
        "truck": 0,
        "bus": 1,
        "person": 0,
        "bicycle": 0,
        "motorcycle": 0,
    }
    assert original["detections"] == [CAR.to_dict(), BUS.to_dict()]
    redone = repo.get_capture(record.capture_id, "test-model", "v2")
    assert redone["counts_model"] == {"model_name": "test-model", "model_version": "v2"}
    assert redone["counts"] == {
        "car": 1,
        "truck": 0,
        "bus": 0,
        "person": 2,
        "bicycle": 0,
        "motorcycle": 0,
    }
    assert redone["detections"] == [PERSON.to_dict(), PERSON.to_dict(), CAR.to_dict()]
    assert redone["models"] == [
        {"model_name": "test-model", "model_version": "v1"},
        {"model_name": "test-model", "model_version": "v2"},
    ]
    assert _count(engine, tables.detections) == 5
    assert repo.save_capture(record) is False  # the original save stays idempotent
    assert _count(engine, tables.detections, model_version="v1") == 2


def test_redetection_can_clear_and_needs_an_existing_capture(repo, make_record):
    record = make_record(detections=[CAR])
    repo.save_capture(record)
    repo.save_detections(record.capture_id, "test-model", "v1", [])
    assert repo.get_capture(record.capture_id)["counts"] == {c: 0 for c in TRAFFIC_CLASSES}
    with pytest.raises(NotFound):
        repo.save_detections("f" * 32, "test-model", "v1", [CAR])


def test_detections_are_written_in_bulk(repo, engine, make_record):
    """A save costs the same few statements for 1 or 200 detections (executemany, no row loop)."""

    def statements_for(record: CaptureRecord) -> list[str]:
        seen: list[str] = []

        def record_statement(conn, cursor, statement, parameters, context, executemany):
            seen.append(statement)

        event.listen(engine, "before_cursor_execute", record_statement)
        try:
            repo.save_capture(record)
        finally:
            event.remove(engine, "before_cursor_execute", record_statement)
        return seen

    one = statements_for(make_record("a_Leuven_Belgium_12-10-2022_10-51-38.jpg", detections=[CAR]))
    many = statements_for(
        make_record("b_Leuven_Belgium_12-10-2022_10-51-38.jpg", detections=[CAR] * 200)
    )
    assert len(many) == len(one) <= 16
    assert sum(s.lstrip().upper().startswith("INSERT INTO DETECTIONS") for s in many) == 1
    assert _count(engine, tables.detections) == 201


def test_a_new_capture_at_a_known_location_is_three_inserts(repo, engine, make_record):
    """The common case: no SELECT, no savepoint; the location id comes from the cache."""
    seen: list[str] = []

    def record_statement(conn, cursor, statement, parameters, context, executemany):
        words = statement.split()
        if words[0].upper() != "BEGIN":  # SQLite's BEGIN IMMEDIATE
            table = words[2].strip("`\"") if len(words) > 2 else ""
            seen.append(f"{words[0].upper()} {table}")

    repo.save_capture(make_record(detections=[CAR]))
    event.listen(engine, "before_cursor_execute", record_statement)
    try:
        assert repo.save_capture(make_record(detections=[CAR, BUS])) is True
    finally:
        event.remove(engine, "before_cursor_execute", record_statement)
    assert seen == ["INSERT captures", "INSERT detections", "INSERT capture_counts"]
    assert _count(engine, tables.locations) == 1


def test_a_stale_cached_location_falls_back_to_the_general_path(repo, engine, make_record):
    first = make_record(detections=[CAR])
    repo.save_capture(first)
    location_id = repo.get_location_id("tiensevest", "Leuven", "Belgium")
    repo._locations[("tiensevest", "Leuven", "Belgium")] = location_id + 1000  # no such row
    second = make_record(detections=[CAR, BUS])
    assert repo.save_capture(second) is True
    assert repo.get_capture(second.capture_id)["location"]["id"] == location_id
    assert repo.save_capture(make_record()) is True
    assert repo._locations[("tiensevest", "Leuven", "Belgium")] == location_id  # healed
    assert _count(engine, tables.captures, location_id=location_id) == 3


def test_a_replay_is_refused_by_the_key_and_changes_nothing(repo, engine, make_record):
    record = make_record(detections=[CAR, BUS])
    assert repo.save_capture(record) is True
    before = repo.get_capture(record.capture_id)
    assert Repository(engine).save_capture(record) is False  # another process, cold cache
    assert repo.save_capture(record) is False
    assert repo.get_capture(record.capture_id) == before
    assert _count(engine, tables.detections) == 2
    assert _count(engine, tables.capture_counts) == len(TRAFFIC_CLASSES)


def test_concurrent_saves_create_one_capture_and_one_location(engine, make_record):
    same = make_record(detections=[CAR, BUS])
    others = [
        make_record("other_Leuven_Belgium_12-10-2022_10-51-38.jpg", detections=[PERSON])
        for _ in range(6)
    ]
    results: list[bool] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(12)

    def work(record: CaptureRecord) -> None:
        try:
            barrier.wait()
            results.append(Repository(engine).save_capture(record))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(r,)) for r in [same] * 6 + others]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results.count(True) == 7  # one for ``same`` + six distinct others
    assert _count(engine, tables.captures) == 7
    assert _count(engine, tables.locations) == 2
    assert _count(engine, tables.detections, capture_id=same.capture_id) == 2
    assert _count(engine, tables.capture_counts) == 7 * 6


def test_lookups_and_ping(repo, make_record):
    record = make_record()
    assert repo.capture_exists(record.capture_id) is False
    assert repo.get_capture(record.capture_id) is None
    assert repo.get_location_id("tiensevest", "Leuven", "Belgium") is None
    repo.save_capture(record)
    assert repo.capture_exists(record.capture_id) is True
    assert isinstance(repo.get_location_id("tiensevest", "Leuven", "Belgium"), int)
    repo.ping()


def test_ping_reports_an_unreachable_database():
    from traffic_platform.domain.errors import ServiceUnavailable
    from traffic_platform.storage.database import make_engine

    engine = make_engine(
        "mysql+pymysql://nobody:x@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    with pytest.raises(ServiceUnavailable):
        Repository(engine).ping()


def test_metrics_and_timings_beyond_the_columns_are_not_stored(repo, make_record):
    record = make_record(
        quality_metrics={"sharpness": 0.2, "laplacian_variance": 900.0, "width": 1920.0},
        timings={"decode_ms": 1.0, "handoff_ms": 2.0},
    )
    repo.save_capture(record)
    got = repo.get_capture(record.capture_id)
    assert got["quality_metrics"] == {
        "sharpness": pytest.approx(0.2),
        "brightness": None,
        "contrast": None,
        "clipped_share": None,
        "uniform_share": None,
    }
    assert got["timings"] == {
        "decode_ms": 1.0,
        "quality_ms": None,
        "detect_ms": None,
        "total_ms": None,
    }


def test_non_finite_metrics_are_stored_as_null(repo, make_record):
    record = make_record(quality_metrics={"sharpness": float("nan"), "contrast": float("inf")})
    repo.save_capture(record)
    metrics = repo.get_capture(record.capture_id)["quality_metrics"]
    assert metrics["sharpness"] is None and metrics["contrast"] is None


def _longest_accepted(part: int) -> str:
    """The name with the longest address (0), city (1) or country (2) the parser accepts."""
    from traffic_platform.domain.errors import InvalidFileName
    from traffic_platform.domain.metadata import parse_file_name

    best = ""
    for n in range(1, 256):
        parts = ["a", "B", "C"]
        parts[part] = "x" * n
        name = "_".join(parts) + "_12-10-2022_10-51-38.jpg"
        try:
            parse_file_name(name)
        except InvalidFileName:
            continue
        best = name
    return best


@pytest.mark.parametrize(
    "file_name",
    [
        # the longest accepted address, and a 255-character name
        f"{'a' * 200}_{'C' * 14}_{'N' * 14}_12-10-2022_10-51-38.jpeg",
        # the longest accepted city and country
        f"x_{'C' * 100}_{'N' * 100}_12-10-2022_10-51-38.jpg",
        *(_longest_accepted(part) for part in range(3)),
    ],
)
def test_the_longest_names_the_parser_accepts_are_stored(repo, make_record, file_name):
    from traffic_platform.domain.metadata import MAX_NAME_LENGTH

    record = make_record(file_name)  # parses: the parser accepts it
    assert len(file_name) <= MAX_NAME_LENGTH
    assert repo.save_capture(record)
    row = repo.get_capture(record.capture_id)
    assert row["file_name"] == file_name
    meta = record.metadata
    assert (row["location"]["address"], row["location"]["city"], row["location"]["country"]) == (meta.address, meta.city, meta.country)


def test_location_columns_are_as_wide_as_the_parser_allows():
    from traffic_platform.domain import metadata

    widths = {name: tables.locations.c[name].type.length for name in ("address", "address_display", "city", "country")}
    assert widths == {"address": metadata.MAX_ADDRESS_LENGTH, "address_display": metadata.MAX_ADDRESS_LENGTH,
                      "city": metadata.MAX_CITY_LENGTH, "country": metadata.MAX_COUNTRY_LENGTH}
    assert tables.captures.c.file_name.type.length == metadata.MAX_NAME_LENGTH


def test_the_latest_verdict_is_the_stored_one(repo, make_record):
    from datetime import timedelta

    from traffic_platform.domain.detections import Detection

    car = Detection.from_dict({"class": "car", "label": "car", "score": 0.9, "box": [1, 1, 20, 20]})
    distorted = make_record(status="distorted", quality_reasons=["blurred"], model_name=None, model_version=None,
                            image_key="distorted/2022/10/12/x.jpg")
    t0 = distorted.ingested_at
    accepted = dataclasses.replace(distorted, status="accepted", quality_reasons=[], model_name="m", model_version="1",
                                   detections=[car], image_key="images/2022/10/12/x.jpg", annotated_key="annotated/x.jpg",
                                   ingested_at=t0 + timedelta(seconds=5))
    assert repo.save_capture(distorted)
    stored_at = repo.get_capture(distorted.capture_id)["stored_at"]
    assert repo.save_capture(accepted) is False  # not new, but its verdict replaces the older one
    row = repo.get_capture(distorted.capture_id)
    assert (row["status"], row["quality_reasons"], row["counts"]["car"]) == ("accepted", [], 1)
    assert row["image_key"] == accepted.image_key and row["annotated_key"] == accepted.annotated_key
    assert row["stored_at"] > stored_at  # the reporting of that day runs again
    repo.save_capture(distorted)  # a late redelivery of the older verdict changes nothing
    assert repo.get_capture(distorted.capture_id)["status"] == "accepted"

    recount = dataclasses.replace(accepted, detections=[car, car], ingested_at=t0 + timedelta(seconds=10))
    repo.save_capture(recount)  # same verdict, other counts (a score threshold changed)
    assert repo.get_capture(distorted.capture_id)["counts"]["car"] == 2
    again = dataclasses.replace(distorted, ingested_at=t0 + timedelta(seconds=20))
    repo.save_capture(again)  # and back to distorted: the ingest detections go
    row = repo.get_capture(distorted.capture_id)
    assert (row["status"], row["counts"], row["annotated_key"], row["models"]) == ("distorted", None, None, [])
    assert row["quality"] == {"verdict": "unusable", "flags": []}


def test_flags_are_stored_and_a_later_flag_change_replaces_them(repo, make_record):
    from datetime import timedelta

    foggy = make_record(quality_flags=["fog", "low_sharpness"])
    assert repo.save_capture(foggy)
    row = repo.get_capture(foggy.capture_id)
    assert row["quality_flags"] == ["fog", "low_sharpness"]
    assert row["quality"] == {"verdict": "degraded", "flags": ["fog", "low_sharpness"]}
    repo.save_capture(dataclasses.replace(foggy, quality_flags=[]))  # not newer: nothing changes
    assert repo.get_capture(foggy.capture_id)["quality_flags"] == ["fog", "low_sharpness"]
    later = dataclasses.replace(foggy, quality_flags=["fog"], ingested_at=foggy.ingested_at + timedelta(seconds=5))
    repo.save_capture(later)  # the same upload after a flag threshold changed
    assert repo.get_capture(foggy.capture_id)["quality"] == {"verdict": "degraded", "flags": ["fog"]}


def test_save_captures_stores_a_batch_in_three_inserts(repo, engine, make_record):
    repo.save_capture(make_record())  # both locations known: no lookups in the batch
    repo.save_capture(make_record("other_Leuven_Belgium_12-10-2022_10-51-38.jpg"))
    batch = [make_record(detections=[CAR] * i) for i in range(3)] + [
        make_record("other_Leuven_Belgium_12-10-2022_10-51-38.jpg", detections=[BUS, PERSON]),
        make_record("new_Leuven_Belgium_12-10-2022_10-51-38.jpg", model_name=None, model_version=None),
    ]
    seen: list[str] = []

    def record_statement(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO CAPTURE"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record_statement)
    try:
        assert repo.save_captures(batch) == [True] * 5
    finally:
        event.remove(engine, "before_cursor_execute", record_statement)
    assert len(seen) == 2  # captures, capture_counts (detections: one more, below)
    assert _count(engine, tables.captures) == 7
    assert _count(engine, tables.locations) == 3
    assert _count(engine, tables.detections) == 0 + 1 + 2 + 2
    assert _count(engine, tables.capture_counts) == 6 * (2 + 4)
    for record in batch:
        got = repo.get_capture(record.capture_id)
        assert len(got["detections"]) == len(record.detections)
        assert got["location"]["address"] == record.metadata.address


def test_save_captures_isolates_replays_and_a_poison_record(repo, engine, make_record):
    stored = make_record(detections=[CAR])
    repo.save_capture(stored)
    poison = dataclasses.replace(make_record(detections=[BUS]), quality_reasons=[object()])
    fresh = [make_record(detections=[PERSON]) for _ in range(2)]
    results = repo.save_captures([fresh[0], stored, poison, fresh[1]])
    assert results[:2] == [True, False] and results[3] is True
    assert isinstance(results[2], TypeError)
    assert repo.get_capture(poison.capture_id) is None
    assert _count(engine, tables.captures) == 3
    assert _count(engine, tables.detections) == 3
    assert repo.save_captures([fresh[0]]) == [False]
