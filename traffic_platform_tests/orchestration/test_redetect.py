"""Re-detection: captures ingested with tiny model A (real service, real stored images) are
re-detected with model B (same path, new weights -> new version); both versions are kept
apart, counts reconcile, and the reporting tables are built for B beside A."""

import dataclasses
from collections import Counter, defaultdict
from datetime import date

import dagster as dg
import pytest
from sqlalchemy import func, select

from traffic_platform.config import Settings
from traffic_platform.detection.base import ImageInput
from traffic_platform.detection.factory import build_detector
from traffic_platform.detection.tiny_models import build_tiny_detr
from traffic_platform.detection.transformers_backend import clear_model_cache
from traffic_platform.domain.errors import DistortedImage
from traffic_platform.domain.images import decode_image
from traffic_platform.ingest.local import LocalPlatform
from traffic_platform.orchestration import definitions
from traffic_platform.orchestration.jobs import reporting_daily_job
from traffic_platform.orchestration.redetect import decode_days, encode_days, redetect_job
from traffic_platform.orchestration.resources import (
    DatabaseResource,
    IngestResource,
    ObjectStoreResource,
)
from traffic_platform.orchestration.sensors import redetect_reporting_sensor
from traffic_platform.orchestration.sql.reporting_tables import counts_tables
from traffic_platform.storage.tables import capture_counts, captures, detections

from .. import images

# (file name, street-scene seed); 11 and 12 October are re-detected, 13 October is not.
UPLOADS = [
    ("tiensevest_Leuven_Belgium_11-10-2022_08-00-00.jpg", 1),
    ("tiensevest_Leuven_Belgium_11-10-2022_08-05-00.jpg", 2),
    ("rue_de_la_loi_Liège_Belgium_11-10-2022_09-00-00.jpg", 3),
    ("tiensevest_Leuven_Belgium_12-10-2022_08-00-00.jpg", 4),
    ("rue_de_la_loi_Liège_Belgium_12-10-2022_17-30-00.jpg", 5),
    ("rue_de_la_loi_Liège_Belgium_12-10-2022_17-45-00.jpg", 6),
    ("tiensevest_Leuven_Belgium_13-10-2022_08-00-00.jpg", 7),
]
DISTORTED = "tiensevest_Leuven_Belgium_12-10-2022_08-10-00.jpg"


@pytest.fixture(params=["local", "s3"])
def settings(request, tmp_path, db_url) -> Settings:
    base = Settings(home=tmp_path / "home", database_url=db_url, detector_runtime="torch")
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_settings")
        base = dataclasses.replace(base, object_store_uri=s3.object_store_uri, s3_endpoint_url=s3.s3_endpoint_url,
                                   s3_region=s3.s3_region)
    return base


def ingest_resource(settings: Settings) -> IngestResource:
    return IngestResource(
        database=DatabaseResource(url=settings.database_url),
        object_store=ObjectStoreResource(uri=settings.object_store_uri, s3_endpoint_url=settings.s3_endpoint_url),
        detector_runtime="torch", spool_dir=str(settings.spool_dir),
    )


def run_config(spec: str, start: str, end: str, **extra) -> dict:
    return {"ops": {"redetect_stored_images": {"config": {"start_date": start, "end_date": end, "detector": spec,
                                                          "batch_size": 2, **extra}}}}


def stored_detections(engine) -> dict[tuple[str, str, str], list[tuple]]:
    """(capture id, model name, model version) -> detection rows in image order."""
    out: dict[tuple[str, str, str], list[tuple]] = defaultdict(list)
    with engine.connect() as conn:
        for r in conn.execute(select(detections).order_by(detections.c.capture_id, detections.c.model_name,
                                                          detections.c.model_version, detections.c.seq)).mappings():
            out[(r["capture_id"], r["model_name"], r["model_version"])].append(
                (r["traffic_class"], r["label"], r["score"], r["x1"], r["y1"], r["x2"], r["y2"]))
    return dict(out)


