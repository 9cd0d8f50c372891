"""Synthetic test images: a street-like scene and every kind of bad upload.

Deterministic (seeded), built in memory, no files read: tests never depend on the
real photos under ``../shared``. Functions return PIL images or encoded bytes.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def street_scene(width: int = 1280, height: int = 720, *, seed: int = 7) -> Image.Image:
    """A daylight street-like RGB scene: sky, buildings with windows, road, lane marks, cars, texture.

    Its metrics sit well inside the default quality thresholds (sharp edges at many
    scales, mid brightness, ordinary contrast, almost no clipped pixels).
    """
    rng = np.random.default_rng(seed)
    w, h = width, height
    horizon = int(h * 0.45)
    img = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(img)
    # sky: vertical gradient
    for y in range(horizon):
        t = y / max(1, horizon - 1)
        draw.line([(0, y), (w, y)], fill=(int(150 + 40 * t), int(180 + 30 * t), int(215 + 15 * t)))
    # buildings with windows
    x = 0
    while x < w:
        bw = int(rng.integers(w // 12, w // 5))
        top = int(rng.integers(int(h * 0.08), int(h * 0.3)))
        shade = int(rng.integers(70, 170))
        draw.rectangle([x, top, x + bw, horizon], fill=(shade, shade - 10, shade - 25))
        step = max(6, bw // 8)
        for wx in range(x + step // 2, x + bw - step // 2, step):
            for wy in range(top + step // 2, horizon - step, step):
                draw.rectangle([wx, wy, wx + step // 2, wy + step // 2], fill=(40, 55, 70))
        x += bw + int(rng.integers(2, 10))
    # road, pavement, lane marks
    draw.rectangle([0, horizon, w, h], fill=(95, 95, 100))
    draw.rectangle([0, horizon, w, horizon + h // 30], fill=(150, 145, 140))
    lane_y = horizon + (h - horizon) // 2
    for lx in range(0, w, w // 10):
        draw.rectangle([lx, lane_y, lx + w // 20, lane_y + max(2, h // 80)], fill=(235, 235, 230))
    # cars: body, windows, wheels
    for _ in range(6):
        cw = int(rng.integers(w // 12, w // 6))
        ch = cw // 2
        cx = int(rng.integers(0, w - cw))
        cy = int(rng.integers(horizon + h // 30, h - ch))
        colour = tuple(int(c) for c in rng.integers(20, 220, size=3))
        draw.rectangle([cx, cy, cx + cw, cy + ch], fill=colour, outline=(20, 20, 20), width=2)
        draw.rectangle(
            [cx + cw // 6, cy + ch // 8, cx + cw - cw // 6, cy + ch // 2], fill=(50, 70, 90)
        )
        r = max(3, ch // 5)
        for wx in (cx + cw // 5, cx + cw - cw // 5):
            draw.ellipse([wx - r, cy + ch - r, wx + r, cy + ch + r], fill=(15, 15, 15))
    # fine texture (asphalt grain, sensor noise)
    arr = np.asarray(img, dtype=np.int16)
    arr = arr + rng.normal(0, 4, size=arr.shape).round().astype(np.int16)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def blurred(image: Image.Image, radius: float = 4.0) -> Image.Image:
    """Out-of-focus: Gaussian blur."""
    return image.filter(ImageFilter.GaussianBlur(radius))


def motion_blurred(image: Image.Image, length: int = 24, angle_deg: float = 30.0) -> Image.Image:
    """Camera-shake / motion blur: the average of ``length`` copies shifted along ``angle_deg``."""
    arr = np.asarray(image, dtype=np.float32)
    pad = length + 1
    padded = np.pad(arr, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = arr.shape[:2]
    acc = np.zeros_like(arr)
    dx, dy = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    for k in range(length):
        ox = pad + int(round((k - length / 2) * dx))
        oy = pad + int(round((k - length / 2) * dy))
        acc += padded[oy : oy + h, ox : ox + w]
    return Image.fromarray((acc / length).clip(0, 255).astype(np.uint8), "RGB")


def black(width: int = 640, height: int = 360) -> Image.Image:
    return Image.new("RGB", (width, height), (0, 0, 0))


def white(width: int = 640, height: int = 360) -> Image.Image:
    return Image.new("RGB", (width, height), (255, 255, 255))


def uniform_grey(width: int = 640, height: int = 360, level: int = 128) -> Image.Image:
    """A frozen / blank frame: one grey level everywhere."""
    return Image.new("RGB", (width, height), (level, level, level))


def overexposed(image: Image.Image, gain: float = 4.0) -> Image.Image:
    """Blown-out exposure: most pixels pushed to 255, some structure left."""
    arr = np.asarray(image, dtype=np.float32) * gain
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def underexposed(image: Image.Image, gain: float = 0.04) -> Image.Image:
    """Almost black: exposure far too short."""
    arr = np.asarray(image, dtype=np.float32) * gain
    return Image.fromarray(arr.round().clip(0, 255).astype(np.uint8), "RGB")


def foggy(image: Image.Image, fog: float = 0.92, level: int = 170) -> Image.Image:
    """Washed out: blended with a flat grey (dense fog, dirty lens)."""
    return Image.blend(image, Image.new("RGB", image.size, (level, level, level)), fog)


def tiny(image: Image.Image, size: tuple[int, int] = (120, 80)) -> Image.Image:
    """Too few pixels to see road users."""
    return image.resize(size, Image.Resampling.LANCZOS)


def jpeg_bytes(image: Image.Image, *, quality: int = 90, exif: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    kwargs = {"quality": quality}
    if exif is not None:
        kwargs["exif"] = exif
    image.save(buf, "JPEG", **kwargs)
    return buf.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def encoded(image: Image.Image, fmt: str) -> bytes:
    """``image`` saved in any Pillow format (``"GIF"``, ``"BMP"``, ``"WEBP"``, ``"TIFF"``...)."""
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def truncated_jpeg(image: Image.Image | None = None, *, keep: float = 0.5) -> bytes:
    """A JPEG cut off after ``keep`` of its bytes (an interrupted upload)."""
    data = jpeg_bytes(image if image is not None else street_scene(640, 360))
    return data[: max(4, int(len(data) * keep))]


def truncated_png(image: Image.Image | None = None, *, keep: float = 0.5) -> bytes:
    data = png_bytes(image if image is not None else street_scene(320, 180))
    return data[: max(9, int(len(data) * keep))]


def random_bytes(n: int = 4096, *, seed: int = 3) -> bytes:
    """Noise that is not any known file format (first byte forced to 0x00)."""
    data = bytearray(np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8).tobytes())
    data[0:4] = b"\x00\x13\x37\x42"
    return bytes(data)


def text_bytes() -> bytes:
    return b"tiensevest_Leuven_Belgium_12-10-2022_10-51-38.jpg is not the image itself\n" * 4


def pdf_bytes() -> bytes:
    return b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def png_with_alpha(width: int = 320, height: int = 180) -> Image.Image:
    """RGBA scene: left quarter fully transparent, second quarter half transparent."""
    rgba = street_scene(width, height).convert("RGBA")
    alpha = np.full((height, width), 255, dtype=np.uint8)
    alpha[:, : width // 4] = 0
    alpha[:, width // 4 : width // 2] = 128
    rgba.putalpha(Image.fromarray(alpha, "L"))
    return rgba


def exif_rotated_jpeg(width: int = 640, height: int = 360, *, orientation: int = 6) -> bytes:
    """A JPEG stored ``width`` x ``height`` whose EXIF says to rotate it (6 = 90 degrees clockwise).

    A pure red 40x40 marker sits at the *stored* top-left corner; after orientation
    6 is applied it must appear at the top-right.
    """
    img = Image.new("RGB", (width, height), (40, 120, 40))
    ImageDraw.Draw(img).rectangle([0, 0, 39, 39], fill=(255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg_bytes(img, quality=95, exif=exif.tobytes())


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def png_bomb_header(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def jpeg_bomb_header(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF header is patched to claim ``width`` x ``height`` pixels."""
    data = bytearray(jpeg_bytes(Image.new("RGB", (16, 16), (128, 128, 128))))
    i = 2
    while i < len(data):
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker found")


def grey16_png(width: int = 64, height: int = 48, level: int = 40000) -> bytes:
    """A 16-bit greyscale PNG filled with ``level`` (0..65535)."""
    arr = np.full((height, width), level, dtype=np.uint16)
    image = Image.fromarray(arr)  # mode "I;16"
    assert image.mode.startswith("I;16"), image.mode
    return png_bytes(image)


def palette_png_with_transparency(size: int = 32) -> bytes:
    """A palette PNG: left half palette index 0 (transparent), right half index 1 = (200, 30, 30)."""
    pal = Image.new("P", (size, size), 0)
    pal.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    pal.paste(1, (size // 2, 0, size, size))
    buf = io.BytesIO()
    pal.save(buf, "PNG", transparency=0)
    return buf.getvalue()
