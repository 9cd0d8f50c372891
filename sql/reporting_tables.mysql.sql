-- MySQL / Aurora MySQL DDL of the reporting tables written by Dagster.
-- Generated from traffic_platform/orchestration/sql/reporting_tables.py; do not edit.
-- The assets create these tables when absent (CREATE TABLE only if missing).
-- Regenerate: .venv/bin/python -m traffic_platform.orchestration.sql.reporting_tables > sql/reporting_tables.mysql.sql

CREATE TABLE camera_health (
	location_id INTEGER NOT NULL,
	state VARCHAR(16) NOT NULL COMMENT 'offline | frozen | slate | moved | obstructed | clock_drift',
	started_at DATETIME(6) NOT NULL COMMENT 'UTC arrival of the first affected image',
	ended_at DATETIME(6) COMMENT 'UTC arrival of the first image after it; NULL while open',
	reason VARCHAR(400) NOT NULL,
	evidence TEXT NOT NULL COMMENT 'JSON',
	computed_at DATETIME(6) NOT NULL COMMENT 'UTC',
	CONSTRAINT pk_camera_health PRIMARY KEY (location_id, state, started_at)
)ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE INDEX ix_camera_health_started_at ON camera_health (started_at);

CREATE TABLE capture_features (
	capture_id CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	location_id INTEGER NOT NULL,
	day DATE NOT NULL COMMENT 'local calendar day of captured_at (the partition)',
	arrived_at DATETIME(6) NOT NULL COMMENT 'captures.ingested_at, UTC',
	dhash VARCHAR(16) COMMENT '64-bit difference hash, hex',
	thumb VARCHAR(288) COMMENT '16x9 grey thumbnail, hex',
	uniform_share DOUBLE,
	repeated_line_share DOUBLE,
	mean_level DOUBLE,
	sharpness DOUBLE COMMENT 'captures.sharpness',
	feature_error VARCHAR(32) COMMENT 'no_image | image_missing | undecodable',
	frozen INTEGER NOT NULL COMMENT '1 if the frame has this camera-health state',
	slate INTEGER NOT NULL COMMENT '1 if the frame has this camera-health state',
	moved INTEGER NOT NULL COMMENT '1 if the frame has this camera-health state',
	obstructed INTEGER NOT NULL COMMENT '1 if the frame has this camera-health state',
	clock_drift INTEGER NOT NULL COMMENT '1 if the frame has this camera-health state',
	excluded INTEGER NOT NULL COMMENT '1 if frozen or slate: left out of the counts',
	evidence TEXT NOT NULL COMMENT 'JSON: the numbers behind the flags',
	computed_at DATETIME(6) NOT NULL COMMENT 'UTC',
	PRIMARY KEY (capture_id)
)ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE INDEX ix_capture_features_day ON capture_features (day);

CREATE INDEX ix_capture_features_location_arrived ON capture_features (location_id, arrived_at);

CREATE TABLE capture_summary_daily (
	location_id INTEGER NOT NULL,
	day DATE NOT NULL COMMENT 'local calendar day of captured_at',
	images_received INTEGER NOT NULL,
	images_accepted INTEGER NOT NULL,
	images_distorted INTEGER NOT NULL,
	first_captured_at DATETIME NOT NULL,
	last_captured_at DATETIME NOT NULL,
	observed_cadence_s DOUBLE COMMENT 'median gap between consecutive images (UTC), NULL if < 2 images',
	cadence_s DOUBLE NOT NULL COMMENT 'cadence used for expected_images',
	cadence_source VARCHAR(16) NOT NULL COMMENT 'setting | observed | fallback',
	expected_images DOUBLE NOT NULL COMMENT '86400 / cadence_s',
	coverage DOUBLE NOT NULL COMMENT 'images_received / expected_images',
	computed_at DATETIME(6) NOT NULL COMMENT 'UTC',
	images_excluded_health INTEGER COMMENT 'accepted images of frozen or slate frames',
	images_degraded INTEGER COMMENT 'accepted images not excluded by camera health that the gate flagged (fog, low light, ...)',
	CONSTRAINT pk_capture_summary_daily PRIMARY KEY (day, location_id)
)ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE INDEX ix_capture_summary_daily_location_day ON capture_summary_daily (location_id, day);

