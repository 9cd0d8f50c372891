"""Per-image camera-health features, computed with numpy on a small grey thumbnail.

:func:`image_features` takes the stored bytes (decoded by :mod:`traffic_platform.domain.images`,
the only module that opens image bytes) and returns:

* ``dhash``: a 64-bit difference hash (9x8 area-averaged grey, one bit per horizontally
  adjacent pair: left brighter than right). Near-identical frames differ in 0-2 bits; two
  different scenes in about 32.
* ``thumb``: a 16x9 grey thumbnail (144 bytes), for a finer frame-to-frame distance
  (mean absolute difference in grey levels) than the hash gives.
* ``uniform_share``: the share of 4x4 blocks of the 64x36 grey copy whose grey levels span
  at most :data:`UNIFORM_RANGE` levels (a "no signal" slate is mostly flat).
* ``repeated_line_share``: the larger of the shares of consecutive rows and of consecutive
  columns of that copy that repeat (mean absolute difference <= :data:`REPEAT_MAD`); colour
  bars repeat every row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...domain.images import grey_thumbnail

GREY_SIZE = (64, 36)  # (width, height) of the analysis copy: 16:9, 4x4 blocks -> 16x9
THUMB_SIZE = (16, 9)
UNIFORM_RANGE = 4  # grey levels a flat block may span (JPEG noise on a flat area stays below)
REPEAT_MAD = 1.0  # mean |difference| in grey levels under which two lines repeat


@dataclass(frozen=True)
class ImageFeatures:
    dhash: int  # 64 bits, unsigned
    thumb: bytes  # 16x9 grey levels, row-major
    uniform_share: float
    repeated_line_share: float
    mean_level: float


def _area_resize(grey: np.ndarray, width: int, height: int) -> np.ndarray:
    """Mean of (nearly) equal blocks: ``height`` row bands x ``width`` column bands."""
    rows = np.array_split(grey.astype(np.float64), height, axis=0)
    return np.array([[band.mean() for band in np.array_split(r, width, axis=1)] for r in rows])


def dhash(grey: np.ndarray) -> int:
    """64-bit difference hash of a 2-D grey array."""
    small = _area_resize(grey, 9, 8)
    bits = (small[:, :-1] > small[:, 1:]).flatten()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def thumb_mad(a: bytes, b: bytes) -> float:
    """Mean absolute grey-level difference of two thumbnails."""
    x = np.frombuffer(a, dtype=np.uint8).astype(np.int16)
    y = np.frombuffer(b, dtype=np.uint8).astype(np.int16)
    return float(np.abs(x - y).mean())


def features_of_grey(grey: np.ndarray) -> ImageFeatures:
    """The features of a 64x36 (rows 36, columns 64) grey array."""
    g = grey.astype(np.int16)
    h, w = g.shape
    blocks = g[: h - h % 4, : w - w % 4].reshape(h // 4, 4, w // 4, 4)
    span = blocks.max(axis=(1, 3)) - blocks.min(axis=(1, 3))
    uniform = float((span <= UNIFORM_RANGE).mean())
    row_repeats = float((np.abs(np.diff(g, axis=0)).mean(axis=1) <= REPEAT_MAD).mean())
    col_repeats = float((np.abs(np.diff(g, axis=1)).mean(axis=0) <= REPEAT_MAD).mean())
    thumb = np.clip(np.rint(_area_resize(grey, *THUMB_SIZE)), 0, 255).astype(np.uint8).tobytes()
    return ImageFeatures(dhash(grey), thumb, uniform, max(row_repeats, col_repeats), float(grey.mean()))


def image_features(data: bytes) -> ImageFeatures | None:
    """The features of stored image bytes, or ``None`` when they do not decode."""
    grey = grey_thumbnail(data, GREY_SIZE)
    return None if grey is None else features_of_grey(grey)
