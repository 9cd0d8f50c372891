"""The orchestration part of the settings, read from ``TRAFFIC_*`` variables.

These are the same kind of settings as :class:`traffic_platform.config.Settings` (same
prefix, same parsers, same :class:`ConfigurationError` naming the variable) and ride
along with it: :meth:`OrchestrationSettings.from_env` also builds the base settings, so a
bad ``TRAFFIC_DATABASE_URL`` fails here too. They live beside the Dagster code only
because nothing else reads them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date

from ..config import PREFIX, Settings, parse_pairs, parse_value
from ..domain.errors import ConfigurationError
from .health.rules import HealthThresholds

DEFAULT_PARTITIONS_START = date(2022, 1, 1)  # oldest images of the source system (2022)
DEFAULT_CADENCE_S = 60.0  # the cameras' documented rate: one image a minute


def _positive(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return raw


def _cadences(raw: str) -> dict[str, float]:
    """``"60"`` (every location) or ``"*=60, Leuven/Belgium=30, tiensevest/Leuven/Belgium=20"``."""
    raw = raw.strip()
    if not raw:
        return {}
    if "=" not in raw:
        return {"*": _positive(raw)}
    out: dict[str, float] = {}
    for key, value in parse_pairs(raw):
        if key != "*" and not 2 <= len(key.split("/")) <= 3:
            raise ValueError(f"location key {key!r} must be '*', 'City/Country' or 'address/City/Country'")
        out[key] = _positive(value)
    return out


def _health_thresholds(env: Mapping[str, str]) -> HealthThresholds:
    """:class:`HealthThresholds` with each ``TRAFFIC_HEALTH_<FIELD>`` that is set (positive)."""
    parsers = {"int": _positive_int, "float": _positive}
    values = {}
    for f in fields(HealthThresholds):
        var = f"{PREFIX}HEALTH_{f.name.upper()}"
        if env.get(var, "") != "":
            values[f.name] = parse_value(var, env[var], parsers[getattr(f.type, "__name__", f.type)])
    return HealthThresholds(**values)


@dataclass(frozen=True)
class OrchestrationSettings:
    """What the Dagster code may be tuned with; each number carries its reason."""

    base: Settings = field(default_factory=Settings)
    # First daily partition (a local calendar day of captured_at).
    partitions_start: date = DEFAULT_PARTITIONS_START
    # Seconds between two images of a location, by location key ('*', 'City/Country',
    # 'address/City/Country'); unset: the observed median gap of that location that day.
    capture_cadence_s: Mapping[str, float] = field(default_factory=dict)
    # Used when neither a setting nor an observation (< 2 images that day) gives a cadence.
    cadence_fallback_s: float = DEFAULT_CADENCE_S
    # A location is stale after 30 min without a new image (30 missed images at 1/min).
    freshness_max_age_s: float = 1800.0
    # A location is "active" (watched for freshness) if it sent an image in the last 7 days.
    active_location_days: int = 7
    # Anomaly checks compare a day with the previous 28 days (4 of each weekday)…
    anomaly_history_days: int = 28
    # …and say nothing until 7 of those days have data (one of each weekday).
    anomaly_min_history_days: int = 7
    # |robust z| above 4 is ~1 in 15 000 days for a normal series: rare enough to look at.
    anomaly_z: float = 4.0
    # The read-only reporting user (Power BI) the views asset keeps in step with the views
    # (MySQL): TRAFFIC_REPORTING_USER and its password TRAFFIC_REPORTING_PASSWORD (on AWS
    # injected from Secrets Manager). Unset: no user is managed.
    reporting_user: str | None = None
    reporting_password: str | None = field(default=None, repr=False)
    # Camera health: each HealthThresholds field (its default and reason are there) is
    # TRAFFIC_HEALTH_<FIELD>, e.g. TRAFFIC_HEALTH_FROZEN_MIN_FRAMES=4.
    health: HealthThresholds = field(default_factory=HealthThresholds)
    health_lookback_days: float = 2.0  # camera_health recomputes the episodes of the last 2 days
    # Where camera_health_alerts_sensor POSTs its JSON alerts; unset: no alerts are sent.
    alert_webhook_url: str | None = None
    alert_timeout_s: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OrchestrationSettings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {"base": Settings.from_env(env)}
        parsers = {
            "partitions_start": date.fromisoformat,
            "capture_cadence_s": _cadences,
            "cadence_fallback_s": _positive,
            "freshness_max_age_s": _positive,
            "active_location_days": _positive_int,
            "anomaly_history_days": _positive_int,
            "anomaly_min_history_days": _positive_int,
            "anomaly_z": _positive,
            "health_lookback_days": _positive,
            "alert_webhook_url": _url,
            "alert_timeout_s": _positive,
        }
        for name, parser in parsers.items():
            var = PREFIX + name.upper()
            if env.get(var, "") != "":
                values[name] = parse_value(var, env[var], parser)
        values["health"] = _health_thresholds(env)
        values["reporting_user"] = env.get(PREFIX + "REPORTING_USER") or None
        values["reporting_password"] = env.get(PREFIX + "REPORTING_PASSWORD") or None
        if bool(values["reporting_user"]) != bool(values["reporting_password"]):
            raise ConfigurationError(f"{PREFIX}REPORTING_USER and {PREFIX}REPORTING_PASSWORD go together; set both or neither.")
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.anomaly_min_history_days > settings.anomaly_history_days:
            raise ConfigurationError(
                f"{PREFIX}ANOMALY_MIN_HISTORY_DAYS ({settings.anomaly_min_history_days}) must not exceed "
                f"{PREFIX}ANOMALY_HISTORY_DAYS ({settings.anomaly_history_days})."
            )
        return settings

    def cadence_for(self, address: str, city: str, country: str) -> float | None:
        """The configured cadence of one location (most specific key wins), or ``None``."""
        table = {k.casefold(): v for k, v in self.capture_cadence_s.items()}
        for key in (f"{address}/{city}/{country}", f"{city}/{country}", "*"):
            if key.casefold() in table:
                return table[key.casefold()]
        return None
