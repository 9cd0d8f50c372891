-- Power BI contract: the date dimension, one row per local calendar day of the whole years the data spans.
-- Join the count views on date.
CREATE OR REPLACE VIEW v_dim_date AS
SELECT
    d.date,
    d.year,
    d.quarter,
    d.month,
    d.month_name,
    d.day_of_month,
    d.iso_year,
    d.iso_week,
    d.weekday,
    d.weekday_name,
    d.is_weekend
FROM dim_date d;
