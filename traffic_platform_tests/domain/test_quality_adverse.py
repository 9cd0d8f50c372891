"""Issue 18 regression: the gate on the committed real adverse-weather photos.

Fog, rain drops on the lens, snow, glare and night are counted in (accepted, perhaps
flagged as degraded); unusable versions of the committed clear photos (strong defocus,
noisy defocus, motion smear, blown out, washed out, lens cap, blank frames, slates) are
rejected. The old single-sharpness gate rejected the RADIATE fog frames and a dense-haze
RTTS photo here, and let a horizontal smear and a colour-bar slate through on the full set.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pytest
from PIL import Image

from traffic_platform.domain.images import decode_image
from traffic_platform.domain.quality import FLAGS, REASON_CODES, QualityThresholds, assess_quality

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "traffic_platform_tests" / "data" / "adverse_weather"
ADVERSE = sorted(p for p in DATA.glob("*.jpg") if not p.name.startswith("clear__"))
CLEAR = sorted(DATA.glob("clear__*.jpg"))
DEFAULTS = QualityThresholds()


def _variants_module():
    spec = importlib.util.spec_from_file_location(
        "unusable_variants", ROOT / "bench" / "unusable_variants.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _judge(data: bytes):
    decoded = decode_image(data, declared_content_type=None, max_bytes=1 << 25, max_pixels=1 << 26)
    return assess_quality(decoded.image, DEFAULTS)


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_the_committed_set_is_there():
    assert len(ADVERSE) == 23 and len(CLEAR) == 3


@pytest.mark.parametrize("path", ADVERSE, ids=[p.stem for p in ADVERSE])
def test_real_adverse_photos_are_accepted(path):
    report = _judge(path.read_bytes())
    assert report.ok, f"{path.name}: {report.messages}"
    assert set(report.flags) <= set(FLAGS)
    assert report.verdict in ("clear", "degraded")


def test_radiate_fog_with_drops_on_the_lens_is_degraded():
    for path in (p for p in ADVERSE if "radiate" in p.name):
        report = _judge(path.read_bytes())
        assert report.verdict == "degraded" and "low_sharpness" in report.flags, path.name


@pytest.fixture(scope="module")
def unusable() -> list[tuple[str, bytes]]:
    mod = _variants_module()
    out = []
    for path in CLEAR:
        with Image.open(path) as im:
            out += [(f"{kind}__{path.stem}", _jpeg(img)) for kind, _, img in mod.damaged_versions(im)]
    out += [(kind, _jpeg(img)) for kind, _, img in mod.slates()]
    return out


def test_at_least_95_percent_of_unusable_versions_are_rejected(unusable):
    assert len(unusable) >= 30
    missed = []
    for name, data in unusable:
        report = _judge(data)
        assert set(report.reasons) <= set(REASON_CODES)
        if report.ok:
            missed.append(f"{name}: {report.flags}")
    # issue-18 target: >= 95 % rejected (the one known miss: a 45-degree smear of
    # bdd_hybridnets_1, whose diagonal edges run along the smear, see bench/RESULTS.md)
    assert len(missed) <= 0.05 * len(unusable), missed


def test_the_clear_sources_themselves_pass():
    for path in CLEAR:
        assert _judge(path.read_bytes()).ok, path.name
