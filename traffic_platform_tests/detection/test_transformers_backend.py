"""The in-process transformers detector against transformers' own pipeline, on tiny random models.

Each tiny checkpoint (DETR with a timm-free ResNet, YOLOS, RT-DETR) is saved with its
image processor and loaded back through the real loading code
(``TransformersDetector.from_settings``). Reference = ``pipeline("object-detection")``
and processor + model + ``post_process_object_detection`` on the same images.
Tolerances: same labels in the same order, scores within 1e-5 absolute, boxes within
1e-3 relative (+1e-3 px absolute); against the pipeline's integer boxes, within 1 px.
"""

from __future__ import annotations

import io
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest

from traffic_platform.config import Settings
from traffic_platform.detection.base import ImageInput
from traffic_platform.detection.model_cache import COMPLETE_MARKER, cached_entry_for
from traffic_platform.detection.model_source import weights_digest
from traffic_platform.detection.preprocess import Preprocessor
from traffic_platform.detection.runtime import HostInfo, choose_runtime, host_info
from traffic_platform.detection.tiny_models import BUILDERS, build_tiny_detr, street_like_image
from traffic_platform.detection.transformers_backend import (
    TransformersDetector,
    clear_model_cache,
    load_model,
)
from traffic_platform.domain.classes import traffic_class_for
from traffic_platform.domain.detections import ClassThresholds, to_traffic_detections

pytestmark = pytest.mark.filterwarnings("ignore")

LOW = 0.2  # low enough that every tiny model reports several road users per image
IMAGES = [
    (200, 130, 1),
    (90, 170, 2),
    (333, 100, 3),
]  # (width, height, seed): landscape, portrait, wide


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def images():
    return [street_like_image(w, h, seed=s) for w, h, s in IMAGES]


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_model_cache()
    yield
    clear_model_cache()


def settings_for(
    tmp_path: Path, runtime: str = "torch", thresholds: ClassThresholds | None = None, **kw
) -> Settings:
    return Settings(
        home=tmp_path / "home",
        detector_runtime=runtime,
        detector_threads=2,
        thresholds=thresholds or ClassThresholds(default=LOW),
        **kw,
    )


