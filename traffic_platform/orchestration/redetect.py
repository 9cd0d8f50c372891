"""Re-detection (backfill with a new model version), kept apart from the ingest version.

``redetect_job`` loads the stored images of the accepted captures of a range of local days
(``captures.captured_at``), optionally of some locations only, decodes them exactly as the
ingest service does, runs the named detector on them in batches and stores its detections
with :meth:`Repository.save_detections` under the detector's own (model_name,
model_version). Rows of every other version, the ingest version included, are never
touched; a capture whose ingest model *is* that version is skipped (its rows are the ingest
rows). Re-running the same version replaces that version's rows (idempotent).

When it is done the run carries the tags ``traffic/model_name``/``traffic/model_version``
(the detector's) and ``traffic/redetect_days`` (the days it wrote, as ranges); on success
``redetect_reporting_sensor`` (in :mod:`.sensors`) requests one ``reporting_daily_job`` run
per such day with those model tags (:func:`.jobs.reporting_run_request`), so the reporting
tables get the new version's rows beside the ingest version's.
"""

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field
from sqlalchemy import and_, or_, select

from ..domain.captures import ACCEPTED
from ..storage.objectstore import ObjectNotFound
from ..storage.tables import capture_counts, captures, locations
from .assets.reporting import TAG_MODEL_NAME, TAG_MODEL_VERSION
from .resources import IngestResource
from .schedules import TAG_TRIGGER
from .sql.aggregation import ModelKey

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ..config import Settings
    from ..detection.base import Detector, ImageInput
    from ..storage.objectstore import ObjectStore
    from ..storage.repository import Repository

TAG_REDETECT_DAYS = "traffic/redetect_days"
PAGE = 1000  # capture rows read per query (keyset pagination, the connection is closed between pages)


# -- days as compact ranges (for the run tag) -------------------------------------------------


def encode_days(days: Sequence[date]) -> str:
    """``[10-11, 10-12, 10-13, 10-20]`` -> ``"2022-10-11..2022-10-13,2022-10-20"``."""
    out: list[str] = []
    ordered = sorted(set(days))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] - ordered[j] == timedelta(days=1):
            j += 1
        out.append(ordered[i].isoformat() if i == j else f"{ordered[i].isoformat()}..{ordered[j].isoformat()}")
        i = j + 1
    return ",".join(out)


def decode_days(text: str) -> list[date]:
    days: list[date] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("..")
        day, end = date.fromisoformat(first), date.fromisoformat(last or first)
        while day <= end:
            days.append(day)
            day += timedelta(days=1)
    return days


# -- selection ---------------------------------------------------------------------------------


class RedetectConfig(dg.Config):
    start_date: str = Field(description="First local day (captured_at, YYYY-MM-DD).")
    end_date: str = Field(description="Last local day, inclusive (YYYY-MM-DD).")
    detector: str = Field(description="Detector spec as TRAFFIC_DETECTOR: local:<id|dir|s3://…>, onnx:<path>, "
                                      "sagemaker:<endpoint>.")
    locations: list[str] = Field(default_factory=list, description="Only these locations: 'City/Country' or "
                                 "'address/City/Country' (file-name tokens, case-insensitive); empty: all.")
    batch_size: int = Field(default=16, ge=1, description="Images per detector call.")
    fetch_threads: int = Field(default=8, ge=1, description="Parallel object-store reads and decodes.")
    skip_existing: bool = Field(default=False, description="Skip captures that already have this version "
                                "(resume a stopped backfill) instead of replacing their rows.")


@dataclass(frozen=True)
class Selection:
    start: datetime  # local, inclusive
    end: datetime  # local, exclusive
    location_ids: tuple[int, ...] | None  # None: every location

    @classmethod
    def resolve(cls, engine: "Engine", start_date: str, end_date: str, wanted: Sequence[str]) -> "Selection":
        first, last = date.fromisoformat(start_date), date.fromisoformat(end_date)
        if last < first:
            raise ValueError(f"end_date {end_date} is before start_date {start_date}")
        ids: tuple[int, ...] | None = None
        if wanted:
            keys = {w.strip().casefold() for w in wanted}
            for key in keys:
                if not 2 <= len(key.split("/")) <= 3:
                    raise ValueError(f"location {key!r} must be 'City/Country' or 'address/City/Country'")
            with engine.connect() as conn:
                rows = conn.execute(select(locations.c.id, locations.c.address, locations.c.city, locations.c.country)).all()
            ids = tuple(sorted(
                int(i) for i, address, city, country in rows
                if f"{city}/{country}".casefold() in keys or f"{address}/{city}/{country}".casefold() in keys
            ))
        return cls(datetime.combine(first, dtime()), datetime.combine(last + timedelta(days=1), dtime()), ids)


