-- Power BI contract: the location dimension (one row per location).
CREATE OR REPLACE VIEW v_locations AS
SELECT
    d.location_id,
    d.address_display AS address,
    d.address AS address_token,
    d.city,
    d.country,
    d.timezone,
    d.first_captured_at,
    d.last_captured_at,
    d.last_ingested_at,
    d.images_total,
    d.images_distorted,
    d.is_active,
    d.refreshed_at
FROM dim_locations d;
