from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from traffic_platform.detection.annotate import CLASS_COLOURS, annotate, render
from traffic_platform.domain.classes import TRAFFIC_CLASSES, TrafficClass
from traffic_platform.domain.detections import Detection

STREET = Path("/work/shared/data/street")


def _noise(width: int = 640, height: int = 480, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image.convert("RGB")


CAR = Detection(TrafficClass.CAR, "car", 0.91, (100.0, 150.0, 300.0, 300.0))
PERSON = Detection(TrafficClass.PERSON, "person", 0.8, (400.0, 200.0, 520.0, 440.0))


@pytest.mark.parametrize("size", [(640, 480), (333, 1201), (1920, 1080)])
def test_output_is_a_jpeg_of_the_input_size(size):
    data = annotate(_noise(*size), [CAR])
    assert data[:3] == b"\xff\xd8\xff"
    assert _decode(data).size == size


@pytest.mark.parametrize("background", [0, 255])
@pytest.mark.parametrize("cls", TRAFFIC_CLASSES)
def test_box_edges_take_the_class_colour_on_dark_and_bright_pictures(cls, background):
    picture = Image.new("RGB", (800, 600), (background,) * 3)
    detection = Detection(TrafficClass(cls), cls, 0.9, (200.0, 250.0, 600.0, 500.0))
    out = np.asarray(_decode(annotate(picture, [detection], jpeg_quality=90))).astype(int)
    colour = np.array(CLASS_COLOURS[cls])
    line = max(2, round(600 / 300))
    mid = line // 2
    # The middle of the left and bottom edges (the tag sits above the top edge).
    for y, x in [(375, 200 + mid), (500 - mid, 400), (375, 600 - mid)]:
        assert np.abs(out[y, x] - colour).max() <= 40, (cls, (x, y), out[y, x], colour)
    # A dark halo runs just outside the coloured line, so it shows on a bright picture too.
    assert out[375, 200 - 1].max() <= 60


def test_classes_have_distinct_colours():
    colours = list(CLASS_COLOURS.values())
    assert set(CLASS_COLOURS) == set(TRAFFIC_CLASSES)
    for i, a in enumerate(colours):
        for b in colours[i + 1 :]:
            assert np.abs(np.array(a) - np.array(b)).sum() >= 100  # L1 distance in RGB


def test_blur_people_smooths_the_person_box_and_leaves_the_rest():
    picture = _noise(seed=3)
    plain = np.asarray(_decode(annotate(picture, [CAR, PERSON], jpeg_quality=95))).astype(float)
    blurred = np.asarray(
        _decode(annotate(picture, [CAR, PERSON], blur_people=True, jpeg_quality=95))
    ).astype(float)

    inner = (slice(230, 420), slice(420, 500))  # inside the person box, clear of its lines
    assert blurred[inner].var() < 0.2 * plain[inner].var()

    outside = (slice(0, 140), slice(330, 640))  # away from every box, tag and legend
    assert np.abs(blurred[outside] - plain[outside]).mean() < 1.0
    car_inside = (slice(170, 280), slice(120, 280))  # only people are blurred
    assert np.abs(blurred[car_inside] - plain[car_inside]).mean() < 1.0


def test_legend_lists_every_class_even_with_no_detections():
    picture = Image.new("RGB", (640, 480), (128, 128, 128))
    out = np.asarray(render(picture, [])).astype(int)
    # The legend panel (dark, top-left) with one colour swatch per class, in class order.
    panel = out[:200, :200]
    assert (np.abs(panel - 128).max(axis=2) > 60).sum() > 500
    for cls in TRAFFIC_CLASSES:
        hits = np.all(np.abs(panel - np.array(CLASS_COLOURS[cls])) <= 10, axis=2)
        assert hits.sum() >= 16, cls
    # No detections: nothing is drawn outside the legend.
    assert np.abs(out[240:, 240:] - 128).max() == 0


def test_legend_counts_change_the_rendered_text():
    picture = Image.new("RGB", (640, 480), (128, 128, 128))
    far = Detection(TrafficClass.CAR, "car", 0.9, (500.0, 400.0, 600.0, 460.0))
    empty = np.asarray(render(picture, []))
    one = np.asarray(render(picture, [far]))
    # Only the legend changed in the top-left corner ("car 0" -> "car 1").
    assert (empty[:120, :120] != one[:120, :120]).any()


def test_legend_moves_away_from_boxes():
    picture = Image.new("RGB", (640, 480), (128, 128, 128))
    top_left_car = Detection(TrafficClass.CAR, "car", 0.9, (0.0, 0.0, 320.0, 240.0))
    out = np.asarray(render(picture, [top_left_car])).astype(int)
    # The legend is dark; the top-right corner now holds it.
    assert (out[10:60, 560:630].max(axis=2) < 90).mean() > 0.3


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "LA"])
def test_other_modes_are_annotated(mode):
    picture = _noise(320, 240).convert(mode)
    small = Detection(TrafficClass.BUS, "bus", 0.7, (50.0, 60.0, 200.0, 180.0))
    assert _decode(annotate(picture, [small])).size == (320, 240)


