"""The Lambda adapters: API Gateway v1/v2 events -> ingest -> SQS (moto over HTTP) -> persist handler."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys

import boto3
import pytest

from traffic_platform.config import Settings
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


def test_a_cold_ingest_function_answers_images_without_loading_sqlalchemy(tmp_path):
    """The repository is built on the first read; POST /v1/images never needs it (cold-start cost)."""
    code = (
        "import sys\n"
        "from traffic_platform.ingest import lambda_handlers as lh\n"
        "api = lh._ingest_api()\n"
        "print(sorted(m for m in ('sqlalchemy', 'pymysql') if m in sys.modules))\n"
        "api.readiness['database']()\n"  # the first read builds it
        "print(sorted(m for m in ('sqlalchemy',) if m in sys.modules))\n"
    )
    env = {**os.environ, "TRAFFIC_DETECTOR": "sagemaker:endpoint", "TRAFFIC_HOME": str(tmp_path),
           "TRAFFIC_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
           "TRAFFIC_OBJECT_STORE_URI": "s3://bucket", "TRAFFIC_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
           "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "eu-west-1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "['sqlalchemy']"]


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


# -- the same answers as the embedded home -----------------------------------------------------


@pytest.fixture
def lambda_home(s3_settings, s3_server, db_url, tiny_detector):
    """The ingest function's own Api (``lambda_api``) over moto SQS + S3 and the database."""
    from traffic_platform.ingest.lambda_handlers import lambda_api

    sqs = boto3.client("sqs", endpoint_url=s3_server, region_name=s3_settings.s3_region)
    queue_url = sqs.create_queue(QueueName=f"persist-{abs(hash(db_url)) % 10**8}-l")["QueueUrl"]
    settings = dataclasses.replace(s3_settings, queue_url=queue_url, api_key="k3y", api_base_path="/traffic")
    store = open_object_store(settings)
    engine = make_engine(db_url)
    upgrade(engine)
    repo = Repository(engine)
    yield lambda_api(settings, tiny_detector, sqs, store, repo), sqs, queue_url, Persister(repo, store)
    sqs.delete_queue(QueueUrl=queue_url)
    engine.dispose()


def get_event(path: str, key: str | None = "k3y") -> dict:
    return {"version": "2.0", "rawPath": path, "headers": {"x-api-key": key} if key else {},
            "requestContext": {"http": {"method": "GET", "path": path}, "stage": "$default"}}


def test_lambda_answers_captures_like_the_embedded_home(lambda_home):
    api, sqs, queue_url, persister = lambda_home
    data = images.png_bytes(images.street_scene(320, 240, seed=3))
    event = rest_v1_event(data, NAME)  # a PNG sent with a .jpg name
    event["path"] = "/traffic/v1/images"  # custom domain with a base path
    event["headers"]["x-api-key"] = "k3y"
    posted = ingest_handler(event, None, api=api)
    assert posted["statusCode"] == 201, posted
    capture_id = json.loads(posted["body"])["capture_id"]

    queued = ingest_handler(get_event(f"/traffic/v1/captures/{capture_id}"), None, api=api)
    assert queued["statusCode"] == 404
    error = json.loads(queued["body"])["error"]
    assert error["code"] == "capture_not_found" and error["details"]["may_be_queued"] is True

    assert persist_handler(as_sqs_event(receive_all(sqs, queue_url)), None, persister=persister) == {"batchItemFailures": []}
    status = ingest_handler(get_event(f"/traffic/v1/captures/{capture_id}"), None, api=api)
    assert status["statusCode"] == 200 and json.loads(status["body"])["status"] == "stored"
    image = ingest_handler(get_event(f"/traffic/v1/captures/{capture_id}/image"), None, api=api)
    assert image["statusCode"] == 200 and image["headers"]["Content-Type"] == "image/png"
    assert base64.b64decode(image["body"]) == data
    annotated = ingest_handler(get_event(f"/v1/captures/{capture_id}/annotated"), None, api=api)
    assert annotated["statusCode"] == 200 and annotated["headers"]["Content-Type"] == "image/jpeg"


def test_lambda_readiness_checks_every_dependency(lambda_home):
    api = lambda_home[0]
    with_key = json.loads(ingest_handler(get_event("/readyz"), None, api=api)["body"])
    assert set(with_key["checks"]) == {"database", "object_store", "queue", "model"}
    assert with_key["checks"]["queue"] == {"ok": True, "approximate_messages": 0}
    assert with_key["checks"]["database"]["ok"] and with_key["checks"]["object_store"]["ok"]
    assert with_key["checks"]["model"]["ok"] and "model_name" in with_key["checks"]["model"]
    without = json.loads(ingest_handler(get_event("/readyz", key=None), None, api=api)["body"])
    assert without["checks"] == {name: {"ok": True} for name in with_key["checks"]}


