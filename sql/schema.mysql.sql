-- MySQL / Aurora MySQL DDL of the traffic platform's ingest tables.
-- Generated from the Alembic migrations in traffic_platform/storage/migrations; do not edit.
-- Regenerate: .venv/bin/python -m traffic_platform.storage.database > sql/schema.mysql.sql

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> 0001_initial

CREATE TABLE locations (
    id INTEGER NOT NULL AUTO_INCREMENT,
    address VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL COMMENT 'raw token from the file name, underscores kept',
    address_display VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    city VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    country VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    timezone VARCHAR(64) NOT NULL COMMENT 'IANA zone of the local wall-clock times',
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT uq_locations_address_city_country UNIQUE (address, city, country)
)ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE captures (
    capture_id CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    location_id INTEGER NOT NULL,
    captured_at DATETIME NOT NULL COMMENT 'local wall-clock time from the file name',
    captured_at_utc DATETIME NOT NULL,
    file_name VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    content_sha256 CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    status VARCHAR(16) NOT NULL,
    quality_reasons TEXT NOT NULL COMMENT 'JSON list of reason codes',
    sharpness DOUBLE,
    brightness DOUBLE,
    contrast DOUBLE,
    clipped_share DOUBLE,
    uniform_share DOUBLE,
    width INTEGER,
    height INTEGER,
    image_key VARCHAR(512),
    annotated_key VARCHAR(512),
    model_name VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin COMMENT 'model that ran at ingest',
    model_version VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    decode_ms DOUBLE,
    quality_ms DOUBLE,
    detect_ms DOUBLE,
    total_ms DOUBLE,
    ingested_at DATETIME(6) NOT NULL COMMENT 'UTC',
    stored_at DATETIME(6) NOT NULL COMMENT 'UTC',
    PRIMARY KEY (capture_id),
    CONSTRAINT fk_captures_location FOREIGN KEY(location_id) REFERENCES locations (id),
    CONSTRAINT ck_captures_status CHECK (status IN ('accepted', 'distorted'))
)ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE INDEX ix_captures_location_captured_at ON captures (location_id, captured_at);

CREATE INDEX ix_captures_captured_at ON captures (captured_at);

CREATE INDEX ix_captures_content_sha256 ON captures (content_sha256);

CREATE INDEX ix_captures_status ON captures (status);

CREATE INDEX ix_captures_ingested_at ON captures (ingested_at);

CREATE INDEX ix_captures_stored_at ON captures (stored_at);

CREATE TABLE detections (
    id BIGINT NOT NULL AUTO_INCREMENT,
    capture_id CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    model_name VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    model_version VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    seq INTEGER NOT NULL COMMENT 'order within the image (0-based)',
    traffic_class VARCHAR(16) NOT NULL,
    label VARCHAR(64) NOT NULL COMMENT 'the model''s own label',
    score DOUBLE NOT NULL,
    x1 DOUBLE NOT NULL,
    y1 DOUBLE NOT NULL,
    x2 DOUBLE NOT NULL,
    y2 DOUBLE NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT fk_detections_capture FOREIGN KEY(capture_id) REFERENCES captures (capture_id) ON DELETE CASCADE,
    CONSTRAINT uq_detections_capture_model_seq UNIQUE (capture_id, model_name, model_version, seq),
    CONSTRAINT ck_detections_traffic_class CHECK (traffic_class IN ('car', 'truck', 'bus', 'person', 'bicycle', 'motorcycle'))
)ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE INDEX ix_detections_traffic_class ON detections (traffic_class);

CREATE TABLE capture_counts (
    capture_id CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    model_name VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    model_version VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    traffic_class VARCHAR(16) NOT NULL,
    count INTEGER NOT NULL,
    CONSTRAINT pk_capture_counts PRIMARY KEY (capture_id, model_name, model_version, traffic_class),
    CONSTRAINT fk_capture_counts_capture FOREIGN KEY(capture_id) REFERENCES captures (capture_id) ON DELETE CASCADE,
    CONSTRAINT ck_capture_counts_traffic_class CHECK (traffic_class IN ('car', 'truck', 'bus', 'person', 'bicycle', 'motorcycle')),
    CONSTRAINT ck_capture_counts_count CHECK (count >= 0)
)ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci;

INSERT INTO alembic_version (version_num) VALUES ('0001_initial');

-- Running upgrade 0001_initial -> 0002_quality_flags

ALTER TABLE captures ADD COLUMN quality_flags VARCHAR(255) NOT NULL COMMENT 'JSON list of degraded flags (accepted images)' DEFAULT '[]';

UPDATE alembic_version SET version_num='0002_quality_flags' WHERE alembic_version.version_num = '0001_initial';

-- Running upgrade 0002_quality_flags -> 0003_aggregation_indexes

DROP INDEX ix_captures_captured_at ON captures;

CREATE INDEX ix_captures_captured_at ON captures (captured_at, location_id, status, captured_at_utc, quality_flags);

CREATE INDEX ix_detections_capture_model_class ON detections (capture_id, model_name, model_version, traffic_class);

UPDATE alembic_version SET version_num='0003_aggregation_indexes' WHERE alembic_version.version_num = '0002_quality_flags';

-- Running upgrade 0003_aggregation_indexes -> 0004_day_ranges

ALTER TABLE detections ADD COLUMN captured_at DATETIME COMMENT 'the capture''s captured_at, copied: a day''s rows are one index range';

UPDATE detections t JOIN captures c ON c.capture_id = t.capture_id SET t.captured_at = c.captured_at;

ALTER TABLE detections CHANGE captured_at captured_at DATETIME NOT NULL COMMENT 'the capture''s captured_at, copied: a day''s rows are one index range';

ALTER TABLE capture_counts ADD COLUMN captured_at DATETIME COMMENT 'the capture''s captured_at, copied: a day''s rows are one index range';

UPDATE capture_counts t JOIN captures c ON c.capture_id = t.capture_id SET t.captured_at = c.captured_at;

ALTER TABLE capture_counts CHANGE captured_at captured_at DATETIME NOT NULL COMMENT 'the capture''s captured_at, copied: a day''s rows are one index range';

DROP INDEX ix_detections_capture_model_class ON detections;

CREATE INDEX ix_detections_day ON detections (captured_at, capture_id, model_name, model_version, traffic_class, score, x1, y1, x2, y2);

CREATE INDEX ix_capture_counts_day ON capture_counts (captured_at, capture_id, model_name, model_version, traffic_class, count);

DROP INDEX ix_captures_captured_at ON captures;

CREATE INDEX ix_captures_captured_at ON captures (captured_at, location_id, status, captured_at_utc, quality_flags, width, height, model_name, model_version, content_sha256);

UPDATE alembic_version SET version_num='0004_day_ranges' WHERE alembic_version.version_num = '0003_aggregation_indexes';
