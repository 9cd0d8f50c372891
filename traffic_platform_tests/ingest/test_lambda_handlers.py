"""The Lambda adapters: API Gateway v1/v2 events -> ingest -> SQS (moto over HTTP) -> persist handler."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import boto3
import pytest

from traffic_platform.ingest.api import Api
from traffic_platform.ingest.lambda_handlers import ingest_handler, persist_handler
from traffic_platform.ingest.persist import Persister
from traffic_platform.ingest.service import IngestService
from traffic_platform.ingest.sqs_handoff import INCOMING_PREFIX, SqsHandoff
from traffic_platform.storage.database import make_engine, upgrade
from traffic_platform.storage.objectstore import open_object_store
from traffic_platform.storage.repository import Repository

from .. import images

NAME = "tiensevest_Leuven_Belgium_12-10-2022_10-51-38.jpg"


def test_ingest_module_imports_nothing_heavy():
    code = (
        "import sys, traffic_platform.ingest.lambda_handlers\n"
        "heavy = [m for m in ('torch', 'pandas', 'dagster', 'transformers', 'onnxruntime') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def aws_home(s3_settings, s3_server, db_url, tiny_detector):
    """Ingest API over SQS + S3 (moto over HTTP), persister over the database."""
    sqs = boto3.client("sqs", endpoint_url=s3_server, region_name=s3_settings.s3_region)
    queue_url = sqs.create_queue(QueueName=f"persist-{abs(hash(db_url)) % 10**8}")["QueueUrl"]
    store = open_object_store(s3_settings)
    engine = make_engine(db_url)
    upgrade(engine)
    handoff = SqsHandoff(sqs, queue_url, store, inline_limit=20_000)
    api = Api(IngestService(s3_settings, tiny_detector, handoff))
    yield api, sqs, queue_url, store, Persister(Repository(engine), store)
    sqs.delete_queue(QueueUrl=queue_url)
    engine.dispose()


def rest_v1_event(body: bytes, filename: str) -> dict:
    return {
        "resource": "/v1/images",
        "path": "/v1/images",
        "httpMethod": "POST",
        "headers": {"Content-Type": "image/jpeg"},
        "queryStringParameters": {"filename": filename},
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
        "requestContext": {"stage": "prod"},
    }


def http_v2_event(body: bytes, filename: str) -> dict:
    return {
        "version": "2.0",
        "routeKey": "POST /v1/images/{filename}",
        "rawPath": f"/v1/images/{filename}",
        "headers": {"content-type": "image/jpeg"},
        "pathParameters": {"filename": filename},
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
        "requestContext": {"http": {"method": "POST", "path": f"/v1/images/{filename}"}, "stage": "$default"},
    }


def receive_all(sqs, queue_url: str) -> list[dict]:
    out = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", []):
        out += batch
    return out


def as_sqs_event(messages: list[dict]) -> dict:
    return {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"], "eventSource": "aws:sqs"} for m in messages]}


@pytest.mark.parametrize("make_event", [rest_v1_event, http_v2_event])
def test_api_gateway_event_to_stored_capture(aws_home, make_event):
    api, sqs, queue_url, store, persister = aws_home
    small = images.jpeg_bytes(images.street_scene(320, 240, seed=1), quality=60)
    big = images.png_bytes(images.street_scene(640, 360, seed=2))
    assert len(small) < 20_000 < len(big)
    answers = []
    for name, data in ((NAME, small), (NAME.replace(".jpg", ".png"), big)):
        response = ingest_handler(make_event(data, name), None, api=api)
        assert response["statusCode"] == 201, response
        answers.append(json.loads(response["body"]))
    messages = receive_all(sqs, queue_url)
    assert len(messages) == 2
    staged = [json.loads(m["Body"]).get("image_key") for m in messages]
    assert sum(1 for k in staged if k) == 1 and any(k and k.startswith(INCOMING_PREFIX) for k in staged)

    result = persist_handler(as_sqs_event(messages), None, persister=persister)
    assert result == {"batchItemFailures": []}
    for answer, data in zip(answers, (small, big), strict=True):
        row = persister.repo.get_capture(answer["capture_id"])
        assert row["status"] == "accepted" and row["counts"] == answer["counts"]
        assert store.get(row["image_key"]) == data
    assert list(store.list(INCOMING_PREFIX)) == []  # staged copies are removed once stored

    # SQS delivers at least once: the same batch again changes nothing
    assert persist_handler(as_sqs_event(messages), None, persister=persister) == {"batchItemFailures": []}
    assert persister.repo.get_capture(answers[0]["capture_id"])["detections"] == answers[0]["detections"]


def test_errors_are_rendered_for_api_gateway(aws_home):
    api = aws_home[0]
    response = ingest_handler(rest_v1_event(b"not an image", NAME), None, api=api)
    assert response["statusCode"] == 415
    assert json.loads(response["body"])["error"]["code"] == "not_an_image"
    response = ingest_handler(rest_v1_event(b"x", "nonsense.jpg"), None, api=api)
    assert response["statusCode"] == 400 and json.loads(response["body"])["error"]["code"] == "file_name_missing_parts"


def test_persist_reports_only_failed_messages(aws_home):
    api, sqs, queue_url, store, persister = aws_home
    ingest_handler(rest_v1_event(images.jpeg_bytes(images.street_scene(320, 240, seed=5)), NAME), None, api=api)
    good = receive_all(sqs, queue_url)
    event = as_sqs_event(good)
    event["Records"].append({"messageId": "broken-1", "body": "{not json", "eventSource": "aws:sqs"})
    assert persist_handler(event, None, persister=persister) == {"batchItemFailures": [{"itemIdentifier": "broken-1"}]}


def test_misconfigured_ingest_lambda_answers_503(monkeypatch):
    from traffic_platform.ingest import lambda_handlers

    for fn in (lambda_handlers._settings, lambda_handlers._aws_clients, lambda_handlers._ingest_api):
        fn.cache_clear()
    monkeypatch.setenv("TRAFFIC_DETECTOR", "sagemaker:none")
    monkeypatch.delenv("TRAFFIC_QUEUE_URL", raising=False)
    response = ingest_handler(rest_v1_event(b"x", NAME))
    assert response["statusCode"] == 503
    assert json.loads(response["body"])["error"]["code"] == "service_unavailable"
    lambda_handlers._settings.cache_clear()
