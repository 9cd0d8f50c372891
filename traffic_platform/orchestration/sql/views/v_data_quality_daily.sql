-- Generated from traffic_platform/orchestration/sql/templates/v_data_quality_daily.sql.template; do not edit.
-- Regenerate: .venv/bin/python -m traffic_platform.orchestration.sql.view_files
-- Power BI contract: data quality per location and local day: images expected, received, accepted,
-- distorted, coverage, distorted share, images excluded by camera health (frozen or slate frames), degraded images and their share, and the model versions reported that day (from traffic_counts_daily).
CREATE OR REPLACE VIEW v_data_quality_daily AS
SELECT
    s.location_id,
    l.address_display AS address,
    l.city,
    l.country,
    l.timezone,
    s.day AS date,
    s.expected_images AS images_expected,
    s.images_received,
    s.images_accepted,
    s.images_distorted,
    s.coverage,
    s.images_distorted * 1e0 / s.images_received AS distorted_share,
    COALESCE(s.images_excluded_health, 0) AS images_excluded_health,
    s.images_degraded,
    CASE WHEN s.images_accepted - COALESCE(s.images_excluded_health, 0) > 0
         THEN s.images_degraded * 1e0 / (s.images_accepted - COALESCE(s.images_excluded_health, 0)) END AS degraded_share,
    s.cadence_s,
    s.cadence_source,
    s.first_captured_at,
    s.last_captured_at,
    COALESCE(m.model_version_count, 0) AS model_version_count,
    m.model_versions,
    s.computed_at
FROM capture_summary_daily s
JOIN locations l ON l.id = s.location_id
LEFT JOIN (
    SELECT
        m.location_id,
        DATE(m.window_start) AS day,
        COUNT(DISTINCT m.model_version) AS model_version_count,
        GROUP_CONCAT(DISTINCT m.model_version) AS model_versions
    FROM traffic_counts_daily m
    GROUP BY m.location_id, DATE(m.window_start)
) m ON m.location_id = s.location_id AND m.day = s.day;