def reference(model_dir: Path, images, threshold: float = LOW, batched: bool = False):
    """transformers' own processor + model + post_process_object_detection (one image at a time)."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    processor = AutoImageProcessor.from_pretrained(model_dir)
    model = AutoModelForObjectDetection.from_pretrained(model_dir).eval()
    groups = [list(images)] if batched else [[im] for im in images]
    out = []
    for group in groups:
        with torch.inference_mode():
            outputs = model(**processor(images=group, return_tensors="pt"))
        sizes = [(im.height, im.width) for im in group]
        for res in processor.post_process_object_detection(
            outputs, threshold=threshold, target_sizes=sizes
        ):
            out.append(
                (
                    [model.config.id2label[int(i)] for i in res["labels"]],
                    res["scores"].tolist(),
                    res["boxes"].tolist(),
                )
            )
    return out


BATCHING_ATOL = 1e-4  # fp32 rounding between differently shaped batches, on every CPU kind


def assert_raw_equal(ours, ref, *, score_atol=1e-5, box_rtol=1e-3):
    for (labels, scores, boxes), (rlabels, rscores, rboxes) in zip(ours, ref, strict=True):
        assert labels == rlabels
        np.testing.assert_allclose(scores, rscores, rtol=0, atol=score_atol)
        if boxes:
            np.testing.assert_allclose(boxes, rboxes, rtol=box_rtol, atol=1e-3)


@pytest.mark.parametrize("name", ["detr", "yolos", "rtdetr"])
def test_single_images_match_pipeline(name, models, images, tmp_path):
    from transformers import pipeline

    detector = TransformersDetector.from_settings(str(models[name]), settings_for(tmp_path))
    pipe = pipeline("object-detection", model=str(models[name]))
    total = 0
    for image in images:
        ours = detector.detect_one(ImageInput(image))
        ref = [r for r in pipe(image, threshold=LOW) if traffic_class_for(r["label"]) is not None]
        assert [d.label for d in ours] == [r["label"] for r in ref]
        np.testing.assert_allclose([d.score for d in ours], [r["score"] for r in ref], atol=1e-5)
        for det, r in zip(ours, ref, strict=True):
            b = r["box"]  # the pipeline truncates to int and does not clip
            expected = np.clip(
                [b["xmin"], b["ymin"], b["xmax"], b["ymax"]], 0, [image.width, image.height] * 2
            )
            assert np.all(np.abs(np.array(det.box) - expected) <= 1.0 + 1e-6)
            assert det.traffic_class.value == traffic_class_for(r["label"]).value
        total += len(ours)
    assert total >= 6, "the tiny model should report road users to compare"


@pytest.mark.parametrize("name", ["detr", "yolos", "rtdetr"])
def test_raw_outputs_match_processor_model_postprocess(name, models, images, tmp_path):
    detector = TransformersDetector.from_settings(str(models[name]), settings_for(tmp_path))
    ours = [detector.raw_detections([im])[0] for im in images]
    ref = reference(models[name], images)
    assert sum(len(r[0]) for r in ref) >= 6
    assert_raw_equal(ours, ref)
    # ... and detect() is exactly to_traffic_detections over them.
    for image, (labels, scores, boxes) in zip(images, ref, strict=True):
        expected = to_traffic_detections(
            labels,
            scores,
            boxes,
            width=image.width,
            height=image.height,
            thresholds=detector.thresholds,
        )
        got = detector.detect_one(ImageInput(image))
        assert [(d.label, d.traffic_class) for d in got] == [
            (d.label, d.traffic_class) for d in expected
        ]
        np.testing.assert_allclose(
            [d.box for d in got] or np.zeros((0, 4)),
            [d.box for d in expected] or np.zeros((0, 4)),
            rtol=1e-3,
            atol=1e-3,
        )


@pytest.mark.parametrize("name", ["yolos", "rtdetr"])
def test_batch_of_three_equals_three_singles_mixed_sizes(name, models, images, tmp_path):
    detector = TransformersDetector.from_settings(
        str(models[name]), settings_for(tmp_path, detector_batch_size=3)
    )
    batch = detector.detect([ImageInput(im) for im in images])
    singles = [detector.detect_one(ImageInput(im)) for im in images]
    assert sum(len(b) for b in batch) > 0
    for got, want in zip(batch, singles, strict=True):
        assert [d.label for d in got] == [d.label for d in want]
        np.testing.assert_allclose([d.score for d in got], [d.score for d in want], atol=1e-5)
        np.testing.assert_allclose(
            [d.box for d in got], [d.box for d in want], rtol=1e-4, atol=1e-3
        )


def test_detr_batch_same_size_equals_singles_and_mixed_batch_equals_processor_batch(
    models, tmp_path
):
    detector = TransformersDetector.from_settings(
        str(models["detr"]), settings_for(tmp_path, detector_batch_size=3)
    )
    same = [street_like_image(200, 130, seed=s) for s in (4, 5, 6)]
    batch = detector.raw_detections(same)
    singles = [detector.raw_detections([im])[0] for im in same]
    # A batch of 3 and 3 batches of 1 run differently blocked fp32 GEMMs (oneDNN picks kernels
    # by shape and CPU): scores differ by rounding, measured 1.05e-5 on an AVX2 AMD host and
    # 1.27e-5 on an AMX Xeon. 1e-4 holds on both with margin and is still far below any
    # difference between two real detections.
    assert_raw_equal(batch, singles, score_atol=BATCHING_ATOL)
    # Mixed sizes: DETR takes a pixel_mask, so the batch is padded exactly as the processor pads it.
    mixed = [street_like_image(w, h, seed=s) for w, h, s in IMAGES]
    assert_raw_equal(
        detector.raw_detections(mixed),
        reference(models["detr"], mixed, batched=True),
        score_atol=BATCHING_ATOL,
    )


def test_per_class_thresholds(models, images, tmp_path):
    low = TransformersDetector.from_settings(str(models["rtdetr"]), settings_for(tmp_path))
    all_low = [low.detect_one(ImageInput(im)) for im in images]
    scores = sorted(d.score for dets in all_low for d in dets)
    strict = float(np.median(scores))  # a threshold that splits the detections
    per_class = ClassThresholds(default=strict, per_class={"bicycle": LOW, "car": 0.99})
    detector = TransformersDetector.from_settings(
        str(models["rtdetr"]), settings_for(tmp_path, thresholds=per_class)
    )
    assert detector.loaded is low.loaded  # same checkpoint + runtime: loaded once per process
    for image, lows in zip(images, all_low, strict=True):
        got = detector.detect_one(ImageInput(image))
        want = [d for d in lows if d.score >= per_class.for_class(d.traffic_class.value)]
        assert got == want
        for d in got:
            assert d.score >= per_class.for_class(d.traffic_class.value)
    assert any(
        d.traffic_class.value == "bicycle" and d.score < strict for dets in all_low for d in dets
    )


def test_model_name_version_and_describe(models, tmp_path):
    settings = settings_for(tmp_path)
    detector = TransformersDetector.from_settings(str(models["yolos"]), settings)
    assert detector.model_name == str(models["yolos"])
    assert (
        detector.model_version == weights_digest(models["yolos"])
        and len(detector.model_version) == 16
    )
    assert detector.describe() == {
        "model_name": str(models["yolos"]),
        "model_version": detector.model_version,
        "runtime": "torch",
    }
    detector.warmup()
    assert load_model(str(models["yolos"]), settings) is detector.loaded


def test_factory_builds_it(models, tmp_path):
    from traffic_platform.detection.factory import build_detector

    settings = settings_for(tmp_path, detector=f"local:{models['rtdetr']}")
    detector = build_detector(settings)
    assert isinstance(detector, TransformersDetector) and detector.model_name == str(
        models["rtdetr"]
    )


def test_missing_directory_is_a_configuration_error(tmp_path):
    from traffic_platform.domain.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="does not exist"):
        TransformersDetector.from_settings(str(tmp_path / "nope" / "model"), settings_for(tmp_path))


@pytest.mark.parametrize("shape", ["tar.gz", "prefix"])
def test_loads_from_s3_artifact_once(
    shape, models, images, tmp_path, s3_client, s3_bucket, s3_server
):
    src = models["rtdetr"]
    if shape == "tar.gz":  # SageMaker-style model.tar.gz with the files at its root
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for f in sorted(src.iterdir()):
                tar.add(f, arcname=f.name)
        s3_client.put_object(
            Bucket=s3_bucket, Key="models/rtdetr/v1/model.tar.gz", Body=buf.getvalue()
        )
        uri = f"s3://{s3_bucket}/models/rtdetr/v1/model.tar.gz"
    else:
        for f in sorted(src.iterdir()):
            s3_client.put_object(
                Bucket=s3_bucket, Key=f"models/rtdetr/v2/{f.name}", Body=f.read_bytes()
            )
        uri = f"s3://{s3_bucket}/models/rtdetr/v2"
    settings = settings_for(tmp_path, s3_endpoint_url=s3_server)
    detector = TransformersDetector.from_settings(uri, settings)
    assert detector.model_name == uri
    assert detector.model_version == weights_digest(src)
    cached = cached_entry_for(uri, settings)
    assert (cached / COMPLETE_MARKER).is_file()
    local = TransformersDetector.from_settings(str(src), settings_for(tmp_path))
    for image in images:
        assert detector.detect_one(ImageInput(image)) == local.detect_one(ImageInput(image))
    # Downloaded once: with the objects gone, a new process (cleared cache) loads from disk.
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket):
        for item in page.get("Contents", []):
            s3_client.delete_object(Bucket=s3_bucket, Key=item["Key"])
    clear_model_cache()
    again = TransformersDetector.from_settings(uri, settings)
    assert again.detect_one(ImageInput(images[0])) == local.detect_one(ImageInput(images[0]))


def _upload(s3_client, bucket: str, model_dir: Path, shape: str) -> str:
    """Put a checkpoint on S3 as a ``model.tar.gz`` or a prefix of files; return its URI."""
    if shape == "tar.gz":
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for f in sorted(model_dir.iterdir()):
                tar.add(f, arcname=f.name)
        s3_client.put_object(Bucket=bucket, Key="models/detr/model.tar.gz", Body=buf.getvalue())
        return f"s3://{bucket}/models/detr/model.tar.gz"
    for f in sorted(model_dir.iterdir()):
        s3_client.put_object(Bucket=bucket, Key=f"models/detr/{f.name}", Body=f.read_bytes())
    return f"s3://{bucket}/models/detr"


@pytest.mark.parametrize("shape", ["tar.gz", "prefix"])
def test_a_model_replaced_under_the_same_uri_is_fetched_again(
    shape, tmp_path, s3_client, s3_bucket, s3_server
):
    first, second = build_tiny_detr(tmp_path / "a", seed=0), build_tiny_detr(tmp_path / "b", seed=1)
    assert weights_digest(first) != weights_digest(second)
    uri = _upload(s3_client, s3_bucket, first, shape)
    settings = settings_for(tmp_path, s3_endpoint_url=s3_server)
    before = TransformersDetector.from_settings(uri, settings)
    assert before.model_version == weights_digest(first)

    assert _upload(s3_client, s3_bucket, second, shape) == uri  # replaced: same keys, new ETags
    clear_model_cache()  # a new process
    after = TransformersDetector.from_settings(uri, settings)
    assert after.model_version == weights_digest(second)
    assert after.loaded.resolved.location != before.loaded.resolved.location
    assert cached_entry_for(uri, settings) == Path(after.loaded.resolved.location)
    image = ImageInput(street_like_image(200, 130, seed=1))
    local = TransformersDetector.from_settings(str(second), settings_for(tmp_path))
    assert after.detect_one(image) == local.detect_one(image)


def test_an_unreachable_s3_falls_back_to_the_cached_copy(models, tmp_path, s3_client, s3_bucket, s3_server):
    import boto3
    from botocore.config import Config

    from traffic_platform.detection.model_source import fetch_s3_model
    from traffic_platform.domain.errors import ConfigurationError

    uri = _upload(s3_client, s3_bucket, models["detr"], "prefix")
    settings = settings_for(tmp_path, s3_endpoint_url=s3_server)
    fetched = fetch_s3_model(uri, settings)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    offline = boto3.client(
        "s3", endpoint_url=dead, region_name="eu-west-1", config=Config(retries={"total_max_attempts": 1})
    )
    assert fetch_s3_model(uri, settings, client=offline) == fetched
    with pytest.raises(ConfigurationError, match="S3 is not reachable"):
        fetch_s3_model(uri, settings_for(tmp_path / "empty"), client=offline)


def test_preprocessing_is_bit_equal_to_the_processor(models):
    from transformers import AutoImageProcessor

    sizes = [(200, 130), (90, 170), (333, 100), (640, 480), (40, 300)]
    imgs = [street_like_image(w, h, seed=i) for i, (w, h) in enumerate(sizes)]
    for name, path in models.items():
        processor = AutoImageProcessor.from_pretrained(path)
        pre = Preprocessor.from_processor(processor)
        assert pre.verify_against(processor, imgs) == 0.0, name
        for im in imgs:
            assert pre.verify_against(processor, [im]) == 0.0, name
        # The element-wise fast path is taken where it is exact (checked over all 256 values),
        # and the table gives the same bits where it is not.
        assert pre.spec.vector_rescale() is not None, name
        table = Preprocessor(pre.spec)
        table._vector = None
        for im in imgs:
            np.testing.assert_array_equal(table.image_array(im), pre.image_array(im))


def test_preprocessing_falls_back_to_the_table_where_float32_arithmetic_differs(models):
    """Multiplying by float32(1/255) rounds 126 of 256 values differently from the processor's
    float64 multiply; a rescale factor that is no integer's inverse gets the exact table."""
    import dataclasses

    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(models["rtdetr"])
    processor.rescale_factor = 1 / 127.3
    pre = Preprocessor.from_processor(processor)
    assert pre.spec.vector_rescale() is None and pre._vector is None
    assert pre.verify_against(processor, [street_like_image(160, 90, seed=3)]) == 0.0
    # 1/255 (every checkpoint here) divides exactly; a short binary fraction multiplies exactly.
    assert dataclasses.replace(pre.spec, rescale_factor=1 / 255).vector_rescale() == (255, True)
    assert dataclasses.replace(pre.spec, rescale_factor=0.375).vector_rescale() == (0.375, False)


