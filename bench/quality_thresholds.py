"""Quality-gate metrics and verdicts on the real street photos, plus the gate's cost.

Usage::

    .venv/bin/python bench/quality_thresholds.py [PHOTO_DIR]

``PHOTO_DIR`` defaults to ``$TRAFFIC_STREET_PHOTOS`` or ``../shared/data/street``.
Every photo goes through the real path (``decode_image`` then ``assess_quality``
under the default ``QualityThresholds``). Expectations: ``BAD_blurry*`` fails as
``blurred``, ``BAD_corrupted*`` fails to decode as ``image_undecodable``, every other
photo passes. The script prints one row per photo with the tightest margin (how far
the closest metric is from its threshold, as a ratio), the separation of the blur
metric compared with the 512-px raw Laplacian-variance baseline, and timings
(decode full size vs draft, quality gate). It exits 1 when an expectation fails.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from traffic_platform.domain.errors import TrafficPlatformError
from traffic_platform.domain.images import decode_image
from traffic_platform.domain.quality import (
    QualityThresholds,
    analysis_copy,
    assess_quality,
    laplacian_variance,
)

MAX_BYTES = 25 * 1024 * 1024
MAX_PIXELS = 50_000_000
# metric -> (threshold field, "min" or "max")
LIMITS = {
    "sharpness": ("min_sharpness", "min"),
    "brightness": ("min_brightness", "min"),
    "brightness_hi": ("max_brightness", "max"),
    "contrast": ("min_contrast", "min"),
    "clipped_share": ("max_clipped_share", "max"),
    "uniform_share": ("max_uniform_share", "max"),
    "width": ("min_width", "min"),
    "height": ("min_height", "min"),
}


def margins(metrics: dict[str, float], t: QualityThresholds) -> dict[str, float]:
    """How far each metric is from its threshold on the passing side (ratio, >1 = passes).

    ``value / min`` for lower limits, ``max / value`` for upper limits on shares, and
    for the brightness ceiling the headroom to 255 compared with the allowed headroom.
    """
    out = {}
    for key, (field, kind) in LIMITS.items():
        value = metrics["brightness" if key == "brightness_hi" else key]
        limit = getattr(t, field)
        if kind == "min":
            out[field] = value / limit if limit else float("inf")
        elif field == "max_brightness":  # bounded at 255: compare the headroom left
            out[field] = (255 - value) / (255 - limit)
        else:
            out[field] = limit / value if value else float("inf")
    return out


def expected(name: str) -> str:
    if name.startswith("BAD_blurry"):
        return "blurred"
    if name.startswith("BAD_corrupted"):
        return "image_undecodable"
    return "pass"


def timed(fn, repeat: int = 30) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main(argv: list[str]) -> int:
    root = Path(
        argv[1]
        if len(argv) > 1
        else os.environ.get("TRAFFIC_STREET_PHOTOS", "../shared/data/street")
    )
    photos = sorted(p for p in root.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        print(f"no photos in {root}", file=sys.stderr)
        return 2
    t = QualityThresholds()
    print(f"thresholds: {t}\n")
    header = f"{'photo':36s} {'WxH':>10s} {'sharp':>6s} {'lapvar':>7s} {'bright':>6s} {'contr':>5s} {'clip':>5s} {'unif':>5s}  {'verdict':24s} {'expected':18s} tightest margin"
    print(header)
    print("-" * len(header))
    failures = []
    baseline: dict[str, float] = {}
    chosen: dict[str, float] = {}
    for path in photos:
        data = path.read_bytes()
        want = expected(path.name)
        try:
            decoded = decode_image(
                data, declared_content_type=None, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS
            )
        except TrafficPlatformError as exc:
            verdict = exc.code
            print(
                f"{path.name[:36]:36s} {'-':>10s} {'':>6s} {'':>7s} {'':>6s} {'':>5s} {'':>5s} {'':>5s}  {verdict:24s} {want:18s} {exc.message[:60]}"
            )
            if verdict != want:
                failures.append(f"{path.name}: got {verdict}, expected {want}")
            continue
        report = assess_quality(decoded.image, t)
        m = report.metrics
        verdict = "pass" if report.ok else ",".join(report.reasons)
        marg = margins(m, t)
        tight = min(marg, key=marg.get)
        print(
            f"{path.name[:36]:36s} {decoded.width:>5d}x{decoded.height:<4d} {m['sharpness']:6.3f} {m['laplacian_variance']:7.1f} "
            f"{m['brightness']:6.1f} {m['contrast']:5.1f} {m['clipped_share']:5.3f} {m['uniform_share']:5.3f}  "
            f"{verdict:24s} {want:18s} {tight} x{marg[tight]:.2f}"
        )
        ok = report.ok if want == "pass" else (want in report.reasons)
        if not ok:
            failures.append(f"{path.name}: got {verdict}, expected {want}")
        grey512 = decoded.image.convert("L")
        if max(grey512.size) > 512:
            s = 512 / max(grey512.size)
            grey512 = grey512.resize(
                (round(grey512.width * s), round(grey512.height * s)), Image.Resampling.BOX
            )
        baseline[path.name] = laplacian_variance(np.asarray(grey512))
        chosen[path.name] = m["sharpness"]

    print("\nBlur separation: lowest sharp photo / motion-blurred sample (higher is better)")
    for label, values in (
        ("baseline: raw var(Laplacian), 512-px copy", baseline),
        ("chosen: var(Lap)/var(grey), 768-px copy", chosen),
    ):
        blurry = [v for k, v in values.items() if k.startswith("BAD_blurry")]
        normal = sorted((v, k) for k, v in values.items() if not k.startswith("BAD_"))
        if blurry and normal:
            print(
                f"  {label:44s} blurred {blurry[0]:9.4g}  lowest sharp {normal[0][0]:9.4g} ({normal[0][1]})  ratio {normal[0][0] / blurry[0]:.2f}"
            )

    # Timings on a 1280x720 JPEG (median of 30, one thread).
    sample = next((p for p in photos if p.name.startswith("udacity") and p.suffix == ".jpg"), None)
    if sample is not None:
        data = sample.read_bytes()
        decoded = decode_image(
            data, declared_content_type=None, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS
        )
        print(
            f"\nTimings on {sample.name} ({decoded.width}x{decoded.height}, {len(data)} bytes), median of 30:"
        )
        print(
            f"  baseline: Image.open + load + convert('RGB')  {timed(lambda: Image.open(__import__('io').BytesIO(data)).convert('RGB')):6.2f} ms"
        )
        print(
            f"  decode_image (full size)                      {timed(lambda: decode_image(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)):6.2f} ms"
        )
        print(
            f"  decode_image (draft_size=(640, 360))          {timed(lambda: decode_image(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS, draft_size=(640, 360))):6.2f} ms"
        )
        print(
            f"  assess_quality (768-px grey copy)             {timed(lambda: assess_quality(decoded.image, t)):6.2f} ms"
        )
        print(
            f"    of which the grey copy                      {timed(lambda: analysis_copy(decoded.image)):6.2f} ms"
        )

    if failures:
        print("\nEXPECTATIONS FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("\nall expectations hold")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
