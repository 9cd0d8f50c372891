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


def test_transient_failures_are_requeued_with_a_delay_never_dead_lettered(s3_settings, s3_server, db_url, tiny_detector):
    """A database outage: each failed delivery is sent again delayed (attempt count in an attribute)
    and acknowledged, so the receive count never reaches maxReceiveCount; a permanent failure is
    reported and SQS's redrive moves it to the DLQ."""
    import time
    import uuid

    from traffic_platform.config import Settings

    from .sqs_lambda import create_queue_with_dlq, poll_once, queue_depth

    sqs = boto3.client("sqs", endpoint_url=s3_server, region_name=s3_settings.s3_region)
    queue_url, dlq_url = create_queue_with_dlq(sqs, f"requeue-{uuid.uuid4().hex[:8]}", max_receive_count=2, visibility_s=1)
    store = open_object_store(s3_settings)
    engine = make_engine(db_url)
    upgrade(engine)
    good = Persister(Repository(engine), store)
    api = Api(IngestService(s3_settings, tiny_detector, SqsHandoff(sqs, queue_url, store)))
    response = ingest_handler(rest_v1_event(images.jpeg_bytes(images.street_scene(320, 240, seed=7)), NAME), None, api=api)
    capture_id = json.loads(response["body"])["capture_id"]

    class DatabaseDown:
        store = good.store
        repo = good.repo

        @staticmethod
        def persist(job):
            raise ConnectionRefusedError(111, "Can't connect to MySQL server")

    fast = Settings(persist_max_attempts=2, persist_backoff_cap_s=1.0)  # delays of 1 s (SQS's smallest)
    for attempt in range(1, 5):  # twice maxReceiveCount, and past max_attempts
        deadline = time.monotonic() + 10
        while not (n := poll_once(sqs, queue_url, persister=DatabaseDown, settings=fast)[0]) and time.monotonic() < deadline:
            pass
        assert n == 1, f"attempt {attempt}: the re-queued message did not come back"
        assert queue_depth(sqs, dlq_url) == 0
    messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=3, MessageAttributeNames=["All"],
                                   AttributeNames=["All"])["Messages"]
    assert messages[0]["MessageAttributes"]["traffic_attempt"]["StringValue"] == "4"
    assert messages[0]["Attributes"]["ApproximateReceiveCount"] == "1"  # a fresh message each time
    sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"], VisibilityTimeout=0)
    assert poll_once(sqs, queue_url, wait_s=3, persister=good, settings=fast) == (1, {"batchItemFailures": []})
    assert good.repo.capture_exists(capture_id) and queue_depth(sqs, queue_url) == 0

    sqs.send_message(QueueUrl=queue_url, MessageBody="{not json")  # permanent: reported, redriven to the DLQ
    for _ in range(2):
        time.sleep(1.1)
        assert poll_once(sqs, queue_url, wait_s=3, persister=good, settings=fast)[1]["batchItemFailures"]
    time.sleep(1.1)
    sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)  # the third receive redrives it
    assert queue_depth(sqs, dlq_url) == 1
    for url in (queue_url, dlq_url):
        sqs.delete_queue(QueueUrl=url)
    engine.dispose()
