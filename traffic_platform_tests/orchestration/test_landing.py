"""The landing-prefix sensor and job: images dropped under landing/ go through the real ingest
service (tiny transformers DETR, spool + worker) into the database and object store, on a
directory store and on S3 over moto's HTTP server, on SQLite and MariaDB."""

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import func, select

from traffic_platform.config import Settings
from traffic_platform.detection.base import Detector, ImageInput
from traffic_platform.detection.factory import build_detector
from traffic_platform.detection.tiny_models import build_tiny_detr
from traffic_platform.domain.captures import capture_id_for
from traffic_platform.domain.errors import DetectorError
from traffic_platform.domain.images import decode_image
from traffic_platform.ingest.local import LocalPlatform
from traffic_platform.orchestration.landing import (
    LANDING_PREFIX,
    landing_ingest_job,
    landing_requests,
    process_landing,
)
from traffic_platform.orchestration.resources import (
    DatabaseResource,
    IngestResource,
    ObjectStoreResource,
)
from traffic_platform.orchestration.sensors import landing_ingest_sensor
from traffic_platform.storage import keys
from traffic_platform.storage.objectstore import open_object_store
from traffic_platform.storage.tables import capture_counts, captures, detections

from .. import images

LIMIT = 1_000_000  # TRAFFIC_MAX_UPLOAD_BYTES in these tests
LIEGE = "rue_de_la_loi_Liège_Belgium_12-10-2022_10-51-38.jpg"
LEUVEN = "tiensevest_Leuven_Belgium_12-10-2022_11-00-00.jpg"


@pytest.fixture(scope="module")
def tiny_detr_dir(tmp_path_factory) -> Path:
    return build_tiny_detr(tmp_path_factory.mktemp("landing-detr"))


@pytest.fixture(params=["local", "s3"])
def settings(request, tmp_path, db_url, tiny_detr_dir, monkeypatch) -> Settings:
    monkeypatch.setenv("TRAFFIC_MAX_UPLOAD_BYTES", str(LIMIT))
    monkeypatch.setenv("TRAFFIC_LANDING_SETTLE_S", "0")  # objects written by the test are complete
    base = Settings(home=tmp_path / "home", database_url=db_url, detector=f"local:{tiny_detr_dir}",
                    detector_runtime="torch", max_upload_bytes=LIMIT)
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_settings")
        base = dataclasses.replace(base, object_store_uri=s3.object_store_uri, s3_endpoint_url=s3.s3_endpoint_url,
                                   s3_region=s3.s3_region)
    return base


def resources_for(settings: Settings) -> tuple[ObjectStoreResource, IngestResource]:
    store = ObjectStoreResource(uri=settings.object_store_uri, s3_endpoint_url=settings.s3_endpoint_url)
    ingest = IngestResource(database=DatabaseResource(url=settings.database_url), object_store=store,
                            detector=settings.detector, detector_runtime=settings.detector_runtime,
                            spool_dir=str(settings.spool_dir), persist_timeout_s=60)
    return store, ingest


def tick(instance, store_resource, cursor):
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"object_store": store_resource}) as ctx:
        return landing_ingest_sensor(ctx)


def run_requests(result) -> list[dg.RunRequest]:
    return list(result.run_requests or [])


