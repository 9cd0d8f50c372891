"""The orchestration settings: the camera-health thresholds come from HealthThresholds only."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from traffic_platform.domain.errors import ConfigurationError
from traffic_platform.orchestration.health.rules import HealthThresholds
from traffic_platform.orchestration.settings import OrchestrationSettings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_unset_health_variables_keep_the_rules_defaults():
    assert OrchestrationSettings().health == HealthThresholds()
    assert OrchestrationSettings.from_env({}).health == HealthThresholds()


def test_every_threshold_is_a_traffic_health_variable():
    default = HealthThresholds()
    env = {f"TRAFFIC_HEALTH_{f.name.upper()}": str(getattr(default, f.name) * 2) for f in fields(HealthThresholds)}
    health = OrchestrationSettings.from_env(env).health
    for f in fields(HealthThresholds):
        value = getattr(health, f.name)
        assert value == getattr(default, f.name) * 2 and type(value) is type(getattr(default, f.name)), f.name
    one = OrchestrationSettings.from_env({"TRAFFIC_HEALTH_CLOCK_DRIFT_S": "900"}).health
    assert one.clock_drift_s == 900.0 and one.frozen_min_frames == default.frozen_min_frames


@pytest.mark.parametrize(
    "var, raw",
    [("TRAFFIC_HEALTH_FROZEN_MIN_FRAMES", "2.5"), ("TRAFFIC_HEALTH_FROZEN_THUMB_MAD", "0"),
     ("TRAFFIC_HEALTH_DRIFT_WINDOW", "-1"), ("TRAFFIC_HEALTH_SLATE_UNIFORM_SHARE", "high")],
)
def test_a_bad_threshold_names_its_variable(var, raw):
    with pytest.raises(ConfigurationError, match=var):
        OrchestrationSettings.from_env({var: raw})


def test_the_readme_states_every_threshold_and_its_default():
    text = README.read_text(encoding="utf-8")
    for f in fields(HealthThresholds):
        found = re.search(rf"`{f.name.upper()}` \((\d+(?:\.\d+)?)", text)
        assert found and float(found[1]) == getattr(HealthThresholds(), f.name), f.name
