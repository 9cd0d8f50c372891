"""The annotated copy of an image: boxes, labels and a legend of counts per class.

One fixed colour per traffic class (bright, well apart in hue, so the classes stay
apart on day and night frames); every box has a thin dark halo and every text sits
on a filled tag, so they read on bright and dark pictures alike. Line width and text
size scale with the picture. A legend in the emptiest corner lists all six classes
with their counts (zeros included, like every count in the platform). People can be
blurred for privacy. The input picture is never modified.

    jpeg = annotate(picture, detections, blur_people=True)
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..domain.classes import TRAFFIC_CLASSES, TrafficClass
from ..domain.detections import Detection, count_by_class
from ..domain.images import to_rgb

#: RGB colour per traffic class: saturated and bright enough for night frames, with
#: hues far apart (blue, orange, yellow, pink-red, green, violet).
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    TrafficClass.CAR.value: (30, 144, 255),
    TrafficClass.TRUCK.value: (255, 120, 0),
    TrafficClass.BUS.value: (255, 225, 0),
    TrafficClass.PERSON.value: (255, 40, 90),
    TrafficClass.BICYCLE.value: (0, 220, 120),
    TrafficClass.MOTORCYCLE.value: (190, 90, 255),
}
HALO = (0, 0, 0)
LEGEND_BACKGROUND = (0, 0, 0, 170)  # dark, partly see-through
LEGEND_TEXT = (255, 255, 255)


def annotate(
    image: Image.Image,
    detections: Sequence[Detection],
    *,
    blur_people: bool = False,
    jpeg_quality: int = 85,
) -> bytes:
    """JPEG bytes of an annotated copy of ``image``, the same size as ``image``.

    Args:
        image: the picture the boxes refer to (any mode; RGBA/LA/P transparency is
            shown on white, as the ingest path decodes it).
        detections: boxes in ``image``'s pixels.
        blur_people: blur the inside of every ``person`` box (privacy) before drawing.
        jpeg_quality: JPEG quality 1-95. Chroma is not subsampled, so thin coloured
            lines and small text keep their colour.
    """
    canvas = render(image, detections, blur_people=blur_people)
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=jpeg_quality, subsampling=0)
    return buffer.getvalue()


def render(
    image: Image.Image, detections: Sequence[Detection], *, blur_people: bool = False
) -> Image.Image:
    """The annotated copy as an RGB picture (what :func:`annotate` encodes)."""
    canvas = to_rgb(image)
    if canvas is image:
        canvas = image.copy()
    width, height = canvas.size
    style = _Style.for_size(width, height)

    if blur_people:
        for d in detections:
            if d.traffic_class == TrafficClass.PERSON:
                _blur_box(canvas, d.box, style)

    draw = ImageDraw.Draw(canvas)
    ordered = sorted(detections, key=lambda d: d.score)  # the surest ones end up on top
    for d in ordered:
        _draw_box(draw, d, style, width, height)
    for d in ordered:
        _draw_tag(draw, d, style, width, height)
    return _draw_legend(canvas, count_by_class(detections), detections, style)


class _Style:
    """Sizes derived from the picture: ~1 px of line per 300 px of the short side."""

    def __init__(self, line: int, halo: int, font_size: int) -> None:
        self.line = line
        self.halo = halo
        self.font = _font(font_size)
        self.font_size = font_size
        self.pad = max(2, font_size // 5)

    @classmethod
    def for_size(cls, width: int, height: int) -> _Style:
        short = min(width, height)
        line = max(2, round(short / 300))
        return cls(line=line, halo=max(1, line // 2), font_size=max(10, round(short / 45)))


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType
    except (TypeError, AttributeError, OSError):  # pragma: no cover - bitmap-only Pillow
        return ImageFont.load_default()


@lru_cache(maxsize=4096)
def _text_bbox(font_size: int, text: str) -> tuple[int, int, int, int]:
    """``ImageDraw.textbbox((0, 0), text)`` in the font of that size (tags repeat: class + score)."""
    return ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=_font(font_size))


def _pixel_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Float ``xyxy`` -> integer corners inside the picture (PIL's x2/y2 are inclusive)."""
    x1, y1, x2, y2 = box
    clamp_x = lambda v: min(max(int(round(v)), 0), width - 1)  # noqa: E731
    clamp_y = lambda v: min(max(int(round(v)), 0), height - 1)  # noqa: E731
    return clamp_x(x1), clamp_y(y1), clamp_x(x2), clamp_y(y2)


def _blur_box(canvas: Image.Image, box: Sequence[float], style: _Style) -> None:
    x1, y1, x2, y2 = _pixel_box(box, *canvas.size)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return
    region = canvas.crop((x1, y1, x2 + 1, y2 + 1))
    # Strong enough that faces are unrecognisable at any box size.
    radius = max(4.0, min(x2 - x1, y2 - y1) / 6)
    canvas.paste(region.filter(ImageFilter.GaussianBlur(radius)), (x1, y1))