CREATE TABLE dim_date (
	date DATE NOT NULL COMMENT 'local calendar day',
	year INTEGER NOT NULL,
	quarter INTEGER NOT NULL COMMENT '1-4',
	month INTEGER NOT NULL COMMENT '1-12',
	month_name VARCHAR(9) NOT NULL COMMENT 'January..December',
	day_of_month INTEGER NOT NULL,
	iso_year INTEGER NOT NULL COMMENT 'ISO 8601 week-numbering year',
	iso_week INTEGER NOT NULL COMMENT 'ISO 8601 week, 1-53',
	weekday INTEGER NOT NULL COMMENT 'ISO 8601: 1 = Monday .. 7 = Sunday',
	weekday_name VARCHAR(9) NOT NULL COMMENT 'Monday..Sunday',
	is_weekend INTEGER NOT NULL COMMENT '1 on Saturday and Sunday',
	PRIMARY KEY (date)
)ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE dim_locations (
	location_id INTEGER NOT NULL,
	address VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	address_display VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	city VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	country VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	timezone VARCHAR(64) NOT NULL,
	first_captured_at DATETIME,
	last_captured_at DATETIME,
	last_ingested_at DATETIME(6) COMMENT 'UTC',
	images_total INTEGER NOT NULL,
	images_distorted INTEGER NOT NULL,
	is_active INTEGER NOT NULL COMMENT '1 if an image arrived in the last TRAFFIC_ACTIVE_LOCATION_DAYS days',
	refreshed_at DATETIME(6) NOT NULL COMMENT 'UTC',
	PRIMARY KEY (location_id)
)ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE dim_time_of_day (
	time_slot INTEGER NOT NULL COMMENT '15-minute slot of the day, 0-95',
	slot_start VARCHAR(5) NOT NULL COMMENT 'HH:MM, local wall clock',
	slot_end VARCHAR(5) NOT NULL COMMENT 'HH:MM, exclusive (24:00 for the last slot)',
	hour INTEGER NOT NULL COMMENT '0-23',
	minute INTEGER NOT NULL COMMENT '0, 15, 30 or 45',
	part_of_day VARCHAR(16) NOT NULL COMMENT 'night | morning | afternoon | evening',
	PRIMARY KEY (time_slot)
)ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE traffic_counts_15min (
	location_id INTEGER NOT NULL,
	window_start DATETIME NOT NULL COMMENT 'local wall-clock start of the window',
	traffic_class VARCHAR(16) NOT NULL,
	model_name VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	model_version VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	images_received INTEGER NOT NULL COMMENT 'all images of the window, accepted or distorted',
	images_accepted INTEGER NOT NULL COMMENT 'accepted images this model processed',
	images_distorted INTEGER NOT NULL,
	total_count INTEGER NOT NULL,
	mean_per_image DOUBLE COMMENT 'total_count / images_accepted; NULL without accepted images',
	max_per_image INTEGER,
	share_with_any DOUBLE COMMENT 'share of accepted images with >= 1 of the class',
	expected_images DOUBLE COMMENT 'window seconds / the location-day cadence',
	coverage DOUBLE COMMENT 'images_received / expected_images',
	computed_at DATETIME(6) NOT NULL COMMENT 'UTC',
	images_excluded_health INTEGER COMMENT 'accepted images left out of images_accepted and the counts: frozen or slate frames',
	images_degraded INTEGER COMMENT 'of images_accepted, those the gate flagged (fog, low light, ...)',
	CONSTRAINT pk_traffic_counts_15min PRIMARY KEY (window_start, location_id, model_name, model_version, traffic_class)
)ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE INDEX ix_traffic_counts_15min_location_window ON traffic_counts_15min (location_id, window_start);

CREATE TABLE traffic_counts_daily (
	location_id INTEGER NOT NULL,
	window_start DATETIME NOT NULL COMMENT 'local wall-clock start of the window',
	traffic_class VARCHAR(16) NOT NULL,
	model_name VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	model_version VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	images_received INTEGER NOT NULL COMMENT 'all images of the window, accepted or distorted',
	images_accepted INTEGER NOT NULL COMMENT 'accepted images this model processed',
	images_distorted INTEGER NOT NULL,
	total_count INTEGER NOT NULL,
	mean_per_image DOUBLE COMMENT 'total_count / images_accepted; NULL without accepted images',
	max_per_image INTEGER,
	share_with_any DOUBLE COMMENT 'share of accepted images with >= 1 of the class',
	expected_images DOUBLE COMMENT 'window seconds / the location-day cadence',
	coverage DOUBLE COMMENT 'images_received / expected_images',
	computed_at DATETIME(6) NOT NULL COMMENT 'UTC',
	images_excluded_health INTEGER COMMENT 'accepted images left out of images_accepted and the counts: frozen or slate frames',
	images_degraded INTEGER COMMENT 'of images_accepted, those the gate flagged (fog, low light, ...)',
	CONSTRAINT pk_traffic_counts_daily PRIMARY KEY (window_start, location_id, model_name, model_version, traffic_class)
)ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE INDEX ix_traffic_counts_daily_location_window ON traffic_counts_daily (location_id, window_start);

CREATE TABLE traffic_counts_hourly (
	location_id INTEGER NOT NULL,
	window_start DATETIME NOT NULL COMMENT 'local wall-clock start of the window',
	traffic_class VARCHAR(16) NOT NULL,
	model_name VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	model_version VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	images_received INTEGER NOT NULL COMMENT 'all images of the window, accepted or distorted',
	images_accepted INTEGER NOT NULL COMMENT 'accepted images this model processed',
	images_distorted INTEGER NOT NULL,
	total_count INTEGER NOT NULL,
	mean_per_image DOUBLE COMMENT 'total_count / images_accepted; NULL without accepted images',
	max_per_image INTEGER,
	share_with_any DOUBLE COMMENT 'share of accepted images with >= 1 of the class',
	expected_images DOUBLE COMMENT 'window seconds / the location-day cadence',
	coverage DOUBLE COMMENT 'images_received / expected_images',
	computed_at DATETIME(6) NOT NULL COMMENT 'UTC',
	images_excluded_health INTEGER COMMENT 'accepted images left out of images_accepted and the counts: frozen or slate frames',
	images_degraded INTEGER COMMENT 'of images_accepted, those the gate flagged (fog, low light, ...)',
	CONSTRAINT pk_traffic_counts_hourly PRIMARY KEY (window_start, location_id, model_name, model_version, traffic_class)
)ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE INDEX ix_traffic_counts_hourly_location_window ON traffic_counts_hourly (location_id, window_start);
