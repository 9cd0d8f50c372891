"""Report structure: pages.json against the page folders, names, size, and what each page shows."""

from __future__ import annotations

from . import rules
from .cases import broken, rule_tests
from .project import load_project

PAGES = "TrafficPlatform.Report/definition/pages"


BROKEN = [
    broken(rules.page_problems, f"{PAGES}/pages.json",
           '"classMix",\n', "",
           "pages.json lists ['overview', 'locations', 'timePatterns', 'dataQuality']"),
    broken(rules.page_problems, f"{PAGES}/pages.json",
           '"classMix",\n', '"classMix",\n    "classMix",\n',
           "pages.json lists"),
    broken(rules.page_problems, f"{PAGES}/pages.json",
           '"activePageName": "overview"', '"activePageName": "home"',
           "activePageName is not a listed page"),
    broken(rules.page_problems, f"{PAGES}/classMix/page.json",
           '"name": "classMix"', '"name": "classmix"',
           "page classMix: page.json names 'classmix'"),
    broken(rules.page_problems, f"{PAGES}/classMix/visuals/classDonut/visual.json",
           '"name": "classDonut"', '"name": "donut"',
           "visual classMix/classDonut: visual.json names 'donut'"),
]
test_rule_holds, test_rule_catches_a_broken_copy = rule_tests(rules.REPORT_RULES, BROKEN)


def test_a_page_folder_missing_from_pages_json_is_caught(broken_copy):
    root = broken_copy({})
    (root / PAGES / "classMix").rename(root / PAGES / "classes")
    problems = rules.page_problems(load_project(root))
    assert any("the page folders are" in p and "'classes'" in p for p in problems), problems
    assert any("page classes: page.json names 'classMix'" in p for p in problems), problems


def test_report_size_rule_counts_pages_and_visuals(project, broken_copy):
    assert rules.report_size_problems(project, min_pages=6) == ["5 pages, want at least 6"]
    assert rules.report_size_problems(project, min_visuals=100) == [
        f"{len(project.report.visuals)} visuals, want at least 100"
    ]
    root = broken_copy({})
    for visual in (root / PAGES / "classMix" / "visuals").iterdir():
        for f in visual.iterdir():
            f.unlink()
        visual.rmdir()
    assert "page classMix has no visual" in rules.report_size_problems(load_project(root))


def _visual_types(project, page):
    return sorted(
        v["visual"]["visualType"] for (p, _), v in project.report.visuals.items() if p == page
    )


def test_pages_show_what_the_issue_asks_for(project):
    order = project.report.pages_meta["pageOrder"]
    assert [project.report.pages[p]["displayName"] for p in order] == [
        "Overview",
        "Locations",
        "Time patterns",
        "Class mix",
        "Data quality",
    ]
    assert _visual_types(project, "overview").count("card") == 5
    assert {"lineChart", "clusteredBarChart"} <= set(_visual_types(project, "overview"))
    assert {"tableEx", "pivotTable"} <= set(_visual_types(project, "locations"))
    assert "pivotTable" in _visual_types(project, "timePatterns")
    assert "donutChart" in _visual_types(project, "classMix")
    matrix = project.report.visuals[("timePatterns", "timeHourWeekday")]["visual"]["query"][
        "queryState"
    ]
    assert [p["queryRef"] for p in matrix["Rows"]["projections"]] == ["Time of day.hour"]
    assert [p["queryRef"] for p in matrix["Columns"]["projections"]] == ["Date.weekday_name"]
    assert len(project.report.visuals) >= 10


def test_every_page_slices_by_one_model_version(project):
    """The model-version rule in the report: a single-select slicer, synced across pages."""
    for page in project.report.pages:
        slicer = project.report.visuals[(page, f"{page}ModelVersion")]["visual"]
        assert slicer["visualType"] == "slicer"
        field = slicer["query"]["queryState"]["Values"]["projections"][0]["field"]["Column"]
        assert (field["Expression"]["SourceRef"]["Entity"], field["Property"]) == (
            "Model versions",
            "model_version",
        )
        assert (
            slicer["objects"]["selection"][0]["properties"]["singleSelect"]["expr"]["Literal"][
                "Value"
            ]
            == "true"
        )
        assert slicer["syncGroup"]["groupName"] == "modelVersion"
