from pathlib import Path

import pytest

from traffic_platform.config import Settings
from traffic_platform.domain.errors import ConfigurationError


def test_defaults_run_without_services(tmp_path):
    s = Settings.from_env({"TRAFFIC_HOME": str(tmp_path)})
    assert s.database_url == f"sqlite:///{(tmp_path / 'traffic.db').resolve()}"
    assert s.object_store_uri == (tmp_path / "objects").resolve().as_uri()
    assert s.spool_dir == Path(tmp_path) / "spool"
    assert s.thresholds.default == 0.5
    assert s.threads >= 1


def test_values_are_parsed():
    s = Settings.from_env(
        {
            "TRAFFIC_DATABASE_URL": "mysql+pymysql://u:p@db:3306/traffic",
            "TRAFFIC_OBJECT_STORE_URI": "s3://bucket/prefix",
            "TRAFFIC_S3_ENDPOINT_URL": "http://127.0.0.1:5000",
            "TRAFFIC_S3_SSE": "aws:kms",
            "TRAFFIC_DETECTOR": "sagemaker:traffic-detector",
            "TRAFFIC_DETECTOR_MODEL_NAME": "PekingU/rtdetr_v2_r18vd",
            "TRAFFIC_DETECTOR_THREADS": "3",
            "TRAFFIC_MAX_UPLOAD_BYTES": "1000",
            "TRAFFIC_SCORE_THRESHOLD": "0.4",
            "TRAFFIC_CLASS_THRESHOLDS": "person=0.6; bicycle=0.3",
            "TRAFFIC_QUALITY_MIN_EDGE_SHARPNESS": "42.5",
            "TRAFFIC_QUALITY_MIN_WIDTH": "320",
            "TRAFFIC_TIMEZONES": "Leuven/Belgium=Europe/Brussels, Japan=Asia/Tokyo",
            "TRAFFIC_LOG_JSON": "true",
        }
    )
    assert s.database_url.startswith("mysql+pymysql://")
    assert s.threads == 3 and s.max_upload_bytes == 1000
    assert s.thresholds.for_class("person") == 0.6 and s.thresholds.for_class("car") == 0.4
    assert s.quality.min_edge_sharpness == 42.5 and s.quality.min_width == 320
    assert s.timezones == {"Leuven/Belgium": "Europe/Brussels", "Japan": "Asia/Tokyo"}
    assert s.log_json is True
    assert s.detector_model_name == "PekingU/rtdetr_v2_r18vd"


def test_a_retired_quality_setting_fails_naming_its_replacements():
    with pytest.raises(ConfigurationError, match="TRAFFIC_QUALITY_MIN_EDGE_SHARPNESS") as err:
        Settings.from_env({"TRAFFIC_QUALITY_MIN_SHARPNESS": "0.06"})
    assert err.value.details == {"variable": "TRAFFIC_QUALITY_MIN_SHARPNESS"}


@pytest.mark.parametrize(
    "var, value",
    [
        ("TRAFFIC_DATABASE_URL", "postgres://x"),
        ("TRAFFIC_OBJECT_STORE_URI", "ftp://x"),
        ("TRAFFIC_DETECTOR", "yolo"),
        ("TRAFFIC_DETECTOR", "triton:x"),
        ("TRAFFIC_DETECTOR_RUNTIME", "tensorrt"),
        ("TRAFFIC_DETECTOR_THREADS", "two"),
        ("TRAFFIC_MAX_UPLOAD_BYTES", "0"),
        ("TRAFFIC_MAX_PIXELS", "-1"),
        ("TRAFFIC_SCORE_THRESHOLD", "1.5"),
        ("TRAFFIC_CLASS_THRESHOLDS", "dog=0.5"),
        ("TRAFFIC_CLASS_THRESHOLDS", "person"),
        ("TRAFFIC_QUALITY_MIN_EDGE_SHARPNESS", "sharp"),
        ("TRAFFIC_TIMEZONES", "Leuven/Belgium=Mars/Olympus"),
        ("TRAFFIC_S3_SSE", "rot13"),
        ("TRAFFIC_LOG_JSON", "maybe"),
    ],
)
def test_invalid_values_name_the_variable(var, value):
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({var: value})
    assert var in info.value.message


def test_retry_and_backlog_settings():
    assert (Settings().persist_backoff_cap_s, Settings().backlog_warn_minutes) == (30.0, 10.0)
    s = Settings.from_env({"TRAFFIC_PERSIST_BACKOFF_CAP_S": "12.5", "TRAFFIC_BACKLOG_WARN_MINUTES": "3"})
    assert (s.persist_backoff_cap_s, s.backlog_warn_minutes) == (12.5, 3.0)
    for var in ("TRAFFIC_PERSIST_BACKOFF_CAP_S", "TRAFFIC_BACKLOG_WARN_MINUTES"):
        with pytest.raises(ConfigurationError, match=var):
            Settings.from_env({var: "0"})
        with pytest.raises(ConfigurationError, match=var):
            Settings.from_env({var: "soon"})


def test_passwords_never_appear_in_messages_or_logs(tmp_path):
    import io
    import logging

    from traffic_platform.logs import JsonFormatter, KeyValueFormatter
    from traffic_platform.storage.database import make_engine

    with pytest.raises(ConfigurationError) as bad_scheme:
        Settings.from_env({"TRAFFIC_HOME": str(tmp_path), "TRAFFIC_DATABASE_URL": "postgresql://app:hunter2@db/traffic"})
    assert "hunter2" not in str(bad_scheme.value) and "app:***@db" in str(bad_scheme.value)
    with pytest.raises(ValueError) as bad_url:
        make_engine("mysql+pymysql://app:hunter2@db:notaport/traffic")
    assert "hunter2" not in str(bad_url.value)
    settings = Settings(home=tmp_path, database_url="mysql+pymysql://app:hunter2@db/traffic", api_key="s3cret")
    assert "hunter2" not in repr(settings) and "s3cret" not in repr(settings)
    for formatter in (JsonFormatter(), KeyValueFormatter()):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        logger = logging.getLogger(f"redact-test-{type(formatter).__name__}")
        logger.addHandler(handler)
        logger.propagate = False
        try:
            logger.error("cannot connect to %s", "mysql+pymysql://app:hunter2@db/traffic", extra={"url": "mysql://a:pw9@h/d"})
        finally:
            logger.removeHandler(handler)
        assert "hunter2" not in stream.getvalue() and "pw9" not in stream.getvalue() and "app:***@db" in stream.getvalue()