def test_transparent_pixels_are_shown_on_white():
    picture = Image.new("RGBA", (320, 240), (0, 0, 0, 0))
    out = np.asarray(render(picture, []))
    assert (out[200:, 200:] == 255).all()


def test_input_picture_is_not_modified():
    picture = _noise(seed=5)
    before = picture.tobytes()
    annotate(picture, [CAR, PERSON], blur_people=True)
    render(picture, [CAR, PERSON])
    assert picture.tobytes() == before and picture.mode == "RGB"


def test_boxes_on_the_image_border_and_degenerate_boxes_are_drawn_without_error():
    picture = _noise(200, 100)
    edge_cases = [
        Detection(TrafficClass.CAR, "car", 0.9, (0.0, 0.0, 200.0, 100.0)),  # the whole picture
        Detection(
            TrafficClass.PERSON, "person", 0.6, (199.0, 99.0, 200.0, 100.0)
        ),  # a corner pixel
        Detection(TrafficClass.TRUCK, "truck", 0.5, (50.0, 50.0, 50.0, 50.0)),  # zero area
    ]
    assert _decode(annotate(picture, edge_cases, blur_people=True)).size == (200, 100)


def test_jpeg_quality_is_applied():
    picture = _noise()
    assert len(annotate(picture, [CAR], jpeg_quality=30)) < len(
        annotate(picture, [CAR], jpeg_quality=90)
    )


@pytest.mark.skipif(not (STREET / "yolov5_bus.jpg").exists(), reason="shared street images absent")
def test_real_street_photo():
    with Image.open(STREET / "yolov5_bus.jpg") as opened:
        picture = opened.convert("RGB")
    people = [
        Detection(TrafficClass.PERSON, "person", 0.89, (50.0, 400.0, 245.0, 905.0)),
        Detection(TrafficClass.BUS, "bus", 0.94, (20.0, 230.0, 800.0, 740.0)),
    ]
    out = _decode(annotate(picture, people, blur_people=True))
    assert out.size == picture.size


def test_the_legend_is_blended_over_its_panel_only():
    """The legend panel is composited in place: outside it the picture is untouched, inside it
    the dark half-transparent fill is what a full-size overlay gives."""
    picture = Image.new("RGB", (640, 480), (200, 200, 200))
    out = np.asarray(render(picture, [])).astype(int)
    dark = (out < 200).all(axis=2)
    ys, xs = np.nonzero(dark)
    assert ys.min() < 40 and xs.min() < 40  # top-left, the emptiest corner
    outside = np.ones(dark.shape, bool)
    outside[: ys.max() + 1, : xs.max() + 1] = False
    assert (out[outside] == 200).all()
    expected = Image.alpha_composite(
        Image.new("RGBA", (1, 1), (200, 200, 200, 255)), Image.new("RGBA", (1, 1), (0, 0, 0, 170))
    ).getpixel((0, 0))[:3]
    assert tuple(out[ys.min() + 1, xs.min() + 1]) == expected


@pytest.mark.parametrize("size", [(3, 3), (8, 6), (30, 20)])
def test_pictures_smaller_than_the_legend_are_annotated(size):
    assert _decode(annotate(_noise(*size), [CAR])).size == size
