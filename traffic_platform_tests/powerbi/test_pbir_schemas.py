"""Every JSON file of the PBIP project validates against the Microsoft schema its $schema names."""

from __future__ import annotations

import json

import pytest

from .project import POWERBI, load_project
from .schemas import PREFIX, schema_errors

REPORT = "TrafficPlatform.Report/definition"
VISUAL = f"{REPORT}/pages/overview/visuals/overviewCard1/visual.json"


def test_every_json_file_names_a_fabric_schema(project):
    kinds = set()
    for path, doc in project.report.json_files.items():
        assert isinstance(doc, dict) and str(doc.get("$schema", "")).startswith(PREFIX), path
        kinds.add(doc["$schema"][len(PREFIX) :].rsplit("/", 2)[0])
    assert kinds == {
        "pbip/pbipProperties",
        "item/semanticModel/definitionProperties",
        "item/report/definitionProperties",
        "item/report/definition/report",
        "item/report/definition/versionMetadata",
        "item/report/definition/pagesMetadata",
        "item/report/definition/page",
        "item/report/definition/visualContainer",
    }


def test_every_json_file_validates(project, schemas_dir):
    failures = {
        str(p.relative_to(POWERBI)): e
        for p, doc in project.report.json_files.items()
        if (e := schema_errors(doc, schemas_dir))
    }
    assert failures == {}
    assert len(project.report.json_files) >= 5 + 5 + 10  # the item files, 5 pages, the visuals


@pytest.mark.parametrize(
    ("rel", "old", "new", "expected"),
    [
        (VISUAL, '"x": 10', '"x": "left"', "position/x: 'left' is not of type 'number'"),
        (
            VISUAL,
            '"queryRef": "Hourly counts.Vehicles",',
            "",
            "visual/query/queryState/Values/projections/0: 'queryRef' is a required property",
        ),
        (
            f"{REPORT}/pages/overview/page.json",
            '"displayOption": "FitToPage"',
            '"displayOption": "Stretch"',
            "displayOption",
        ),
        (
            f"{REPORT}/report.json",
            '"themeCollection"',
            '"themeCollections"',
            "'themeCollection' is a required",
        ),
        (
            f"{REPORT}/pages/pages.json",
            '"pageOrder": [',
            '"pageOrder": 1, "x": [',
            "pageOrder: 1 is not of type",
        ),
        (f"{REPORT}/version.json", '"2.0.0"', '"2.0"', "version: '2.0' does not match"),
        (
            "TrafficPlatform.Report/definition.pbir",
            '"byPath"',
            '"byFile"',
            "'byFile' was unexpected",
        ),
        (
            "TrafficPlatform.SemanticModel/definition.pbism",
            '"version"',
            '"versions"',
            "'version' is a required",
        ),
        ("TrafficPlatform.pbip", '"report": {', '"dataset": {', "'dataset' was unexpected"),
        (VISUAL, "visualContainer/2.4.0", "visualContainer/9.9.9", "not in the local copy"),
    ],
)
def test_a_broken_file_fails_validation(broken_copy, schemas_dir, rel, old, new, expected):
    root = broken_copy({rel: (old, new)})
    doc = json.loads((root / rel).read_text(encoding="utf-8"))
    errors = schema_errors(doc, schemas_dir)
    assert any(expected in e for e in errors), errors
    assert not schema_errors(json.loads((POWERBI / rel).read_text(encoding="utf-8")), schemas_dir)


def test_a_copy_with_a_broken_file_is_caught_by_the_project_check(broken_copy, schemas_dir):
    root = broken_copy({VISUAL: ('"visualType": "card"', '"visualType": 7')})
    failing = [
        p
        for p, doc in load_project(root).report.json_files.items()
        if schema_errors(doc, schemas_dir)
    ]
    assert [p.relative_to(root).as_posix() for p in failing] == [VISUAL]
