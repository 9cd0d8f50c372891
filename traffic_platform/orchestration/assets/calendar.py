"""The date and time-of-day dimensions the count views join to (rows from :mod:`..sql.calendar`)."""


import time
from datetime import UTC, datetime

import dagster as dg
from sqlalchemy import func, select

from ...storage.tables import captures
from ..resources import DatabaseResource
from ..sql.calendar import date_rows, time_of_day_rows
from ..sql.reporting_tables import date_dimension, ensure_reporting_tables, time_of_day_dimension
from ..sql.transactions import write_transaction
from .ingest_tables import CAPTURES
from .locations import SERVING_GROUP

CALENDAR = dg.AssetKey(["reporting", "dim_calendar"])


@dg.asset(
    key=CALENDAR,
    group_name=SERVING_GROUP,
    deps=[CAPTURES],
    kinds={"sql"},
    description="dim_date (one row per local day of every whole calendar year from the first image's year to "
    "the last image's or this year, whichever is later: year, quarter, month, ISO week, weekday, weekend flag) "
    "and dim_time_of_day (the 96 15-minute slots: hour, minute, part of day). Rebuilt whole in one transaction.",
    metadata={"tables": "dim_date, dim_time_of_day"},
)
def dim_calendar(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    engine = database.get_engine()
    ensure_reporting_tables(engine)
    this_year = datetime.now(UTC).year
    began = time.perf_counter()
    with write_transaction(engine) as conn:
        first, last = conn.execute(select(func.min(captures.c.captured_at), func.max(captures.c.captured_at))).one()
        first_year = min(first.year, this_year) if first else this_year
        last_year = max(last.year, this_year) if last else this_year
        days = date_rows(first_year, last_year)
        conn.execute(date_dimension.delete())
        conn.execute(date_dimension.insert(), days)
        conn.execute(time_of_day_dimension.delete())
        conn.execute(time_of_day_dimension.insert(), time_of_day_rows())
    return dg.MaterializeResult(
        metadata={
            "days": dg.MetadataValue.int(len(days)),
            "first_day": dg.MetadataValue.text(str(days[0]["date"])),
            "last_day": dg.MetadataValue.text(str(days[-1]["date"])),
            "seconds": dg.MetadataValue.float(round(time.perf_counter() - began, 3)),
        }
    )
