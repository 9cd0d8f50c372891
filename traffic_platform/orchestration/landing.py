"""The landing prefix: images dropped under ``landing/`` in the object store are ingested
through the same :class:`~traffic_platform.ingest.service.IngestService` as the HTTP API.

Flow: the ``landing_ingest_sensor`` (in :mod:`.sensors`) lists ``landing/`` and requests
``landing_ingest_job`` runs for batches of keys; the job reads each object and calls
``IngestService.ingest(file name, bytes)`` with the configured detector and the spool
hand-off, then runs the spool worker until what it handed off is stored, and only then
clears the object from ``landing/``:

* **accepted** -> stored under ``images/`` (and ``annotated/``) by the worker; deleted from landing;
* **distorted** -> the service hands it off as distorted (stored under ``distorted/`` with its
  reasons); deleted from landing;
* **rejected** (bad file name, not a JPEG/PNG, empty, too large: errors a retry cannot fix) ->
  moved to ``rejected/<key below landing/>`` with ``rejected/<…>.reason.json`` beside it
  (``code``, ``message``, ``details``);
* **failed** (detector, database or store unavailable, or anything unexpected) -> left in
  landing, the run fails, and the sensor requests it again later.

Object keys may only hold ``[A-Za-z0-9._/-]`` and ``%XX`` escapes, so a file name with other
characters is uploaded percent-encoded (``keys.escape_component``: ``Liège`` ->
``Li%C3%A8ge``); the job decodes the last key segment back to the file name. Objects whose
keys the store cannot address are skipped by the sensor and counted in its log.
"""

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import dagster as dg
from pydantic import Field

from ..domain.captures import ACCEPTED, DISTORTED
from ..domain.errors import PayloadTooLarge, TrafficPlatformError
from ..ingest.local import FAILED, REJECTED
from ..storage import keys
from ..storage.keys import is_valid_key
from ..storage.objectstore import ObjectInfo, ObjectNotFound, ObjectStore
from .resources import IngestResource
from .schedules import TAG_TRIGGER

if TYPE_CHECKING:
    from ..ingest.local import LocalPlatform

log = logging.getLogger(__name__)

LANDING_PREFIX = keys.LANDING_PREFIX
REJECTED_PREFIX = "rejected/"
REASON_SUFFIX = ".reason.json"

# Outcomes of one landing object: those of LocalPlatform.ingest_batch, and "gone".
GONE = "gone"


# -- listing ------------------------------------------------------------------------------


def file_name_for(key: str) -> str:
    """``landing/cams/rue_de_la_loi_Li%C3%A8ge_…jpg`` -> ``rue_de_la_loi_Liège_…jpg``."""
    return unquote(key.rsplit("/", 1)[-1], errors="strict")


def rejected_key(key: str) -> str:
    """``landing/<rest>`` -> ``rejected/<rest>`` (the key is already escaped); a key too long for
    that (and its ``.reason.json``) goes to ``rejected/long-keys/<sha256 of the key>``."""
    target = REJECTED_PREFIX + key[len(LANDING_PREFIX):]
    if is_valid_key(target + REASON_SUFFIX):
        return target
    return f"{REJECTED_PREFIX}long-keys/{hashlib.sha256(key.encode()).hexdigest()[:32]}"


#: Names a copy in progress has (rsync's ``.name.XXXXXX``, editors' ``name~``, browsers'
#: ``.crdownload``, ``.part``/``.tmp``): never taken, whatever their age.
TEMPORARY_SUFFIXES = ("~", ".part", ".tmp", ".crdownload")


def is_temporary(key: str) -> bool:
    """Whether the object's name is a hidden or temporary file (``.name``, ``name~``, ``name.part``…)."""
    name = key.rsplit("/", 1)[-1]
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


# -- the sensor's bookkeeping ---------------------------------------------------------------

BATCH_SIZE = 100  # objects per run: one model load and one worker drain serve the whole batch
MAX_PER_TICK = 1000  # objects requested per tick; the rest wait for the next tick
RETRY_AFTER_S = 3600.0  # an object still in landing an hour after its request is requested again…
MAX_ATTEMPTS = 3  # …up to three requests in all; then it stays in landing for an operator
SETTLE_S = 30.0  # default of TRAFFIC_LANDING_SETTLE_S: an object is taken once unchanged this long


