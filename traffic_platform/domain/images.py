"""Image bytes -> the RGB picture everything measures, detects and draws on. The only module
that opens image bytes with Pillow.

One set of rules for every reader: the ingest service (uploads), the SageMaker endpoint
(the bytes it is sent), the persistence worker (the annotated copy), re-detection (stored
uploads) and the ONNX backend (reduced-size decoding for the model input).

Uploads (:func:`decode_image`) are checked in an order chosen so that nothing expensive
happens to an upload that will be refused anyway:

1. byte limit (``max_bytes``)                       -> 413 ``upload_too_large``
2. empty body                                       -> 415 ``empty_body``
3. format sniffed from the magic bytes; only JPEG and PNG are accepted (the declared
   content type is advisory, the bytes decide)      -> 415 ``not_an_image`` /
                                                       ``unsupported_image_format``
4. pixel limit from the header, before any pixel is decoded (``Image.open`` reads
   only the header); Pillow's own decompression-bomb guard is kept in line with
   ``max_pixels`` and its warning is turned into an error  -> 413 ``too_many_pixels``
5. full decode; truncated or corrupt data is never silently accepted (Pillow's
   ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left ``False``). Bytes that *are* a
   JPEG/PNG by their magic but do not decode are a distorted image, not a wrong
   media type                                        -> 422 ``image_undecodable``
6. EXIF orientation applied, converted to RGB (:func:`to_rgb`). Transparency is
   composited on **white** (what an image viewer or browser shows, so the annotated
   copy looks like the picture the sender saw; a fully transparent picture becomes a
   white frame and is rejected by the quality gate as uniform); 16-bit grey keeps its
   top 8 bits.

Measured on the 2-core build host (Pillow 13, median of 40; ``bench/quality_thresholds.py``):
a 1280x720 JPEG decodes, checks included, in 1.8 ms (79 KB file) to 3.2 ms (217 KB)
at full size, 1.3-2.7 ms with ``draft_size=(640, 360)`` (Huffman decoding, which draft
mode cannot skip, dominates for well-compressed files); a 1920x1080 940 KB JPEG in
12.8 ms (10.6 ms draft). The checks add nothing measurable over a bare
``Image.open(...).convert("RGB")``.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile

from .errors import PayloadTooLarge, UnsupportedImage
from .quality import undecodable_error

JPEG = "JPEG"
PNG = "PNG"
# What Pillow raises on data it cannot decode (truncated, corrupt, bad checksums).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, zlib.error)
# JPEG start-of-frame markers (they carry the size); C4, C8 and CC are not frames.
_JPEG_SOF = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)
CONTENT_TYPES = {JPEG: "image/jpeg", PNG: "image/png"}
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
_SWAPS_AXES = frozenset({5, 6, 7, 8})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})

# (magic prefix, offset, what it looks like, is it a picture format)
_SIGNATURES: tuple[tuple[bytes, int, str, bool], ...] = (
    (b"GIF87a", 0, "a GIF image", True),
    (b"GIF89a", 0, "a GIF image", True),
    (b"BM", 0, "a BMP image", True),
    (b"II*\x00", 0, "a TIFF image", True),
    (b"MM\x00*", 0, "a TIFF image", True),
    (b"\x00\x00\x01\x00", 0, "an ICO icon", True),
    (b"8BPS", 0, "a Photoshop (PSD) image", True),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", 0, "a JPEG 2000 image", True),
    (b"\xff\x4f\xff\x51", 0, "a JPEG 2000 codestream", True),
    (b"\xff\x0a", 0, "a JPEG XL image", True),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", 0, "a JPEG XL image", True),
    (b"qoif", 0, "a QOI image", True),
    (b"%PDF", 0, "a PDF document", False),
    (b"PK\x03\x04", 0, "a ZIP archive (or an Office document)", False),
    (b"\x1f\x8b", 0, "gzip-compressed data", False),
    (b"7z\xbc\xaf\x27\x1c", 0, "a 7-Zip archive", False),
    (b"Rar!", 0, "a RAR archive", False),
    (b"\x7fELF", 0, "an executable", False),
    (b"MZ", 0, "an executable", False),
    (b"OggS", 0, "an Ogg media file", False),
    (b"ID3", 0, "an MP3 audio file", False),
    (b"\x1aE\xdf\xa3", 0, "a Matroska/WebM video", False),
)
_RIFF_KINDS = {
    b"WEBP": ("a WebP image", True),
    b"AVI ": ("an AVI video", False),
    b"WAVE": ("a WAV audio file", False),
}
_FTYP_IMAGE_BRANDS = {
    b"heic": "a HEIC image",
    b"heix": "a HEIC image",
    b"heim": "a HEIC image",
    b"heis": "a HEIC image",
    b"mif1": "a HEIF image",
    b"msf1": "a HEIF image",
    b"avif": "an AVIF image",
    b"avis": "an AVIF image",
}


@dataclass(frozen=True)
class DecodedImage:
    """An upload that decoded cleanly.

    Attributes:
        image: the picture, mode ``"RGB"``, EXIF orientation applied. Full resolution
            unless ``draft_size`` was asked for (JPEG only), then possibly smaller.
        data: the original bytes, untouched (stored as they are and sent to remote
            detectors as they are).
        content_type: ``"image/jpeg"`` or ``"image/png"``, from the bytes, not from
            what the sender declared.
        format: ``"JPEG"`` or ``"PNG"``.
        width, height: full-resolution size *after* EXIF orientation; boxes and the
            stored image refer to it.
        original_mode: the Pillow mode before conversion (``"RGB"``, ``"L"``,
            ``"RGBA"``, ``"P"``, ``"CMYK"``, ...).
        exif_orientation: the EXIF orientation tag that was applied (1 = none). A
            remote backend that decodes ``data`` itself must apply it too.
    """

    image: Image.Image
    data: bytes
    content_type: str
    format: str
    width: int
    height: int
    original_mode: str
    exif_orientation: int = 1

    @property
    def size(self) -> tuple[int, int]:
        """Full-resolution ``(width, height)`` after orientation."""
        return (self.width, self.height)

    @property
    def scale(self) -> float:
        """Full-resolution width over decoded width (1.0 unless decoded in draft mode)."""
        return self.width / self.image.size[0]


def sniff_format(data: bytes) -> str | None:
    """``"JPEG"`` or ``"PNG"`` from the magic bytes, else ``None``."""
    if data[:3] == b"\xff\xd8\xff":
        return JPEG
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return PNG
    return None


def describe_bytes(data: bytes) -> tuple[str, bool]:
    """What non-JPEG/PNG bytes look like: ``(description, is_a_picture_format)``."""
    for magic, offset, what, is_image in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return what, is_image
    if data[:4] == b"RIFF" and data[8:12] in _RIFF_KINDS:
        return _RIFF_KINDS[data[8:12]]
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _FTYP_IMAGE_BRANDS:
            return _FTYP_IMAGE_BRANDS[brand], True
        return "an MP4/QuickTime video", False
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "an SVG drawing (vector images are not accepted)", True
    if head.startswith((b"<!doctype html", b"<html")):
        return "an HTML page", False
    if head.startswith(b"<"):
        return "XML text", False
    if head.startswith((b"{", b"[")):
        return "JSON text", False
    if data[:4] in (b"iVBO", b"/9j/") or data[:11] == b"data:image/":
        return "base64 text (send the raw image bytes, not base64)", False
    sample = data[:512]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return "plain text", False
    return f"unknown binary data (starts with 0x{data[:8].hex()})", False


def _mb(n: int) -> str:
    return f"{n / 1_048_576:.3g} MB ({n} bytes)"


def decode_image(
    data: bytes,
    *,
    declared_content_type: str | None = None,
    max_bytes: int,
    max_pixels: int,
    draft_size: tuple[int, int] | None = None,
) -> DecodedImage:
    """Check and decode an uploaded JPEG or PNG.

    Args:
        data: the uploaded bytes.
        declared_content_type: what the sender said it is; only used in messages,
            the bytes decide.
        max_bytes: the upload limit (``settings.max_upload_bytes``).
        max_pixels: the pixel limit (``settings.max_pixels``), checked on the header.
        draft_size: JPEG only: decode at the smallest 1/2, 1/4 or 1/8 scale that is
            still at least this ``(width, height)`` (after EXIF orientation). For fast
            detectors; the stored and annotated images need the default full size.

    Raises:
        PayloadTooLarge: ``upload_too_large`` or ``too_many_pixels`` (413).
        UnsupportedImage: ``empty_body``, ``not_an_image`` or ``unsupported_image_format`` (415).
        DistortedImage: ``image_undecodable`` (422) for a JPEG/PNG that does not decode.
    """
    data = bytes(data)
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"The upload is {_mb(len(data))}; the limit is {_mb(max_bytes)}. Send a smaller JPEG or PNG.",
            code="upload_too_large",
            details={"bytes": len(data), "max_bytes": max_bytes},
        )
    if not data:
        raise UnsupportedImage(
            "The request body is empty; send the JPEG or PNG bytes.", code="empty_body"
        )

    fmt = sniff_format(data)
    if fmt is None:
        what, is_image = describe_bytes(data)
        declared = f" (declared as {declared_content_type})" if declared_content_type else ""
        if is_image:
            raise UnsupportedImage(
                f"The upload looks like {what}{declared}; only JPEG and PNG images are accepted.",
                code="unsupported_image_format",
                details={"detected": what},
            )
        raise UnsupportedImage(
            f"The upload is not an image: it looks like {what}{declared}. Send a JPEG or PNG.",
            code="not_an_image",
            details={"detected": what},
        )
    content_type = CONTENT_TYPES[fmt]

    _allow_pixels(max_pixels)  # above our limit we refuse first anyway

    def too_many(w: int | None, h: int | None) -> PayloadTooLarge:
        size = (
            f"{w}x{h} = {w * h:,} pixels" if w and h else "more pixels than Pillow's safety limit"
        )
        return PayloadTooLarge(
            f"The image is {size}; the limit is {max_pixels:,} pixels. Send a smaller image.",
            code="too_many_pixels",
            details={"width": w, "height": h, "max_pixels": max_pixels},
        )

    with warnings.catch_warnings():
        # Not thread-safe on Python 3.11, but harmless: the warning can only fire
        # for images above max_pixels, which the size check below refuses anyway.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=[fmt])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise too_many(*_header_size(data, fmt)) from None
        except _DECODE_ERRORS as exc:
            raise undecodable_error(_reason(exc), content_type=content_type) from None

        w, h = im.size
        if w * h > max_pixels:
            raise too_many(w, h)
        if w <= 0 or h <= 0:
            raise undecodable_error(
                f"the header declares an empty {w}x{h} image", content_type=content_type
            )

        orientation = exif_orientation(im)
        if draft_size is not None and fmt == JPEG:
            dw, dh = draft_size
            if orientation in _SWAPS_AXES:  # draft works on the stored (unrotated) frame
                dw, dh = dh, dw
            im.draft("RGB", (dw, dh))

        if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone switched Pillow's guard off
            raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False")
        try:
            im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise too_many(w, h) from None
        except _DECODE_ERRORS as exc:
            raise undecodable_error(_reason(exc), content_type=content_type) from None

    original_mode = im.mode
    full_w, full_h = (h, w) if orientation in _SWAPS_AXES else (w, h)
    rgb = to_rgb(apply_orientation(im, orientation))
    return DecodedImage(
        image=rgb,
        data=data,
        content_type=content_type,
        format=fmt,
        width=full_w,
        height=full_h,
        original_mode=original_mode,
        exif_orientation=orientation,
    )


def open_stored(data: bytes, *, max_pixels: int | None = None) -> Image.Image:
    """Decode bytes that :func:`decode_image` already accepted: the same RGB picture.

    For the persistence worker (annotated copy) and re-detection, which read stored
    uploads back. EXIF orientation and the RGB conversion are exactly those of
    :func:`decode_image`; the byte and pixel checks are not repeated, except that
    Pillow's bomb guard is raised to ``max_pixels`` when given (pass
    ``settings.max_pixels`` so a worker never refuses what ingest accepted).
    Raises :class:`~traffic_platform.domain.errors.DistortedImage` (``image_undecodable``)
    when the bytes do not decode.
    """
    if max_pixels is not None:
        _allow_pixels(max_pixels)
    fmt = sniff_format(data)
    try:
        im = Image.open(io.BytesIO(data), formats=[fmt] if fmt else None)
        orientation = exif_orientation(im)
        im.load()
    except _DECODE_ERRORS as exc:
        raise undecodable_error(_reason(exc), content_type=CONTENT_TYPES.get(fmt or "")) from None
    return to_rgb(apply_orientation(im, orientation))


def decode_resized(
    data: bytes, size: tuple[int, int], expected: tuple[int, int]
) -> Image.Image | None:
    """JPEG bytes -> an RGB picture of exactly ``size`` ``(width, height)``, decoded at reduced scale.

    libjpeg decodes at the smallest 1/2, 1/4 or 1/8 scale still at least ``size``
    (``Image.draft``), then one bilinear resize; EXIF orientation is applied. For model
    inputs only (pixel values differ slightly from a full decode + resize). Returns ``None``
    (the caller falls back to its decoded picture) for anything but a JPEG whose oriented
    size is ``expected``, or bytes that do not decode.
    """
    if sniff_format(data) != JPEG:
        return None
    try:
        image = Image.open(io.BytesIO(data), formats=[JPEG])
        orientation = exif_orientation(image)
        swapped = orientation in _SWAPS_AXES
        oriented = (image.size[1], image.size[0]) if swapped else image.size
        if oriented != tuple(expected):
            return None  # the bytes are not the picture we were given: trust the picture
        target = (size[1], size[0]) if swapped else tuple(size)
        image.draft("RGB", target)
        image.load()
    except (*_DECODE_ERRORS, Image.DecompressionBombError):
        return None
    out = to_rgb(image)
    if out.size != target:
        out = out.resize(target, Image.Resampling.BILINEAR)
    return apply_orientation(out, orientation)


def thumbnail_jpeg(data: bytes, max_side: int, *, quality: int = 70) -> bytes | None:
    """Stored JPEG/PNG bytes -> a JPEG at most ``max_side`` pixels on its longer side (EXIF
    orientation applied, never enlarged), for the dashboard's gallery; ``None`` when the bytes
    are not a picture that decodes. JPEGs are decoded at reduced scale (``Image.draft``)."""
    if max_side < 1:
        raise ValueError("max_side must be at least 1")
    picture = _open_reduced(data, "RGB", (max_side, max_side))
    if picture is None:
        return None
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def grey_thumbnail(data: bytes, size: tuple[int, int]) -> np.ndarray | None:
    """Stored JPEG/PNG bytes -> an 8-bit grey array of exactly ``size`` ``(width, height)``
    (area average, aspect ignored, EXIF orientation applied), for the camera-health features
    (perceptual hash, slate statistics); ``None`` when the bytes are not a picture that decodes.
    JPEGs are decoded at reduced scale (``Image.draft``)."""
    picture = _open_reduced(data, "L", (size[0] * 2, size[1] * 2))
    if picture is None:
        return None
    grey = picture.convert("L")
    return np.asarray(grey.resize(size, Image.Resampling.BOX), dtype=np.uint8)


def _open_reduced(data: bytes, draft_mode: str, draft_size: tuple[int, int]) -> Image.Image | None:
    """Stored JPEG/PNG bytes -> the upright RGB picture, a JPEG decoded at the smallest
    reduced scale still at least ``draft_size`` (``Image.draft`` in ``draft_mode``); ``None``
    when the bytes are not a picture that decodes. The thumbnails' shared first step."""
    fmt = sniff_format(data)
    if fmt is None:
        return None
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt])
        orientation = exif_orientation(image)
        if fmt == JPEG:
            image.draft(draft_mode, draft_size)
        image.load()
    except (*_DECODE_ERRORS, Image.DecompressionBombError):
        return None
    return apply_orientation(to_rgb(image), orientation)


