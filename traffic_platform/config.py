"""One settings object, read from ``TRAFFIC_*`` environment variables.

It alone decides the platform's home (laptop or AWS): a database URL, an
object-store URI, a detector spec. Nothing else branches on "local vs AWS".
Invalid values fail at start-up with a message naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .domain.detections import ClassThresholds
from .domain.errors import ConfigurationError
from .domain.quality import QualityThresholds
from .domain.redact import redact
from .domain.timezones import validate_zone

PREFIX = "TRAFFIC_"
RUNTIME_CHOICES = (
    "auto", "torch", "torch-bf16", "onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-mixed",
    "cuda", "cuda-fp16",
)  # fmt: skip (detection.runtime.RUNTIMES, plus auto)


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with defaults that run on a laptop without services."""

    home: Path = Path("var")
    database_url: str = field(default="", repr=False)  # may hold a password: never in a repr
    object_store_uri: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str = ""  # "": the function's region (AWS_REGION / AWS_DEFAULT_REGION), else eu-west-1
    s3_sse: str | None = None  # "AES256" or "aws:kms"
    s3_kms_key_id: str | None = None
    detector: str = "local:PekingU/rtdetr_v2_r18vd"
    detector_model_name: str | None = None  # name stored with detections; default: the spec's target
    detector_runtime: str = "auto"  # auto | torch | torch-bf16 | onnx | onnx-int8 | openvino | openvino-bf16 | openvino-mixed | cuda | cuda-fp16
    detector_threads: int = 0  # 0: all cores
    detector_batch_size: int = 4
    model_cache_dir: Path | None = None
    thresholds: ClassThresholds = field(default_factory=ClassThresholds)
    max_upload_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 50_000_000  # PIL's own bomb limit is ~89 MP; 50 MP = 8K with margin
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    timezones: Mapping[str, str] = field(default_factory=dict)
    api_key: str | None = field(default=None, repr=False)
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    http_max_concurrency: int = 32  # requests on /v1/* at once (503 + Retry-After beyond)
    http_header_timeout_s: float = 10.0  # request line + headers (slowloris guard)
    http_body_timeout_s: float = 60.0  # the whole body (25 MiB at ~0.5 MB/s)
    decode_budget_pixels: int = 100_000_000  # pixels decoded at once (~16 B/pixel in flight: ~1.6 GB)
    spool_dir: Path | None = None
    persist_max_attempts: int = 8  # for permanent/unknown failures; transient ones retry until they succeed
    persist_backoff_cap_s: float = 30.0  # longest wait between two attempts (also the most an outage's end waits)
    backlog_warn_minutes: float = 10.0  # /readyz "degraded" and a Dagster warning past this oldest pending job
    persist_concurrency: int = 4  # jobs persisted at once by the local worker (mostly I/O waits)
    spool_max_pending: int = 64  # back-pressure: requests wait while this many jobs wait to be stored (0: no bound)
    queue_url: str | None = None  # SQS queue for the AWS hand-off
    sqs_region: str = ""  # "": the region in the queue URL, else the function's region (as s3_region)
    api_base_path: str = ""  # a custom-domain base path ("/traffic"), stripped before routing
    landing_settle_s: float = 30.0  # a landing object is taken once unchanged for this long
    sagemaker_timeout_s: float = 10.0
    log_json: bool = False
    dashboard_path: Path | None = None  # the built-in dashboard's file; default <home>/dashboard/index.html

    def __post_init__(self) -> None:
        home = Path(self.home)
        object.__setattr__(self, "home", home)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{(home / 'traffic.db').resolve()}")
        if not self.object_store_uri:
            object.__setattr__(self, "object_store_uri", (home / "objects").resolve().as_uri())
        if self.spool_dir is None:
            object.__setattr__(self, "spool_dir", home / "spool")
        if self.model_cache_dir is None:
            object.__setattr__(self, "model_cache_dir", home / "models")
        if self.dashboard_path is None:
            object.__setattr__(self, "dashboard_path", home / "dashboard" / "index.html")
        if not self.s3_region:
            object.__setattr__(self, "s3_region", aws_region())
        if not self.sqs_region:
            object.__setattr__(self, "sqs_region", _queue_region(self.queue_url) or aws_region())
        if self.api_base_path:
            object.__setattr__(self, "api_base_path", "/" + self.api_base_path.strip("/"))

    @property
    def threads(self) -> int:
        return self.detector_threads or os.cpu_count() or 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``TRAFFIC_*`` variables; raise :class:`ConfigurationError` naming the bad one."""
        env = os.environ if environ is None else environ
        # Regions: the TRAFFIC_* override, else where the function runs (never a fixed default on AWS).
        region = aws_region(env)
        values: dict[str, Any] = {"s3_region": region, "sqs_region": _queue_region(env.get(PREFIX + "QUEUE_URL")) or region}
        for f in fields(cls):
            if f.name in ("thresholds", "quality", "timezones"):
                continue
            var = PREFIX + f.name.upper()
            if var in env and env[var] != "":
                values[f.name] = parse_value(var, env[var], _PARSERS.get(f.name, str))
        values["thresholds"] = _parse_thresholds(env)
        values["quality"] = _parse_quality(env)
        values["timezones"] = parse_value(PREFIX + "TIMEZONES", env.get(PREFIX + "TIMEZONES", ""), _mapping_of_zones)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Cross-field checks; every message names the variable to fix."""
        if not self.database_url.startswith(("sqlite:", "mysql", "mariadb")):
            raise ConfigurationError(redact(f"{PREFIX}DATABASE_URL must be a sqlite:/// or mysql+pymysql:// URL, got {self.database_url!r}."))
        if not self.object_store_uri.startswith(("file://", "s3://")):
            raise ConfigurationError(f"{PREFIX}OBJECT_STORE_URI must start with file:// or s3://, got {self.object_store_uri!r}.")
        kind = self.detector.split(":", 1)[0]
        if ":" not in self.detector or kind not in ("local", "onnx", "sagemaker"):
            raise ConfigurationError(
                f"{PREFIX}DETECTOR must be local:<model id or path>, onnx:<path> or sagemaker:<endpoint>, got {self.detector!r}."
            )
        if self.detector_runtime not in RUNTIME_CHOICES:
            raise ConfigurationError(f"{PREFIX}DETECTOR_RUNTIME must be one of {', '.join(RUNTIME_CHOICES)}, got {self.detector_runtime!r}.")
        if self.s3_sse not in (None, "AES256", "aws:kms"):
            raise ConfigurationError(f"{PREFIX}S3_SSE must be AES256 or aws:kms, got {self.s3_sse!r}.")
        for name in (
            "max_upload_bytes", "max_pixels", "detector_batch_size", "persist_max_attempts", "persist_concurrency",
            "persist_backoff_cap_s", "backlog_warn_minutes",
            "http_max_concurrency", "http_header_timeout_s", "http_body_timeout_s", "decode_budget_pixels",
        ):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{PREFIX}{name.upper()} must be positive, got {getattr(self, name)}.")
        if self.detector_threads < 0:
            raise ConfigurationError(f"{PREFIX}DETECTOR_THREADS must be 0 (all cores) or positive.")
        if self.spool_max_pending < 0:
            raise ConfigurationError(f"{PREFIX}SPOOL_MAX_PENDING must be 0 (no bound) or positive.")
        if self.landing_settle_s < 0:
            raise ConfigurationError(f"{PREFIX}LANDING_SETTLE_S must be 0 or positive, got {self.landing_settle_s}.")
        if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)*", self.api_base_path):
            raise ConfigurationError(f"{PREFIX}API_BASE_PATH must be a path such as /traffic, got {self.api_base_path!r}.")


