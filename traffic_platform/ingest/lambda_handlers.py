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
    from .counts_api import CountsApi
    from .metrics import Metrics
    from .service import IngestService
    from .sqs_handoff import SqsHandoff

    settings = _settings()
    if not settings.queue_url:
        raise RuntimeError("TRAFFIC_QUEUE_URL must name the SQS queue of the persist Lambda.")
    clients = _aws_clients()
    handoff = SqsHandoff(clients["sqs"], settings.queue_url, clients["store"])
    service = IngestService(settings, build_detector(settings), handoff)
    return Api(service, metrics=Metrics(), api_key=settings.api_key, counts=CountsApi.for_url(settings.database_url))


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


def persist_handler(event: dict[str, Any], context: Any = None, persister: Any = None, store: Any = None) -> dict[str, Any]:
    """SQS batch -> storage, reporting partial batch failures so only failed messages return to the queue."""
    from .sqs_handoff import job_from_message

    persister = persister or _default_persister()
    store = store or persister.store
    failures = []
    for record in event.get("Records", []):
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
            log.error("message not stored", extra={"event": "persist_failed", "message_id": record.get("messageId"),
                                                   "error": f"{type(exc).__name__}: {exc}"[:1000]})
            failures.append({"itemIdentifier": record.get("messageId")})
    return {"batchItemFailures": failures}


@cache
def _default_persister() -> Any:
    from ..storage.database import make_engine
    from ..storage.repository import Repository
    from .persist import Persister

    settings = _settings()
    return Persister(
        Repository(make_engine(settings.database_url)), _aws_clients()["store"], max_pixels=settings.max_pixels
    )

