"""Deterministic *unusable* versions of clear street photos, for measuring the distortion gate.

Usage::

    .venv/bin/python bench/unusable_variants.py OUT_DIR CLEAR_PHOTO [CLEAR_PHOTO ...]

Writes, for every clear photo, the damaged versions below (JPEG quality 90, same size as the
input) plus a fixed set of camera-failure frames (lens cap, blank, "no signal" slates) at
1280x720, and ``OUT_DIR/unusable.csv`` (file, kind, severity, source). Nothing random is
left to chance: noise comes from ``numpy.random.default_rng`` with fixed seeds, so the same
inputs give byte-identical outputs.

Per photo (``s`` = long side in pixels; all kernel sizes scale with the picture, so a 4K
frame is damaged as much as a 640-px one):

``defocus_strong``
    Gaussian blur, radius ``s / 100`` (12.8 px on a 1280-px frame) - a badly focused lens.
``defocus_extreme``
    Gaussian blur, radius ``s / 50``.
``defocus_noisy``
    ``defocus_strong`` plus sensor noise (std 3 grey levels) - a defocused camera's real
    output is noisy, and noise must not pass for detail.
``motion_strong``
    horizontal box smear over ``s / 25`` px (51 px at 1280) - camera shaken or panning.
``motion_diagonal``
    45-degree box smear over ``s / 25`` px.
``blown_out``
    exposure x6 then clipped, plus a mild blur (``s / 400``) - sun straight into the lens
    or an iris stuck open; most of the frame is pure white.
``washed_out``
    the photo blended 90 % into white (mean grey ~240) - fogged-up lens cover / overexposure
    with almost no detail left.
``lens_cap``
    the photo darkened to 3 % with sensor noise (std 1.5 grey levels) - lens cap or a dead
    iris; only the brightest light sources survive, barely.

Camera-failure frames (1280x720, no source photo):
``blank_black``, ``blank_grey``, ``blank_white``, ``blank_grey_noise`` (grey 128 with
compression-like noise std 2), ``lens_cap_black_noise`` (black + sensor noise),
``no_signal_blue`` (blue screen with a "NO SIGNAL" caption), ``no_signal_black`` (black
with a white "NO SIGNAL" caption), ``video_loss_grey`` (grey OSD "VIDEO LOSS" box),
``colour_bars`` (SMPTE-style bars), ``colour_bars_caption`` (bars with a "NO SIGNAL" box).

Colour bars are the one case a per-pixel-statistics gate cannot be expected to reject
(they are sharp, contrasty and not clipped); they are listed so the redesign can decide.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SLATE_SIZE = (1280, 720)
JPEG_QUALITY = 90


def _box_smear(a: np.ndarray, length: int, diagonal: bool) -> np.ndarray:
    """Average of ``length`` shifted copies: a linear motion blur (edges replicated)."""
    length = max(1, length)
    pad = length
    padded = np.pad(a, ((pad, pad), (pad, pad), (0, 0)), mode="edge").astype(np.float32)
    acc = np.zeros_like(padded)
    for k in range(length):
        off = k - length // 2
        dy = off if diagonal else 0
        acc += np.roll(np.roll(padded, off, axis=1), dy, axis=0)
    acc /= length
    return np.clip(acc[pad:-pad, pad:-pad], 0, 255).astype(np.uint8)


def damaged_versions(img: Image.Image) -> list[tuple[str, str, Image.Image]]:
    """``(kind, severity, image)`` for one clear RGB photo."""
    img = img.convert("RGB")
    s = max(img.size)
    a = np.asarray(img)
    out: list[tuple[str, str, Image.Image]] = []
    out.append(
        (
            "defocus_strong",
            f"gaussian r={s / 100:.1f}px",
            img.filter(ImageFilter.GaussianBlur(s / 100)),
        )
    )
    out.append(
        (
            "defocus_extreme",
            f"gaussian r={s / 50:.1f}px",
            img.filter(ImageFilter.GaussianBlur(s / 50)),
        )
    )
    rng_noise = np.random.default_rng(5)
    soft = np.asarray(img.filter(ImageFilter.GaussianBlur(s / 100)), dtype=np.float32)
    noisy = np.clip(soft + rng_noise.normal(0, 3.0, soft.shape), 0, 255).astype(np.uint8)
    out.append(
        ("defocus_noisy", f"gaussian r={s / 100:.1f}px + noise std 3", Image.fromarray(noisy))
    )
    # motion smear on a half-size copy (cost), scaled back: same blur length in full-size pixels
    half = img.resize((img.width // 2, img.height // 2), Image.Resampling.BOX)
    h = np.asarray(half)
    for kind, diag in (("motion_strong", False), ("motion_diagonal", True)):
        sm = Image.fromarray(_box_smear(h, round(s / 25 / 2), diag)).resize(
            img.size, Image.Resampling.BICUBIC
        )
        out.append((kind, f"box smear {round(s / 25)}px {'45deg' if diag else 'horizontal'}", sm))
    blown = Image.fromarray(np.clip(a.astype(np.float32) * 6.0, 0, 255).astype(np.uint8))
    out.append(
        ("blown_out", "exposure x6, clipped", blown.filter(ImageFilter.GaussianBlur(s / 400)))
    )
    washed = (a.astype(np.float32) * 0.1 + 255 * 0.9).astype(np.uint8)
    out.append(("washed_out", "90% blend to white", Image.fromarray(washed)))
    rng = np.random.default_rng(7)
    cap = a.astype(np.float32) * 0.03 + rng.normal(0, 1.5, a.shape)
    out.append(
        (
            "lens_cap",
            "3% light + sensor noise std 1.5",
            Image.fromarray(np.clip(cap, 0, 255).astype(np.uint8)),
        )
    )
    return out


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans-Bold.ttf", size)
    except OSError:
        return ImageFont.load_default()


def _caption(img: Image.Image, text: str, fill, box=None) -> Image.Image:
    d = ImageDraw.Draw(img)
    f = _font(72)
    left, top, right, bottom = d.textbbox((0, 0), text, font=f)
    x, y = (img.width - (right - left)) // 2, (img.height - (bottom - top)) // 2
    if box is not None:
        d.rectangle((x - 40, y - 30, x + (right - left) + 40, y + (bottom - top) + 40), fill=box)
    d.text((x, y), text, fill=fill, font=f)
    return img


def _colour_bars() -> Image.Image:
    w, h = SLATE_SIZE
    bars = [
        (192, 192, 192),
        (192, 192, 0),
        (0, 192, 192),
        (0, 192, 0),
        (192, 0, 192),
        (192, 0, 0),
        (0, 0, 192),
    ]
    img = Image.new("RGB", SLATE_SIZE)
    d = ImageDraw.Draw(img)
    bw = w / len(bars)
    for i, c in enumerate(bars):
        d.rectangle((round(i * bw), 0, round((i + 1) * bw), int(h * 0.67)), fill=c)
    low = [
        (0, 0, 192),
        (19, 19, 19),
        (192, 0, 192),
        (19, 19, 19),
        (0, 192, 192),
        (19, 19, 19),
        (192, 192, 192),
    ]
    for i, c in enumerate(low):
        d.rectangle((round(i * bw), int(h * 0.67), round((i + 1) * bw), int(h * 0.75)), fill=c)
    d.rectangle((0, int(h * 0.75), w, h), fill=(16, 16, 16))
    d.rectangle((0, int(h * 0.75), int(w * 0.18), h), fill=(0, 33, 76))
    d.rectangle((int(w * 0.18), int(h * 0.75), int(w * 0.36), h), fill=(255, 255, 255))
    return img


def slates() -> list[tuple[str, str, Image.Image]]:
    """Camera-failure frames that need no source photo."""
    rng = np.random.default_rng(11)
    w, h = SLATE_SIZE
    noise_grey = np.clip(128 + rng.normal(0, 2, (h, w, 3)), 0, 255).astype(np.uint8)
    noise_black = np.clip(2 + np.abs(rng.normal(0, 1.5, (h, w, 3))), 0, 255).astype(np.uint8)
    return [
        ("blank_black", "uniform 0", Image.new("RGB", SLATE_SIZE, (0, 0, 0))),
        ("blank_grey", "uniform 128", Image.new("RGB", SLATE_SIZE, (128, 128, 128))),
        ("blank_white", "uniform 255", Image.new("RGB", SLATE_SIZE, (255, 255, 255))),
        ("blank_grey_noise", "128 + noise std 2", Image.fromarray(noise_grey)),
        ("lens_cap_black_noise", "2 + |noise| std 1.5", Image.fromarray(noise_black)),
        (
            "no_signal_blue",
            "blue screen + caption",
            _caption(Image.new("RGB", SLATE_SIZE, (0, 0, 170)), "NO SIGNAL", "white"),
        ),
        (
            "no_signal_black",
            "black + caption",
            _caption(Image.new("RGB", SLATE_SIZE, (0, 0, 0)), "NO SIGNAL", "white"),
        ),
        (
            "video_loss_grey",
            "grey + OSD box",
            _caption(
                Image.new("RGB", SLATE_SIZE, (96, 96, 96)), "VIDEO LOSS", "white", box=(0, 0, 0)
            ),
        ),
        ("colour_bars", "SMPTE-style bars", _colour_bars()),
        (
            "colour_bars_caption",
            "bars + NO SIGNAL box",
            _caption(_colour_bars(), "NO SIGNAL", "white", box=(0, 0, 0)),
        ),
    ]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for src in map(Path, argv[2:]):
        with Image.open(src) as im:
            versions = damaged_versions(im)
        for kind, severity, img in versions:
            name = f"{kind}__{src.stem}.jpg"
            img.save(out / name, quality=JPEG_QUALITY)
            rows.append({"file": name, "kind": kind, "severity": severity, "source": src.name})
    for kind, severity, img in slates():
        name = f"{kind}.jpg"
        img.save(out / name, quality=JPEG_QUALITY)
        rows.append({"file": name, "kind": kind, "severity": severity, "source": "-"})
    with open(out / "unusable.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "kind", "severity", "source"])
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} unusable images in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