DEFAULT_AWS_REGION = "eu-west-1"
_QUEUE_REGION = re.compile(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")


def aws_region(environ: Mapping[str, str] | None = None) -> str:
    """The region AWS gives the process (``AWS_REGION``, then ``AWS_DEFAULT_REGION``), else eu-west-1."""
    env = os.environ if environ is None else environ
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_AWS_REGION


def _queue_region(queue_url: str | None) -> str | None:
    """``https://sqs.us-east-1.amazonaws.com/123/q`` -> ``us-east-1``; ``None`` for other URLs."""
    match = _QUEUE_REGION.match(queue_url or "")
    return match.group(1) if match else None


def parse_value(var: str, raw: str, parser: Callable[[str], Any]) -> Any:
    """``parser(raw)``; a bad value raises :class:`ConfigurationError` naming ``var``."""
    try:
        return parser(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(redact(f"{var}={raw!r} is invalid: {exc}"), details={"variable": var}) from None


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false")


def _score(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("a score threshold must be within [0, 1]")
    return value


def parse_pairs(raw: str) -> list[tuple[str, str]]:
    """``"a=1, b=2"`` (or ``;``-separated) -> ``[("a", "1"), ("b", "2")]``."""
    out = []
    for item in raw.replace(";", ",").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"expected key=value pairs, got {item.strip()!r}")
        out.append((key.strip(), value.strip()))
    return out


def _mapping_of_zones(raw: str) -> dict[str, str]:
    return {key: validate_zone(zone) for key, zone in parse_pairs(raw)}


def _parse_thresholds(env: Mapping[str, str]) -> ClassThresholds:
    from .domain.classes import TRAFFIC_CLASSES

    default = parse_value(PREFIX + "SCORE_THRESHOLD", env.get(PREFIX + "SCORE_THRESHOLD", "0.5"), _score)
    per_class: dict[str, float] = {}
    var = PREFIX + "CLASS_THRESHOLDS"
    for cls_name, value in parse_value(var, env.get(var, ""), parse_pairs):
        if cls_name not in TRAFFIC_CLASSES:
            raise ConfigurationError(f"{var}: {cls_name!r} is not one of {', '.join(TRAFFIC_CLASSES)}.", details={"variable": var})
        per_class[cls_name] = parse_value(var, value, _score)
    return ClassThresholds(default=default, per_class=per_class)


# Quality settings that no longer exist, and what replaced them: a user who set one must hear
# about it rather than have it silently ignored.
RETIRED_QUALITY = {
    "MIN_SHARPNESS": "TRAFFIC_QUALITY_MIN_EDGE_SHARPNESS (rejects as blurred) and "
                     "TRAFFIC_QUALITY_LOW_SHARPNESS (flags low_sharpness only); see the README's gate section",
}


def _parse_quality(env: Mapping[str, str]) -> QualityThresholds:
    for name, replacement in RETIRED_QUALITY.items():
        if env.get(f"{PREFIX}QUALITY_{name}"):
            raise ConfigurationError(
                f"{PREFIX}QUALITY_{name} was retired with the weather-tolerant gate; use {replacement}.",
                details={"variable": f"{PREFIX}QUALITY_{name}"},
            )
    values: dict[str, Any] = {}
    for f in fields(QualityThresholds):
        var = f"{PREFIX}QUALITY_{f.name.upper()}"
        if env.get(var):
            values[f.name] = parse_value(var, env[var], int if f.type in ("int", int) else float)
    return QualityThresholds(**values)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "home": Path,
    "model_cache_dir": Path,
    "spool_dir": Path,
    "dashboard_path": Path,
    "detector_threads": int,
    "detector_batch_size": int,
    "max_upload_bytes": int,
    "max_pixels": int,
    "http_port": int,
    "http_max_concurrency": int,
    "http_header_timeout_s": float,
    "http_body_timeout_s": float,
    "decode_budget_pixels": int,
    "persist_max_attempts": int,
    "persist_concurrency": int,
    "spool_max_pending": int,
    "persist_backoff_cap_s": float,
    "backlog_warn_minutes": float,
    "sagemaker_timeout_s": float,
    "landing_settle_s": float,
    "log_json": _bool,
}
