"""Properties of CloudFormation/SAM templates, as functions returning findings (empty: holds).

Shared by the platform template's and the Dagster services template's tests; each function
is shown to notice a broken copy in those tests.
"""

from __future__ import annotations

from typing import Any

from traffic_platform.ingest.openapi import DOCUMENT

# Routes of the Api that API Gateway does not expose: per-container counters mean nothing
# behind Lambda (CloudWatch has the metrics); the dashboard is a local-server page.
NOT_ON_API_GATEWAY = {"/metrics", "/dashboard"}
# Actions that IAM grants on "*" only (no resource-level permissions).
STAR_ONLY_ACTIONS = {"ecr:GetAuthorizationToken", "ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition",
                     "ecs:ListTaskDefinitions", "ec2:DescribeNetworkInterfaces"}
LIFECYCLE_PREFIXES = {"incoming/", "landing/", "distorted/"}


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



SECRET_NAMES = ("PASSWORD", "SECRET", "TOKEN", "PRIVATE")


def task_secret_findings(template: dict) -> list[str]:
    """No secret in a task definition's plain environment; the database password comes from
    Secrets Manager (``Secrets``), readable by the execution role."""
    import re

    found = []
    for name, task in resources(template, "AWS::ECS::TaskDefinition").items():
        role = task["Properties"]["ExecutionRoleArn"]["Fn::GetAtt"][0]
        readable = {r.get("Ref") for _, st in _role_statements(template, role)
                    if "secretsmanager:GetSecretValue" in _list(st.get("Action"))
                    for r in _list(st["Resource"]) if isinstance(r, dict)}
        for container in task["Properties"]["ContainerDefinitions"]:
            where = f"{name}/{container['Name']}"
            for variable in container.get("Environment", []):
                value = str(variable["Value"])
                if any(word in variable["Name"].upper() for word in SECRET_NAMES):
                    found.append(f"{where}: {variable['Name']} is a plain environment value")
                if re.search(r"://[^/:@]+:[^/@]+@", value) or "password=" in value.lower():
                    found.append(f"{where}: {variable['Name']} carries a password")
            secrets = {s["Name"]: s["ValueFrom"] for s in container.get("Secrets", [])}
            if "DAGSTER_MYSQL_PASSWORD" not in secrets:
                found.append(f"{where}: DAGSTER_MYSQL_PASSWORD is not injected from Secrets Manager")
            for source in secrets.values():
                secret = re.match(r"\$\{(\w+)\}", source.get("Fn::Sub", "") if isinstance(source, dict) else "")
                if not secret or secret.group(1) not in readable:
                    found.append(f"{where}: the execution role {role} may not read {source}")
    return found


def _role_statements(template: dict, role: str):
    for policy in template["Resources"][role]["Properties"].get("Policies", []):
        for st in policy["PolicyDocument"]["Statement"]:
            if st.get("Effect") == "Allow":
                yield role, st


def ecs_service_findings(template: dict) -> list[str]:
    """Private tasks only; exactly one daemon, never two during a deployment."""
    found = []
    for name, service in resources(template, "AWS::ECS::Service").items():
        props = service["Properties"]
        network = props.get("NetworkConfiguration", {}).get("AwsvpcConfiguration", {})
        if network.get("AssignPublicIp") != "DISABLED":
            found.append(f"{name}: tasks get a public IP")
        if "Daemon" in name and (props.get("DesiredCount") != 1
                                 or props.get("DeploymentConfiguration", {}).get("MaximumPercent") != 100):
            found.append(f"{name}: more than one daemon could run (schedules and sensors twice)")
    return found