def test_readiness_details_need_the_key_and_never_show_passwords(lambda_home):
    api = lambda_home[0]

    def broken():
        raise RuntimeError("cannot reach mysql+pymysql://app:hunter2@db:3306/traffic in bucket secret-bucket")

    api.readiness["database"] = broken
    anonymous = ingest_handler(get_event("/readyz", key=None), None, api=api)
    assert anonymous["statusCode"] == 503
    assert json.loads(anonymous["body"])["checks"]["database"] == {"ok": False}
    assert "secret-bucket" not in anonymous["body"] and "hunter2" not in anonymous["body"]
    wrong = ingest_handler(get_event("/readyz", key="nope"), None, api=api)
    assert json.loads(wrong["body"])["checks"]["database"] == {"ok": False}
    keyed = json.loads(ingest_handler(get_event("/readyz"), None, api=api)["body"])["checks"]["database"]
    assert "secret-bucket" in keyed["error"] and "hunter2" not in keyed["error"] and "app:***@db" in keyed["error"]


def test_model_readiness_asks_sagemaker_for_the_endpoint(s3_server, monkeypatch):
    from traffic_platform.detection.sagemaker import SageMakerDetector
    from traffic_platform.ingest import lambda_handlers

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    lambda_handlers._sagemaker_client.cache_clear()
    detector = SageMakerDetector("no-such-endpoint", region="eu-west-1")
    try:
        with pytest.raises(Exception, match="no-such-endpoint|Could not find"):
            lambda_handlers._model_ready(detector)
    finally:
        detector.close()
        lambda_handlers._sagemaker_client.cache_clear()


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda e: e.update(body="%%% not base64 %%%"), "bad_base64"),
        (lambda e: e["requestContext"].pop("http"), "bad_event"),
        (lambda e: e.update(requestContext="nope"), "bad_event"),
        (lambda e: e.update(headers=["content-type", "image/jpeg"]), "bad_event"),
        (lambda e: e.pop("rawPath") and e["requestContext"]["http"].pop("path"), "bad_event"),
        (lambda e: e.update(body=12345), "bad_event"),
    ],
)
def test_malformed_events_answer_400(aws_home, mutate, code):
    event = http_v2_event(b"\xff\xd8 whatever", NAME)
    mutate(event)
    response = ingest_handler(event, None, api=aws_home[0])
    assert response["statusCode"] == 400, response
    assert json.loads(response["body"])["error"]["code"] == code


def test_events_without_headers_or_not_objects_answer_400(aws_home):
    event = rest_v1_event(b"", NAME)
    event["headers"] = None  # API Gateway sends null when there are none
    response = ingest_handler(event, None, api=aws_home[0])
    assert response["statusCode"] == 415  # read fine: an empty body
    for broken in ([], "GET /", {"path": "/v1/images"}):
        response = ingest_handler(broken, None, api=aws_home[0])
        assert response["statusCode"] == 400 and json.loads(response["body"])["error"]["code"] == "bad_event"


def test_regions_follow_the_function_not_a_fixed_default():
    env = {"AWS_REGION": "us-east-1", "TRAFFIC_QUEUE_URL": "http://127.0.0.1:5000/123/q"}
    settings = Settings.from_env(env)
    assert settings.s3_region == "us-east-1" and settings.sqs_region == "us-east-1"
    assert Settings.from_env({"AWS_DEFAULT_REGION": "ap-south-1"}).sqs_region == "ap-south-1"
    queue_in_url = Settings.from_env({**env, "TRAFFIC_QUEUE_URL": "https://sqs.eu-central-1.amazonaws.com/123/q"})
    assert queue_in_url.sqs_region == "eu-central-1" and queue_in_url.s3_region == "us-east-1"
    overridden = Settings.from_env({**env, "TRAFFIC_SQS_REGION": "eu-north-1", "TRAFFIC_S3_REGION": "eu-west-3"})
    assert (overridden.sqs_region, overridden.s3_region) == ("eu-north-1", "eu-west-3")
    assert Settings.from_env({}).s3_region == "eu-west-1"


