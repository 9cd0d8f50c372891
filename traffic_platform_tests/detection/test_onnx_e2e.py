"""The end-to-end DETR ONNX backend, on a tiny graph with the real export contract built here."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from traffic_platform.config import Settings
from traffic_platform.detection import model_cache, onnx_e2e
from traffic_platform.detection import tiny_e2e_graph as graph
from traffic_platform.detection.base import ImageInput
from traffic_platform.detection.onnx_e2e import COCO80, ModelMetadata, OnnxEndToEndDetector
from traffic_platform.domain.detections import ClassThresholds
from traffic_platform.domain.errors import ConfigurationError

ALL = ClassThresholds(default=0.0)
TRAFFIC_IDS = {0: "person", 1: "bicycle", 2: "car", 3: "motorcycle", 5: "bus", 7: "truck"}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e-graphs")
    return {
        "main": graph.export(root / "main" / "tiny_e2e.onnx"),
        "batch1": graph.export(root / "batch1" / "tiny_b1.onnx", dynamic_batch=False),
        "batch2": graph.export(root / "batch2" / "tiny_b2.onnx", dynamic_batch=False, batch=2),
        "dynamic": graph.export(root / "dynamic" / "tiny_dyn.onnx", dynamic_size=True),
        "wrong_inputs": graph.export(
            root / "wrong" / "tiny_wrong.onnx", input_names=("input", "orig_target_sizes")
        ),
        "no_scores": graph.export(
            root / "noscores" / "tiny_noscores.onnx", outputs=("labels", "boxes")
        ),
    }


def copy_graph(src: Path, folder: Path, sidecars: dict[str, object] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / src.name
    shutil.copyfile(src, dest)
    for name, content in (sidecars or {}).items():
        (folder / name).write_text(content if isinstance(content, str) else json.dumps(content))
    return dest


def uniform(rgb: tuple[int, int, int], size: tuple[int, int]) -> ImageInput:
    return ImageInput(Image.new("RGB", size, rgb))


def norm(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    return tuple(v / 255 for v in rgb)  # type: ignore[return-value]


def expected(rgb, width, height, thresholds=ALL, id2label=TRAFFIC_IDS):
    """(class, score, clipped box) the tiny graph must yield, in score order."""
    out = []
    for k, label in enumerate(graph.LABELS):
        name = id2label.get(label)
        score = graph.SCORES[k] * norm(rgb)[2]
        if name is None or score < thresholds.for_class(name):
            continue
        x1, y1, x2, y2 = graph.expected_box(k, norm(rgb), width, height)
        clip = (
            min(max(x1, 0), width),
            min(max(y1, 0), height),
            min(max(x2, 0), width),
            min(max(y2, 0), height),
        )
        out.append((name, score, clip))
    return sorted(out, key=lambda t: -t[1])


def assert_matches(detections, wanted, tol=0.5):
    assert [d.traffic_class.value for d in detections] == [w[0] for w in wanted]
    for d, (_, score, box) in zip(detections, wanted, strict=True):
        assert d.score == pytest.approx(score, abs=1e-4)
        assert d.box == pytest.approx(box, abs=tol)


class CountingSession:
    """Delegates to the real InferenceSession and counts ``run`` calls and their batch sizes."""

    def __init__(self, session):
        self._session = session
        self.batches: list[int] = []

    def run(self, names, feeds):
        self.batches.append(len(feeds["images"]))
        return self._session.run(names, feeds)

    def __getattr__(self, name):
        return getattr(self._session, name)


# ----------------------------------------------------------------------------- decoding
def test_decodes_labels_drops_non_traffic_and_names_the_model(graphs):
    det = OnnxEndToEndDetector(graphs["main"], thresholds=ALL)
    rgb = (128, 102, 255)
    found = det.detect_one(uniform(rgb, (200, 100)))
    assert_matches(found, expected(rgb, 200, 100))
    assert [d.label for d in found] == [
        "car",
        "person",
        "truck",
        "bus",
        "motorcycle",
        "bicycle",
    ]  # no traffic light, dog
    assert det.model_name == "tiny_e2e.onnx"
    assert det.model_version == hashlib.sha256(graphs["main"].read_bytes()).hexdigest()[:16]
    assert det.describe() == {"model_name": "tiny_e2e.onnx", "model_version": det.model_version, "runtime": "onnx"}
    assert det.input_size == (64, 64)  # from the graph's static shape, no sidecar


def test_boxes_follow_content_and_come_back_in_original_pixels(graphs):
    det = OnnxEndToEndDetector(graphs["main"], thresholds=ALL)
    left, right = (51, 76, 255), (204, 178, 255)
    small, large = det.detect([uniform(left, (320, 240)), uniform(right, (1280, 720))])
    assert_matches(small, expected(left, 320, 240))
    assert_matches(large, expected(right, 1280, 720))
    car_small, car_large = small[0], large[0]
    # Roughly: colour (0.2, 0.3) -> car centred at 20%/30% of the picture, (0.8, 0.7) -> 80%/70%.
    assert car_small.box == pytest.approx((0.1 * 320, 0.2 * 240, 0.3 * 320, 0.4 * 240), abs=2.0)
    assert car_large.box == pytest.approx((0.7 * 1280, 0.6 * 720, 0.9 * 1280, 0.8 * 720), abs=2.0)


def test_boxes_are_clipped_to_the_image(graphs):
    det = OnnxEndToEndDetector(graphs["main"], thresholds=ALL)
    found = det.detect_one(
        uniform((128, 26, 255), (300, 200))
    )  # bus box is 1.6 image widths wide, above the top
    bus = next(d for d in found if d.traffic_class.value == "bus")
    x1, y1, x2, y2 = bus.box
    assert (x1, x2) == (0.0, 300.0)
    assert y1 == 0.0 and 0 < y2 < 200
    for d in found:
        assert 0 <= d.box[0] <= d.box[2] <= 300 and 0 <= d.box[1] <= d.box[3] <= 200


def test_per_class_thresholds(graphs):
    thresholds = ClassThresholds(
        default=0.5, per_class={"car": 0.96, "motorcycle": 0.65, "bicycle": 0.2}
    )
    det = OnnxEndToEndDetector(graphs["main"], thresholds=thresholds)
    rgb = (128, 128, 230)  # scores scaled by 230/255
    found = det.detect_one(uniform(rgb, (640, 480)))
    wanted = expected(rgb, 640, 480, thresholds)
    assert [w[0] for w in wanted] == [
        "person",
        "truck",
        "bus",
        "bicycle",
    ]  # car below 0.96, motorcycle below 0.65
    assert_matches(found, wanted)


# ----------------------------------------------------------------------------- batching
def test_batch_is_one_run_and_equals_singles(graphs):
    det = OnnxEndToEndDetector(graphs["main"], thresholds=ALL)
    counter = CountingSession(det._session)
    det._session = counter
    images = [
        uniform((30, 200, 255), (100, 80)),
        uniform((220, 40, 200), (1920, 1080)),
        uniform((128, 128, 128), (64, 64)),
    ]
    batch = det.detect(images)
    assert counter.batches == [3]
    singles = [det.detect_one(img) for img in images]
    assert counter.batches == [3, 1, 1, 1]
    for b, s in zip(batch, singles, strict=True):
        assert [d.traffic_class for d in b] == [d.traffic_class for d in s]
        for db, ds in zip(b, s, strict=True):
            assert db.box == pytest.approx(ds.box, abs=1e-3) and db.score == pytest.approx(
                ds.score, abs=1e-6
            )
    assert det.detect([]) == []


def test_fixed_batch_of_one_is_looped(graphs):
    det = OnnxEndToEndDetector(graphs["batch1"], thresholds=ALL)
    assert det.fixed_batch == 1
    counter = CountingSession(det._session)
    det._session = counter
    colours = [(51, 76, 255), (204, 178, 255), (128, 128, 200)]
    sizes = [(320, 240), (1280, 720), (500, 500)]
    found = det.detect([uniform(c, s) for c, s in zip(colours, sizes, strict=True)])
    assert counter.batches == [1, 1, 1]
    for f, c, (w, h) in zip(found, colours, sizes, strict=True):
        assert_matches(f, expected(c, w, h))


def test_fixed_batch_above_one_is_padded(graphs):
    det = OnnxEndToEndDetector(graphs["batch2"], thresholds=ALL)
    assert det.fixed_batch == 2
    counter = CountingSession(det._session)
    det._session = counter
    colours = [(51, 76, 255), (204, 178, 255), (128, 128, 200)]
    sizes = [(320, 240), (1280, 720), (500, 500)]
    found = det.detect([uniform(c, s) for c, s in zip(colours, sizes, strict=True)])
    assert counter.batches == [2, 2] and len(found) == 3
    for f, c, (w, h) in zip(found, colours, sizes, strict=True):
        assert_matches(f, expected(c, w, h))


def test_raw_detections_and_benchmark_runner_report_every_label(graphs):
    det = OnnxEndToEndDetector(graphs["main"], thresholds=ClassThresholds(default=0.88))
    picture = Image.new("RGB", (300, 200), (128, 26, 255))
    ((labels, scores, boxes),) = det.raw_detections([picture], threshold=0.52)
    assert labels == [
        "car",
        "person",
        "traffic light",
        "truck",
        "bus",
        "motorcycle",
        "bicycle",
    ]  # dog at 0.5 is below
    assert scores == sorted(scores, reverse=True)
    assert boxes[4][0] < 0 and boxes[4][2] > 300  # raw: the bus box is not clipped
    assert det.raw_detections([picture])[0][0] == [
        "car",
        "person",
    ]  # default: the lowest class threshold
    from bench.runners import onnx_e2e_runner

    run = onnx_e2e_runner(graphs["main"].parent, threads=1, threshold=0.0)
    first, second = run([picture, Image.new("RGB", (64, 48), (10, 10, 10))])
    assert [label for label, _, _ in first] == [
        "car", "person", "traffic light", "truck", "bus", "motorcycle", "bicycle", "dog"
    ]  # fmt: skip
    label, score, box = second[0]
    assert label == "car" and 0 < score < 0.1 and len(box) == 4


def test_detect_is_thread_safe(graphs):
    det = OnnxEndToEndDetector(graphs["main"], thresholds=ALL, threads=2)
    inputs = [
        uniform((20 * i % 256, 37 * i % 256, 255), (100 + 13 * i, 90 + 7 * i)) for i in range(16)
    ]
    serial = [det.detect_one(x) for x in inputs]
    barrier = threading.Barrier(4)

    def work(i):
        if i < 4:
            barrier.wait(timeout=10)  # the first four calls start together
        return det.detect([inputs[i], inputs[i]])[1]

    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(work, range(len(inputs))))
    assert [[d.to_dict() for d in p] for p in parallel] == [
        [d.to_dict() for d in s] for s in serial
    ]


# ----------------------------------------------------------------------------- metadata
def test_sidecar_id2label_overrides_the_coco_default(graphs, tmp_path):
    labels = list(COCO80)
    labels[9], labels[2] = "bicycle", "truck"  # traffic light -> bicycle, car -> truck
    path = copy_graph(graphs["main"], tmp_path / "m", {"tiny_e2e.json": {"id2label": labels}})
    det = OnnxEndToEndDetector(path, thresholds=ALL)
    mapping = {**TRAFFIC_IDS, 9: "bicycle", 2: "truck"}
    rgb = (128, 128, 255)
    found = det.detect_one(uniform(rgb, (400, 300)))
    assert_matches(found, expected(rgb, 400, 300, id2label=mapping))
    assert [d.label for d in found][:3] == ["truck", "person", "bicycle"]


def test_config_json_id2label_and_precedence(graphs, tmp_path):
    # A Hugging Face config.json contributes id2label (string keys) ...
    path = copy_graph(
        graphs["main"],
        tmp_path / "hf",
        {"config.json": {"id2label": {"2": "Motor_Bike", "0": "pedestrian"}, "input_size": 999}},
    )
    det = OnnxEndToEndDetector(path, thresholds=ALL)
    assert det.input_size == (64, 64)  # config.json contributes only id2label
    found = det.detect_one(uniform((128, 128, 255), (100, 100)))
    assert [(d.traffic_class.value, d.label) for d in found] == [
        ("motorcycle", "Motor_Bike"),
        ("person", "pedestrian"),
    ]
    # ... model_info.json beats config.json, <stem>.json beats both.
    path = copy_graph(graphs["main"], tmp_path / "all", {
        "config.json": {"id2label": {"2": "bus"}},
        "model_info.json": {"id2label": {"2": "truck"}},
        "tiny_e2e.json": {"id2label": "coco91"},
    })  # fmt: skip
    det = OnnxEndToEndDetector(path, thresholds=ALL)
    found = det.detect_one(uniform((128, 128, 255), (100, 100)))
    # COCO-91 category ids: 1 person, 2 bicycle, 3 car; 0, 5, 7, 9, 16 are not road users there.
    assert [d.label for d in found] == ["bicycle", "car", "person"]


def test_input_size_from_sidecar_or_graph_shape(graphs, tmp_path):
    dyn = copy_graph(
        graphs["dynamic"], tmp_path / "dyn", {"tiny_dyn.json": {"input_size": [48, 80]}}
    )
    det = OnnxEndToEndDetector(dyn, thresholds=ALL)
    assert det.input_size == (48, 80)
    tensor, sizes = det.preprocess([uniform((10, 20, 30), (640, 360))])
    assert tensor.shape == (1, 3, 48, 80) and tensor.dtype == np.float32
    assert sizes.tolist() == [[640, 360]] and sizes.dtype == np.int64
    assert_matches(
        det.detect_one(uniform((51, 76, 255), (640, 360))), expected((51, 76, 255), 640, 360)
    )
    # The DEIMv2 sidecar shape: input_size absent, descriptive "inputs", id2label as a list.
    info = {"inputs": {"images": "float32 [N,3,64,64]"}, "id2label": list(COCO80)}
    assert OnnxEndToEndDetector(
        copy_graph(graphs["main"], tmp_path / "info", {"model_info.json": info})
    ).input_size == (64, 64)
    assert ModelMetadata.from_mapping({"input_size": 320}).input_size == (320, 320)
    assert ModelMetadata.from_mapping({"input_size": {"height": 480, "width": 640}}).input_size == (
        480,
        640,
    )


def test_dynamic_size_without_metadata_is_a_clear_error(graphs):
    with pytest.raises(ConfigurationError, match=r"dynamic input size.*input_size"):
        OnnxEndToEndDetector(graphs["dynamic"])


def test_sidecar_size_conflicting_with_the_graph_is_an_error(graphs, tmp_path):
    path = copy_graph(graphs["main"], tmp_path / "c", {"tiny_e2e.json": {"input_size": [320, 320]}})
    with pytest.raises(ConfigurationError, match=r"64×64.*input_size \[320, 320\]"):
        OnnxEndToEndDetector(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ({"mean": [0.5, 0.5]}, "mean needs 3 values"),
        ({"id2label": "imagenet"}, "coco80"),
        ({"input_size": [0, 10]}, "input_size"),
    ],
)
def test_bad_sidecar_is_a_clear_error(graphs, tmp_path, content, match):
    path = copy_graph(graphs["main"], tmp_path / "bad", {"tiny_e2e.json": content})
    with pytest.raises(ConfigurationError, match=match):
        OnnxEndToEndDetector(path)


def test_scaling_and_mean_std_normalisation(graphs, tmp_path):
    det = OnnxEndToEndDetector(graphs["main"])
    tensor, _ = det.preprocess([uniform((255, 0, 51), (64, 64))])
    assert tensor[0, :, 0, 0] == pytest.approx([1.0, 0.0, 0.2], abs=1e-6)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    path = copy_graph(graphs["main"], tmp_path / "n", {"tiny_e2e.json": {"mean": mean, "std": std}})
    tensor, _ = OnnxEndToEndDetector(path).preprocess([uniform((255, 0, 51), (64, 64))])
    want = [(v - m) / s for v, m, s in zip([1.0, 0.0, 0.2], mean, std, strict=True)]
    assert tensor[0, :, 5, 7] == pytest.approx(want, abs=1e-5)


# ----------------------------------------------------------------------------- contract errors
def test_wrong_input_names_are_a_clear_error(graphs):
    with pytest.raises(
        ConfigurationError, match=r"lacks input\(s\) 'images'.*has \['input', 'orig_target_sizes'\]"
    ) as info:
        OnnxEndToEndDetector(graphs["wrong_inputs"])
    assert info.value.code == "invalid_setting"
    assert "orig_target_sizes" in info.value.message and "end-to-end" in info.value.message


def test_missing_outputs_are_a_clear_error(graphs):
    with pytest.raises(ConfigurationError, match=r"lacks output\(s\) 'scores'"):
        OnnxEndToEndDetector(graphs["no_scores"])


def test_not_an_onnx_file_is_a_clear_error(tmp_path):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a graph")
    with pytest.raises(ConfigurationError, match="cannot load bogus.onnx"):
        OnnxEndToEndDetector(bogus)


# ----------------------------------------------------------------------------- preprocessing
def gradient(size: tuple[int, int]) -> Image.Image:
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    arr = np.stack(
        [np.broadcast_to(x, (h, w)), np.broadcast_to(y, (h, w)), np.full((h, w), 200.0)], axis=-1
    )
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def jpeg_bytes(image: Image.Image, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture
def draft_calls(monkeypatch) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Records ``(decoded size, requested size)`` of every ``JpegImageFile.draft`` call."""
    from PIL import JpegImagePlugin

    calls: list[tuple[tuple[int, int], tuple[int, int]]] = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        calls.append((self.size, size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return calls


def test_jpeg_bytes_are_decoded_at_reduced_size(graphs, draft_calls):
    det = OnnxEndToEndDetector(graphs["main"], thresholds=ALL, reduced_decode="always")
    data = jpeg_bytes(gradient((1280, 720)))
    decoded = Image.open(io.BytesIO(data)).convert("RGB")
    with_bytes, without = det.preprocess([ImageInput(decoded, data), ImageInput(decoded)])[0]
    # 1/8 scale (160×90) still covers 64×64: 64× fewer pixels to decode.
    assert draft_calls == [((160, 90), (64, 64))]
    assert np.abs(with_bytes - without).mean() < 0.01
    # A PNG's bytes, or bytes that are not the picture given, fall back to resizing the picture.
    png = io.BytesIO()
    decoded.save(png, "PNG")
    det.preprocess(
        [ImageInput(decoded, png.getvalue()), ImageInput(decoded.resize((640, 360)), data)]
    )
    assert len(draft_calls) == 1


def test_auto_reduced_decode_only_for_a_picture_not_yet_decoded(graphs, draft_calls):
    det = OnnxEndToEndDetector(graphs["main"], thresholds=ALL)  # reduced_decode="auto"
    data = jpeg_bytes(gradient((1280, 720)))
    decoded = Image.open(io.BytesIO(data)).convert("RGB")
    det.preprocess([ImageInput(decoded, data)])
    assert draft_calls == []  # resizing the decoded picture is cheaper than decoding again
    lazy = Image.open(io.BytesIO(data))  # header read, pixels not decoded
    (from_lazy, reference), sizes = det.preprocess([ImageInput(lazy, data), ImageInput(decoded)])
    assert len(draft_calls) == 1 and sizes.tolist() == [[1280, 720]] * 2
    assert np.abs(from_lazy - reference).mean() < 0.01
    assert lazy.tile and lazy.size == (1280, 720)  # the caller's picture is left as it was
    never = OnnxEndToEndDetector(graphs["main"], reduced_decode="never")
    never.preprocess([ImageInput(Image.open(io.BytesIO(data)), data)])
    assert len(draft_calls) == 1
    with pytest.raises(ConfigurationError, match="reduced_decode"):
        OnnxEndToEndDetector(graphs["main"], reduced_decode="sometimes")


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_reduced_decode_applies_exif_orientation(graphs, orientation, draft_calls):
    det = OnnxEndToEndDetector(graphs["main"], thresholds=ALL, reduced_decode="always")
    data = jpeg_bytes(gradient((1280, 720)), orientation)
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert(
        "RGB"
    )  # what ingest hands over
    (with_bytes, without), sizes = det.preprocess([ImageInput(upright, data), ImageInput(upright)])
    assert len(draft_calls) == 1
    assert np.abs(with_bytes - without).mean() < 0.01
    assert sizes.tolist() == [list(upright.size)] * 2
    boxes = det.detect([ImageInput(upright, data)])[0]
    assert all(d.box[2] <= upright.size[0] and d.box[3] <= upright.size[1] for d in boxes)


def test_non_rgb_pictures_are_converted(graphs):
    det = OnnxEndToEndDetector(graphs["main"], thresholds=ALL)
    grey = ImageInput(Image.new("L", (120, 90), 128))
    found = det.detect_one(grey)
    assert_matches(found, expected((128, 128, 128), 120, 90))


# ----------------------------------------------------------------------------- settings / factory / S3
def test_from_settings_with_a_file_or_a_directory(graphs, tmp_path):
    settings = Settings(home=tmp_path, detector_threads=1, thresholds=ClassThresholds(default=0.65))
    by_file = OnnxEndToEndDetector.from_settings(str(graphs["main"]), settings)
    by_dir = OnnxEndToEndDetector.from_settings(str(graphs["main"].parent), settings)
    assert by_file.model_name == by_dir.model_name == "tiny_e2e.onnx"
    assert by_dir.thresholds.default == 0.65
    assert [
        d.traffic_class.value for d in by_dir.detect_one(uniform((128, 128, 255), (50, 50)))
    ] == ["car", "person", "truck", "bus"]

    from traffic_platform.detection.factory import build_detector

    built = build_detector(Settings(home=tmp_path, detector=f"onnx:{graphs['main']}"))
    assert isinstance(built, OnnxEndToEndDetector)

    two = tmp_path / "two"
    copy_graph(graphs["main"], two)
    copy_graph(graphs["batch1"], two)
    with pytest.raises(
        ConfigurationError, match=r"exactly one \.onnx file \(found tiny_b1.onnx, tiny_e2e.onnx\)"
    ):
        OnnxEndToEndDetector.from_settings(str(two), settings)
    with pytest.raises(ConfigurationError, match="no such"):
        OnnxEndToEndDetector.from_settings(str(tmp_path / "missing.onnx"), settings)


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint, monkeypatch):
    import boto3

    for var in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-west-1")
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    client.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return client, bucket


def test_s3_model_is_downloaded_once_with_its_sidecar(
    graphs, s3, moto_endpoint, tmp_path, monkeypatch
):
    client, bucket = s3
    client.upload_file(str(graphs["main"]), bucket, "detectors/e2e/tiny_e2e.onnx")
    labels = list(COCO80)
    labels[16] = "bus"  # dog -> bus, from the sidecar next to the object
    client.put_object(
        Bucket=bucket,
        Key="detectors/e2e/tiny_e2e.json",
        Body=json.dumps({"id2label": labels}).encode(),
    )

    downloads: list[str] = []
    real = model_cache._download

    def counting(client_, bucket_, key, dest):
        downloads.append(key)
        return real(client_, bucket_, key, dest)

    monkeypatch.setattr(model_cache, "_download", counting)
    settings = Settings(home=tmp_path, model_cache_dir=tmp_path / "cache", s3_endpoint_url=moto_endpoint, detector_threads=1,
                        thresholds=ALL, detector_runtime="onnx")  # fmt: skip
    uri = f"s3://{bucket}/detectors/e2e/tiny_e2e.onnx"
    first = OnnxEndToEndDetector.from_settings(uri, settings)
    assert downloads[0] == "detectors/e2e/tiny_e2e.onnx"
    assert "detectors/e2e/tiny_e2e.json" in downloads
    assert first.model_name == uri
    assert first.model_version == hashlib.sha256(graphs["main"].read_bytes()).hexdigest()[:16]
    assert first.model_path.is_relative_to(tmp_path / "cache")
    assert (first.model_path.parent / ".complete").is_file()
    assert [d.label for d in first.detect_one(uniform((128, 128, 255), (10, 10)))][
        -1
    ] == "bus"  # the sidecar applied

    count = len(downloads)
    second = OnnxEndToEndDetector.from_settings(uri, settings)
    assert len(downloads) == count  # served from the cache
    assert second.model_path == first.model_path and second.model_version == first.model_version

    # A prefix names the folder holding one .onnx; it resolves to the same object and cache.
    third = OnnxEndToEndDetector.from_settings(f"s3://{bucket}/detectors/e2e/", settings)
    assert third.model_path == first.model_path and len(downloads) == count

    # A new upload (new ETag) is fetched again into a new folder.
    client.upload_file(str(graphs["batch1"]), bucket, "detectors/e2e/tiny_e2e.onnx")
    fourth = OnnxEndToEndDetector.from_settings(uri, settings)
    assert len(downloads) > count and fourth.model_path != first.model_path
    assert fourth.fixed_batch == 1


def test_s3_download_interrupted_before_the_marker_is_redone(graphs, s3, moto_endpoint, tmp_path):
    client, bucket = s3
    client.upload_file(str(graphs["main"]), bucket, "m/tiny_e2e.onnx")
    settings = Settings(home=tmp_path, s3_endpoint_url=moto_endpoint, detector_threads=1, detector_runtime="onnx")
    uri = f"s3://{bucket}/m/tiny_e2e.onnx"
    path, _ = onnx_e2e.fetch_s3_model(uri, settings)
    (path.parent / ".complete").unlink()
    path.write_bytes(b"half a file")
    det = OnnxEndToEndDetector.from_settings(uri, settings)
    assert det.model_version == hashlib.sha256(graphs["main"].read_bytes()).hexdigest()[:16]
    assert det.model_path.is_relative_to(tmp_path / "models")  # the default cache under home


def test_s3_errors_are_clear(s3, moto_endpoint, tmp_path):
    _, bucket = s3
    settings = Settings(home=tmp_path, s3_endpoint_url=moto_endpoint)
    with pytest.raises(ConfigurationError, match=r"cannot read s3://.*/nope\.onnx"):
        OnnxEndToEndDetector.from_settings(f"s3://{bucket}/nope.onnx", settings)
    with pytest.raises(ConfigurationError, match="exactly one .onnx object"):
        OnnxEndToEndDetector.from_settings(f"s3://{bucket}/empty/", settings)