def stored_counts(engine) -> dict[tuple[str, str, str], dict[str, int]]:
    out: dict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)
    with engine.connect() as conn:
        for cid, name, version, cls, n in conn.execute(select(capture_counts.c.capture_id, capture_counts.c.model_name,
                                                              capture_counts.c.model_version,
                                                              capture_counts.c.traffic_class, capture_counts.c["count"])):
            out[(cid, name, version)][cls] = n
    return dict(out)


def reporting_job(settings: Settings):
    """reporting_daily_job resolved with the real assets and checks, on the test database."""
    code_location = definitions.build_definitions()
    defs = dg.Definitions(
        assets=list(code_location.assets or []),
        asset_checks=list(code_location.asset_checks or []),
        jobs=[reporting_daily_job],
        resources={"database": DatabaseResource(url=settings.database_url), "ingest": ingest_resource(settings),
                   "object_store": ObjectStoreResource(uri=settings.object_store_uri,
                                                       s3_endpoint_url=settings.s3_endpoint_url)},
    )
    return defs.resolve_job_def("reporting_daily_job")


def daily_rows(engine, model: tuple[str, str]) -> dict[tuple[int, date, str], dict]:
    table = counts_tables["daily"]
    with engine.connect() as conn:
        rows = conn.execute(select(table).where(table.c.model_name == model[0], table.c.model_version == model[1])).mappings()
        return {(r["location_id"], r["window_start"].date(), r["traffic_class"]): dict(r) for r in rows}