def test_runtime_choice_rule(monkeypatch):
    from traffic_platform.detection import runtime

    monkeypatch.setattr(runtime, "cuda_available", lambda: False)
    amx = HostInfo("Xeon", 2, frozenset({"avx512f", "amx_bf16", "avx512_bf16"}))
    bf16 = HostInfo("EPYC", 2, frozenset({"avx512f", "avx512_bf16"}))
    plain = HostInfo("old", 2, frozenset({"avx2"}))
    # Without OpenVINO (the host kinds with it: test_openvino.py)
    assert choose_runtime("auto", model_type="rt_detr_v2", host=amx, openvino=False) == "torch-bf16"
    assert choose_runtime("auto", model_type="rt_detr", host=bf16, openvino=False) == "onnx"
    assert choose_runtime("auto", model_type="detr", host=plain, openvino=False) == "onnx"
    # OpenVINO bf16 lost fidelity on real weights (F1 0.978 < 0.98); the mixed cut kept it (0.986)
    assert choose_runtime("auto", model_type="rt_detr", host=bf16, openvino=True) == "openvino-mixed"
    # On AMX the same bf16 graph kept it (0.986), and it is the fastest there
    assert choose_runtime("auto", model_type="rt_detr", host=amx, openvino=True) == "openvino-bf16"
    assert choose_runtime("torch", model_type="rt_detr", host=amx) == "torch"
    assert choose_runtime("onnx-int8", model_type="rt_detr", host=plain) == "onnx-int8"
    with pytest.raises(ValueError):
        choose_runtime("tensorrt", model_type="detr", host=plain)
    info = host_info().describe()
    assert info["logical_cores"] >= 1 and "torch_cpu_capability" in info