@dataclass
class LandingTick:
    requests: list[dg.RunRequest]
    cursor: str
    figures: dict[str, Any] = field(default_factory=dict)


def landing_requests(store: ObjectStore, cursor: str | None, now: float, *, batch_size: int = BATCH_SIZE,
                     max_per_tick: int = MAX_PER_TICK, retry_after_s: float = RETRY_AFTER_S,
                     max_attempts: int = MAX_ATTEMPTS, settle_s: float = SETTLE_S) -> LandingTick:
    """Run requests for the objects in landing that no run has been asked to process yet.

    Only settled objects are taken: last modified ``settle_s`` ago, or listed with the same
    token for ``settle_s`` (the cursor's ``seen``: robust to a store clock that differs from
    ours); ``settle_s=0`` takes everything at once. Hidden and temporary names
    (:func:`is_temporary`) are never taken.

    The cursor remembers, per object still in landing, the token that was requested, when,
    and how often. A new or replaced object (new token) is requested at once; one that is
    still there ``retry_after_s`` after its request (the run failed or never ran) is requested
    again, at most ``max_attempts`` times. Entries of objects that left landing are dropped,
    so the cursor stays as small as the backlog. Each run key hashes its batch's
    ``key@token#attempt`` lines, so Dagster never launches the same batch twice either.
    """
    listing = store.scan(LANDING_PREFIX)
    unaddressable = listing.unaddressable
    objects = [o for o in listing.objects if not is_temporary(o.key)]
    temporary = len(listing.objects) - len(objects)
    saved = json.loads(cursor) if cursor else {}
    state: dict[str, list] = saved.get("requested", {})
    present = {o.key for o in objects}
    state = {k: v for k, v in state.items() if k in present}
    seen_before: dict[str, list] = saved.get("seen", {})
    seen: dict[str, list] = {}
    due: list[tuple[ObjectInfo, int]] = []
    in_flight = gave_up = settling = 0
    for obj in objects:
        previous = state.get(obj.key)
        if previous is None or previous[0] != obj.token:
            first_seen = seen_before.get(obj.key)
            since = first_seen[1] if first_seen and first_seen[0] == obj.token else now
            if settle_s > 0 and now - obj.modified < settle_s and now - since < settle_s:
                seen[obj.key] = [obj.token, since]  # still being written, perhaps: look again later
                settling += 1
                continue
            due.append((obj, 1))
        elif now - previous[1] < retry_after_s:
            in_flight += 1
        elif previous[2] >= max_attempts:
            gave_up += 1
        else:
            due.append((obj, previous[2] + 1))
    due = due[:max_per_tick]
    requests = []
    for start in range(0, len(due), batch_size):
        batch = due[start:start + batch_size]
        digest = hashlib.sha256("\n".join(f"{o.key}@{o.token}#{n}" for o, n in batch).encode()).hexdigest()[:32]
        requests.append(dg.RunRequest(
            run_key=f"landing:{digest}",
            run_config=landing_run_config([o.key for o, _ in batch]),
            tags={TAG_TRIGGER: "landing"},
        ))
        for obj, attempt in batch:
            state[obj.key] = [obj.token, now, attempt]
    figures = {"objects": len(objects), "requested": len(due), "runs": len(requests), "in_flight": in_flight,
               "gave_up": gave_up, "settling": settling, "temporary_names": temporary,
               "unaddressable_keys": unaddressable}
    saved = {"requested": state, **({"seen": seen} if seen else {})}
    return LandingTick(requests, json.dumps(saved, sort_keys=True), figures)


def landing_run_config(keys: Sequence[str]) -> dict[str, Any]:
    return {"ops": {"ingest_landing_objects": {"config": {"keys": list(keys)}}}}


# -- processing -----------------------------------------------------------------------------


