-- Power BI contract: camera-health episodes per location (one row per location x state x episode);
-- times are UTC arrival times; ended_at is NULL while the problem lasts.
CREATE OR REPLACE VIEW v_camera_health AS
SELECT
    h.location_id,
    l.address_display AS address,
    l.city,
    l.country,
    l.timezone,
    h.state,
    CASE WHEN h.ended_at IS NULL THEN 'open' ELSE 'ended' END AS status,
    h.started_at,
    h.ended_at,
    h.reason,
    h.evidence,
    h.computed_at
FROM camera_health h
JOIN locations l ON l.id = h.location_id;