def _draw_box(
    draw: ImageDraw.ImageDraw, d: Detection, style: _Style, width: int, height: int
) -> None:
    x1, y1, x2, y2 = _pixel_box(d.box, width, height)
    h = style.halo
    # A dark rectangle a little larger and wider, the coloured one over it: a dark line
    # remains on both sides of the colour.
    outer = (max(x1 - h, 0), max(y1 - h, 0), min(x2 + h, width - 1), min(y2 + h, height - 1))
    draw.rectangle(outer, outline=HALO, width=style.line + 2 * h)
    draw.rectangle((x1, y1, x2, y2), outline=CLASS_COLOURS[d.traffic_class.value], width=style.line)


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with ``background`` (relative luminance)."""
    r, g, b = (c / 255 for c in background)
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return (0, 0, 0) if luminance > 0.45 else (255, 255, 255)


def _draw_tag(
    draw: ImageDraw.ImageDraw, d: Detection, style: _Style, width: int, height: int
) -> None:
    text = f"{d.traffic_class.value} {d.score:.2f}"
    colour = CLASS_COLOURS[d.traffic_class.value]
    left, top, right, bottom = _text_bbox(style.font_size, text)
    tag_w, tag_h = right - left + 2 * style.pad, bottom - top + 2 * style.pad
    x1, y1, _, _ = _pixel_box(d.box, width, height)
    tx = min(max(x1, 0), max(width - tag_w, 0))
    ty = y1 - tag_h if y1 - tag_h >= 0 else y1  # above the box, else just inside it
    ty = min(ty, max(height - tag_h, 0))
    draw.rectangle((tx, ty, tx + tag_w - 1, ty + tag_h - 1), fill=colour, outline=HALO, width=1)
    draw.text(
        (tx + style.pad - left, ty + style.pad - top),
        text,
        font=style.font,
        fill=_text_colour(colour),
    )


def _draw_legend(
    canvas: Image.Image, counts: dict[str, int], detections: Sequence[Detection], style: _Style
) -> Image.Image:
    width, height = canvas.size
    rows = [f"{name} {counts[name]}" for name in TRAFFIC_CLASSES]
    boxes = [_text_bbox(style.font_size, row) for row in rows]
    text_h = max(b[3] - b[1] for b in boxes)
    text_w = max(b[2] - b[0] for b in boxes)
    row_h = text_h + style.pad
    swatch = text_h
    panel_w = 3 * style.pad + swatch + text_w + style.pad
    panel_h = len(rows) * row_h + 2 * style.pad
    margin = style.pad * 2
    px, py = _emptiest_corner(width, height, panel_w, panel_h, margin, detections)

    # Composited over the panel's region only: outside it the overlay is fully transparent,
    # so the picture is the same as compositing a full-size overlay (3 full-size passes less).
    region = (px, py, min(px + panel_w, width), min(py + panel_h, height))
    if region[2] <= px or region[3] <= py:  # a picture smaller than the margins
        return canvas
    overlay = Image.new("RGBA", (region[2] - px, region[3] - py), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle((0, 0, panel_w - 1, panel_h - 1), fill=LEGEND_BACKGROUND)
    for i, (name, row, bbox) in enumerate(zip(TRAFFIC_CLASSES, rows, boxes, strict=True)):
        ry = style.pad + i * row_h
        sx = 2 * style.pad
        draw.rectangle(
            (sx, ry, sx + swatch - 1, ry + swatch - 1),
            fill=(*CLASS_COLOURS[name], 255),
            outline=(255, 255, 255, 255),
        )
        draw.text(
            (sx + swatch + style.pad - bbox[0], ry - bbox[1]),
            row,
            font=style.font,
            fill=(*LEGEND_TEXT, 255),
        )
    panel = Image.alpha_composite(canvas.crop(region).convert("RGBA"), overlay)
    canvas.paste(panel.convert("RGB"), region[:2])
    return canvas


def _emptiest_corner(
    width: int,
    height: int,
    panel_w: int,
    panel_h: int,
    margin: int,
    detections: Sequence[Detection],
) -> tuple[int, int]:
    """The corner (top-left first) where the legend hides the least box area."""
    xs = (margin, max(width - panel_w - margin, 0))
    ys = (margin, max(height - panel_h - margin, 0))
    corners = [(xs[0], ys[0]), (xs[1], ys[0]), (xs[0], ys[1]), (xs[1], ys[1])]

    def hidden(corner: tuple[int, int]) -> float:
        cx, cy = corner
        total = 0.0
        for d in detections:
            x1, y1, x2, y2 = d.box
            overlap_w = min(x2, cx + panel_w) - max(x1, cx)
            overlap_h = min(y2, cy + panel_h) - max(y1, cy)
            if overlap_w > 0 and overlap_h > 0:
                total += overlap_w * overlap_h
        return total

    return min(corners, key=hidden)  # min() keeps the first of equals: top-left


__all__ = ["CLASS_COLOURS", "annotate", "render"]
