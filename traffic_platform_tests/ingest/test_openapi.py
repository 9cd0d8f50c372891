"""The OpenAPI 3.1 document: valid, served at /openapi.json, and the README lists exactly its paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

from openapi_spec_validator import validate

from traffic_platform.ingest.api import Api, Request
from traffic_platform.ingest.openapi import DOCUMENT

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_paths() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## HTTP API\n"):]
    section = section[: section.index("\n## ", 1)]
    paths = set()
    for line in section.splitlines():
        if re.match(r"^ {4}(GET|POST) ", line):
            paths |= {p.split("?")[0] for p in re.findall(r"(?<!\S)(/[\w{}./-]+)", line)}
    return paths


def test_the_document_is_valid_openapi_3_1():
    assert DOCUMENT["openapi"].startswith("3.1")
    validate(DOCUMENT)


def test_it_is_served_without_an_api_key():
    api = Api(service=None, api_key="secret")
    response = api.handle(Request("GET", "/openapi.json"))
    assert response.status == 200 and response.content_type == "application/json"
    assert json.loads(response.body) == json.loads(json.dumps(DOCUMENT))


def test_readme_lists_exactly_the_documented_paths():
    assert readme_paths() == set(DOCUMENT["paths"])
    assert set(DOCUMENT["paths"]) >= {"/v1/images", "/v1/captures/{capture_id}", "/v1/captures/{capture_id}/image",
                                      "/v1/captures/{capture_id}/annotated", "/healthz", "/readyz", "/metrics",
                                      "/v1/counts", "/v1/locations", "/openapi.json"}


def test_readme_lists_exactly_the_count_columns():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("**Counts.** `GET /v1/counts`"):]
    listed = section[section.index("with the columns `") + len("with the columns `"):]
    listed = listed[: listed.index("`")]
    assert [c.strip() for c in listed.split(",")] == DOCUMENT["components"]["schemas"]["CountRow"]["required"]


def _validate_against(schema_name: str, instance) -> None:
    from jsonschema import Draft202012Validator

    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": DOCUMENT["components"]}
    Draft202012Validator(schema).validate(instance)


def test_the_accepted_answer_with_its_quality_matches_the_capture_schema(make_record):
    import pytest
    from jsonschema import ValidationError

    from traffic_platform.ingest.api import capture_answer

    answer = capture_answer(make_record(quality_flags=["fog", "glare"]))
    assert answer["quality"] == {"verdict": "degraded", "flags": ["fog", "glare"]}
    _validate_against("Capture", json.loads(json.dumps(answer)))
    assert capture_answer(make_record())["quality"] == {"verdict": "clear", "flags": []}
    with pytest.raises(ValidationError):
        _validate_against("Capture", {**answer, "quality": {"verdict": "foggy", "flags": []}})