def test_bf16_runtime_agrees_with_fp32_or_is_refused(models, images, tmp_path):
    from traffic_platform.domain.errors import ConfigurationError

    if not host_info().native_bf16:
        with pytest.raises(ConfigurationError, match="bf16"):
            TransformersDetector.from_settings(
                str(models["rtdetr"]), settings_for(tmp_path, runtime="torch-bf16")
            )
        return
    fp32 = TransformersDetector.from_settings(str(models["rtdetr"]), settings_for(tmp_path))
    bf16 = TransformersDetector.from_settings(
        str(models["rtdetr"]), settings_for(tmp_path, runtime="torch-bf16")
    )
    assert bf16.model_version == fp32.model_version + "+bf16"
    for image in images:
        a, b = fp32.detect_one(ImageInput(image)), bf16.detect_one(ImageInput(image))
        # bf16 keeps ~3 significant digits: detections near the threshold may flip, the rest agree.
        assert abs(len(a) - len(b)) <= max(2, len(a) // 5)
        matched = sum(
            any(x.label == y.label and abs(x.score - y.score) < 0.05 for y in b) for x in a
        )
        assert matched >= 0.8 * len(a)


def test_model_name_setting_names_the_stored_model(models, tmp_path):
    """On a SageMaker endpoint the weights sit in /opt/ml/model; the stored name comes from the setting."""
    default = TransformersDetector.from_settings(str(models["detr"]), settings_for(tmp_path))
    assert default.model_name == str(models["detr"])
    named = TransformersDetector.from_settings(str(models["detr"]), settings_for(tmp_path, detector_model_name="facebook/detr-resnet-50"))
    assert named.describe()["model_name"] == "facebook/detr-resnet-50"
    assert named.model_version == default.model_version  # the version still comes from the weights


@pytest.mark.parametrize("name", ["detr", "yolos", "rtdetr"])
def test_gpu_batch_matches_the_cpu_preprocessing(name, models, images):
    """The GPU pre-processing path (run here on the CPU device) gives the CPU batch up to resize rounding."""
    from transformers import AutoImageProcessor

    from traffic_platform.detection.preprocess import gpu_batch

    pre = Preprocessor.from_processor(AutoImageProcessor.from_pretrained(models[name], use_fast=False))
    group = images if pre.spec.do_pad else images[:1]
    ours = gpu_batch(group, pre.spec, device="cpu")
    ref = pre.batch(group)
    assert tuple(ours["pixel_values"].shape) == ref["pixel_values"].shape
    diff = np.abs(ours["pixel_values"].numpy() - ref["pixel_values"])
    one_level = max(pre.spec.rescale_factor / s for s in pre.spec.image_std)  # one uint8 step after normalising
    assert diff.mean() < 0.25 * one_level and diff.max() <= 2.01 * one_level
    if "pixel_mask" in ref:
        assert np.array_equal(ours["pixel_mask"].numpy(), ref["pixel_mask"])
