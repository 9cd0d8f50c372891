-- Generated from traffic_platform/orchestration/sql/templates/v_traffic_counts_wide.sql.template; do not edit.
-- Regenerate: .venv/bin/python -m traffic_platform.orchestration.sql.view_files
-- Power BI contract: traffic counts per location, hourly window (local time) and model version,
-- one column per traffic class (total_count of that class) and vehicles = car, truck, bus, motorcycle.
-- date / time_slot join v_dim_date / v_dim_time_of_day.
CREATE OR REPLACE VIEW v_traffic_counts_hourly_wide AS
SELECT
    w.location_id,
    l.address_display AS address,
    l.city,
    l.country,
    l.timezone,
    w.window_start,
    DATE(w.window_start) AS date,
    CAST(SUBSTR(CAST(w.window_start AS CHAR), 12, 2) AS SIGNED) * 4 + CASE WHEN SUBSTR(CAST(w.window_start AS CHAR), 15, 2) < '15' THEN 0 WHEN SUBSTR(CAST(w.window_start AS CHAR), 15, 2) < '30' THEN 1 WHEN SUBSTR(CAST(w.window_start AS CHAR), 15, 2) < '45' THEN 2 ELSE 3 END AS time_slot,
    w.model_name,
    w.model_version,
    w.images_received,
    w.images_accepted,
    w.images_distorted,
    w.images_degraded,
    w.images_excluded_health,
    CASE WHEN w.images_accepted > 0 THEN w.images_degraded * 1e0 / w.images_accepted END AS degraded_share,
    w.expected_images,
    w.coverage,
    w.car,
    w.truck,
    w.bus,
    w.person,
    w.bicycle,
    w.motorcycle,
    w.car + w.truck + w.bus + w.motorcycle AS vehicles,
    w.computed_at
FROM (
    SELECT
        t.location_id,
        t.window_start,
        t.model_name,
        t.model_version,
        MAX(t.images_received) AS images_received,
        MAX(t.images_accepted) AS images_accepted,
        MAX(t.images_distorted) AS images_distorted,
        MAX(t.images_degraded) AS images_degraded,
        MAX(t.images_excluded_health) AS images_excluded_health,
        MAX(t.expected_images) AS expected_images,
        MAX(t.coverage) AS coverage,
        CAST(SUM(CASE WHEN t.traffic_class = 'car' THEN t.total_count ELSE 0 END) AS SIGNED) AS car,
        CAST(SUM(CASE WHEN t.traffic_class = 'truck' THEN t.total_count ELSE 0 END) AS SIGNED) AS truck,
        CAST(SUM(CASE WHEN t.traffic_class = 'bus' THEN t.total_count ELSE 0 END) AS SIGNED) AS bus,
        CAST(SUM(CASE WHEN t.traffic_class = 'person' THEN t.total_count ELSE 0 END) AS SIGNED) AS person,
        CAST(SUM(CASE WHEN t.traffic_class = 'bicycle' THEN t.total_count ELSE 0 END) AS SIGNED) AS bicycle,
        CAST(SUM(CASE WHEN t.traffic_class = 'motorcycle' THEN t.total_count ELSE 0 END) AS SIGNED) AS motorcycle,
        MAX(t.computed_at) AS computed_at
    FROM traffic_counts_hourly t
    GROUP BY t.location_id, t.window_start, t.model_name, t.model_version
) w
JOIN locations l ON l.id = w.location_id;
