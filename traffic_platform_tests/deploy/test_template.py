"""The SAM template (deploy/template.yaml): lint-clean, and its security properties hold.

Each property is a function that returns findings for a parsed template; the negative tests
break a copy of the template and show the function notices.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from .cfn_checks import (
    api_findings,
    bucket_findings,
    database_findings,
    function_findings,
    iam_findings,
    queue_findings,
)

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "template.yaml"
CHECKS = [bucket_findings, iam_findings, queue_findings, function_findings, database_findings, api_findings]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    from cfnlint.decode import decode

    parsed, matches = decode(str(TEMPLATE))
    assert not matches, matches
    return parsed


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
