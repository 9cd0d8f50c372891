"""The functions as deploy/template.yaml configures them, against moto (S3, SQS, KMS, Secrets
Manager over HTTP), MariaDB and the local SageMaker stand-in.

The environment is the template's own (Globals + each function's variables), with every
reference resolved to the local stand-in of the resource it names; the handlers are the
production entry points (nothing injected), driven with API Gateway REST (v1) and HTTP API
(v2) events and SQS event documents shaped as AWS documents them.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from traffic_platform.ingest import lambda_handlers
from traffic_platform.ingest.lambda_handlers import ingest_handler, persist_handler

from .. import images

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "template.yaml"
NAME = "tiensevest_Leuven_Belgium_12-10-2022_10-51-38.jpg"
ENDPOINT = "traffic-prod-detector"
CACHED = ("_settings", "_aws_clients", "_ingest_api", "_repository", "_default_persister", "_sagemaker_client")

pytestmark = [pytest.mark.mariadb, pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)]


def function_environment(function: str, resolved: dict[str, str]) -> dict[str, str]:
    """The template's variables for ``function``, references replaced by ``resolved[name]``."""
    from cfnlint.decode import decode

    template, _ = decode(str(TEMPLATE))
    variables = {**template["Globals"]["Function"]["Environment"]["Variables"],
                 **template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})}

    def value(raw: Any) -> str:
        if isinstance(raw, str):
            return raw
        if "Ref" in raw:
            return resolved[raw["Ref"]]
        if "Fn::GetAtt" in raw:
            return resolved[".".join(raw["Fn::GetAtt"])]
        if "Fn::Sub" in raw:
            return re.sub(r"\$\{([^}]+)\}", lambda m: resolved[m.group(1)], raw["Fn::Sub"])
        raise AssertionError(f"cannot resolve {raw}")

    return {name: value(raw) for name, raw in variables.items()}


def clear_caches() -> None:
    for name in CACHED:
        getattr(lambda_handlers, name).cache_clear()


