"""The data-quality page's degraded share: the chart's points and the KPI are the view's figures."""

from __future__ import annotations

import math

from sqlalchemy import text

from traffic_platform.dashboard.charts import build_specs, location_label
from traffic_platform.dashboard.data import load
from traffic_platform_tests.orchestration.reporting_data import as_date


def test_the_degraded_share_chart_and_kpi_are_the_views(reported, engine):
    data = load(engine, None)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT q.date, q.degraded_share, q.images_degraded, q.images_accepted, q.images_excluded_health, l.address, l.city"
            " FROM v_data_quality_daily q JOIN v_locations l ON l.location_id = q.location_id")).mappings().all()
    want = {(f"{r['address']}, {r['city']}", as_date(r["date"]).isoformat()): r for r in rows}
    points = build_specs(data)["quality_degraded"]["data"]["values"]
    got = {(p["location"], p["date"][:10]): p for p in points}
    assert set(got) == set(want) and len(points) == len(rows)
    for key, row in want.items():
        assert got[key]["degraded"] == row["images_degraded"], key
        share = row["degraded_share"]
        assert got[key]["degraded_share"] is None if share is None else math.isclose(got[key]["degraded_share"], share), key
    assert any(p["degraded_share"] for p in points)
    degraded = sum(r["images_degraded"] for r in rows)
    counted = sum(r["images_accepted"] - r["images_excluded_health"] for r in rows)
    assert degraded > 0 and math.isclose(data.kpis()["degraded_share"], degraded / counted)
    assert {location_label(loc) for loc in data.locations} >= {k[0] for k in want}