def test_the_lambda_sqs_client_uses_the_function_region(monkeypatch, tmp_path):
    from traffic_platform.ingest import lambda_handlers

    for fn in (lambda_handlers._settings, lambda_handlers._aws_clients):
        fn.cache_clear()
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("TRAFFIC_HOME", str(tmp_path))
    monkeypatch.delenv("TRAFFIC_S3_REGION", raising=False)
    monkeypatch.delenv("TRAFFIC_SQS_REGION", raising=False)
    try:
        clients = lambda_handlers._aws_clients()
        assert clients["sqs"].meta.region_name == "us-east-1"
    finally:
        for fn in (lambda_handlers._settings, lambda_handlers._aws_clients):
            fn.cache_clear()


def test_the_lambda_builds_its_object_store_only_when_a_route_needs_it(monkeypatch, tmp_path):
    """A cold POST /v1/images hands a usual photo inline to SQS: no S3 client is made for it."""
    from traffic_platform.ingest import lambda_handlers
    from traffic_platform.storage import objectstore

    built = []
    monkeypatch.setattr(objectstore, "open_object_store", lambda settings: built.append(settings) or objectstore.LocalObjectStore(tmp_path / "store"))
    for fn in (lambda_handlers._settings, lambda_handlers._aws_clients):
        fn.cache_clear()
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("TRAFFIC_HOME", str(tmp_path))
    monkeypatch.setenv("TRAFFIC_OBJECT_STORE_URI", "s3://bucket/prefix")
    try:
        store = lambda_handlers._aws_clients()["store"]
        assert built == [] and store.can_presign is True  # known from the URI, nothing built
        store.put("incoming/x.jpg", b"bytes", "image/jpeg")  # staging a large job builds it, once
        assert store.get("incoming/x.jpg") == b"bytes" and len(built) == 1
    finally:
        for fn in (lambda_handlers._settings, lambda_handlers._aws_clients):
            fn.cache_clear()


def test_a_message_without_an_image_goes_to_the_dead_letter_queue(aws_home, caplog):
    api, sqs, queue_url, store, persister = aws_home
    ingest_handler(rest_v1_event(images.jpeg_bytes(images.street_scene(320, 240, seed=7), quality=60), NAME), None, api=api)
    message = receive_all(sqs, queue_url)[0]
    assert persist_handler(as_sqs_event([message]), None, persister=persister) == {"batchItemFailures": []}
    body = json.loads(message["Body"])
    assert body.pop("image_b64")  # malformed: neither image_b64 nor image_key, for a capture that exists
    event = {"Records": [{"messageId": "no-image", "body": json.dumps(body), "eventSource": "aws:sqs"}]}
    with caplog.at_level("ERROR", logger="traffic_platform.lambda"):
        assert persist_handler(event, None, persister=persister) == {"batchItemFailures": [{"itemIdentifier": "no-image"}]}
    assert any("neither image_b64 nor image_key" in str(getattr(r, "error", "")) for r in caplog.records)


def test_a_redelivery_whose_staged_image_was_deleted_is_acknowledged(aws_home):
    api, sqs, queue_url, store, persister = aws_home
    big = images.png_bytes(images.street_scene(640, 360, seed=8))
    ingest_handler(rest_v1_event(big, NAME.replace(".jpg", ".png")), None, api=api)
    messages = receive_all(sqs, queue_url)
    assert json.loads(messages[0]["Body"]).get("image_key")
    assert persist_handler(as_sqs_event(messages), None, persister=persister) == {"batchItemFailures": []}
    assert list(store.list(INCOMING_PREFIX)) == []
    assert persist_handler(as_sqs_event(messages), None, persister=persister) == {"batchItemFailures": []}
    # a staged image missing for a capture that was never stored is a failure
    body = json.loads(messages[0]["Body"])
    body["job"]["capture_id"] = "0" * 32
    event = {"Records": [{"messageId": "lost", "body": json.dumps(body), "eventSource": "aws:sqs"}]}
    assert persist_handler(event, None, persister=persister) == {"batchItemFailures": [{"itemIdentifier": "lost"}]}


def test_a_png_named_jpg_is_stored_as_png(aws_home, s3_client):
    api, sqs, queue_url, store, persister = aws_home
    data = images.png_bytes(images.street_scene(320, 240, seed=9))
    posted = json.loads(ingest_handler(rest_v1_event(data, NAME), None, api=api)["body"])
    assert persist_handler(as_sqs_event(receive_all(sqs, queue_url)), None, persister=persister) == {"batchItemFailures": []}
    row = persister.repo.get_capture(posted["capture_id"])
    assert row["image_key"].endswith(f"{posted['capture_id']}.png") and row["file_name"] == NAME
    head = s3_client.head_object(Bucket=store.bucket, Key=f"{store.prefix}{row['image_key']}")
    assert head["ContentType"] == "image/png"