def expected_daily(engine, model: tuple[str, str]) -> dict[tuple[int, date, str], tuple[int, int]]:
    """(location, day, class) -> (images the model processed, total count), from the ingest tables."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(captures.c.location_id, captures.c.captured_at, capture_counts.c.traffic_class, capture_counts.c["count"])
            .join(capture_counts, capture_counts.c.capture_id == captures.c.capture_id)
            .where(capture_counts.c.model_name == model[0], capture_counts.c.model_version == model[1])
        ).all()
    out: dict[tuple[int, date, str], tuple[int, int]] = {}
    for loc, at, cls, n in rows:
        images_n, total = out.get((loc, at.date(), cls), (0, 0))
        out[(loc, at.date(), cls)] = (images_n + 1, total + n)
    return out


def test_days_round_trip():
    days = [date(2022, 10, 11), date(2022, 10, 12), date(2022, 10, 13), date(2022, 10, 20), date(2022, 10, 31), date(2022, 11, 1)]
    assert encode_days(days) == "2022-10-11..2022-10-13,2022-10-20,2022-10-31..2022-11-01"
    assert decode_days(encode_days(days)) == days and encode_days([]) == "" and decode_days("") == []


def test_redetect_keeps_versions_apart_and_reports_the_new_one(settings, tmp_path):
    model_dir = build_tiny_detr(tmp_path / "model", seed=0)
    spec = f"local:{model_dir}"
    detector_a = build_detector(dataclasses.replace(settings, detector=spec))
    a = (detector_a.model_name, detector_a.model_version)

    # 1. ingest with model A through the real service, spool and worker
    ids: dict[str, str] = {}
    with LocalPlatform(settings, run_worker=False, detector=detector_a) as platform:
        for name, seed in UPLOADS:
            ids[name] = platform.service.ingest(name, images.jpeg_bytes(images.street_scene(640, 360, seed=seed))).capture_id
        with pytest.raises(DistortedImage):
            platform.service.ingest(DISTORTED, images.jpeg_bytes(images.uniform_grey()))
        assert platform.worker.drain(timeout=60)
        engine, repo, store = platform.engine, platform.repo, platform.store
        in_range = [ids[n] for n, _ in UPLOADS if "13-10-2022" not in n]
        before = stored_detections(engine)
        before_counts = stored_counts(engine)
        assert {k[1:] for k in before_counts} == {a} and len(before_counts) == len(UPLOADS)

        ingest = ingest_resource(settings)
        with dg.instance_for_test() as instance:
            # 2. the ingest model itself: every capture already has it -> nothing written, no reporting
            same = redetect_job.execute_in_process(run_config=run_config(spec, "2022-10-11", "2022-10-12"),
                                                   resources={"ingest": ingest}, instance=instance)
            out = same.output_for_node("redetect_stored_images")
            assert out["skipped_same_as_ingest"] == len(in_range) and out["redetected"] == 0
            assert stored_detections(engine) == before
            ctx = dg.build_run_status_sensor_context(sensor_name="redetect_reporting_sensor", dagster_instance=instance,
                                                     dagster_run=instance.get_run_by_id(same.run_id),
                                                     dagster_event=same.get_run_success_event())
            assert isinstance(redetect_reporting_sensor(ctx), dg.SkipReason)

            # 3. model B: new weights under the same path -> same name, new version
            build_tiny_detr(model_dir, seed=1)
            result = redetect_job.execute_in_process(run_config=run_config(spec, "2022-10-11", "2022-10-12"),
                                                     resources={"ingest": ingest}, instance=instance)
            assert result.success
            out = result.output_for_node("redetect_stored_images")
            b = (out["model_name"], out["model_version"])
            assert b[0] == a[0] and b[1] != a[1]
            assert out["captures"] == len(in_range) == out["redetected"]
            assert out["days"] == ["2022-10-11", "2022-10-12"] and out["missing_images"] == 0

            after = stored_detections(engine)
            counts = stored_counts(engine)
            # A's rows are exactly as ingested; B's exist for the captures in range only
            assert {k: v for k, v in after.items() if k[1:] == a} == before
            assert {k: v for k, v in counts.items() if k[1:] == a} == before_counts
            assert {k[0] for k in counts if k[1:] == b} == set(in_range)
            # B's detections are what model B finds on the stored images (decoded as at ingest)
            clear_model_cache()
            detector_b = build_detector(dataclasses.replace(settings, detector=spec))
            assert detector_b.model_version == b[1]
            differs = 0
            for cid in in_range:
                row = repo.get_capture(cid)
                image = ImageInput.of(decode_image(store.get(row["image_key"]), max_bytes=settings.max_upload_bytes,
                                                   max_pixels=settings.max_pixels))
                want = [(d.traffic_class.value, d.label, d.score, *d.box) for d in detector_b.detect_one(image)]
                got = after.get((cid, *b), [])
                assert [g[:2] for g in got] == [w[:2] for w in want]
                # batched vs single-image inference (padding) moves boxes by ~1e-3 px
                assert [g[2] for g in got] == [pytest.approx(w[2], abs=1e-3) for w in want]
                assert [g[3:] for g in got] == [pytest.approx(w[3:], abs=0.05) for w in want]
                differs += got != after.get((cid, *a), [])
                # the API view of each version
                assert repo.get_capture(cid, *b)["counts"] == {c: n for c, n in counts[(cid, *b)].items()}
                assert repo.get_capture(cid)["counts_model"] == {"model_name": a[0], "model_version": a[1]}
                assert {(m["model_name"], m["model_version"]) for m in repo.get_capture(cid)["models"]} == {a, b}
            assert differs > 0  # the two versions are apart, not copies
            # counts reconcile with detections for both versions, all six classes zero-filled
            for key, by_class in counts.items():
                assert len(by_class) == 6
                assert sum(by_class.values()) == len(after.get(key, [])), key
                assert Counter(d[0] for d in after.get(key, [])) == Counter({c: n for c, n in by_class.items() if n})

            # 4. rerun: replaces B's rows, no duplicates
            again = redetect_job.execute_in_process(run_config=run_config(spec, "2022-10-11", "2022-10-12"),
                                                    resources={"ingest": ingest}, instance=instance)
            assert again.success and stored_detections(engine) == after and stored_counts(engine) == counts

            # 5. the sensor asks for one reporting run per day, for version B
            run = instance.get_run_by_id(result.run_id)
            assert run.tags["traffic/model_version"] == b[1] and run.tags["traffic/redetect_days"] == "2022-10-11..2022-10-12"
            ctx = dg.build_run_status_sensor_context(sensor_name="redetect_reporting_sensor", dagster_instance=instance,
                                                     dagster_run=run, dagster_event=result.get_run_success_event())
            requests = redetect_reporting_sensor(ctx)
            assert sorted(r.partition_key for r in requests) == ["2022-10-11", "2022-10-12"]
            assert all(r.tags["traffic/model_name"] == b[0] and r.tags["traffic/model_version"] == b[1] for r in requests)
            assert len({r.run_key for r in requests}) == 2

            # 6. the reporting tables: ingest version first (no tags), then B as the sensor asked
            job = reporting_job(settings)
            for day in ("2022-10-11", "2022-10-12"):
                assert job.execute_in_process(partition_key=day, instance=instance).success
            a_rows = daily_rows(engine, a)
            for request in requests:
                report = job.execute_in_process(partition_key=request.partition_key, tags=request.tags, instance=instance)
                assert report.success
                assert all(e.passed for e in report.get_asset_check_evaluations())
            b_rows = daily_rows(engine, b)
            assert daily_rows(engine, a) == a_rows  # A's reporting rows are untouched by B's runs
            for model, rows in ((a, a_rows), (b, b_rows)):
                expected = {k: v for k, v in expected_daily(engine, model).items() if k[1] <= date(2022, 10, 12)}
                assert {k for k, r in rows.items() if r["images_accepted"]} == set(expected)
                for key, (images_n, total) in expected.items():
                    assert rows[key]["images_accepted"] == images_n and rows[key]["total_count"] == total, (model, key)
            assert {k[:2] for k in b_rows} == {k[:2] for k in a_rows}
            # the distorted image counts as received in both versions' rows, accepted in neither
            leuven_12 = [r for k, r in b_rows.items() if k[1] == date(2022, 10, 12) and r["images_distorted"]]
            assert leuven_12 and all(r["images_received"] == r["images_accepted"] + 1 for r in leuven_12)


def test_location_filter_and_skip_existing(settings, tmp_path):
    a_dir = build_tiny_detr(tmp_path / "a", seed=0)
    c_dir = build_tiny_detr(tmp_path / "c", seed=2)
    detector_a = build_detector(dataclasses.replace(settings, detector=f"local:{a_dir}"))
    with LocalPlatform(settings, run_worker=False, detector=detector_a) as platform:
        ids = {name: platform.service.ingest(name, images.jpeg_bytes(images.street_scene(640, 360, seed=seed))).capture_id
               for name, seed in UPLOADS}
        assert platform.worker.drain(timeout=60)
        ingest = ingest_resource(settings)
        config = run_config(f"local:{c_dir}", "2022-10-11", "2022-10-13", locations=["liège/belgium"])
        with dg.instance_for_test() as instance:
            first = redetect_job.execute_in_process(run_config=config, resources={"ingest": ingest}, instance=instance)
            out = first.output_for_node("redetect_stored_images")
            c = (out["model_name"], out["model_version"])
            liege = {ids[n] for n, _ in UPLOADS if "Liège" in n}
            assert out["redetected"] == len(liege) == 3
            assert {k[0] for k in stored_counts(platform.engine) if k[1:] == c} == liege
            # resume: everything already has C -> skipped, rows unchanged
            config["ops"]["redetect_stored_images"]["config"]["skip_existing"] = True
            before = stored_detections(platform.engine)
            resumed = redetect_job.execute_in_process(run_config=config, resources={"ingest": ingest}, instance=instance)
            out = resumed.output_for_node("redetect_stored_images")
            assert out["skipped_existing"] == 3 and out["redetected"] == 0
            assert stored_detections(platform.engine) == before
            # an unknown location is a configuration error, not an empty success
            bad = run_config(f"local:{c_dir}", "2022-10-11", "2022-10-13", locations=["Atlantis/Nowhere"])
            failed = redetect_job.execute_in_process(run_config=bad, resources={"ingest": ingest}, instance=instance,
                                                     raise_on_error=False)
            assert not failed.success
        with platform.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(captures)).scalar_one() == len(UPLOADS)
