"""The ingest tables as observed external assets: lineage starts where the data starts.

The ingest service writes these tables; Dagster only observes them. An observation
records the row count and the newest write time, and uses them as the data version, so
the UI shows when new captures arrived and which reporting partitions are behind.
"""


from collections.abc import Iterator

import dagster as dg
from sqlalchemy import text

from ..dagster_previews import accepted_previews
from ..resources import DatabaseResource

INGEST_GROUP = "ingest"

LOCATIONS = dg.AssetKey(["ingest", "locations"])
CAPTURES = dg.AssetKey(["ingest", "captures"])
DETECTIONS = dg.AssetKey(["ingest", "detections"])
CAPTURE_COUNTS = dg.AssetKey(["ingest", "capture_counts"])
INGEST_TABLE_KEYS = (LOCATIONS, CAPTURES, DETECTIONS, CAPTURE_COUNTS)

# Asset key -> (table, description, observation query). Table names are fixed here.
_TABLES: dict[dg.AssetKey, tuple[str, str, str]] = {
    LOCATIONS: (
        "locations",
        "Camera locations (address, city, country, IANA zone), one row per distinct file-name location.",
        "SELECT COUNT(*), MAX(created_at) FROM locations",
    ),
    CAPTURES: (
        "captures",
        "One row per ingested image: local and UTC capture time, status accepted/distorted, quality "
        "metrics, object keys, ingest model, timings, ingested_at (UTC).",
        "SELECT COUNT(*), MAX(ingested_at) FROM captures",
    ),
    DETECTIONS: (
        "detections",
        "Road users found per capture and model version: traffic class, label, score, box in pixels.",
        "SELECT COUNT(*), MAX(id) FROM detections",
    ),
    CAPTURE_COUNTS: (
        "capture_counts",
        "Per capture and model version, the count of each of the six classes (zero-filled).",
        "SELECT COUNT(*), MAX(c.ingested_at) FROM capture_counts k JOIN captures c ON c.capture_id = k.capture_id",
    ),
}


def _spec(key: dg.AssetKey) -> dg.AssetSpec:
    table, description, _ = _TABLES[key]
    return dg.AssetSpec(
        key,
        description=description,
        group_name=INGEST_GROUP,
        kinds={"sql"},
        metadata={"table": table, "written_by": "traffic_platform.ingest (persist worker / Lambda)"},
    )


with accepted_previews("multi_observable_source_asset"):
    @dg.multi_observable_source_asset(
        specs=[_spec(key) for key in INGEST_TABLE_KEYS],
        can_subset=True,
        description="Observe the ingest tables: row count and newest write as the data version.",
    )
    def ingest_tables(context: dg.AssetExecutionContext, database: DatabaseResource) -> Iterator[dg.ObserveResult]:
        with database.get_engine().connect() as conn:
            for key in context.selected_asset_keys:
                table, _, query = _TABLES[key]
                rows, newest = conn.execute(text(query)).one()
                newest_text = "" if newest is None else str(newest)
                yield dg.ObserveResult(
                    asset_key=key,
                    data_version=dg.DataVersion(f"{int(rows)}:{newest_text}"),
                    metadata={"rows": dg.MetadataValue.int(int(rows)), "newest": dg.MetadataValue.text(newest_text or "none")},
                )
