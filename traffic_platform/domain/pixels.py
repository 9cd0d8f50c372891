"""How a decoded picture becomes the RGB image everything measures and detects on.

One place for the rules, so the ingest path and the SageMaker endpoint see the same
picture: EXIF orientation applied, transparency composited on white, 16-bit grey kept
by its top 8 bits.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation (1-8) of an opened picture; 1 when absent or broken."""
    try:
        value = int(im.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block must not refuse a good picture
        return 1
    return value if 1 <= value <= 8 else 1


def apply_orientation(im: Image.Image, orientation: int) -> Image.Image:
    """Turn a loaded picture upright as its EXIF orientation says."""
    return im.transpose(_TRANSPOSE[orientation]) if orientation != 1 else im


def to_rgb(im: Image.Image) -> Image.Image:
    """Any decoded mode -> 8-bit RGB; transparency composited on white."""
    mode = im.mode
    if mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grey PNG: keep the top 8 bits (Pillow's convert would clip at 255).
        top = (np.asarray(im).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return Image.fromarray(top, "L").convert("RGB")
    return im.convert("RGB")
