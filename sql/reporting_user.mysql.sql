-- Rendered from traffic_platform/orchestration/sql/templates/reporting_user.mysql.sql.template (one grant per view); do not edit.
-- Regenerate: .venv/bin/python -m traffic_platform.orchestration.sql.reporting_user > sql/reporting_user.mysql.sql
-- A read-only reporting user (Power BI, analysts): it may SELECT the views and nothing else.
-- The views run with SQL SECURITY DEFINER (the MySQL/MariaDB default), so reading a view needs no
-- grant on the tables under it. Substitute ${user}, ${host} (e.g. %), ${database} and ${password}
-- (a quoted string), or let `traffic-platform db create-reporting-user NAME` do it.
CREATE USER IF NOT EXISTS '${user}'@'${host}' IDENTIFIED BY ${password};
ALTER USER '${user}'@'${host}' IDENTIFIED BY ${password};
REVOKE ALL PRIVILEGES, GRANT OPTION FROM '${user}'@'${host}';
GRANT SELECT ON `${database}`.`v_camera_health` TO '${user}'@'${host}';
GRANT SELECT ON `${database}`.`v_capture_summary_daily` TO '${user}'@'${host}';
GRANT SELECT ON `${database}`.`v_data_quality_daily` TO '${user}'@'${host}';
GRANT SELECT ON `${database}`.`v_dim_date` TO '${user}'@'${host}';
GRANT SELECT ON `${database}`.`v_dim_time_of_day` TO '${user}'@'${host}';
GRANT SELECT ON `${database}`.`v_locations` TO '${user}'@'${host}';
GRANT SELECT ON `${database}`.`v_traffic_counts_15min` TO '${user}'@'${host}';
GRANT SELECT ON `${database}`.`v_traffic_counts_15min_wide` TO '${user}'@'${host}';
GRANT SELECT ON `${database}`.`v_traffic_counts_daily` TO '${user}'@'${host}';
GRANT SELECT ON `${database}`.`v_traffic_counts_daily_wide` TO '${user}'@'${host}';
GRANT SELECT ON `${database}`.`v_traffic_counts_hourly` TO '${user}'@'${host}';
GRANT SELECT ON `${database}`.`v_traffic_counts_hourly_wide` TO '${user}'@'${host}';
