"""AWS Lambda entry points: API Gateway -> ingest, SQS -> persist.

This module imports nothing heavy (no torch, pandas or dagster): the production
detector is the SageMaker backend, and clients are created once per container,
at the first invocation, then reused.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from functools import cache
from typing import Any

from ..config import Settings
from ..domain.errors import BadRequest
from .api import Api, Request, Response

log = logging.getLogger("traffic_platform.lambda")


@cache
def _settings() -> Settings:
    """The function's settings, read at the first invocation; logs become JSON lines then."""
    from ..logs import configure_logging

    settings = Settings.from_env()
    configure_logging(json_lines=True, level=os.environ.get("TRAFFIC_LOG_LEVEL", "INFO"), exclusive=True)
    return settings


@cache
def _aws_clients() -> dict[str, Any]:
    from urllib.parse import urlparse

    import boto3

    from ..storage.objectstore import open_object_store

    settings = _settings()
    # The store's S3 client (~0.1 s of a cold start) is made when a job is staged, a capture read
    # or an upload presigned: a POST /v1/images of a usual photo goes inline to SQS without it.
    store = _Lazy(lambda: open_object_store(settings),
                  can_presign=urlparse(settings.object_store_uri).scheme == "s3")
    return {"sqs": boto3.client("sqs", region_name=settings.sqs_region), "store": store}


@cache
def _ingest_api() -> Api:
    from ..detection.factory import build_detector

    settings = _settings()
    if not settings.queue_url:
        raise RuntimeError("TRAFFIC_QUEUE_URL must name the SQS queue of the persist Lambda.")
    clients = _aws_clients()
    # The repository (SQLAlchemy, a third of a cold start) is built when a route first reads:
    # POST /v1/images, the route that must answer fast, hands off to SQS without it.
    return lambda_api(settings, build_detector(settings), clients["sqs"], clients["store"], _Lazy(_repository))


class _Lazy:
    """An object built by ``build`` on its first attribute access; ``known`` attributes
    (e.g. ``can_presign``) answer without building it."""

    def __init__(self, build: Any, **known: Any):
        self._build = build
        self._made: Any = None
        self.__dict__.update(known)

    def __getattr__(self, name: str) -> Any:
        if self._made is None:
            self._made = self._build()
        return getattr(self._made, name)


def lambda_api(settings: Settings, detector: Any, sqs: Any, store: Any, repo: Any) -> Api:
    """The ingest function's :class:`Api`: SQS hand-off, captures read from the database and
    store (no spool here, see :mod:`.lookup`), readiness of database, store, queue and model."""
    from ..storage.counts import CountsReader
    from .counts_api import CountsApi
    from .lookup import StoredCaptureLookup
    from .metrics import Metrics
    from .service import IngestService
    from .sqs_handoff import SqsHandoff
    from .uploads import UploadsApi

    handoff = SqsHandoff(sqs, settings.queue_url, store)
    return Api(
        IngestService(settings, detector, handoff),
        lookup=StoredCaptureLookup(repo, store),
        readiness={
            "database": lambda: repo.ping(),
            "object_store": lambda: store.ping(),
            "queue": lambda: _queue_ready(sqs, settings.queue_url),
            "model": lambda: _model_ready(detector),
        },
        metrics=Metrics(),
        api_key=settings.api_key,
        base_path=settings.api_base_path,
        counts=CountsApi(_Lazy(lambda: CountsReader(repo.engine))),
        uploads=UploadsApi.for_store(store),
    )


def _queue_ready(sqs: Any, queue_url: str | None) -> dict[str, Any]:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return {"approximate_messages": int(attributes.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))}


def _model_ready(detector: Any) -> dict[str, Any]:
    """A SageMaker endpoint must be ``InService`` (``DescribeEndpoint``); an in-process model is
    ready once loaded."""
    endpoint = getattr(detector, "endpoint_name", None)
    if endpoint is None:
        return dict(detector.describe())
    status = _sagemaker_client(detector.client.meta.region_name).describe_endpoint(EndpointName=endpoint)["EndpointStatus"]
    if status != "InService":
        raise RuntimeError(f"SageMaker endpoint {endpoint} is {status}")
    return {"endpoint": endpoint, "endpoint_status": status}


@cache
def _sagemaker_client(region: str) -> Any:
    import boto3

    return boto3.client("sagemaker", region_name=region)


@cache
def _repository() -> Any:
    from ..storage.database import make_engine
    from ..storage.repository import Repository

    return Repository(make_engine(_settings().database_url))