@pytest.mark.parametrize("first_strict", [True, False])
def test_the_same_upload_after_a_threshold_change_is_answered_and_stored_alike(aws_home, s3_settings, tiny_detector, first_strict):
    from traffic_platform.domain.quality import QualityThresholds

    api, sqs, queue_url, store, persister = aws_home
    strict = Api(IngestService(dataclasses.replace(s3_settings, quality=QualityThresholds(min_width=4000)),
                               tiny_detector, api.service.handoff))
    data = images.jpeg_bytes(images.street_scene(320, 240, seed=11), quality=60)
    statuses = []
    for home in ((strict, api) if first_strict else (api, strict)):
        response = ingest_handler(rest_v1_event(data, NAME), None, api=home)
        answer = json.loads(response["body"])
        statuses.append(response["statusCode"])
        assert persist_handler(as_sqs_event(receive_all(sqs, queue_url)), None, persister=persister) == {"batchItemFailures": []}
        capture_id = answer.get("capture_id") or answer["error"]["details"]["capture_id"]
        row = persister.repo.get_capture(capture_id)
        if response["statusCode"] == 201:
            assert row["status"] == "accepted" and row["counts"] == answer["counts"]
            assert row["detections"] == answer["detections"]
        else:
            assert response["statusCode"] == 422 and row["status"] == "distorted"
            assert row["quality_reasons"] == answer["error"]["details"]["reasons"] and row["counts"] is None
    assert sorted(statuses) == [201, 422]


def test_the_embedded_home_strips_the_base_path_too(tmp_path):
    from traffic_platform.domain.errors import ConfigurationError
    from traffic_platform.ingest.api import Request
    from traffic_platform.ingest.local import LocalPlatform

    settings = Settings.from_env({"TRAFFIC_HOME": str(tmp_path), "TRAFFIC_API_BASE_PATH": "traffic/"})
    assert settings.api_base_path == "/traffic"
    with pytest.raises(ConfigurationError, match="TRAFFIC_API_BASE_PATH"):
        Settings.from_env({"TRAFFIC_HOME": str(tmp_path), "TRAFFIC_API_BASE_PATH": "/a b"})
    with LocalPlatform(settings, run_worker=False, load_detector=False) as platform:
        api = platform.api()
        assert api.handle(Request("GET", "/traffic/healthz")).status == 200
        for path in ("/traffic/v1/captures/" + "0" * 32, "/v1/captures/" + "0" * 32):
            response = api.handle(Request("GET", path))
            assert response.status == 404 and json.loads(response.body)["error"]["code"] == "capture_not_found"
        assert json.loads(api.handle(Request("GET", "/trafficjam/v1/images")).body)["error"]["code"] == "not_found"
        ready = json.loads(api.handle(Request("GET", "/traffic/readyz")).body)  # no key configured: details
        assert ready["checks"]["model"]["ok"] is False and "no detector" in ready["checks"]["model"]["error"]
        platform.engine.dispose()


def test_a_poison_record_fails_alone_in_a_batch(aws_home, monkeypatch):
    """The batch's rows go in one transaction; a record the database refuses is reported alone
    (a permanent failure), its neighbours are stored and their staged images removed."""
    from traffic_platform.storage import repository

    api, sqs, queue_url, store, persister = aws_home
    answers = []
    for minute in range(4):
        name = NAME.replace("10-51-38", f"10-{minute:02d}-38")
        body = images.jpeg_bytes(images.street_scene(320, 240, seed=minute))
        answers.append(json.loads(ingest_handler(rest_v1_event(body, name), None, api=api)["body"]))
    messages = receive_all(sqs, queue_url)
    poison = answers[2]["capture_id"]
    real_row = repository._capture_row

    def refusing(record, location_id):
        if record.capture_id == poison:
            raise ValueError("poison")
        return real_row(record, location_id)

    monkeypatch.setattr(repository, "_capture_row", refusing)
    event = as_sqs_event(messages)
    poison_id = next(r["messageId"] for r in event["Records"] if poison in r["body"])
    assert persist_handler(event, None, persister=persister) == {"batchItemFailures": [{"itemIdentifier": poison_id}]}
    for answer in answers:
        assert (persister.repo.get_capture(answer["capture_id"]) is None) == (answer["capture_id"] == poison)
    monkeypatch.setattr(repository, "_capture_row", real_row)
    redelivered = [r for r in event["Records"] if r["messageId"] == poison_id]
    assert persist_handler({"Records": redelivered}, None, persister=persister) == {"batchItemFailures": []}
    assert persister.repo.get_capture(poison)["detections"] == answers[2]["detections"]