def table_count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_landing_objects_are_ingested_once(settings, tiny_detr_dir):
    store = open_object_store(settings)
    good = images.jpeg_bytes(images.street_scene(640, 360, seed=5))
    good2 = images.jpeg_bytes(images.street_scene(480, 320, seed=9))
    distorted = images.jpeg_bytes(images.uniform_grey())
    too_large = images.png_bytes(images.street_scene(1280, 720, seed=2))
    assert len(too_large) > LIMIT > max(len(good), len(good2))
    dropped = {
        # a unicode file name arrives percent-encoded (object keys are ASCII)
        f"landing/{keys.escape_component(LIEGE)}": good,
        f"landing/cam7/{LEUVEN}": good2,
        "landing/holiday_photo.jpg": good,  # bad name
        "landing/tiensevest_Leuven_Belgium_12-10-2022_11-05-00.jpg": images.text_bytes(),  # not an image
        "landing/tiensevest_Leuven_Belgium_12-10-2022_11-10-00.jpg": distorted,
        "landing/tiensevest_Leuven_Belgium_12-10-2022_11-15-00.png": too_large,
    }
    for key, data in dropped.items():
        store.put(key, data)
    store.put("images/2022/10/12/not-landing.jpg", good)  # outside landing/: never touched
    store_resource, ingest = resources_for(settings)

    with dg.instance_for_test() as instance:
        first = tick(instance, store_resource, None)
        (request,) = run_requests(first)
        assert request.run_config["ops"]["ingest_landing_objects"]["config"]["keys"] == sorted(dropped)
        assert request.run_key.startswith("landing:") and request.tags["traffic/trigger"] == "landing"
        # the run has not happened yet: the next tick does not ask again
        second = tick(instance, store_resource, first.cursor)
        assert run_requests(second) == []

        result = landing_ingest_job.execute_in_process(run_config=request.run_config, resources={"ingest": ingest},
                                                       instance=instance, tags=request.tags)
        assert result.success
        summary = result.output_for_node("ingest_landing_objects")

        assert list(store.list(LANDING_PREFIX)) == []
        assert summary["counts"] == {"accepted": 2, "distorted": 1, "rejected": 3, "failed": 0, "gone": 0}

        # accepted: stored through the service and the worker, detections as the model gives them
        platform = LocalPlatform(settings, run_worker=False, load_detector=False)
        try:
            repo = platform.repo
            reference = build_detector(Settings(detector=f"local:{tiny_detr_dir}", detector_runtime="torch"))
            for key, name, data in ((f"landing/{keys.escape_component(LIEGE)}", LIEGE, good),
                                    (f"landing/cam7/{LEUVEN}", LEUVEN, good2)):
                capture_id = summary["capture_ids"][key]
                assert capture_id == capture_id_for(name, hashlib.sha256(data).hexdigest())
                row = repo.get_capture(capture_id)
                assert row["status"] == "accepted" and row["file_name"] == name
                assert store.get(row["image_key"]) == data and store.exists(row["annotated_key"])
                assert row["model_name"] == reference.model_name and row["model_version"] == reference.model_version
                want = [d.to_dict() for d in reference.detect_one(ImageInput.of(decode_image(data, max_bytes=LIMIT, max_pixels=10**8)))]
                assert len(row["detections"]) == len(want)
                for got, exp in zip(row["detections"], want, strict=True):
                    assert got["class"] == exp["class"] and got["label"] == exp["label"]
                    assert got["score"] == pytest.approx(exp["score"], abs=1e-4)
                    assert got["box"] == pytest.approx(exp["box"], abs=1e-2)
                assert sum(row["counts"].values()) == len(want)
            assert repo.get_capture(summary["capture_ids"][f"landing/{keys.escape_component(LIEGE)}"])["metadata"]["city"] == "Liège"

            # distorted: recorded as distorted, its image under distorted/
            distorted_id = summary["capture_ids"]["landing/tiensevest_Leuven_Belgium_12-10-2022_11-10-00.jpg"]
            row = repo.get_capture(distorted_id)
            assert row["status"] == "distorted" and row["quality_reasons"]
            assert row["image_key"].startswith("distorted/") and store.get(row["image_key"]) == distorted
            assert row["detections"] == [] and row["counts"] is None

            # rejected: moved to rejected/ with the reason beside it
            for name, code, data in (("holiday_photo.jpg", "file_name_missing_parts", good),
                                     ("tiensevest_Leuven_Belgium_12-10-2022_11-05-00.jpg", "not_an_image", images.text_bytes()),
                                     ("tiensevest_Leuven_Belgium_12-10-2022_11-15-00.png", "upload_too_large", too_large)):
                assert store.get(f"rejected/{name}") == data
                reason = json.loads(store.get(f"rejected/{name}.reason.json"))
                assert reason["code"] == code and reason["message"] and reason["landing_key"] == f"landing/{name}"
                assert reason["run_id"] == result.run_id
            assert sorted(store.list("rejected/")) == sorted(
                f"rejected/{n}{s}" for n in ("holiday_photo.jpg", "tiensevest_Leuven_Belgium_12-10-2022_11-05-00.jpg",
                                            "tiensevest_Leuven_Belgium_12-10-2022_11-15-00.png") for s in ("", ".reason.json"))
            assert store.get("images/2022/10/12/not-landing.jpg") == good
            assert platform.spool.depth() == 0 and platform.spool.dead_count() == 0

            engine = platform.engine
            stored = (table_count(engine, captures), table_count(engine, detections), table_count(engine, capture_counts))
            assert stored[0] == 3

            # repeat ticks: landing is empty, nothing is requested
            third = tick(instance, store_resource, second.cursor)
            assert run_requests(third) == [] and json.loads(third.cursor) == {"requested": {}}
            # the same run again (e.g. a retry): every object is gone, nothing is ingested twice
            again = landing_ingest_job.execute_in_process(run_config=request.run_config, resources={"ingest": ingest},
                                                          instance=instance)
            assert again.output_for_node("ingest_landing_objects")["counts"]["gone"] == len(dropped)
            # the same image dropped again: one more run, the same capture, no new rows
            store.put(f"landing/{LEUVEN}", good2)
            fourth = tick(instance, store_resource, third.cursor)
            (repeat,) = run_requests(fourth)
            assert repeat.run_key != request.run_key
            rerun = landing_ingest_job.execute_in_process(run_config=repeat.run_config, resources={"ingest": ingest},
                                                          instance=instance)
            out = rerun.output_for_node("ingest_landing_objects")
            assert out["counts"]["accepted"] == 1
            assert out["capture_ids"][f"landing/{LEUVEN}"] == summary["capture_ids"][f"landing/cam7/{LEUVEN}"]
            assert (table_count(engine, captures), table_count(engine, detections), table_count(engine, capture_counts)) == stored
            assert list(store.list(LANDING_PREFIX)) == []
        finally:
            platform.engine.dispose()