def request_from_event(event: Any) -> Request:
    """API Gateway REST (v1) or HTTP API (v2) proxy event -> :class:`Request`.

    The file name may come from the query (``filename``), the path (``/v1/images/{filename}``)
    or the ``x-filename`` header. An event that is not such a document raises
    :class:`BadRequest` ``bad_event``; a body that is not valid base64, ``bad_base64``.
    """
    if not isinstance(event, dict):
        raise _bad_event("the event is not a JSON object")
    headers = _string_map(event, "headers")
    context = event.get("requestContext") or {}
    if not isinstance(context, dict):
        raise _bad_event("requestContext is not an object")
    if event.get("version") == "2.0":
        http = context.get("http")
        if not isinstance(http, dict) or not isinstance(http.get("method"), str):
            raise _bad_event("an HTTP API (v2) event needs requestContext.http.method")
        method = http["method"]
        path = event.get("rawPath") or http.get("path")
    else:
        method = event.get("httpMethod")
        path = event.get("path")
        if not isinstance(method, str):
            raise _bad_event("a REST API (v1) event needs httpMethod")
    if not isinstance(path, str) or not path.startswith("/"):
        raise _bad_event("the event has no request path")
    query = _string_map(event, "queryStringParameters")
    path_params = _string_map(event, "pathParameters")
    if "filename" in path_params and "filename" not in query:
        query["filename"] = path_params["filename"]
        path = "/v1/images"
    # An HTTP API's rawPath starts with a named stage; a REST API's path never has it (its stage
    # may even be named like a route prefix: stage "v1", path "/v1/images").
    stage = context.get("stage")
    if (event.get("version") == "2.0" and isinstance(stage, str) and stage and stage != "$default"
            and path.startswith(f"/{stage}/")):
        path = path[len(stage) + 1 :]
    return Request(method=method.upper(), path=path, query=query, headers={k.lower(): v for k, v in headers.items()},
                   body=_event_body(event))


def _bad_event(why: str) -> BadRequest:
    return BadRequest(f"The request could not be read from the API Gateway event: {why}.", code="bad_event")


def _string_map(event: dict[str, Any], name: str) -> dict[str, str]:
    value = event.get(name) or {}
    if not isinstance(value, dict):
        raise _bad_event(f"{name} is not an object")
    return {str(k): str(v) for k, v in value.items() if v is not None}


def _event_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise _bad_event("body is not a string")
    if not event.get("isBase64Encoded"):
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("The request body is marked base64-encoded but is not valid base64.", code="bad_base64") from None


def event_response(response: Response) -> dict[str, Any]:
    """:class:`Response` -> API Gateway proxy result (binary bodies base64-encoded)."""
    textual = response.content_type.startswith(("application/json", "text/"))
    return {
        "statusCode": response.status,
        "headers": {"Content-Type": response.content_type, **response.headers},
        "body": response.body.decode() if textual else base64.b64encode(response.body).decode(),
        "isBase64Encoded": not textual,
    }


def ingest_handler(event: dict[str, Any], context: Any = None, api: Api | None = None) -> dict[str, Any]:
    """API Gateway proxy -> ingest. ``api`` is injectable for tests; production builds it once."""
    try:
        api = api or _ingest_api()
    except Exception:
        log.exception("ingest Lambda could not start")
        return event_response(Response.json(503, {"error": {"code": "service_unavailable", "message": "The ingest service is starting or misconfigured; retry shortly."}}))
    try:
        response = api.handle(request_from_event(event))
    except BadRequest as exc:  # the event itself is malformed: nothing reached the API
        response = Response.error(exc)
    path = (event.get("rawPath") or event.get("path")) if isinstance(event, dict) else None
    log.info("request", extra={"event": "request", "path": path, "status": response.status})
    return event_response(response)


#: Message attribute carrying how many attempts a re-queued message has had.
ATTEMPT_ATTRIBUTE = "traffic_attempt"
SQS_MAX_DELAY_S = 900  # SQS's limit on DelaySeconds


