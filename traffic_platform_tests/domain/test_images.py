"""Decoding image bytes: limits, format sniffing, bombs, truncation, orientation, modes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from traffic_platform.detection.base import ImageInput
from traffic_platform.domain.errors import (
    DistortedImage,
    PayloadTooLarge,
    TrafficPlatformError,
    UnsupportedImage,
)
from traffic_platform.domain.images import (
    DecodedImage,
    decode_image,
    describe_bytes,
    open_stored,
    sniff_format,
)
from traffic_platform_tests import images

MB = 1024 * 1024
LIMITS = {"max_bytes": 25 * MB, "max_pixels": 50_000_000}


def decode(data: bytes, **kwargs) -> DecodedImage:
    return decode_image(
        data,
        declared_content_type=kwargs.pop("declared_content_type", None),
        **{**LIMITS, **kwargs},
    )


@pytest.fixture(scope="module")
def scene() -> Image.Image:
    return images.street_scene(640, 360)


@pytest.fixture(autouse=True)
def _keep_pillow_limit(monkeypatch):
    # decode_image may raise Pillow's global bomb limit; keep tests independent.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)


# --- good uploads -------------------------------------------------------------


def test_jpeg_decodes_to_full_size_rgb(scene):
    data = images.jpeg_bytes(scene)
    out = decode(data)
    assert isinstance(out, DecodedImage)
    assert out.image.mode == "RGB" and out.image.size == (640, 360)
    assert (out.width, out.height) == (640, 360) and out.size == (640, 360)
    assert out.content_type == "image/jpeg" and out.format == "JPEG"
    assert out.data == data
    assert out.original_mode == "RGB"
    assert out.exif_orientation == 1 and out.scale == 1.0


def test_png_decodes(scene):
    data = images.png_bytes(scene)
    out = decode(data)
    assert out.content_type == "image/png" and out.format == "PNG"
    assert out.image.tobytes() == scene.tobytes()  # lossless round trip


def test_to_input_is_what_detectors_take(scene):
    out = decode(images.jpeg_bytes(scene))
    inp = ImageInput.of(out)
    assert isinstance(inp, ImageInput)
    assert inp.image is out.image and inp.data == out.data and inp.content_type == "image/jpeg"
    assert inp.size == (640, 360)


def test_the_bytes_decide_the_content_type_not_the_declaration(scene):
    out = decode(images.png_bytes(scene), declared_content_type="image/jpeg")
    assert out.content_type == "image/png"
    out = decode(images.jpeg_bytes(scene), declared_content_type="application/octet-stream")
    assert out.content_type == "image/jpeg"


def test_greyscale_jpeg_becomes_rgb(scene):
    out = decode(images.jpeg_bytes(scene.convert("L")))
    assert out.image.mode == "RGB" and out.original_mode == "L"


def test_bytearray_and_memoryview_are_accepted(scene):
    data = images.jpeg_bytes(scene)
    assert decode(bytearray(data)).data == data
    assert decode(memoryview(data)).data == data


def test_upload_exactly_at_the_byte_limit_is_accepted(scene):
    data = images.jpeg_bytes(scene)
    assert decode(data, max_bytes=len(data)).width == 640


# --- limits -------------------------------------------------------------------


def test_byte_limit_comes_first_and_names_the_limit_in_mb():
    data = images.random_bytes(3 * MB)  # not even an image: the size check still wins
    with pytest.raises(PayloadTooLarge) as info:
        decode(data, max_bytes=2 * MB)
    err = info.value
    assert err.code == "upload_too_large" and err.http_status == 413
    assert "2 MB" in err.message and "3 MB" in err.message
    assert err.details == {"bytes": 3 * MB, "max_bytes": 2 * MB}


def test_pixel_limit_is_checked_on_the_header(scene):
    data = images.png_bytes(scene)  # 640x360 = 230,400 pixels
    with pytest.raises(PayloadTooLarge) as info:
        decode(data, max_pixels=200_000)
    err = info.value
    assert err.code == "too_many_pixels" and err.http_status == 413
    assert "640x360" in err.message and "200,000" in err.message
    assert decode(data, max_pixels=230_400).width == 640  # at the limit: fine


@pytest.mark.filterwarnings("error")  # no DecompressionBombWarning may leak out
@pytest.mark.parametrize(
    ("data", "claimed"),
    [
        # 64 MP: above our 50 MP, below Pillow's 89 MP; 100 MP: Pillow warns;
        # 10 GP: Pillow raises; a JPEG whose SOF claims 4.2 GP.
        (images.png_bomb_header(8_000, 8_000), "8000x8000"),
        (images.png_bomb_header(10_000, 10_000), "10000x10000"),
        (images.png_bomb_header(100_000, 100_000), "100000x100000"),
        (images.jpeg_bomb_header(65_000, 65_000), "65000x65000"),
    ],
    ids=["png-64MP", "png-100MP-warning", "png-10GP-error", "jpeg-4GP-error"],
)
def test_decompression_bombs_are_refused_before_decoding(data, claimed):
    assert len(data) < 1000  # a tiny file claiming a huge picture
    with pytest.raises(PayloadTooLarge) as info:
        decode(data)
    assert info.value.code == "too_many_pixels" and info.value.http_status == 413
    assert claimed in info.value.message


def test_pillow_bomb_limit_is_kept_in_line_with_ours(scene):
    data = images.png_bytes(scene)
    before = Image.MAX_IMAGE_PIXELS
    decode(data, max_pixels=1_000_000)  # below Pillow's default: left alone, never lowered
    assert Image.MAX_IMAGE_PIXELS == before
    decode(data, max_pixels=before * 3)  # above it: raised so Pillow never refuses what we accept
    assert Image.MAX_IMAGE_PIXELS == before * 3


@pytest.mark.filterwarnings("error")
def test_an_image_between_pillow_limit_and_ours_is_not_refused_by_pillow(monkeypatch, scene):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # someone lowered Pillow's guard
    out = decode(images.png_bytes(scene), max_pixels=1_000_000)  # 230,400 px: ours allows it
    assert out.width == 640


# --- not an image / unsupported formats ----------------------------------------


def test_empty_body():
    with pytest.raises(UnsupportedImage) as info:
        decode(b"")
    assert info.value.code == "empty_body" and info.value.http_status == 415


@pytest.mark.parametrize(
    ("data", "looks_like"),
    [
        (images.random_bytes(), "unknown binary data"),
        (images.text_bytes(), "plain text"),
        (images.pdf_bytes(), "PDF"),
        (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "HTML"),
        (b'{"image": "..."}', "JSON"),
        (b"/9j/4AAQSkZJRgABAQ", "base64"),
    ],
    ids=["random", "text", "pdf", "html", "json", "base64-jpeg"],
)
def test_non_images_are_415_not_an_image(data, looks_like):
    with pytest.raises(UnsupportedImage) as info:
        decode(data, declared_content_type="image/jpeg")
    err = info.value
    assert err.code == "not_an_image" and err.http_status == 415
    assert looks_like in err.message and "declared as image/jpeg" in err.message


@pytest.mark.parametrize(
    ("fmt", "name"), [("GIF", "GIF"), ("BMP", "BMP"), ("WEBP", "WebP"), ("TIFF", "TIFF")]
)
def test_other_picture_formats_are_415_unsupported_and_named(scene, fmt, name):
    data = images.encoded(scene, fmt)
    with pytest.raises(UnsupportedImage) as info:
        decode(data)
    err = info.value
    assert err.code == "unsupported_image_format" and err.http_status == 415
    assert name in err.message and "JPEG and PNG" in err.message


def test_sniffing():
    assert sniff_format(b"\xff\xd8\xff\xe0rest") == "JPEG"
    assert sniff_format(b"\x89PNG\r\n\x1a\nrest") == "PNG"
    assert sniff_format(b"GIF89a") is None
    assert describe_bytes(b"GIF89a...") == ("a GIF image", True)
    assert describe_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 ")[1] is True
    assert describe_bytes(b"\x00\x00\x00\x18ftypheic") == ("a HEIC image", True)
    assert describe_bytes(b"\x00\x00\x00\x18ftypisom")[1] is False


# --- truncated / corrupt JPEG and PNG -------------------------------------------


@pytest.mark.parametrize("keep", [0.02, 0.3, 0.6, 0.95])
def test_truncated_jpeg_is_a_distorted_image_not_silently_accepted(scene, keep):
    data = images.truncated_jpeg(scene, keep=keep)
    with pytest.raises(DistortedImage) as info:
        decode(data)
    err = info.value
    assert err.code == "image_undecodable" and err.http_status == 422
    assert err.details["reasons"] == ["undecodable"]
    assert err.details["messages"][0].startswith("undecodable: ")
    assert err.details["content_type"] == "image/jpeg"
    assert "truncated or corrupt" in err.message
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_png_is_a_distorted_image(keep):
    with pytest.raises(DistortedImage) as info:
        decode(images.truncated_png(keep=keep))
    assert info.value.code == "image_undecodable"
    assert info.value.details["content_type"] == "image/png"


def test_png_with_a_broken_checksum_is_undecodable(scene):
    data = bytearray(images.png_bytes(scene))
    data[29] ^= 0xFF  # inside the IHDR CRC
    with pytest.raises(DistortedImage) as info:
        decode(bytes(data))
    assert info.value.code == "image_undecodable"


def test_switching_pillow_truncation_guard_off_is_refused(monkeypatch, scene):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        decode(images.truncated_jpeg(scene))


# --- orientation, modes, draft ---------------------------------------------------


def test_exif_rotated_jpeg_comes_out_rotated():
    out = decode(images.exif_rotated_jpeg(640, 360, orientation=6))
    assert out.exif_orientation == 6
    assert (out.width, out.height) == (360, 640) and out.image.size == (360, 640)
    r, g, b = out.image.getpixel((340, 20))  # stored top-left marker -> displayed top-right
    assert r > 200 and g < 60 and b < 60
    r, g, b = out.image.getpixel((20, 20))
    assert r < 100 and g > 90


@pytest.mark.parametrize(
    ("orientation", "size"), [(3, (640, 360)), (8, (360, 640)), (2, (640, 360))]
)
def test_other_exif_orientations(orientation, size):
    out = decode(images.exif_rotated_jpeg(640, 360, orientation=orientation))
    assert out.image.size == size and (out.width, out.height) == size


def test_png_with_alpha_becomes_rgb_on_white():
    rgba = images.png_with_alpha(320, 180)
    out = decode(images.png_bytes(rgba))
    assert out.image.mode == "RGB" and out.original_mode == "RGBA"
    assert out.image.getpixel((10, 90)) == (255, 255, 255)  # fully transparent -> white
    src = rgba.getpixel((120, 90))
    got = out.image.getpixel((120, 90))  # alpha 128: halfway to white
    for s, g in zip(src[:3], got, strict=True):
        assert abs(g - (s * 128 + 255 * 127) / 255) <= 2
    assert out.image.getpixel((300, 90)) == rgba.getpixel((300, 90))[:3]  # opaque: unchanged


def test_palette_png_with_transparency_becomes_rgb():
    out = decode(images.palette_png_with_transparency(32))
    assert out.image.mode == "RGB" and out.original_mode == "P"
    assert out.image.getpixel((0, 0)) == (255, 255, 255)
    assert out.image.getpixel((20, 0)) == (200, 30, 30)


def test_16_bit_grey_png_keeps_its_levels():
    out = decode(images.grey16_png(level=40000))
    assert out.image.mode == "RGB"
    assert out.image.getpixel((0, 0)) == (156, 156, 156)  # 40000 >> 8, not clipped to 255


def test_draft_decodes_a_jpeg_at_reduced_size_but_reports_full_size():
    data = images.jpeg_bytes(images.street_scene(1280, 720))
    out = decode(data, draft_size=(640, 360))
    assert out.image.size == (640, 360)
    assert (out.width, out.height) == (1280, 720) and out.scale == 2.0
    assert decode(data).image.size == (1280, 720)  # full size is the default


def test_draft_respects_exif_orientation():
    data = images.exif_rotated_jpeg(1280, 720, orientation=6)
    out = decode(data, draft_size=(360, 640))  # asked in displayed (rotated) orientation
    assert out.image.size == (360, 640) and (out.width, out.height) == (720, 1280)


def test_draft_is_ignored_for_png(scene):
    out = decode(images.png_bytes(scene), draft_size=(160, 90))
    assert out.image.size == (640, 360)


# --- reading stored uploads back -------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        images.exif_rotated_jpeg(640, 360, orientation=6),
        images.png_bytes(images.png_with_alpha(320, 180)),
        images.grey16_png(),
        images.palette_png_with_transparency(),
    ],
    ids=["exif-jpeg", "rgba-png", "grey16-png", "palette-png"],
)
def test_open_stored_gives_the_same_picture_as_decode(data):
    again = open_stored(data)
    assert again.mode == "RGB"
    assert again.tobytes() == decode(data).image.tobytes()


def test_open_stored_refuses_truncated_bytes():
    with pytest.raises(DistortedImage) as info:
        open_stored(images.truncated_jpeg())
    assert info.value.code == "image_undecodable"


# --- every error is a platform error with code, status and message ----------------


@pytest.mark.parametrize(
    ("data", "kwargs", "status"),
    [
        (b"x" * 100, {"max_bytes": 10}, 413),
        (images.png_bomb_header(100_000, 100_000), {}, 413),
        (b"", {}, 415),
        (images.random_bytes(), {}, 415),
        (images.encoded(Image.new("RGB", (8, 8)), "GIF"), {}, 415),
        (images.truncated_jpeg(), {}, 422),
    ],
    ids=["bytes", "pixels", "empty", "random", "gif", "truncated"],
)
def test_every_error_has_code_status_and_message(data, kwargs, status):
    with pytest.raises(TrafficPlatformError) as info:
        decode(data, **kwargs)
    err = info.value
    assert err.http_status == status
    assert err.code and err.code not in ("internal_error",)
    assert err.message and err.message.endswith(".")
    body = err.to_dict()["error"]
    assert body["code"] == err.code and body["message"] == err.message


def test_thumbnail_is_a_small_upright_jpeg(scene):
    from traffic_platform.domain.images import thumbnail_jpeg

    small = thumbnail_jpeg(images.jpeg_bytes(scene), 320)
    assert small[:3] == b"\xff\xd8\xff"
    assert Image.open(io.BytesIO(small)).size == (320, 180)  # 640x360 kept at 16:9
    rotated = thumbnail_jpeg(images.exif_rotated_jpeg(640, 360, orientation=6), 200)
    assert Image.open(io.BytesIO(rotated)).size in ((112, 200), (113, 200))  # turned upright as EXIF says
    assert Image.open(io.BytesIO(thumbnail_jpeg(images.png_bytes(images.tiny(scene)), 500))).size == (120, 80)  # never enlarged
    assert thumbnail_jpeg(images.text_bytes(), 100) is None and thumbnail_jpeg(images.truncated_jpeg(scene), 100) is None


def _thumbnail_grey(data: bytes) -> np.ndarray:
    from traffic_platform.domain.images import thumbnail_jpeg

    return np.asarray(Image.open(io.BytesIO(thumbnail_jpeg(data, 64))).convert("L"))


def _grey(data: bytes) -> np.ndarray:
    from traffic_platform.domain.images import grey_thumbnail

    return grey_thumbnail(data, (18, 32))


@pytest.mark.parametrize("reduce", [_thumbnail_grey, _grey], ids=["thumbnail_jpeg", "grey_thumbnail"])
@pytest.mark.parametrize("orientation, corner", [(6, (0, -1)), (8, (-1, 0)), (3, (-1, -1))])
def test_reduced_decodes_turn_the_picture_upright(reduce, orientation, corner):
    # A black marker at the stored top-left of a white 640x360 frame lands where EXIF says.
    stored = Image.new("RGB", (640, 360), (255, 255, 255))
    stored.paste((0, 0, 0), (0, 0, 60, 60))
    exif = Image.Exif()
    exif[0x0112] = orientation
    grey = reduce(images.jpeg_bytes(stored, exif=exif.tobytes()))
    corners = {(r, c): int(grey[r, c]) for r in (0, -1) for c in (0, -1)}
    assert corners.pop(corner) < 60
    assert min(corners.values()) > 200  # the other three corners stay white


def test_grey_thumbnail_is_exact_size_grey_or_none(scene):
    from traffic_platform.domain.images import grey_thumbnail

    for data in (images.jpeg_bytes(scene), images.png_bytes(images.tiny(scene))):
        grey = grey_thumbnail(data, (16, 9))
        assert grey.shape == (9, 16) and grey.dtype == np.uint8
    flat = grey_thumbnail(images.png_bytes(Image.new("RGB", (64, 36), (255, 0, 0))), (8, 4))
    assert np.all(flat == 76)  # ITU-R 601 luma of pure red, aspect ignored
    assert grey_thumbnail(images.text_bytes(), (8, 8)) is None
    assert grey_thumbnail(images.truncated_jpeg(scene), (8, 8)) is None