@pytest.fixture
def deployed(s3_server, s3_bucket, db_url, tiny_detr_dir, monkeypatch, tmp_path):
    """Stand-ins for the template's resources; yields (sqs, queue_url, dlq_url, env per function)."""
    import boto3
    from sqlalchemy import create_engine

    from traffic_platform.detection import sagemaker_inference
    from traffic_platform.detection.model_server import ModelServer
    from traffic_platform.storage.database import make_engine, upgrade

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)  # every boto3 client of the functions: moto
    client = lambda service: boto3.client(service, region_name="eu-west-1")  # noqa: E731
    sqs, secrets, kms = client("sqs"), client("secretsmanager"), client("kms")
    key_id = kms.create_key(Description="data key")["KeyMetadata"]["KeyId"]
    # the queue's redrive policy as the template declares it, with a 1 s visibility for the test
    from cfnlint.decode import decode

    template, _ = decode(str(TEMPLATE))
    receives = template["Resources"]["PersistQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"]
    suffix = uuid.uuid4().hex[:8]
    dlq_url = sqs.create_queue(QueueName=f"persist-dlq-{suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName=f"persist-{suffix}", Attributes={
        "VisibilityTimeout": "1",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(receives)}),
    })["QueueUrl"]
    # the database: a user with a password kept in the secret, as Aurora's managed master user
    url = make_url(db_url)
    user, password = f"tp_d_{suffix}", uuid.uuid4().hex
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for host in ("%", "localhost"):
            conn.execute(text(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'"))
            conn.execute(text(f"GRANT ALL ON `{url.database}`.* TO '{user}'@'{host}'"))
    secret_arn = secrets.create_secret(Name=f"rds!cluster-{suffix}",
                                       SecretString=json.dumps({"username": user, "password": password}))["ARN"]
    resolved = {"Bucket": s3_bucket, "DataKey": key_id, "PersistQueue": queue_url,
                "Database.Endpoint.Address": f"{url.host}", "Database.MasterUserSecret.SecretArn": secret_arn,
                "DetectorEndpoint.EndpointName": ENDPOINT}
    envs = {}
    for function in ("IngestFunction", "PersistFunction"):
        env = function_environment(function, resolved)
        # the template names the database "traffic"; here it is the test's own
        env["TRAFFIC_DATABASE_URL"] = env["TRAFFIC_DATABASE_URL"].replace(":3306/traffic?", f":{url.port or 3306}/{url.database}?")
        envs[function] = {**env, "TRAFFIC_HOME": str(tmp_path / function)}
    monkeypatch.setenv("TRAFFIC_SCORE_THRESHOLD", "0.0")
    with ModelServer(str(tiny_detr_dir), "127.0.0.1", 0, endpoint_name=ENDPOINT) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", server.url)
        sagemaker_inference.settings.cache_clear()
        engine = make_engine(envs["IngestFunction"]["TRAFFIC_DATABASE_URL"])  # the schema, through the secret
        upgrade(engine)
        engine.dispose()
        clear_caches()
        yield sqs, queue_url, dlq_url, envs
        clear_caches()
    with admin.connect() as conn:
        conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%', '{user}'@'localhost'"))
    admin.dispose()
    for queue in (queue_url, dlq_url):
        sqs.delete_queue(QueueUrl=queue)


def as_function(monkeypatch, envs: dict, function: str) -> None:
    """This process now runs ``function``: its environment, fresh per-container caches."""
    for name, value in envs[function].items():
        monkeypatch.setenv(name, value)
    clear_caches()


def rest_event(method: str, path: str, *, body: bytes = b"", query: dict | None = None, stage: str = "prod") -> dict:
    """An API Gateway REST API (v1) proxy event; ``path`` has no stage, ``requestContext.path`` has."""
    return {
        "resource": path, "path": path, "httpMethod": method,
        "headers": {"Content-Type": "image/jpeg", "Host": "abc123.execute-api.eu-west-1.amazonaws.com"},
        "multiValueHeaders": {"Content-Type": ["image/jpeg"]},
        "queryStringParameters": query, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None,
        "requestContext": {"resourcePath": path, "httpMethod": method, "path": f"/{stage}{path}", "stage": stage,
                           "requestId": uuid.uuid4().hex, "identity": {"sourceIp": "203.0.113.7", "apiKeyId": "k"}},
        "body": base64.b64encode(body).decode() if body else None, "isBase64Encoded": bool(body),
    }


def http_event(method: str, path: str, *, body: bytes = b"", path_parameters: dict | None = None) -> dict:
    """An HTTP API (v2) proxy event on the ``$default`` stage."""
    return {
        "version": "2.0", "routeKey": f"{method} {path}", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "image/jpeg"}, "pathParameters": path_parameters,
        "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7"},
                           "stage": "$default", "routeKey": f"{method} {path}", "requestId": uuid.uuid4().hex},
        "body": base64.b64encode(body).decode() if body else None, "isBase64Encoded": bool(body),
    }


def sqs_event(messages: list[dict], queue_arn: str) -> dict:
    """What Lambda's SQS event source mapping passes the persist function."""
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": {"ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"],
                       "SentTimestamp": m["Attributes"]["SentTimestamp"]},
        "messageAttributes": {k: {"stringValue": v.get("StringValue"), "dataType": v["DataType"]}
                              for k, v in (m.get("MessageAttributes") or {}).items()},
        "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": "eu-west-1",
    } for m in messages]}


def run_event_source(sqs, queue_url: str, *, polls: int = 1) -> list[dict]:
    """Receive, invoke, delete what succeeded (the event source mapping's loop); the answers."""
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    answers = []
    for _ in range(polls):
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=2,
                                       AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
        if not messages:
            continue
        answer = persist_handler(sqs_event(messages, arn))
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        for m in messages:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
        answers.append(answer)
    return answers


