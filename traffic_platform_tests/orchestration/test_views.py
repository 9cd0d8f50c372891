"""The analysts' views on SQLite and MariaDB, against brute force from the generated records."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text

from traffic_platform.domain.classes import TRAFFIC_CLASSES
from traffic_platform.orchestration.windows import WINDOWS

from . import datagen
from .reporting_data import DAYS, as_date, as_datetime, build, view_rows

VEHICLES = ("car", "truck", "bus", "motorcycle")


def _close(a, b) -> bool:
    return a == b if a is None or b is None else math.isclose(a, b, rel_tol=1e-12)


def test_views_equal_brute_force(repo, engine, db_url, materialize_day):
    data = build(repo, db_url, materialize_day)
    with engine.connect() as conn:
        for window in WINDOWS:
            long_rows = view_rows(conn, window.view)
            assert long_rows
            for row in long_rows:  # the dimension keys
                start = as_datetime(row["window_start"])
                assert as_date(row["date"]) == start.date()
                assert row["time_slot"] == start.hour * 4 + start.minute // 15
            joined = conn.execute(text(
                f"SELECT COUNT(*) FROM {window.view} c JOIN v_dim_date d ON d.date = c.date"
                " JOIN v_dim_time_of_day s ON s.time_slot = c.time_slot")).scalar_one()
            assert joined == len(long_rows)  # every row finds its day and slot

            # wide: one row per location x window x model, one column per class
            expected: dict[tuple, dict[str, int]] = {}
            shares: dict[tuple, float | None] = {}
            long_expected: dict[tuple, dict] = {}
            for day in DAYS:
                models = datagen.reported_models(data, day)
                figures = datagen.expected_counts(data, day, window, models, datagen.expected_cadences(data, day))
                long_expected |= figures
                for (loc, start, cls, name, version), f in figures.items():
                    entry = expected.setdefault((loc, start, name, version), {"images_received": f["images_received"],
                                                                               "images_accepted": f["images_accepted"],
                                                                               "images_degraded": f["images_degraded"],
                                                                               "images_excluded_health": f["images_excluded_health"]})
                    entry[cls] = f["total_count"]
                    shares[(loc, start, name, version)] = f["degraded_share"]
            long = {(r["location_id"], as_datetime(r["window_start"]), r["traffic_class"], r["model_name"],
                     r["model_version"]): r for r in long_rows}
            assert set(long) == set(long_expected)
            for key, want in long_expected.items():
                assert long[key]["images_degraded"] == want["images_degraded"], key
                assert _close(long[key]["degraded_share"], want["degraded_share"]), key
            assert any(want["degraded_share"] for want in long_expected.values())
            wide = {(r["location_id"], as_datetime(r["window_start"]), r["model_name"], r["model_version"]): r
                    for r in view_rows(conn, window.wide_view)}
            assert set(wide) == set(expected)
            for key, want in expected.items():
                got = wide[key]
                assert {c: got[c] for c in (*TRAFFIC_CLASSES, "images_received", "images_accepted",
                                            "images_degraded", "images_excluded_health")} == want, key
                assert _close(got["degraded_share"], shares[key]), key
                assert got["vehicles"] == sum(want[c] for c in VEHICLES)
                assert got["time_slot"] == key[1].hour * 4 + key[1].minute // 15

        # the date dimension: whole years from the data's first year to this one, contiguous
        dates = {as_date(r["date"]): r for r in view_rows(conn, "v_dim_date")}
        first, last = date(2022, 1, 1), date(max(2022, datetime.now(UTC).year), 12, 31)
        assert min(dates) == first and max(dates) == last and len(dates) == (last - first).days + 1
        for day, r in dates.items():
            assert (r["year"], r["month"], r["day_of_month"]) == (day.year, day.month, day.day)
            assert r["quarter"] == {1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 2, 7: 3, 8: 3, 9: 3, 10: 4, 11: 4, 12: 4}[day.month]
            assert (r["iso_year"], r["iso_week"], r["weekday"]) == (int(day.strftime("%G")), int(day.strftime("%V")), int(day.strftime("%u")))
            assert r["is_weekend"] == (day.strftime("%a") in ("Sat", "Sun"))
            assert r["month_name"] == day.strftime("%B") and r["weekday_name"] == day.strftime("%A")
        assert dates[date(2022, 10, 12)]["weekday_name"] == "Wednesday" and dates[date(2021 + 1, 1, 1)]["iso_week"] == 52

        slots = view_rows(conn, "v_dim_time_of_day")
        assert [r["time_slot"] for r in slots] == list(range(96)) or sorted(r["time_slot"] for r in slots) == list(range(96))
        for r in slots:
            start = datetime(2022, 1, 1) + timedelta(minutes=15 * r["time_slot"])
            assert (r["slot_start"], r["hour"], r["minute"]) == (start.strftime("%H:%M"), start.hour, start.minute)
            assert r["part_of_day"] == ("night" if start.hour < 6 else "morning" if start.hour < 12
                                        else "afternoon" if start.hour < 18 else "evening")

        # data quality per location x day
        quality = {(r["location_id"], as_date(r["date"])): r for r in view_rows(conn, "v_data_quality_daily")}
        expected_quality = {}
        for day in DAYS:
            cadences = datagen.expected_cadences(data, day)
            versions = {v for _, v in datagen.reported_models(data, day)}
            by_loc = defaultdict(list)
            for r in datagen.partition_records(data, day):
                by_loc[datagen._loc_id(data, r)].append(r)
            for loc, records in by_loc.items():
                distorted = sum(r.status == "distorted" for r in records)
                degraded = sum(r.status == "accepted" and bool(r.quality_flags) for r in records)
                expected_images = 86400 / cadences[loc][1]
                expected_quality[(loc, date.fromisoformat(day))] = {
                    "images_received": len(records), "images_accepted": len(records) - distorted,
                    "images_distorted": distorted, "images_expected": expected_images,
                    "coverage": len(records) / expected_images, "distorted_share": distorted / len(records),
                    "images_degraded": degraded,  # nothing is health-excluded here (no stored images)
                    "degraded_share": degraded / (len(records) - distorted) if len(records) > distorted else None,
                    "versions": versions,
                }
        assert set(quality) == set(expected_quality)
        for key, want in expected_quality.items():
            got = quality[key]
            assert {k: got[k] for k in ("images_received", "images_accepted", "images_distorted", "images_degraded")} == {
                k: want[k] for k in ("images_received", "images_accepted", "images_distorted", "images_degraded")}, key
            assert got["images_excluded_health"] == 0
            for name in ("images_expected", "coverage", "distorted_share", "degraded_share"):
                assert _close(got[name], want[name]), (key, name, got[name], want[name])
            assert set(got["model_versions"].split(",")) == want["versions"] and got["model_version_count"] == len(want["versions"])