def test_sensor_cursor_retries_and_gives_up(tmp_path):
    """Requested objects are not requested again while their run may still come; a replaced
    object is requested at once; one that stays is retried after an hour, three times in all."""
    store = open_object_store(Settings(home=tmp_path))
    store.put("landing/a_Leuven_Belgium_12-10-2022_10-00-00.jpg", b"1")
    store.put("landing/b_Leuven_Belgium_12-10-2022_10-00-00.jpg", b"2")
    now = 1_700_000_000.0
    t1 = landing_requests(store, None, now, batch_size=1, settle_s=0)
    assert [r.run_config["ops"]["ingest_landing_objects"]["config"]["keys"] for r in t1.requests] == [
        ["landing/a_Leuven_Belgium_12-10-2022_10-00-00.jpg"], ["landing/b_Leuven_Belgium_12-10-2022_10-00-00.jpg"]]
    assert len({r.run_key for r in t1.requests}) == 2
    t2 = landing_requests(store, t1.cursor, now + 60, settle_s=0)
    assert t2.requests == [] and t2.figures["in_flight"] == 2
    time.sleep(0.01)
    store.put("landing/b_Leuven_Belgium_12-10-2022_10-00-00.jpg", b"22")  # replaced: new size/mtime
    t3 = landing_requests(store, t2.cursor, now + 120, settle_s=0)
    assert [r.run_config["ops"]["ingest_landing_objects"]["config"]["keys"] for r in t3.requests] == [
        ["landing/b_Leuven_Belgium_12-10-2022_10-00-00.jpg"]]
    store.delete("landing/b_Leuven_Belgium_12-10-2022_10-00-00.jpg")
    cursor, keys_requested = t3.cursor, []
    for hour in (1, 2, 3, 4):
        t = landing_requests(store, cursor, now + hour * 3600 + 1, settle_s=0)
        keys_requested.append(len(t.requests))
        cursor = t.cursor
    assert keys_requested == [1, 1, 0, 0]  # attempts 2 and 3, then it stays for an operator
    assert t.figures["gave_up"] == 1
    assert list(json.loads(cursor)["requested"]) == ["landing/a_Leuven_Belgium_12-10-2022_10-00-00.jpg"]


class _BrokenDetector(Detector):
    """A detector whose backend is down (as a SageMaker endpoint can be)."""

    model_name, model_version = "broken", "0"

    def detect(self, batch):
        raise DetectorError("the detector endpoint is unavailable")


def test_detector_failure_leaves_the_object_in_landing(tmp_path, db_url):
    settings = Settings(home=tmp_path, database_url=db_url)
    store = open_object_store(settings)
    key = f"landing/{LEUVEN}"
    store.put(key, images.jpeg_bytes(images.street_scene(640, 360)))
    with LocalPlatform(settings, run_worker=False, detector=_BrokenDetector()) as platform:
        summary = process_landing(platform, [key], persist_timeout_s=5)
        assert summary.outcomes == {key: "failed"} and summary.problems[key].startswith("detector_failed")
        assert list(store.list(LANDING_PREFIX)) == [key] and list(store.list("rejected/")) == []
        assert platform.spool.depth() == 0 and table_count(platform.engine, captures) == 0


