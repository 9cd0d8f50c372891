"""Camera-health features on real photos: weather and empty skies are not "no signal" slates.

Slate frames are excluded from the counts, so a false slate loses real traffic: the rule's
thresholds sit above the highest flat-block (0.67) and repeated-line (0.92) shares measured on
1079 real street and adverse-weather photos (bench/data/adverse_weather/); these are the
committed ones, plus the demo's generated scenes (flat sky and asphalt, 0.65-0.74 flat blocks).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from traffic_platform.demo import synthetic_street
from traffic_platform.orchestration.health.features import image_features
from traffic_platform.orchestration.health.rules import Frame, HealthThresholds, _is_slate

PHOTOS = sorted((Path(__file__).resolve().parents[1] / "data" / "adverse_weather").glob("*.jpg"))


def frame(data: bytes) -> Frame:
    f = image_features(data)
    assert f is not None
    fields = {name: None for name in Frame.__dataclass_fields__}
    return Frame(**{**fields, "uniform_share": f.uniform_share, "repeated_line_share": f.repeated_line_share})


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.name)
def test_a_real_adverse_weather_photo_is_not_a_slate(photo):
    assert not _is_slate(frame(photo.read_bytes()), HealthThresholds())


def test_generated_street_scenes_are_not_slates():
    assert not any(_is_slate(frame(synthetic_street(seed=i)), HealthThresholds()) for i in range(12))


def test_a_no_signal_card_still_is():
    import io

    from PIL import Image, ImageDraw

    card = Image.new("RGB", (1280, 720), (90, 90, 90))
    ImageDraw.Draw(card).text((560, 350), "NO SIGNAL", fill=(255, 255, 255))
    buf = io.BytesIO()
    card.save(buf, "JPEG", quality=85)
    assert _is_slate(frame(buf.getvalue()), HealthThresholds())