def test_an_image_through_both_functions_as_deployed(deployed, monkeypatch):
    sqs, queue_url, _, envs = deployed
    jpeg = images.jpeg_bytes(images.street_scene(320, 240, seed=3), quality=85)
    as_function(monkeypatch, envs, "IngestFunction")
    # REST API on a stage named like the route prefix, and an HTTP API with the name in the path
    posted = []
    for event in (rest_event("POST", "/v1/images", body=jpeg, query={"filename": NAME}, stage="v1"),
                  http_event("POST", f"/v1/images/{NAME.replace('10-51-38', '10-52-38')}", body=jpeg,
                             path_parameters={"filename": NAME.replace("10-51-38", "10-52-38")})):
        answer = ingest_handler(event)
        assert answer["statusCode"] == 201, answer["body"]
        posted.append(json.loads(answer["body"])["capture_id"])
    as_function(monkeypatch, envs, "PersistFunction")
    assert run_event_source(sqs, queue_url) == [{"batchItemFailures": []}]
    as_function(monkeypatch, envs, "IngestFunction")
    for capture_id in posted:
        status = ingest_handler(http_event("GET", f"/v1/captures/{capture_id}"))
        assert status["statusCode"] == 200, status["body"]
        body = json.loads(status["body"])
        assert body["status"] == "stored", body  # persisted: read back from Aurora (MariaDB) and S3
        annotated = ingest_handler(rest_event("GET", f"/v1/captures/{capture_id}/annotated"))
        assert annotated["statusCode"] == 200 and annotated["isBase64Encoded"]
        assert base64.b64decode(annotated["body"])[:2] == b"\xff\xd8"  # the annotated JPEG from S3
    import boto3

    head = boto3.client("s3", region_name="eu-west-1").list_objects_v2(Bucket=envs["IngestFunction"]["TRAFFIC_OBJECT_STORE_URI"][5:])
    keys = [o["Key"] for o in head.get("Contents", [])]
    assert any(k.startswith("annotated/") for k in keys) and not any(k.startswith("incoming/") for k in keys)


def test_a_poison_message_reaches_the_dead_letter_queue_with_its_reason(deployed, monkeypatch, capsys):
    sqs, queue_url, dlq_url, envs = deployed
    as_function(monkeypatch, envs, "PersistFunction")
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"v": 1, "job": {"capture_id": "0" * 32}}))
    for _ in range(12):  # each poll is one delivery; the redrive policy moves it after maxReceiveCount
        run_event_source(sqs, queue_url)
        if int(sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
               ["Attributes"]["ApproximateNumberOfMessages"]):
            break
    dead = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1).get("Messages", [])
    assert len(dead) == 1 and json.loads(dead[0]["Body"])["job"]["capture_id"] == "0" * 32
    # the function's JSON log says why, once per delivery, counting the deliveries
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    failed = [line for line in lines if line.get("event") == "persist_failed"]
    assert [f["attempt"] for f in failed] == list(range(1, len(failed) + 1)) and len(failed) >= 2
    assert all(f["failure"] == "permanent" and "neither image_b64 nor image_key" in f["error"] for f in failed)


def test_a_large_image_goes_through_an_upload_url_into_landing(deployed, monkeypatch):
    """Over the function's 4.5 MB cap: 413 naming /v1/uploads; the upload URL puts it in landing/."""
    import urllib.request

    import boto3

    from traffic_platform.orchestration.landing import file_name_for

    _, _, _, envs = deployed
    as_function(monkeypatch, envs, "IngestFunction")
    cap = int(envs["IngestFunction"]["TRAFFIC_MAX_UPLOAD_BYTES"])
    # a JPEG with a large trailer: over the cap as bytes, which is all the size check sees
    big = images.jpeg_bytes(images.street_scene(640, 480, seed=6), quality=90) + bytes(cap)
    refused = ingest_handler(rest_event("POST", "/v1/images", body=big, query={"filename": NAME}))
    error = json.loads(refused["body"])["error"]
    assert refused["statusCode"] == 413 and "POST /v1/uploads" in error["message"]
    answer = ingest_handler(rest_event("POST", "/v1/uploads", query={"filename": NAME}))
    assert answer["statusCode"] == 201, answer["body"]
    upload = json.loads(answer["body"])["upload"]
    request = urllib.request.Request(upload["url"], data=big, method="PUT", headers=upload["headers"])
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    bucket = envs["IngestFunction"]["TRAFFIC_OBJECT_STORE_URI"][len("s3://"):]
    head = boto3.client("s3", region_name="eu-west-1").head_object(Bucket=bucket, Key=upload["key"])
    assert head["ContentLength"] == len(big) and file_name_for(upload["key"]) == NAME
