-- Generated from traffic_platform/orchestration/sql/templates/v_traffic_counts.sql.template; do not edit.
-- Regenerate: .venv/bin/python -m traffic_platform.orchestration.sql.view_files
-- Power BI contract: traffic counts per location, 15min window (local time), traffic class and model version.
-- One row per class for every window with at least one image (zero-filled).
-- date / time_slot join v_dim_date / v_dim_time_of_day (the 15-minute slot the window starts in).
CREATE OR REPLACE VIEW v_traffic_counts_15min AS
SELECT
    t.location_id,
    l.address_display AS address,
    l.city,
    l.country,
    l.timezone,
    t.window_start,
    DATE(t.window_start) AS date,
    CAST(SUBSTR(CAST(t.window_start AS CHAR), 12, 2) AS SIGNED) * 4 + CASE WHEN SUBSTR(CAST(t.window_start AS CHAR), 15, 2) < '15' THEN 0 WHEN SUBSTR(CAST(t.window_start AS CHAR), 15, 2) < '30' THEN 1 WHEN SUBSTR(CAST(t.window_start AS CHAR), 15, 2) < '45' THEN 2 ELSE 3 END AS time_slot,
    t.traffic_class,
    t.model_name,
    t.model_version,
    t.images_received,
    t.images_accepted,
    t.images_distorted,
    t.images_degraded,
    CASE WHEN t.images_accepted > 0 THEN t.images_degraded * 1e0 / t.images_accepted END AS degraded_share,
    COALESCE(t.images_excluded_health, 0) AS images_excluded_health,
    t.total_count,
    t.mean_per_image,
    t.max_per_image,
    t.share_with_any,
    t.expected_images,
    t.coverage,
    t.computed_at
FROM traffic_counts_15min t
JOIN locations l ON l.id = t.location_id;
