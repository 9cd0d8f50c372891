"""Known data with every reporting asset and view materialised, shared by the view and API tests."""

from __future__ import annotations

import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from sqlalchemy import text

from traffic_platform.orchestration.assets.calendar import dim_calendar
from traffic_platform.orchestration.assets.locations import dim_locations
from traffic_platform.orchestration.assets.reporting import reporting_assets
from traffic_platform.orchestration.assets.views import reporting_views
from traffic_platform.orchestration.partitions import daily_partitions
from traffic_platform.orchestration.resources import DatabaseResource, ObjectStoreResource

from . import datagen

DAYS = [d.date().isoformat() for d in datagen.DAYS]


def build(repo, db_url: str, materialize_day=None, *, days: list[str] | None = None) -> datagen.Dataset:
    """datagen's data, the reporting partitions of ``days`` (default: datagen's three days) and the
    serving assets (locations, calendar, views). ``materialize_day``: the orchestration tests'
    fixture (assets and checks); without it, the reporting assets alone."""
    data = datagen.generate(repo)
    # an empty store of its own: capture_features reads stored images (datagen stores none), and
    # the default store would be var/objects under the working directory
    objects = Path(tempfile.mkdtemp(prefix="traffic-objects-")).as_uri()
    resources = {"database": DatabaseResource(url=db_url), "object_store": ObjectStoreResource(uri=objects)}
    assets = reporting_assets(daily_partitions())
    for day in days or DAYS:
        result = materialize_day(day) if materialize_day else dg.materialize(assets, partition_key=day, resources=resources)
        assert result.success
    assert dg.materialize([dim_locations, dim_calendar, reporting_views], resources=resources).success
    return data


def as_datetime(value: Any) -> datetime:
    """A view's datetime as read on either database (SQLite hands back text)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def as_date(value: Any) -> date:
    return value if isinstance(value, date) and not isinstance(value, datetime) else date.fromisoformat(str(value)[:10])


def view_rows(conn, view: str) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(text(f"SELECT * FROM {view}")).mappings()]
