"""The dashboard file in real headless Chromium: charts drawn on every tab, the numbers shown equal
the database's, the gallery shows the newest annotated images, and no request leaves the file."""

from __future__ import annotations

from sqlalchemy import text

from traffic_platform.dashboard import PAGES, write_dashboard
from traffic_platform.dashboard.data import GALLERY_SIZE
from traffic_platform.orchestration.sql.view_files import apply_views, load_views
from traffic_platform.storage.objectstore import LocalObjectStore

from .browser import CHARTS, browse, chromium
from .conftest import page_path
from .expected import expected, number


def _only_the_file(seen, path) -> None:
    assert seen.requests == [path.resolve().as_uri()], seen.requests  # no http(s), no other file
    assert seen.errors == []


def test_the_page_shows_the_databases_numbers_offline(reported, engine, tmp_path):
    path = page_path(tmp_path)
    written = write_dashboard(engine, reported.store, path)
    want = expected(engine)
    assert want["other_versions"] >= 1  # two versions side by side: summing them would show

    with chromium() as browser:
        seen = browse(browser, path, tmp_path / "shots")

    _only_the_file(seen, path)
    assert seen.charts == CHARTS and sum(CHARTS.values()) == 9
    assert seen.model_version == want["model_version"]
    kpis = want["kpis"]
    assert number(seen.kpis["vehicles"]) == kpis["vehicles"] != want["all_versions_vehicles"]
    for name in ("people", "images_accepted", "images_received", "locations", "days"):
        assert number(seen.kpis[name]) == kpis[name], name
    assert float(seen.kpis["vehicles_per_image"]) == kpis["vehicles_per_image"]
    assert seen.kpis["distorted_share"] == seen.kpis["quality_distorted_share"] == kpis["distorted_share"]
    assert seen.kpis["quality_degraded_share"] == kpis["degraded_share"] != "0.0%"
    assert {c: number(row["total"]) for c, row in seen.classes.items()} == want["classes"]

    assert set(seen.locations) == set(want["locations"])
    for location_id, row in seen.locations.items():
        loc, mine = want["locations"][location_id], want["per_location"].get(location_id, {"vehicles": 0, "accepted": 0, "people": 0})
        assert row["location"] == f"{loc.address}, {loc.city}" and row["country"] == loc.country
        assert number(row["images_total"]) == loc.images_total and number(row["images_distorted"]) == loc.images_distorted
        assert number(row["vehicles"]) == mine["vehicles"] and number(row["images_accepted"]) == mine["accepted"]
        assert number(row["people"]) == mine["people"]
        assert row["vehicles_per_image"] == (f"{mine['vehicles'] / mine['accepted']:.2f}" if mine["accepted"] else "–")

    assert [key for key, _ in seen.gallery] == reported.newest[:GALLERY_SIZE]
    assert all(0 < width <= 480 for _, width in seen.gallery)  # decoded, downscaled thumbnails
    assert set(seen.screenshots) == {pid for pid, _, _ in PAGES}
    assert all(p.stat().st_size > 10_000 for p in seen.screenshots.values())
    assert 0.5e6 < written.size < 2e6  # the Vega bundle (0.9 MB) once, data and 12 thumbnails
    html = path.read_text(encoding="utf-8")
    assert html.count("window.vegaEmbed=") == 1 and "<link" not in html and "src=\"http" not in html


def test_the_empty_database_gets_a_page_that_says_so(engine, tmp_path):
    from traffic_platform.orchestration.sql.reporting_tables import ensure_reporting_tables

    ensure_reporting_tables(engine)
    with engine.begin() as conn:  # the views exist, over nothing
        apply_views(conn, load_views())
        assert conn.execute(text("SELECT COUNT(*) FROM v_traffic_counts_daily_wide")).scalar_one() == 0
    empty = page_path(tmp_path)
    write_dashboard(engine, LocalObjectStore(tmp_path / "objects"), empty)
    missing = tmp_path / "missing" / "index.html"
    with engine.begin() as conn:
        conn.execute(text("DROP VIEW v_locations"))  # never reported: the views cannot be read
    write_dashboard(engine, None, missing)

    with chromium() as browser:
        seen_empty = browse(browser, empty, tmp_path / "shots")
        seen_missing = browse(browser, missing)

    _only_the_file(seen_empty, empty)
    _only_the_file(seen_missing, missing)
    assert "No data yet" in seen_empty.empty_text and "no counted images yet" in seen_empty.empty_text
    assert "cannot be read" in seen_missing.empty_text and "traffic-platform report" in seen_missing.empty_text
    assert seen_empty.charts == {} and (tmp_path / "shots" / "dashboard-empty.png").is_file()