def test_temporary_names():
    from traffic_platform.orchestration.landing import is_temporary

    assert [is_temporary(k) for k in ("landing/a.jpg~", "landing/x/.a.jpg.Xy12", "landing/a.jpg.crdownload",
                                      "landing/a.jpg.TMP", "landing/a.jpg", "landing/.cache/a.jpg")] == [
        True, True, True, True, False, False]


def test_only_settled_objects_with_ordinary_names_are_taken(tmp_path):
    import os

    store = open_object_store(Settings(home=tmp_path))
    name = "a_Leuven_Belgium_12-10-2022_10-00-00.jpg"
    key = f"landing/{name}"
    T = 1_800_000_000.0

    def put(key: str, data: bytes, mtime: float) -> None:
        store.put(key, data)
        os.utime(store._path(key), (mtime, mtime))

    for temporary in (f"landing/.{name}.Xy12Ab", f"landing/cam/{name}.PART", f"landing/{name}.part",
                      f"landing/{name}.tmp", f"landing/{name}.crdownload", "landing/.hidden.jpg"):
        put(temporary, b"x", T - 3600)  # old, but never taken
    put(key, b"half a jpeg", T)
    t1 = landing_requests(store, None, T + 1, settle_s=30)  # just written: perhaps still being copied
    assert t1.requests == [] and t1.figures["settling"] == 1 and t1.figures["temporary_names"] == 6
    put(key, b"half a jpeg, and more", T + 20)  # the copy goes on: the clock starts again
    t2 = landing_requests(store, t1.cursor, T + 21, settle_s=30)
    t3 = landing_requests(store, t2.cursor, T + 45, settle_s=30)
    assert t2.requests == t3.requests == [] and t3.figures["settling"] == 1
    t4 = landing_requests(store, t3.cursor, T + 51, settle_s=30)  # unchanged for 31 s: taken
    assert [r.run_config["ops"]["ingest_landing_objects"]["config"]["keys"] for r in t4.requests] == [[key]]

    # a store clock far ahead of ours: taken once two listings settle_s apart saw it unchanged
    ahead = "landing/b_Leuven_Belgium_12-10-2022_10-00-00.jpg"
    put(ahead, b"x", T + 10_000)
    t5 = landing_requests(store, t4.cursor, T + 100, settle_s=30)
    assert t5.requests == [] and t5.figures["settling"] == 1
    t6 = landing_requests(store, t5.cursor, T + 131, settle_s=30)
    assert [r.run_config["ops"]["ingest_landing_objects"]["config"]["keys"] for r in t6.requests] == [[ahead]]


def test_one_bad_key_does_not_fail_the_batch(tmp_path, db_url, tiny_detr_dir, monkeypatch):
    from traffic_platform.orchestration.landing import rejected_key

    settings = Settings(home=tmp_path, database_url=db_url, detector=f"local:{tiny_detr_dir}", detector_runtime="torch")
    store = open_object_store(settings)
    long_key = "landing/" + "/".join(["d" * 118] * 3) + "/" + "y" * 140 + ".jpg"  # 509 characters
    assert keys.is_valid_key(long_key) and not keys.is_valid_key("rejected/" + long_key[8:] + ".reason.json")
    good_key = f"landing/{LEUVEN}"
    store.put(long_key, images.jpeg_bytes(images.street_scene(320, 240, seed=1)))
    store.put(good_key, images.jpeg_bytes(images.street_scene(640, 360, seed=5)))
    with LocalPlatform(settings, run_worker=False) as platform:
        summary = process_landing(platform, [long_key, "not/landing.jpg", good_key], persist_timeout_s=60)
    assert summary.outcomes == {long_key: "rejected", "not/landing.jpg": "failed", good_key: "accepted"}
    assert summary.problems[long_key].startswith("file_name_missing_parts")
    target = rejected_key(long_key)
    assert target.startswith("rejected/long-keys/") and store.exists(target)
    reason = json.loads(store.get(target + ".reason.json"))
    assert reason["landing_key"] == long_key and reason["code"] == "file_name_missing_parts"
    assert list(store.list(LANDING_PREFIX)) == []
