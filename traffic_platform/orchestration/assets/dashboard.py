"""``reporting/dashboard``: the built-in dashboard (one self-contained HTML file) from the views."""

from pathlib import Path

import dagster as dg

from ...dashboard import write_dashboard
from ...dashboard.data import GALLERY_SIZE
from ..resources import DatabaseResource, ObjectStoreResource
from .locations import SERVING_GROUP
from .views import REPORTING_VIEWS

DASHBOARD = dg.AssetKey(["reporting", "dashboard"])


class DashboardConfig(dg.Config):
    path: str | None = None  # default: TRAFFIC_DASHBOARD_PATH, else <TRAFFIC_HOME>/dashboard/index.html
    gallery_size: int = GALLERY_SIZE


@dg.asset(
    key=DASHBOARD,
    group_name=SERVING_GROUP,
    deps=[REPORTING_VIEWS],
    kinds={"html"},
    description="Renders the built-in dashboard from the views and the newest annotated images: one HTML file "
    "with its charting library (Vega-Lite), data and thumbnails inlined, so it opens offline.",
)
def dashboard(context: dg.AssetExecutionContext, config: DashboardConfig, database: DatabaseResource,
              object_store: ObjectStoreResource) -> dg.MaterializeResult:
    path = Path(config.path) if config.path else object_store.settings().dashboard_path
    written = write_dashboard(database.get_engine(), object_store.get_store(), path, gallery_size=config.gallery_size)
    data = written.data
    model = data.model
    metadata = {
        "path": dg.MetadataValue.path(str(written.path)),
        "size_bytes": dg.MetadataValue.int(written.size),
        "pages": dg.MetadataValue.json(written.pages),
        "model": dg.MetadataValue.text(f"{model.name} {model.version}" if model else "none (no data yet)"),
        "gallery_images": dg.MetadataValue.int(len(data.gallery)),
    }
    if data.problem:
        context.log.warning(data.problem)
    return dg.MaterializeResult(metadata=metadata)