def persist_handler(
    event: dict[str, Any], context: Any = None, persister: Any = None, store: Any = None, *,
    sqs: Any = None, queue_url: str | None = None, settings: Settings | None = None,
) -> dict[str, Any]:
    """SQS batch -> storage, reporting partial batch failures.

    A message that fails **transiently** (database or store down, throttled) is sent to
    the queue again with a delay (capped back-off, ``DelaySeconds`` ≤ 900) and its attempt
    count in the ``traffic_attempt`` attribute, and the original is acknowledged: its receive
    count never climbs, so an outage of any length cannot walk it into the dead-letter queue.
    A **permanent** failure (and an unknown one after ``TRAFFIC_PERSIST_MAX_ATTEMPTS``) is
    reported in ``batchItemFailures``: SQS redelivers it and its redrive policy moves it to
    the DLQ after ``maxReceiveCount``, with the reason in the log. ``persister``, ``store``,
    ``sqs``, ``queue_url`` and ``settings`` are injectable for tests; production builds them once.
    """
    from ..storage.objectstore import ObjectNotFound
    from .failures import PERMANENT, decide
    from .sqs_handoff import job_from_message

    if persister is None:
        persister = _default_persister()
        settings = settings or _settings()
    settings = settings or Settings.from_env()
    store = store or persister.store
    failures = []

    def failed(record: dict[str, Any], attempt: int, exc: Exception) -> None:
        decision = decide(exc, attempt, settings.persist_max_attempts, cap=settings.persist_backoff_cap_s)
        fields = {"message_id": record.get("messageId"), "attempt": attempt, "failure": decision.kind,
                  "error": decision.reason[:1000]}
        if decision.kind != PERMANENT and decision.retry and _requeue(record, attempt, decision.delay_s, sqs, queue_url, settings):
            log.warning("message re-queued", extra={"event": "persist_retry", "delay_s": round(decision.delay_s, 1), **fields})
            return
        log.error("message not stored", extra={"event": "persist_failed", **fields})
        failures.append({"itemIdentifier": record.get("messageId")})

    # Read every message first, then persist the batch (rows in one transaction when the
    # persister can), then finish each message: a failing one fails alone.
    parsed = []
    for record in event.get("Records", []):
        attempt = _attempt_of(record) + 1
        try:
            try:
                job, staged = job_from_message(record["body"], store)
            except ObjectNotFound:  # staged image gone: only a redelivery of a message already stored
                if persister.repo.capture_exists(json.loads(record["body"])["job"]["capture_id"]):
                    continue
                raise
        except Exception as exc:
            failed(record, attempt, exc)
            continue
        parsed.append((record, attempt, job, staged))
    outcomes = _persist_all(persister, [job for _, _, job, _ in parsed])
    for (record, attempt, _, staged), outcome in zip(parsed, outcomes, strict=True):
        try:
            if isinstance(outcome, Exception):
                raise outcome
            if staged:
                store.delete(staged)
        except Exception as exc:
            failed(record, attempt, exc)
    return {"batchItemFailures": failures}


def _persist_all(persister: Any, jobs: list[Any]) -> list[Any]:
    """One outcome per job (``persist``'s result or its exception); ``persist_many`` when the
    persister has it (one database transaction for the batch)."""
    if len(jobs) > 1 and hasattr(persister, "persist_many"):
        return persister.persist_many(jobs)
    outcomes: list[Any] = []
    for job in jobs:
        try:
            outcomes.append(persister.persist(job))
        except Exception as exc:  # noqa: BLE001 - reported per message
            outcomes.append(exc)
    return outcomes


def _attempt_of(record: dict[str, Any]) -> int:
    """Attempts made before this delivery: those of earlier copies (the re-sent message's
    attribute) plus this copy's earlier deliveries (SQS's ``ApproximateReceiveCount`` - 1)."""
    attribute = (record.get("messageAttributes") or {}).get(ATTEMPT_ATTRIBUTE) or {}
    try:
        earlier = int(attribute.get("stringValue") or attribute.get("StringValue") or 0)
    except ValueError:
        earlier = 0
    try:
        redeliveries = max(0, int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 1) - 1)
    except ValueError:
        redeliveries = 0
    return earlier + redeliveries


def _requeue(record: dict[str, Any], attempt: int, delay_s: float, sqs: Any, queue_url: str | None, settings: Settings) -> bool:
    """Send the message again, delayed, with its attempt count; False if that failed (then the
    original is reported failed and SQS redelivers it after its visibility timeout)."""
    try:
        sqs = sqs or _aws_clients()["sqs"]
        queue_url = queue_url or settings.queue_url or _queue_url_from_arn(sqs, record.get("eventSourceARN", ""))
        sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=record["body"],
            DelaySeconds=int(min(SQS_MAX_DELAY_S, max(1.0, delay_s))),
            MessageAttributes={ATTEMPT_ATTRIBUTE: {"DataType": "Number", "StringValue": str(attempt)}},
        )
    except Exception:
        log.exception("could not re-queue message %s", record.get("messageId"))
        return False
    return True


def _queue_url_from_arn(sqs: Any, arn: str) -> str:
    """``arn:aws:sqs:<region>:<account>:<name>`` -> the queue URL."""
    parts = arn.split(":")
    if len(parts) != 6:
        raise RuntimeError("TRAFFIC_QUEUE_URL is not set and the SQS record names no queue ARN")
    return sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]


@cache
def _default_persister() -> Any:
    from .persist import Persister

    settings = _settings()
    return Persister(_repository(), _aws_clients()["store"], max_pixels=settings.max_pixels)