@dataclass
class LandingSummary:
    outcomes: dict[str, str] = field(default_factory=dict)  # key -> accepted|distorted|rejected|failed|gone
    capture_ids: dict[str, str] = field(default_factory=dict)  # key -> capture id (accepted, distorted)
    problems: dict[str, str] = field(default_factory=dict)  # key -> error code / reason

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes.values() if o == outcome)

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": {o: self.count(o) for o in (ACCEPTED, DISTORTED, REJECTED, FAILED, GONE)},
            "outcomes": dict(self.outcomes),
            "capture_ids": dict(self.capture_ids),
            "problems": dict(self.problems),
        }


def process_landing(platform: "LocalPlatform", keys: Iterable[str], *, persist_timeout_s: float = 600.0,
                    run_id: str | None = None) -> LandingSummary:
    """Ingest the landing objects ``keys`` through ``platform.ingest_batch`` (see the module docstring)."""
    store, settings = platform.store, platform.settings
    summary = LandingSummary()
    read: dict[str, ObjectInfo] = {}  # key -> the object as it was when its bytes were read

    def items() -> Iterator[tuple[str, bytes, str]]:
        """The objects to ingest, read one at a time; the others get their outcome here."""
        for key in dict.fromkeys(keys):
            if not key.startswith(LANDING_PREFIX) or not is_valid_key(key):
                summary.outcomes[key] = FAILED
                summary.problems[key] = f"not an object key under {LANDING_PREFIX!r}"
                continue
            info = None
            try:
                info = store.stat(key)
                if info is None:  # processed by an earlier run, or removed
                    summary.outcomes[key] = GONE
                    continue
                file_name = file_name_for(key)
                if info.size > settings.max_upload_bytes:  # do not download it to say no
                    raise PayloadTooLarge(
                        f"The object is {info.size} bytes; the limit is {settings.max_upload_bytes} bytes.",
                        code="upload_too_large", details={"bytes": info.size, "max_bytes": settings.max_upload_bytes},
                    )
                data = store.get(key)
            except ObjectNotFound:
                summary.outcomes[key] = GONE
                continue
            except PayloadTooLarge as exc:
                _reject_into(summary, store, key, exc, info.size if info else None, run_id)
                continue
            except UnicodeDecodeError as exc:  # a %XX sequence that is not UTF-8
                _reject_into(summary, store, key, _BadName(f"The object key's name is not percent-encoded UTF-8: {exc}"),
                             info.size if info else None, run_id)
                continue
            except Exception as exc:  # noqa: BLE001 - one bad object must not stop the batch
                log.exception("landing object %s failed", key)
                summary.outcomes[key], summary.problems[key] = FAILED, f"{type(exc).__name__}: {exc}"[:500]
                continue
            read[key] = info
            yield file_name, data, key

    for outcome in platform.ingest_batch(items(), wait_s=persist_timeout_s):
        try:
            _settle(summary, store, outcome, read[outcome.tag], run_id)
        except Exception as exc:  # noqa: BLE001 - one object's clean-up must not fail the others
            log.exception("landing object %s: clean-up failed", outcome.tag)
            summary.outcomes[outcome.tag] = FAILED
            summary.problems[outcome.tag] = f"{type(exc).__name__}: {exc}"[:500]
    return summary


def _settle(summary: LandingSummary, store: ObjectStore, outcome: Any, info: ObjectInfo, run_id: str | None) -> None:
    """Record one ingested object's outcome and clear it from landing (see the module docstring)."""
    key = outcome.tag
    if outcome.error is not None or outcome.problem:
        summary.problems[key] = (
            outcome.error.code if outcome.status == DISTORTED
            else f"{outcome.error.code}: {outcome.error.message}" if outcome.error
            else outcome.problem
        )  # fmt: skip
    if outcome.status == REJECTED:  # the object itself is wrong: no retry can fix it
        _reject(store, key, outcome.error, info.size, run_id)
        summary.outcomes[key] = REJECTED
        return
    if outcome.capture_id is None:  # the detector or a dependency failed: leave it for a later run
        summary.outcomes[key] = FAILED
        return
    summary.capture_ids[key] = outcome.capture_id
    if not outcome.stored:
        summary.outcomes[key] = FAILED
        summary.problems[key] = outcome.problem or "not stored yet"
        return
    summary.outcomes[key] = outcome.status
    now = store.stat(key)
    if now is not None and now.token == info.token:  # not replaced meanwhile by a new upload
        store.delete(key)


