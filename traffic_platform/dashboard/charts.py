"""The dashboard's charts as Vega-Lite specs, built with Altair (validated against the schema).

Data is inlined in each spec (``values``), so the page needs nothing but the Vega bundle it
carries. Local times are written as ISO text without a zone (``2022-10-12T07:00:00``), which
Vega parses as wall-clock time: what the views mean by local time.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from ..domain.classes import TRAFFIC_CLASSES
from .data import DashboardData

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
HOURLY_TREND_DAYS = 14  # the hourly trend shows the newest two weeks (the file stays small)
HEIGHT = 280


def location_label(loc: dict[str, Any]) -> str:
    return f"{loc['address']}, {loc['city']}"


def _local(value: date | datetime) -> str:
    return (value if isinstance(value, datetime) else datetime.combine(value, time())).isoformat()


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def build_specs(data: DashboardData) -> dict[str, dict[str, Any]]:
    """``{chart id: Vega-Lite spec}`` for every chart of every page."""
    import altair as alt

    labels = {loc["location_id"]: location_label(loc) for loc in data.locations}
    location = alt.Color("location:N", title="location", legend=alt.Legend(orient="bottom", columns=2))

    def chart(values: list[dict[str, Any]], title: str) -> alt.Chart:
        return alt.Chart(alt.Data(values=values), title=title).properties(width="container", height=HEIGHT)

    specs: dict[str, alt.TopLevelMixin] = {}
    day_axis = alt.X("yearmonthdate(date):T", title="local day",  # ticks at local midnight, one label per day at most
                     axis=alt.Axis(format="%b %d", tickCount={"interval": "day", "step": 1}, labelOverlap=True))

    newest = max((r["window_start"] for r in data.hourly), default=None)
    since = datetime.combine(newest.date() - timedelta(days=HOURLY_TREND_DAYS - 1), time()) if newest else None
    hourly, last, run = [], {}, 0
    for r in data.hourly:  # ordered by window_start: a gap of more than an hour starts a new line segment
        if not since or r["window_start"] < since:
            continue
        previous = last.get(r["location_id"])
        if previous is None or r["window_start"] - previous[0] > timedelta(hours=1):
            run += 1
            previous = (r["window_start"], run)
        last[r["location_id"]] = (r["window_start"], previous[1])
        hourly.append({"location": labels.get(r["location_id"], str(r["location_id"])), "window_start": _local(r["window_start"]),
                       "segment": previous[1], "vehicles_per_image": _ratio(r["vehicles"], r["images_accepted"]),
                       "images": r["images_accepted"]})
    specs["trend_hourly"] = chart(hourly, f"Vehicles per image, by hour (last {HOURLY_TREND_DAYS} days)").mark_line(point=True).encode(
        x=alt.X("window_start:T", title="local time"), y=alt.Y("vehicles_per_image:Q", title="vehicles per image"),
        color=location, detail="segment:N", tooltip=["location:N", alt.Tooltip("window_start:T", format="%Y-%m-%d %H:%M"),
                                 "vehicles_per_image:Q", "images:Q"])

    daily = [{"location": labels.get(r["location_id"], str(r["location_id"])), "date": _local(r["date"]),
              "vehicles": r["vehicles"], "images": r["images_accepted"]} for r in data.daily]
    specs["trend_daily"] = chart(daily, "Vehicles seen per day (sum over images)").mark_bar(width=alt.RelativeBandSize(0.85)).encode(
        x=day_axis, y=alt.Y("sum(vehicles):Q", title="vehicles"),
        color=location, tooltip=["location:N", alt.Tooltip("yearmonthdate(date):T", title="day"), "vehicles:Q", "images:Q"])

    per_location = [{"location": labels[r["location_id"]], "vehicles_per_image": None if r["vehicles_per_image"] is None
                     else round(r["vehicles_per_image"], 4), "images": r["images_accepted"]} for r in data.location_rows()]
    specs["locations_busyness"] = chart(per_location, "Vehicles per image, by location").mark_bar().encode(
        y=alt.Y("location:N", sort="-x", title=None), x=alt.X("vehicles_per_image:Q", title="vehicles per image"),
        tooltip=["location:N", "vehicles_per_image:Q", "images:Q"])

    week = [{"weekday": r["weekday_name"], "hour": r["hour"], "vehicles_per_image": _ratio(r["vehicles"], r["images_accepted"]),
             "images": r["images_accepted"]} for r in data.week]
    specs["time_heatmap"] = chart(week, "Vehicles per image, hour of day × weekday").mark_rect().encode(
        x=alt.X("hour:O", title="hour of day (local)", scale=alt.Scale(domain=list(range(24))), axis=alt.Axis(labelAngle=0)),
        y=alt.Y("weekday:O", sort=WEEKDAYS, scale=alt.Scale(domain=WEEKDAYS), title=None),
        color=alt.Color("vehicles_per_image:Q", title="vehicles / image", scale=alt.Scale(scheme="blues")),
        tooltip=["weekday:N", "hour:O", "vehicles_per_image:Q", "images:Q"])

    totals = data.class_totals()
    specs["classes_total"] = chart([{"class": c, "count": totals[c]} for c in TRAFFIC_CLASSES],
                                   "Road users by class (sum over images)").mark_bar().encode(
        x=alt.X("class:N", sort=list(TRAFFIC_CLASSES), title=None, axis=alt.Axis(labelAngle=0)), y=alt.Y("count:Q", title="road users"),
        color=alt.Color("class:N", sort=list(TRAFFIC_CLASSES), legend=None), tooltip=["class:N", "count:Q"])
    mix = [{"location": labels.get(r["location_id"], str(r["location_id"])), "class": c, "count": r[c]}
           for r in data.daily for c in TRAFFIC_CLASSES]
    specs["classes_by_location"] = chart(mix, "Class mix per location (share of road users)").mark_bar().encode(
        y=alt.Y("location:N", title=None), x=alt.X("sum(count):Q", stack="normalize", title="share", axis=alt.Axis(format="%")),
        color=alt.Color("class:N", sort=list(TRAFFIC_CLASSES), legend=alt.Legend(orient="bottom")),
        order=alt.Order("class_order:Q"), tooltip=["location:N", "class:N", alt.Tooltip("sum(count):Q", title="count")],
    ).transform_calculate(class_order=f"indexof({list(TRAFFIC_CLASSES)!r}, datum['class'])")

    quality = [{"location": labels.get(r["location_id"], str(r["location_id"])), "date": _local(r["date"]),
                "coverage": r["coverage"], "distorted_share": r["distorted_share"], "received": r["images_received"],
                "expected": r["images_expected"], "degraded_share": r["degraded_share"],
                "degraded": r["images_degraded"]} for r in data.quality]
    specs["quality_coverage"] = chart(quality, "Coverage: images received / expected").mark_line(point=True).encode(
        x=day_axis, y=alt.Y("coverage:Q", title="coverage", axis=alt.Axis(format="%")), color=location,
        tooltip=["location:N", alt.Tooltip("yearmonthdate(date):T", title="day"), alt.Tooltip("coverage:Q", format=".1%"),
                 "received:Q", "expected:Q"])
    specs["quality_distorted"] = chart(quality, "Distorted share of images received").mark_line(point=True).encode(
        x=day_axis, y=alt.Y("distorted_share:Q", title="distorted", axis=alt.Axis(format="%")), color=location,
        tooltip=["location:N", alt.Tooltip("yearmonthdate(date):T", title="day"),
                 alt.Tooltip("distorted_share:Q", format=".1%"), "received:Q"])
    specs["quality_degraded"] = chart(quality, "Degraded share of images counted (fog, low light, …)").mark_line(point=True).encode(
        x=day_axis, y=alt.Y("degraded_share:Q", title="degraded", axis=alt.Axis(format="%")), color=location,
        tooltip=["location:N", alt.Tooltip("yearmonthdate(date):T", title="day"),
                 alt.Tooltip("degraded_share:Q", format=".1%"), "degraded:Q"])

    config = {"font": "system-ui, sans-serif", "view": {"stroke": None}, "axis": {"labelFontSize": 11, "titleFontSize": 12},
              "title": {"fontSize": 14, "anchor": "start"}}
    return {name: {**spec.to_dict(), "config": config} for name, spec in specs.items()}
