"""The date and time-of-day dimensions, as rows (the ``reporting/dim_calendar`` asset writes them).

They are real tables, not views: a view that generates a row per day needs a recursive
query with date arithmetic and an ISO week function, and MySQL and SQLite spell both
differently (SQLite 3.40 has no ``%V``), while the view files must run unchanged on
both. A few thousand rows computed here are exact on every database.

The count views carry the keys: ``date`` (the local day of ``window_start``) and
``time_slot`` (the 15-minute slot the window starts in, 0-95; see
:func:`.view_files.time_slot_sql`).
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from typing import Any

SLOT_MINUTES = 15
SLOTS_PER_DAY = 24 * 60 // SLOT_MINUTES  # 96

# Part of day by hour: [start hour, name); what "morning traffic" means in the reports.
PARTS_OF_DAY: tuple[tuple[int, str], ...] = ((0, "night"), (6, "morning"), (12, "afternoon"), (18, "evening"))


def part_of_day(hour: int) -> str:
    name = PARTS_OF_DAY[0][1]
    for start, label in PARTS_OF_DAY:
        if hour >= start:
            name = label
    return name


def date_row(day: date) -> dict[str, Any]:
    iso_year, iso_week, weekday = day.isocalendar()
    return {
        "date": day,
        "year": day.year,
        "quarter": (day.month - 1) // 3 + 1,
        "month": day.month,
        "month_name": calendar.month_name[day.month],
        "day_of_month": day.day,
        "iso_year": iso_year,
        "iso_week": iso_week,
        "weekday": weekday,
        "weekday_name": calendar.day_name[weekday - 1],
        "is_weekend": int(weekday >= 6),
    }


def date_rows(first_year: int, last_year: int) -> list[dict[str, Any]]:
    """One row per day of the whole calendar years ``first_year``..``last_year`` (Power BI wants a
    contiguous date table covering whole years)."""
    day, end = date(first_year, 1, 1), date(last_year, 12, 31)
    rows = []
    while day <= end:
        rows.append(date_row(day))
        day += timedelta(days=1)
    return rows


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def time_of_day_rows() -> list[dict[str, Any]]:
    """The 96 15-minute slots of a day."""
    rows = []
    for slot in range(SLOTS_PER_DAY):
        start = slot * SLOT_MINUTES
        rows.append({
            "time_slot": slot,
            "slot_start": _hhmm(start),
            "slot_end": _hhmm(start + SLOT_MINUTES),
            "hour": start // 60,
            "minute": start % 60,
            "part_of_day": part_of_day(start // 60),
        })
    return rows
