-- Power BI contract: images per location and local day, with the cadence used for expected images.
CREATE OR REPLACE VIEW v_capture_summary_daily AS
SELECT
    s.location_id,
    l.address_display AS address,
    l.city,
    l.country,
    l.timezone,
    s.day,
    s.images_received,
    s.images_accepted,
    s.images_distorted,
    s.first_captured_at,
    s.last_captured_at,
    s.observed_cadence_s,
    s.cadence_s,
    s.cadence_source,
    s.expected_images,
    s.coverage,
    s.computed_at
FROM capture_summary_daily s
JOIN locations l ON l.id = s.location_id;