@dataclass(frozen=True)
class StoredCapture:
    capture_id: str
    image_key: str
    captured_at: datetime
    ingest_model: ModelKey | None


def stored_captures(engine: "Engine", selection: Selection, page: int = PAGE) -> Iterator[list[StoredCapture]]:
    """Pages of the accepted captures in ``selection`` that have a stored image, in captured_at order."""
    if selection.location_ids == ():
        return
    conditions = [
        captures.c.status == ACCEPTED,
        captures.c.image_key.is_not(None),
        captures.c.captured_at >= selection.start,
        captures.c.captured_at < selection.end,
    ]
    if selection.location_ids is not None:
        conditions.append(captures.c.location_id.in_(selection.location_ids))
    after: tuple[datetime, str] | None = None
    while True:
        query = select(captures.c.capture_id, captures.c.image_key, captures.c.captured_at, captures.c.model_name,
                       captures.c.model_version).where(and_(*conditions))
        if after is not None:
            query = query.where(or_(captures.c.captured_at > after[0],
                                    and_(captures.c.captured_at == after[0], captures.c.capture_id > after[1])))
        query = query.order_by(captures.c.captured_at, captures.c.capture_id).limit(page)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        yield [
            StoredCapture(cid, key, at, ModelKey(name, version) if name is not None and version is not None else None)
            for cid, key, at, name, version in rows
        ]
        after = (rows[-1][2], rows[-1][0])


def _with_model(engine: "Engine", capture_ids: Sequence[str], model: ModelKey) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(
            select(capture_counts.c.capture_id).distinct().where(
                capture_counts.c.capture_id.in_(list(capture_ids)),
                capture_counts.c.model_name == model.model_name,
                capture_counts.c.model_version == model.model_version,
            )
        ))


# -- the work ----------------------------------------------------------------------------------


@dataclass
class RedetectSummary:
    model: ModelKey
    captures: int = 0  # accepted captures selected
    redetected: int = 0  # captures whose detections were written for the model
    detections: int = 0
    skipped_same_as_ingest: int = 0
    skipped_existing: int = 0
    missing_images: list[str] = field(default_factory=list)  # capture ids whose image is not in the store
    undecodable: list[str] = field(default_factory=list)
    days: set[date] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model.model_name,
            "model_version": self.model.model_version,
            "captures": self.captures,
            "redetected": self.redetected,
            "detections": self.detections,
            "skipped_same_as_ingest": self.skipped_same_as_ingest,
            "skipped_existing": self.skipped_existing,
            "missing_images": len(self.missing_images),
            "undecodable": len(self.undecodable),
            "days": sorted(d.isoformat() for d in self.days),
        }


def redetect(engine: "Engine", repo: "Repository", store: "ObjectStore", detector: "Detector", settings: "Settings",
             selection: Selection, *, batch_size: int = 16, fetch_threads: int = 8, skip_existing: bool = False,
             log: Any = None) -> RedetectSummary:
    """Run ``detector`` on the stored images of ``selection`` and save its detections (see module doc)."""
    from ..detection.base import ImageInput
    from ..domain.images import decode_image

    model = ModelKey(detector.model_name, detector.model_version)
    summary = RedetectSummary(model)

    def load(capture: StoredCapture) -> tuple[StoredCapture, "ImageInput | None", str | None]:
        try:
            data = store.get(capture.image_key)
        except ObjectNotFound:
            return capture, None, "missing"
        try:
            decoded = decode_image(data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels)
        except Exception:  # noqa: BLE001 - it decoded at ingest; record and go on
            return capture, None, "undecodable"
        return capture, ImageInput.of(decoded), None

    with ThreadPoolExecutor(max_workers=fetch_threads, thread_name_prefix="redetect-load") as pool:
        for page in stored_captures(engine, selection):
            summary.captures += len(page)
            todo = []
            for capture in page:
                if capture.ingest_model == model:
                    summary.skipped_same_as_ingest += 1
                else:
                    todo.append(capture)
            if skip_existing and todo:
                done = _with_model(engine, [c.capture_id for c in todo], model)
                summary.skipped_existing += len(done)
                todo = [c for c in todo if c.capture_id not in done]
            for start in range(0, len(todo), batch_size):
                loaded = list(pool.map(load, todo[start:start + batch_size]))
                ready = [(c, image) for c, image, problem in loaded if image is not None]
                for capture, _, problem in loaded:
                    if problem == "missing":
                        summary.missing_images.append(capture.capture_id)
                    elif problem == "undecodable":
                        summary.undecodable.append(capture.capture_id)
                if not ready:
                    continue
                results = detector.detect([image for _, image in ready])
                for (capture, _), found in zip(ready, results, strict=True):
                    repo.save_detections(capture.capture_id, model.model_name, model.model_version, found)
                    summary.redetected += 1
                    summary.detections += len(found)
                    summary.days.add(capture.captured_at.date())
            if log is not None:
                log.info(f"re-detection: {summary.redetected}/{summary.captures} captures so far")
    return summary


