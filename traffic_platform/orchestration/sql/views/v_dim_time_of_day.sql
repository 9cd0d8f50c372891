-- Power BI contract: the time-of-day dimension, the 96 15-minute slots of a local day.
-- Join the count views on time_slot.
CREATE OR REPLACE VIEW v_dim_time_of_day AS
SELECT
    t.time_slot,
    t.slot_start,
    t.slot_end,
    t.hour,
    t.minute,
    t.part_of_day
FROM dim_time_of_day t;
