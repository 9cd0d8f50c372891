-- Generated from traffic_platform/orchestration/sql/templates/v_traffic_counts.sql.template; do not edit.
-- Regenerate: .venv/bin/python -m traffic_platform.orchestration.sql.view_files
-- Power BI contract: traffic counts per location, hourly window (local time), traffic class and model version.
-- One row per class for every window with at least one image (zero-filled).
CREATE OR REPLACE VIEW v_traffic_counts_hourly AS
SELECT
    t.location_id,
    l.address_display AS address,
    l.city,
    l.country,
    l.timezone,
    t.window_start,
    t.traffic_class,
    t.model_name,
    t.model_version,
    t.images_received,
    t.images_accepted,
    t.images_distorted,
    t.total_count,
    t.mean_per_image,
    t.max_per_image,
    t.share_with_any,
    t.expected_images,
    t.coverage,
    t.computed_at
FROM traffic_counts_hourly t
JOIN locations l ON l.id = t.location_id;