@dg.op(
    name="redetect_stored_images",
    description="Run a detector on the stored images of the accepted captures of a day range and save its "
    "detections as its own model version (other versions untouched).",
    tags={"kind": "detection"},
)
def redetect_stored_images(context: dg.OpExecutionContext, config: RedetectConfig,
                           ingest: IngestResource) -> dg.Output[dict]:
    from ..detection.factory import build_detector
    from ..storage.repository import Repository

    try:
        settings = replace(ingest.settings(), detector=config.detector)
        settings.validate()
        engine = ingest.database.get_engine()
        selection = Selection.resolve(engine, config.start_date, config.end_date, config.locations)
    except ValueError as exc:
        raise dg.Failure(f"Invalid re-detection config: {exc}") from None
    if selection.location_ids == ():
        raise dg.Failure(f"No location matches {config.locations}.")
    # Built for this run, not taken from a process cache: a new version may sit under the same path.
    if settings.detector.startswith("local:"):
        from ..detection.transformers_backend import clear_model_cache

        clear_model_cache()  # detectors built earlier keep their own loaded model
    detector = build_detector(settings)
    began = time.perf_counter()
    summary = redetect(
        engine, Repository(engine), ingest.object_store.get_store(), detector, settings, selection,
        batch_size=config.batch_size, fetch_threads=config.fetch_threads, skip_existing=config.skip_existing,
        log=context.log,
    )
    seconds = time.perf_counter() - began
    if summary.skipped_same_as_ingest:
        context.log.warning(f"{summary.skipped_same_as_ingest} capture(s) were ingested with {summary.model}: "
                            "left as they are (their rows are the ingest rows).")
    if summary.missing_images or summary.undecodable:
        context.log.warning(f"images missing from the store: {summary.missing_images[:20]}; "
                            f"undecodable: {summary.undecodable[:20]} (the new version did not process them)")
    context.instance.add_run_tags(context.run_id, {
        TAG_MODEL_NAME: summary.model.model_name,
        TAG_MODEL_VERSION: summary.model.model_version,
        TAG_REDETECT_DAYS: encode_days(sorted(summary.days)),
    })
    result = summary.to_dict()
    return dg.Output(result, metadata={
        "model_name": summary.model.model_name,
        "model_version": summary.model.model_version,
        "captures": dg.MetadataValue.int(summary.captures),
        "redetected": dg.MetadataValue.int(summary.redetected),
        "detections": dg.MetadataValue.int(summary.detections),
        "skipped_same_as_ingest": dg.MetadataValue.int(summary.skipped_same_as_ingest),
        "skipped_existing": dg.MetadataValue.int(summary.skipped_existing),
        "missing_images": dg.MetadataValue.int(len(summary.missing_images)),
        "undecodable": dg.MetadataValue.int(len(summary.undecodable)),
        "days": dg.MetadataValue.json(result["days"]),
        "images_per_second": dg.MetadataValue.float(round(summary.redetected / seconds, 2) if seconds else 0.0),
    })


@dg.job(
    name="redetect_job",
    description="Re-detect the stored images of a local-day range with another model version (backfill); "
    "redetect_reporting_sensor then rebuilds those days' reporting for that version.",
    tags={TAG_TRIGGER: "redetect"},
)
def redetect_job() -> None:
    redetect_stored_images()