def is_undecoded(image: Image.Image) -> bool:
    """Whether ``image`` came from ``Image.open`` and its pixels have not been decoded yet."""
    return isinstance(image, ImageFile.ImageFile) and bool(image.tile)


# -- the pixel rules ----------------------------------------------------------------------


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


def _allow_pixels(max_pixels: int) -> None:
    """Pillow's bomb guard must never fire below our own limit (it would refuse an image we
    accept). Only ever raised, never lowered, so other code keeps at least Pillow's default."""
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]


def header_pixels(data: bytes) -> int:
    """Width x height declared by a JPEG/PNG header, read without Pillow (0 when unknown).

    What a decode of ``data`` will cost, for the ingest service's decode budget; bytes
    without a readable size are refused by :func:`decode_image` before any pixel is decoded."""
    fmt = sniff_format(data)
    if fmt is None:
        return 0
    w, h = _header_size(data, fmt)
    return w * h if w and h else 0


def _header_size(data: bytes, fmt: str) -> tuple[int | None, int | None]:
    """Width and height from the header without Pillow (the bomb message, the decode budget)."""
    try:
        if fmt == PNG and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if fmt == JPEG:
            i = 2
            while i + 9 < len(data):
                if data[i] != 0xFF:
                    i += 1
                    continue
                marker = data[i + 1]
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                    i += 1 if marker == 0xFF else 2
                    continue
                length = struct.unpack(">H", data[i + 2 : i + 4])[0]
                if marker in _JPEG_SOF:
                    h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                    return w, h
                i += 2 + length
    except struct.error:
        pass
    return None, None