class _BadName(TrafficPlatformError):
    code = "invalid_file_name"
    http_status = 400


def _reject_into(summary: LandingSummary, store: ObjectStore, key: str, exc: TrafficPlatformError,
                 size: int | None, run_id: str | None) -> None:
    """:func:`_reject`, recorded in ``summary``; a store failure leaves the object in landing (failed)."""
    try:
        _reject(store, key, exc, size, run_id)
    except Exception as failure:  # noqa: BLE001 - one object must not fail the batch
        log.exception("landing object %s could not be moved to %s", key, REJECTED_PREFIX)
        summary.outcomes[key], summary.problems[key] = FAILED, f"{type(failure).__name__}: {failure}"[:500]
        return
    summary.outcomes[key], summary.problems[key] = REJECTED, f"{exc.code}: {exc.message}"


def _reject(store: ObjectStore, key: str, exc: TrafficPlatformError, size: int | None, run_id: str | None) -> None:
    """Write the reason first, then move the object: a crash in between leaves it in landing."""
    target = rejected_key(key)
    reason = {
        "code": exc.code,
        "message": exc.message,
        "details": exc.details,
        "file_name": key.rsplit("/", 1)[-1],
        "landing_key": key,
        "rejected_key": target,
        "bytes": size,
        "rejected_at": datetime.now(UTC).isoformat(),
        "run_id": run_id,
    }
    store.put(target + REASON_SUFFIX, json.dumps(reason, ensure_ascii=False, indent=2, default=str).encode(),
              "application/json")
    store.move(key, target)


# -- the job --------------------------------------------------------------------------------


class LandingIngestConfig(dg.Config):
    keys: list[str] = Field(description="Object keys under landing/ to ingest (the sensor fills this in).")


@dg.op(
    name="ingest_landing_objects",
    description="Ingest landing/ objects through the ingest service; store them via the spool worker; "
    "clear them from landing (rejected ones go to rejected/ with a .reason.json).",
    tags={"kind": "ingest"},
)
def ingest_landing_objects(context: dg.OpExecutionContext, config: LandingIngestConfig,
                           ingest: IngestResource) -> dg.Output[dict]:
    bad = [k for k in config.keys if not k.startswith(LANDING_PREFIX) or not is_valid_key(k)]
    if bad:
        raise dg.Failure(f"Only object keys under {LANDING_PREFIX!r} can be ingested; got {bad[:5]}.")
    with ingest.open_platform() as platform:
        model = platform.detector.describe() if platform.detector else {}
        summary = process_landing(platform, config.keys, persist_timeout_s=ingest.persist_timeout_s,
                                  run_id=context.run_id)
    counts = summary.to_dict()["counts"]
    context.log.info(f"landing: {counts}")
    for key, problem in summary.problems.items():
        context.log.info(f"{key}: {summary.outcomes[key]} ({problem})")
    if counts[FAILED]:
        failed = {k: summary.problems.get(k) for k, o in summary.outcomes.items() if o == FAILED}
        raise dg.Failure(
            f"{counts[FAILED]} landing object(s) could not be ingested and stay in {LANDING_PREFIX} "
            "(the sensor requests them again later).",
            metadata={"failed": dg.MetadataValue.json(failed), **_count_metadata(counts)},
        )
    return dg.Output(summary.to_dict(), metadata={
        **_count_metadata(counts),
        "model": dg.MetadataValue.json(model),
        "problems": dg.MetadataValue.json(summary.problems),
    })


def _count_metadata(counts: dict[str, int]) -> dict[str, dg.MetadataValue]:
    return {name: dg.MetadataValue.int(n) for name, n in counts.items()}


@dg.job(
    name="landing_ingest_job",
    description="Ingest a batch of images dropped under landing/ in the object store (requested by "
    "landing_ingest_sensor) through the same ingest service as the HTTP API.",
    tags={TAG_TRIGGER: "landing"},
)
def landing_ingest_job() -> None:
    ingest_landing_objects()
