"""The SAM template (deploy/template.yaml): lint-clean, and its security properties hold.

Each property is a function that returns findings for a parsed template; the negative tests
break a copy of the template and show the function notices.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from traffic_platform.ingest.openapi import DOCUMENT

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "template.yaml"
# Routes of the Api that API Gateway does not expose: per-container counters mean nothing
# behind Lambda (CloudWatch has the metrics); the dashboard is a local-server page.
NOT_ON_API_GATEWAY = {"/metrics", "/dashboard"}
# Actions that IAM only grants on "*" (no resource-level permissions).
STAR_ONLY_ACTIONS = {"ecr:GetAuthorizationToken"}
LIFECYCLE_PREFIXES = {"incoming/", "landing/", "distorted/"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    from cfnlint.decode import decode

    parsed, matches = decode(str(TEMPLATE))
    assert not matches, matches
    return parsed


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------------------------------- properties
def bucket_findings(template: dict) -> list[str]:
    found = []
    for name, bucket in resources(template, "AWS::S3::Bucket").items():
        props = bucket.get("Properties", {})
        block = props.get("PublicAccessBlockConfiguration", {})
        for flag in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
            if block.get(flag) is not True:
                found.append(f"{name}: {flag} is not true")
        rules = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        if not any(r.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") in ("aws:kms", "AES256") for r in rules):
            found.append(f"{name}: no default encryption")
        if props.get("VersioningConfiguration", {}).get("Status") != "Enabled":
            found.append(f"{name}: versioning is not enabled")
        prefixes = {r.get("Prefix") for r in props.get("LifecycleConfiguration", {}).get("Rules", [])
                    if r.get("Status") == "Enabled" and (r.get("ExpirationInDays") or r.get("Transitions"))}
        if missing := LIFECYCLE_PREFIXES - prefixes:
            found.append(f"{name}: no lifecycle rule for {sorted(missing)}")
        if not _tls_only(template, name):
            found.append(f"{name}: no policy denies requests without TLS")
    return found


def _tls_only(template: dict, bucket: str) -> bool:
    for policy in resources(template, "AWS::S3::BucketPolicy").values():
        props = policy["Properties"]
        if props.get("Bucket") != {"Ref": bucket}:
            continue
        for st in props["PolicyDocument"]["Statement"]:
            condition = st.get("Condition", {}).get("Bool", {})
            covers = {str(r) for r in _list(st.get("Resource"))}
            if (st.get("Effect") == "Deny" and "s3:*" in _list(st.get("Action"))
                    and condition.get("aws:SecureTransport") in ("false", False)
                    and any("/*" in r for r in covers) and any("/*" not in r for r in covers)):
                return True
    return False


def iam_findings(template: dict) -> list[str]:
    """Every Allow names actions (no ``*`` or ``service:*``) on resources other than ``*``."""
    found = []
    for name, statement in _allow_statements(template):
        actions = [str(a) for a in _list(statement.get("Action", []))]
        for action in actions:
            if action == "*" or action.endswith(":*"):
                found.append(f"{name}: wildcard action {action}")
        if "*" in _list(statement.get("Resource")) and set(actions) - STAR_ONLY_ACTIONS:
            found.append(f"{name}: {sorted(set(actions) - STAR_ONLY_ACTIONS)} on resource *")
    return found


def _allow_statements(template: dict):
    for name, fn in resources(template, "AWS::Serverless::Function").items():
        for policy in fn["Properties"].get("Policies", []):
            if isinstance(policy, dict) and "Statement" in policy:
                for st in policy["Statement"]:
                    if st.get("Effect") == "Allow":
                        yield name, st
    for name, role in resources(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for st in policy["PolicyDocument"]["Statement"]:
                if st.get("Effect") == "Allow":
                    yield name, st


def queue_findings(template: dict) -> list[str]:
    found = []
    queues = resources(template, "AWS::SQS::Queue")
    fns = resources(template, "AWS::Serverless::Function")
    for fname, fn in fns.items():
        for event in fn["Properties"].get("Events", {}).values():
            if event["Type"] != "SQS":
                continue
            props = event["Properties"]
            queue_name = props["Queue"]["Fn::GetAtt"][0]
            queue = queues[queue_name]["Properties"]
            if "ReportBatchItemFailures" not in props.get("FunctionResponseTypes", []):
                found.append(f"{fname}: no ReportBatchItemFailures")
            if not props.get("BatchSize") or not props.get("ScalingConfig", {}).get("MaximumConcurrency"):
                found.append(f"{fname}: batch size or maximum concurrency unset")
            if queue.get("VisibilityTimeout", 30) < 6 * fn["Properties"]["Timeout"]:
                found.append(f"{queue_name}: visibility timeout < 6 x {fname}'s timeout")
            dlq = queue.get("RedrivePolicy", {}).get("deadLetterTargetArn", {}).get("Fn::GetAtt", [None])[0]
            if dlq not in queues:
                found.append(f"{queue_name}: no dead-letter queue")
            alarmed = {_alarm_target(a) for a in resources(template, "AWS::CloudWatch::Alarm").values()}
            if ("ApproximateNumberOfMessagesVisible", dlq) not in alarmed:
                found.append(f"{dlq}: no alarm on its depth")
            if ("ApproximateAgeOfOldestMessage", queue_name) not in alarmed:
                found.append(f"{queue_name}: no alarm on the oldest message's age")
    return found


def _alarm_target(alarm: dict) -> tuple[str, str | None]:
    props = alarm["Properties"]
    for dim in props.get("Dimensions", []):
        value = dim["Value"]
        ref = value.get("Ref") or (value.get("Fn::GetAtt") or [None])[0] if isinstance(value, dict) else None
        return props["MetricName"], ref
    return props["MetricName"], None


def function_findings(template: dict) -> list[str]:
    found = []
    alarmed = {_alarm_target(a) for a in resources(template, "AWS::CloudWatch::Alarm").values()}
    log_format = template.get("Globals", {}).get("Function", {}).get("LoggingConfig", {}).get("LogFormat")
    for name, fn in resources(template, "AWS::Serverless::Function").items():
        if fn["Properties"].get("LoggingConfig", {}).get("LogFormat", log_format) != "JSON":
            found.append(f"{name}: logs are not JSON")
        if ("Errors", name) not in alarmed:
            found.append(f"{name}: no alarm on errors")
    p99 = [a for a in resources(template, "AWS::CloudWatch::Alarm").values()
           if a["Properties"].get("ExtendedStatistic") == "p99" and a["Properties"]["MetricName"] == "Duration"]
    if not p99:
        found.append("no p99 latency alarm")
    return found


def database_findings(template: dict) -> list[str]:
    found = []
    for name, cluster in resources(template, "AWS::RDS::DBCluster").items():
        props = cluster["Properties"]
        if props.get("Engine") != "aurora-mysql" or "ServerlessV2ScalingConfiguration" not in props:
            found.append(f"{name}: not Aurora Serverless v2 MySQL")
        if props.get("StorageEncrypted") is not True:
            found.append(f"{name}: storage not encrypted")
        if props.get("ManageMasterUserPassword") is not True or "MasterUserPassword" in props:
            found.append(f"{name}: the password is not kept in Secrets Manager")
        group = resources(template, "AWS::RDS::DBSubnetGroup")[props["DBSubnetGroupName"]["Ref"]]
        if group["Properties"]["SubnetIds"] != {"Ref": "PrivateSubnetIds"}:
            found.append(f"{name}: not in the private subnets")
    for name, instance in resources(template, "AWS::RDS::DBInstance").items():
        if instance["Properties"].get("PubliclyAccessible") is not False:
            found.append(f"{name}: publicly accessible")
    for name, fn in resources(template, "AWS::Serverless::Function").items():
        env = {**template["Globals"]["Function"]["Environment"]["Variables"],
               **fn["Properties"].get("Environment", {}).get("Variables", {})}
        if any("PASSWORD" in key for key in env) or "aws_secret=" not in str(env.get("TRAFFIC_DATABASE_URL")):
            found.append(f"{name}: database credentials are not read from the secret")
    return found


def api_findings(template: dict) -> list[str]:
    found = []
    for name, api in resources(template, "AWS::Serverless::Api").items():
        props = api["Properties"]
        if props.get("Auth", {}).get("ApiKeyRequired") is not True:
            found.append(f"{name}: no API key required")
        throttle = props.get("Auth", {}).get("UsagePlan", {}).get("Throttle", {})
        if not throttle.get("RateLimit") or not throttle.get("BurstLimit"):
            found.append(f"{name}: the usage plan does not throttle")
        if "AccessLogSetting" not in props:
            found.append(f"{name}: no access logs")
        if not {"image~1jpeg", "image~1png"} <= set(props.get("BinaryMediaTypes", [])):
            found.append(f"{name}: images are not binary media types")
    declared = set()
    for fn in resources(template, "AWS::Serverless::Function").values():
        for event in fn["Properties"].get("Events", {}).values():
            if event["Type"] == "Api":
                declared.add((event["Properties"]["Path"], event["Properties"]["Method"]))
    routes = {(path, method) for path, ops in DOCUMENT["paths"].items() for method in ops
              if path not in NOT_ON_API_GATEWAY}
    if missing := routes - declared:
        found.append(f"routes of the Api not on API Gateway: {sorted(missing)}")
    return found


CHECKS = [bucket_findings, iam_findings, queue_findings, function_findings, database_findings, api_findings]


# ------------------------------------------------------------------------------- tests
def test_cfn_lint_finds_nothing():
    from cfnlint.api import lint_file

    matches = lint_file(TEMPLATE)
    assert not matches, "\n".join(str(m) for m in matches)


def test_cfn_lint_notices_a_broken_template(tmp_path):
    from cfnlint.api import lint_file

    broken = tmp_path / "template.yaml"
    broken.write_text(TEMPLATE.read_text().replace("VisibilityTimeout: 360", "VisibilityTimeout: lots"))
    assert lint_file(broken)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_template_has_the_property(template, check):
    assert check(template) == []


def _break(template: dict, path: list, value: Any = None, *, delete: bool = False) -> dict:
    broken = copy.deepcopy(template)
    node = broken
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return broken


R = "Resources"
BREAKAGES = [
    (bucket_findings, [R, "Bucket", "Properties", "PublicAccessBlockConfiguration", "BlockPublicPolicy"], False),
    (bucket_findings, [R, "Bucket", "Properties", "VersioningConfiguration", "Status"], "Suspended"),
    (bucket_findings, [R, "Bucket", "Properties", "LifecycleConfiguration", "Rules", 1, "Prefix"], "elsewhere/"),
    (bucket_findings, [R, "BucketPolicy", "Properties", "PolicyDocument", "Statement", 0, "Effect"], "Allow"),
    (iam_findings, [R, "IngestFunction", "Properties", "Policies", 0, "Statement", 0, "Resource"], "*"),
    (iam_findings, [R, "PersistFunction", "Properties", "Policies", 0, "Statement", 0, "Action"], "s3:*"),
    (iam_findings, [R, "DetectorModelRole", "Properties", "Policies", 0, "PolicyDocument", "Statement", 2, "Resource"], "*"),
    (queue_findings, [R, "PersistQueue", "Properties", "VisibilityTimeout"], 120),
    (queue_findings, [R, "PersistFunction", "Properties", "Events", "Jobs", "Properties", "FunctionResponseTypes"], []),
    (queue_findings, [R, "BacklogAgeAlarm", "Properties", "MetricName"], "NumberOfMessagesSent"),
    (queue_findings, [R, "DeadLetterAlarm"], None),
    (function_findings, [R, "IngestLatencyAlarm", "Properties", "ExtendedStatistic"], "p50"),
    (function_findings, [R, "PersistErrorsAlarm"], None),
    (database_findings, [R, "DatabaseInstance", "Properties", "PubliclyAccessible"], True),
    (database_findings, [R, "Database", "Properties", "ManageMasterUserPassword"], False),
    (database_findings, ["Globals", "Function", "Environment", "Variables", "TRAFFIC_DATABASE_URL"], "mysql+pymysql://u:p@h/db"),
    (api_findings, [R, "HttpEntry", "Properties", "Auth", "ApiKeyRequired"], False),
    (api_findings, [R, "IngestFunction", "Properties", "Events", "GetCounts"], None),
]


@pytest.mark.parametrize("check, path, value", BREAKAGES, ids=lambda v: v.__name__ if callable(v) else None)
def test_each_property_notices_its_breakage(template, check, path, value):
    broken = _break(template, path, value, delete=value is None and path[-1] not in ("Resource",))
    assert check(broken), f"{check.__name__} did not notice {path} = {value!r}"
