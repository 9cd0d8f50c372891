"""The location dimension analysts slice by: names, zone, first/last image, activity."""


import time
from datetime import UTC, datetime, timedelta

import dagster as dg
from sqlalchemy import DateTime, bindparam, func, select, text

from ..resources import DatabaseResource
from ..settings import OrchestrationSettings
from ..sql.reporting_tables import ensure_reporting_tables, location_dimension
from ..sql.transactions import write_transaction
from .ingest_tables import CAPTURES, LOCATIONS

SERVING_GROUP = "serving"
LOCATION_DIMENSION = dg.AssetKey(["reporting", "dim_locations"])

_REFRESH = text(
    """
INSERT INTO dim_locations (location_id, address, address_display, city, country, timezone, first_captured_at,
    last_captured_at, last_ingested_at, images_total, images_distorted, is_active, refreshed_at)
SELECT l.id, l.address, l.address_display, l.city, l.country, l.timezone, s.first_at, s.last_at, s.last_ingested,
       COALESCE(s.images, 0), COALESCE(s.distorted, 0),
       CASE WHEN s.last_ingested >= :active_since THEN 1 ELSE 0 END, :refreshed_at
FROM locations l
LEFT JOIN (
    SELECT location_id, MIN(captured_at) AS first_at, MAX(captured_at) AS last_at, MAX(ingested_at) AS last_ingested,
           COUNT(*) AS images, SUM(CASE WHEN status = 'distorted' THEN 1 ELSE 0 END) AS distorted
    FROM captures GROUP BY location_id
) s ON s.location_id = l.id
"""
)


@dg.asset(
    key=LOCATION_DIMENSION,
    group_name=SERVING_GROUP,
    deps=[LOCATIONS, CAPTURES],
    kinds={"sql"},
    description="dim_locations: every location with display names, IANA zone, first/last image, image "
    "totals and whether it is active (an image in the last TRAFFIC_ACTIVE_LOCATION_DAYS days). "
    "Rebuilt whole in one transaction.",
)
def dim_locations(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    settings = OrchestrationSettings.from_env()
    engine = database.get_engine()
    ensure_reporting_tables(engine)
    now = datetime.now(UTC).replace(tzinfo=None)
    began = time.perf_counter()
    with write_transaction(engine) as conn:
        conn.execute(location_dimension.delete())
        conn.execute(
            _REFRESH.bindparams(
                bindparam("active_since", now - timedelta(days=settings.active_location_days), type_=DateTime),
                bindparam("refreshed_at", now, type_=DateTime),
            )
        )
        rows, active = conn.execute(
            select(func.count(), func.coalesce(func.sum(location_dimension.c.is_active), 0))
        ).one()
    return dg.MaterializeResult(
        metadata={
            "locations": dg.MetadataValue.int(int(rows)),
            "active_locations": dg.MetadataValue.int(int(active)),
            "seconds": dg.MetadataValue.float(round(time.perf_counter() - began, 3)),
        }
    )
