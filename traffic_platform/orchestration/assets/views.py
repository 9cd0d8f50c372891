"""The analysts' views over the reporting tables (package data, see :mod:`..sql.view_files`)."""


import dagster as dg

from ..resources import DatabaseResource
from ..settings import OrchestrationSettings
from ..sql.dialects import MYSQL, dialect_of
from ..sql.reporting_tables import ensure_reporting_tables
from ..sql.reporting_user import create_reporting_user
from ..sql.transactions import write_transaction
from ..sql.view_files import VIEWS, apply_views, load_views
from ..windows import WINDOWS
from .calendar import CALENDAR
from .camera_health import CAMERA_HEALTH
from .ingest_tables import LOCATIONS
from .locations import LOCATION_DIMENSION, SERVING_GROUP
from .reporting import CAPTURE_SUMMARY, COUNTS_KEYS

REPORTING_VIEWS = dg.AssetKey(["reporting", "views"])


@dg.asset(
    key=REPORTING_VIEWS,
    group_name=SERVING_GROUP,
    deps=[*COUNTS_KEYS.values(), CAPTURE_SUMMARY, LOCATION_DIMENSION, CALENDAR, LOCATIONS, CAMERA_HEALTH],
    kinds={"sql"},
    description="Creates or replaces the Power BI views (sql/views/*.sql, shipped in the package): "
    f"{', '.join(name for window in WINDOWS for name in (window.view, window.wide_view))}, v_data_quality_daily, "
    "v_capture_summary_daily, v_camera_health, v_locations, v_dim_date, v_dim_time_of_day; then, with "
    "TRAFFIC_REPORTING_USER set (MySQL), gives that read-only user SELECT on exactly these views.",
)
def reporting_views(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    views = load_views()
    engine = database.get_engine()
    ensure_reporting_tables(engine)
    with write_transaction(engine) as conn:
        names = apply_views(conn, views)
    metadata = {"views": dg.MetadataValue.json(names), "directory": dg.MetadataValue.path(str(VIEWS))}
    settings = OrchestrationSettings.from_env()
    if settings.reporting_user and dialect_of(engine) == MYSQL:  # grants follow the views (a new view included)
        create_reporting_user(engine, settings.reporting_user, settings.reporting_password or "")
        metadata["reporting_user"] = dg.MetadataValue.text(settings.reporting_user)
    return dg.MaterializeResult(metadata=metadata)
