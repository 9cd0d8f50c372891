"""AWS Lambda entry points: API Gateway -> ingest, SQS -> persist.

This module imports nothing heavy (no torch, pandas or dagster): the production
detector is the SageMaker backend, and clients are created once per container,
at the first invocation, then reused.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from functools import cache
from typing import Any

from ..config import Settings
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
    import boto3

    from ..storage.objectstore import open_object_store

    settings = _settings()
    return {"sqs": boto3.client("sqs", region_name=settings.s3_region), "store": open_object_store(settings)}


@cache
def _ingest_api() -> Api:
    from ..detection.factory import build_detector
    from .metrics import Metrics
    from .service import IngestService
    from .sqs_handoff import SqsHandoff

    settings = _settings()
    if not settings.queue_url:
        raise RuntimeError("TRAFFIC_QUEUE_URL must name the SQS queue of the persist Lambda.")
    clients = _aws_clients()
    handoff = SqsHandoff(clients["sqs"], settings.queue_url, clients["store"])
    service = IngestService(settings, build_detector(settings), handoff)
    return Api(service, metrics=Metrics(), api_key=settings.api_key)


def request_from_event(event: dict[str, Any]) -> Request:
    """API Gateway REST (v1) or HTTP API (v2) proxy event -> :class:`Request`.

    The file name may come from the query (``filename``), the path (``/v1/images/{filename}``)
    or the ``x-filename`` header.
    """
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items() if v is not None}
    if event.get("version") == "2.0":
        method = event["requestContext"]["http"]["method"]
        path = event.get("rawPath") or event["requestContext"]["http"]["path"]
    else:
        method = event.get("httpMethod", "GET")
        path = event.get("path") or "/"
    query = dict(event.get("queryStringParameters") or {})
    path_params = event.get("pathParameters") or {}
    if "filename" in path_params and "filename" not in query:
        query["filename"] = path_params["filename"]
        path = "/v1/images"
    stage = (event.get("requestContext") or {}).get("stage")
    if stage and stage != "$default" and path.startswith(f"/{stage}/"):
        path = path[len(stage) + 1 :]
    body = event.get("body") or ""
    data = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8") if isinstance(body, str) else body
    return Request(method=method, path=path, query=query, headers=headers, body=data)


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
    response = api.handle(request_from_event(event))
    log.info("request", extra={"event": "request", "path": event.get("rawPath") or event.get("path"),
                               "status": response.status})
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
    from .failures import PERMANENT, decide
    from .sqs_handoff import job_from_message

    if persister is None:
        persister = _default_persister()
        settings = settings or _settings()
    settings = settings or Settings.from_env()
    store = store or persister.store
    failures = []
    for record in event.get("Records", []):
        attempt = _attempt_of(record) + 1
        try:
            try:
                job, staged = job_from_message(record["body"], store)
            except KeyError:  # staged image gone: a redelivery of a message already stored?
                if persister.repo.capture_exists(json.loads(record["body"])["job"]["capture_id"]):
                    continue
                raise
            persister.persist(job)
            if staged:
                store.delete(staged)
        except Exception as exc:
            decision = decide(exc, attempt, settings.persist_max_attempts, cap=settings.persist_backoff_cap_s)
            fields = {"message_id": record.get("messageId"), "attempt": attempt, "failure": decision.kind,
                      "error": decision.reason[:1000]}
            if decision.kind != PERMANENT and decision.retry and _requeue(record, attempt, decision.delay_s, sqs, queue_url, settings):
                log.warning("message re-queued", extra={"event": "persist_retry", "delay_s": round(decision.delay_s, 1), **fields})
                continue
            log.error("message not stored", extra={"event": "persist_failed", **fields})
            failures.append({"itemIdentifier": record.get("messageId")})
    return {"batchItemFailures": failures}


def _attempt_of(record: dict[str, Any]) -> int:
    attribute = (record.get("messageAttributes") or {}).get(ATTEMPT_ATTRIBUTE) or {}
    try:
        return int(attribute.get("stringValue") or attribute.get("StringValue") or 0)
    except ValueError:
        return 0


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
    from ..storage.database import make_engine
    from ..storage.repository import Repository
    from .persist import Persister

    settings = _settings()
    return Persister(
        Repository(make_engine(settings.database_url)), _aws_clients()["store"], max_pixels=settings.max_pixels
    )

