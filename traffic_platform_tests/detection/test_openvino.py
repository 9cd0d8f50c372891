"""The ``openvino`` / ``openvino-bf16`` runtimes and the ``auto`` rule, on tiny models.

OpenVINO must reproduce ONNX Runtime on the same graph (transformers exports and end-to-end
graphs alike); bf16 is either close to fp32 (hosts with bf16 instructions) or refused. No
speed assertions: these run on Intel AMX and AMD hosts alike.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from traffic_platform.config import Settings
from traffic_platform.detection import openvino_runtime, runtime
from traffic_platform.detection import tiny_e2e_graph as graph
from traffic_platform.detection.base import ImageInput
from traffic_platform.detection.onnx_e2e import OnnxEndToEndDetector
from traffic_platform.detection.runtime import (
    FIDELITY,
    FidelityCheck,
    HostInfo,
    choose_runtime,
    fidelity_checked,
    host_info,
)
from traffic_platform.detection.tiny_models import BUILDERS, street_like_image
from traffic_platform.detection.transformers_backend import TransformersDetector, clear_model_cache
from traffic_platform.domain.detections import ClassThresholds
from traffic_platform.domain.errors import ConfigurationError

pytestmark = pytest.mark.filterwarnings("ignore")

LOW = 0.2
ALL = ClassThresholds(default=0.0)

AMX = HostInfo("Intel Xeon (Sapphire Rapids)", 2, frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}))
AVX512_BF16 = HostInfo("AMD EPYC (Zen 4)", 2, frozenset({"avx2", "avx512f", "avx512_bf16"}))
AVX512 = HostInfo("Intel Xeon (Skylake)", 2, frozenset({"avx2", "avx512f"}))
AVX2 = HostInfo("AMD EPYC (Zen 2)", 2, frozenset({"avx2"}))


# ----------------------------------------------------------------------------- the auto rule
@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(runtime, "cuda_available", lambda: False)


@pytest.fixture
def bf16_checked(no_gpu, monkeypatch):
    """Every bf16 runtime with a passing check on real weights (the rule, whatever is recorded)."""
    for name in ("openvino-bf16", "openvino-mixed", "torch-bf16"):
        for unit in ("amx", "avx512_bf16"):
            monkeypatch.setitem(FIDELITY, (name, unit), FidelityCheck(0.99, "real", "fp32", "test"))


@pytest.mark.parametrize(
    ("host", "openvino", "expected"),
    [
        (AMX, True, "openvino-bf16"),
        (AMX, False, "torch-bf16"),  # AMX without OpenVINO
        (AVX512_BF16, True, "openvino-bf16"),
        (AVX512_BF16, False, "onnx"),
        (AVX512, True, "onnx"),  # no bf16 instructions: bf16 would be emulated
        (AVX2, True, "onnx"),
        (AVX2, False, "onnx"),
    ],
)
def test_auto_for_each_host_kind(bf16_checked, host, openvino, expected):
    assert choose_runtime("auto", model_type="rt_detr_v2", host=host, openvino=openvino) == expected


@pytest.mark.parametrize(
    ("host", "openvino", "expected"),
    [
        (AMX, True, "openvino-bf16"),
        (AMX, False, "onnx"),  # torch-bf16 cannot run a graph
        (AVX512_BF16, True, "openvino-bf16"),
        (AVX512, True, "onnx"),
        (AVX2, True, "onnx"),
    ],
)
def test_auto_for_end_to_end_graphs(bf16_checked, host, openvino, expected):
    got = choose_runtime("auto", model_type=None, host=host, openvino=openvino, end_to_end=True)
    assert got == expected


def test_auto_picks_cuda_for_checkpoints_only(bf16_checked, monkeypatch):
    monkeypatch.setattr(runtime, "cuda_available", lambda: True)
    assert choose_runtime("auto", model_type="detr", host=AVX2, openvino=True) == "cuda"
    assert choose_runtime("auto", model_type=None, host=AMX, openvino=True, end_to_end=True) == "openvino-bf16"


@pytest.mark.parametrize("host", [AMX, AVX512_BF16, AVX512, AVX2])
@pytest.mark.parametrize("openvino", [True, False])
@pytest.mark.parametrize("end_to_end", [True, False])
def test_auto_with_the_recorded_checks_picks_only_checked_runtimes(no_gpu, host, openvino, end_to_end):
    got = choose_runtime("auto", model_type="rt_detr_v2", host=host, openvino=openvino, end_to_end=end_to_end)
    assert fidelity_checked(got)
    if got in runtime.LOSSY_SUFFIX:
        assert host.native_bf16
        assert FIDELITY[(got, host.bf16_unit)].f1 >= runtime.MIN_FIDELITY_F1


def test_the_recorded_checks(no_gpu):
    """bench/RESULTS.md, DEIMv2-Atto: openvino-bf16 F1 0.978 on AVX-512 BF16 (out) but 0.986 on
    AMX (in); openvino-mixed 0.986 on both."""
    bar = runtime.MIN_FIDELITY_F1
    assert FIDELITY[("openvino-bf16", "avx512_bf16")].f1 < bar <= FIDELITY[("openvino-bf16", "amx")].f1
    assert FIDELITY[("openvino-mixed", "avx512_bf16")].f1 >= bar
    assert choose_runtime("auto", model_type="rt_detr_v2", host=AMX, openvino=True) == "openvino-bf16"
    assert choose_runtime("auto", model_type="rt_detr_v2", host=AMX, openvino=False) == "torch-bf16"
    got = choose_runtime("auto", model_type="rt_detr_v2", host=AVX512_BF16, openvino=True)
    assert got == "openvino-mixed"
    assert choose_runtime("auto", model_type="rt_detr_v2", host=AVX512_BF16, openvino=False) == "onnx"
    got = choose_runtime("auto", model_type=None, host=AMX, openvino=True, end_to_end=True)
    assert got == "openvino-bf16"
    got = choose_runtime("auto", model_type=None, host=AVX512_BF16, openvino=True, end_to_end=True)
    assert got == "openvino-mixed"
    assert choose_runtime("auto", model_type=None, host=AVX2, openvino=True, end_to_end=True) == "onnx"
    # A check on one unit says nothing about the other: torch-bf16 was checked on AMX only.
    assert fidelity_checked("torch-bf16", AMX) and not fidelity_checked("torch-bf16", AVX512_BF16)
    assert not fidelity_checked("openvino-bf16", AVX2)


def test_lossy_runtimes_need_a_recorded_fidelity_check(bf16_checked, monkeypatch):
    assert all(fidelity_checked(r) for r in ("torch", "onnx", "openvino", "cuda"))
    assert not fidelity_checked("onnx-int8") and not fidelity_checked("cuda-fp16")
    # Without a check (or with one below the bar) auto falls back to the next candidate.
    monkeypatch.delitem(FIDELITY, ("openvino-bf16", "avx512_bf16"))
    assert choose_runtime("auto", model_type="rt_detr", host=AVX512_BF16, openvino=True) == "openvino-mixed"
    assert choose_runtime("auto", model_type="rt_detr", host=AMX, openvino=True) == "openvino-bf16"
    monkeypatch.setitem(FIDELITY, ("openvino-mixed", "avx512_bf16"), FidelityCheck(0.97, "real", "fp32", "here"))
    assert choose_runtime("auto", model_type="rt_detr", host=AVX512_BF16, openvino=True) == "onnx"
    for name in ("openvino-bf16", "openvino-mixed"):
        monkeypatch.setitem(FIDELITY, (name, "amx"), FidelityCheck(0.97, "real", "fp32", "here"))
    assert choose_runtime("auto", model_type="rt_detr", host=AMX, openvino=True) == "torch-bf16"
    monkeypatch.setitem(FIDELITY, ("torch-bf16", "amx"), FidelityCheck(0.93, "random", "fp32", "here"))
    assert choose_runtime("auto", model_type="rt_detr", host=AMX, openvino=True) == "onnx"


def test_explicit_runtimes(no_gpu):
    assert choose_runtime("openvino-mixed", model_type=None, host=AVX2, end_to_end=True) == "openvino-mixed"
    assert choose_runtime("openvino", model_type="detr", host=AVX2, openvino=False) == "openvino"
    assert choose_runtime("onnx", model_type=None, host=AMX, end_to_end=True) == "onnx"
    with pytest.raises(ValueError, match="openvino-bf16"):
        choose_runtime("torch", model_type=None, host=AMX, end_to_end=True)
    with pytest.raises(ValueError):
        choose_runtime("tensorrt", model_type="detr", host=AVX2)


def test_settings_accept_the_openvino_runtimes():
    for name in ("openvino", "openvino-bf16", "openvino-mixed"):
        assert Settings(detector_runtime=name).detector_runtime == name


# ----------------------------------------------------------------------------- transformers checkpoints
@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-ov")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def images():
    return [street_like_image(w, h, seed=s) for w, h, s in [(200, 130, 1), (90, 170, 2), (333, 100, 3)]]


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_model_cache()
    yield
    clear_model_cache()


def settings_for(home: Path, name: str, **kw) -> Settings:
    return Settings(
        home=home,
        detector_runtime=name,
        detector_threads=2,
        thresholds=ClassThresholds(default=LOW),
        detector_batch_size=3,
        **kw,
    )


def assert_same(a, b, *, atol=1e-4, box_atol=1e-2):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert [d.label for d in x] == [d.label for d in y]
        np.testing.assert_allclose([d.score for d in x], [d.score for d in y], atol=atol)
        np.testing.assert_allclose(
            [d.box for d in x] or np.zeros((0, 4)), [d.box for d in y] or np.zeros((0, 4)), rtol=1e-3, atol=box_atol
        )


@pytest.mark.parametrize("name", ["detr", "yolos", "rtdetr"])
def test_openvino_matches_onnx_runtime(name, models, images, tmp_path):
    ort_det = TransformersDetector.from_settings(str(models[name]), settings_for(tmp_path / "h", "onnx"))
    ov_det = TransformersDetector.from_settings(str(models[name]), settings_for(tmp_path / "h", "openvino"))
    assert ov_det.runtime == "openvino" and ov_det.describe()["runtime"] == "openvino"
    assert ov_det.model_version == ort_det.model_version  # fp32: no lossy tag
    assert ov_det.loaded.forward.graph.execution_precision == "f32"  # not OpenVINO's bf16 default
    batch = [ImageInput(im) for im in images]
    a, b = ort_det.detect(batch), ov_det.detect(batch)
    assert sum(map(len, a)) >= 6
    assert_same(a, b)
    # single images too (DETR pads a mixed batch with a mask, so singles differ from a batch)
    assert_same([ov_det.detect_one(i) for i in batch], [ort_det.detect_one(i) for i in batch])
    # compiled artefacts cached for the next start (per precision)
    assert any((tmp_path / "h" / "models" / "openvino" / "openvino").iterdir())


def test_openvino_bf16_is_close_to_fp32_or_refused(models, images, tmp_path):
    if not host_info().native_bf16:
        with pytest.raises(ConfigurationError, match="bf16"):
            TransformersDetector.from_settings(
                str(models["rtdetr"]), settings_for(tmp_path, "openvino-bf16")
            )
        return
    fp32 = TransformersDetector.from_settings(str(models["rtdetr"]), settings_for(tmp_path, "onnx"))
    bf16 = TransformersDetector.from_settings(str(models["rtdetr"]), settings_for(tmp_path, "openvino-bf16"))
    assert bf16.model_version == fp32.model_version + "+bf16"
    assert bf16.loaded.forward.graph.execution_precision == "bf16"
    for image in images:
        a, b = fp32.detect_one(ImageInput(image)), bf16.detect_one(ImageInput(image))
        assert abs(len(a) - len(b)) <= max(2, len(a) // 5)
        matched = sum(any(x.label == y.label and abs(x.score - y.score) < 0.05 for y in b) for x in a)
        assert matched >= 0.8 * len(a)


@pytest.mark.parametrize("name", ["detr", "yolos", "rtdetr"])
def test_the_trunk_and_head_reproduce_the_whole_graph(name, models, images, tmp_path):
    """openvino-mixed's cut, both parts at fp32: the same raw outputs as the whole graph."""
    import onnxruntime as ort

    from traffic_platform.detection.onnx_export import FP32_FILE, export_onnx
    from traffic_platform.detection.openvino_runtime import OpenVinoGraph, split_trunk
    from traffic_platform.detection.preprocess import Preprocessor

    out = export_onnx(models[name], tmp_path / "exported").out_dir
    split = split_trunk(out / FP32_FILE, tmp_path / "split")
    assert split.cut and split_trunk(out / FP32_FILE, tmp_path / "split") == split  # reused
    trunk = OpenVinoGraph(split.trunk, runtime="openvino", threads=2)
    head = OpenVinoGraph(split.head, runtime="openvino", threads=2)
    session = ort.InferenceSession(str(out / FP32_FILE), providers=["CPUExecutionProvider"])
    from transformers import AutoImageProcessor

    pre = Preprocessor.from_processor(AutoImageProcessor.from_pretrained(out, use_fast=False))
    feed = pre.collate([pre.image_array(images[0])])
    feed = {k: v for k, v in feed.items() if k in {i.name for i in session.get_inputs()}}
    values = trunk.run(list(split.cut), {k: v for k, v in feed.items() if k in {i.name for i in trunk.get_inputs()}})
    head_feed = {k: v for k, v in feed.items() if k in {i.name for i in head.get_inputs()}}
    head_feed.update(zip(split.cut, values, strict=True))
    for a, b in zip(session.run(["logits", "pred_boxes"], feed), head.run(["logits", "pred_boxes"], head_feed), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_openvino_mixed_is_close_to_fp32_or_refused(models, images, tmp_path):
    if not host_info().native_bf16:
        with pytest.raises(ConfigurationError, match="bf16"):
            TransformersDetector.from_settings(str(models["rtdetr"]), settings_for(tmp_path, "openvino-mixed"))
        return
    fp32 = TransformersDetector.from_settings(str(models["rtdetr"]), settings_for(tmp_path, "onnx"))
    mixed = TransformersDetector.from_settings(str(models["rtdetr"]), settings_for(tmp_path, "openvino-mixed"))
    assert mixed.runtime == "openvino-mixed" and mixed.model_version == fp32.model_version + "+bf16mix"
    assert mixed.loaded.forward.graph.execution_precision == "bf16+f32"
    for image in images:
        a, b = fp32.detect_one(ImageInput(image)), mixed.detect_one(ImageInput(image))
        assert abs(len(a) - len(b)) <= max(2, len(a) // 5)
        matched = sum(any(x.label == y.label and abs(x.score - y.score) < 0.05 for y in b) for x in a)
        assert matched >= 0.8 * len(a)


def test_openvino_mixed_needs_a_backbone_encoder_boundary(graphs, tmp_path, monkeypatch):
    """The tiny end-to-end graph has no backbone/encoder nodes: refused when asked for, and
    ``auto`` falls back to ONNX Runtime."""
    with pytest.raises(ConfigurationError, match="bf16" if not host_info().native_bf16 else "boundary"):
        OnnxEndToEndDetector(graphs["main"], runtime="openvino-mixed", cache_dir=tmp_path)
    monkeypatch.setattr(runtime, "choose_runtime", lambda requested, **kw: "openvino-mixed" if requested == "auto" else requested)
    monkeypatch.setattr(runtime, "require_native_bf16", lambda name, host=None: None)
    from traffic_platform.detection.factory import build_detector

    auto = build_detector(Settings(home=tmp_path, detector=f"onnx:{graphs['main']}"))
    assert auto.runtime == "onnx"


def test_an_onnx_only_export_runs_on_openvino(models, images, tmp_path):
    from traffic_platform.detection.onnx_export import export_onnx

    out = export_onnx(models["rtdetr"], tmp_path / "exported").out_dir
    ort_det = TransformersDetector.from_settings(str(out), settings_for(tmp_path, "onnx"))
    ov_det = TransformersDetector.from_settings(str(out), settings_for(tmp_path, "openvino"))
    assert ov_det.runtime == "openvino"
    batch = [ImageInput(im) for im in images]
    assert_same(ort_det.detect(batch), ov_det.detect(batch))


def test_auto_falls_back_to_onnx_when_openvino_fails(models, images, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no CPU plugin")

    monkeypatch.setattr(openvino_runtime, "compile_model", broken)
    monkeypatch.setattr(runtime, "choose_runtime", lambda requested, **kw: "openvino" if requested == "auto" else requested)
    from traffic_platform.detection import transformers_backend

    monkeypatch.setattr(transformers_backend, "choose_runtime", runtime.choose_runtime)
    auto = TransformersDetector.from_settings(str(models["rtdetr"]), settings_for(tmp_path, "auto"))
    assert auto.runtime == "onnx"
    clear_model_cache()
    with pytest.raises(ConfigurationError, match="OpenVINO"):
        TransformersDetector.from_settings(str(models["rtdetr"]), settings_for(tmp_path, "openvino"))


# ----------------------------------------------------------------------------- end-to-end graphs
@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e-ov")
    return {
        "main": graph.export(root / "main" / "tiny_e2e.onnx"),
        "batch2": graph.export(root / "batch2" / "tiny_b2.onnx", dynamic_batch=False, batch=2),
        "dynamic": graph.export(root / "dynamic" / "tiny_dyn.onnx", dynamic_size=True),
    }


PICTURES = [((128, 128, 255), (50, 50)), ((200, 90, 230), (640, 360)), ((10, 250, 180), (90, 170))]


def pictures() -> list[ImageInput]:
    return [ImageInput(Image.new("RGB", size, rgb)) for rgb, size in PICTURES]


def assert_close(a, b):
    """Same detections up to fp32 rounding: labels equal, scores within 1e-4, boxes 0.05 px."""
    assert_same(a, b, atol=1e-4, box_atol=0.05)


@pytest.mark.parametrize("kind", ["main", "batch2", "dynamic"])
def test_e2e_openvino_equals_onnx_runtime(graphs, kind, tmp_path):
    meta = {"metadata": None}
    if kind == "dynamic":
        from traffic_platform.detection.onnx_e2e import ModelMetadata

        meta = {"metadata": ModelMetadata(input_size=(48, 80))}
    ref = OnnxEndToEndDetector(graphs[kind], thresholds=ALL, **meta)
    ov = OnnxEndToEndDetector(graphs[kind], thresholds=ALL, runtime="openvino", cache_dir=tmp_path, **meta)
    assert ov.runtime == "openvino" and ov.model_version == ref.model_version
    assert ov.describe()["runtime"] == "openvino" and ov.fixed_batch == ref.fixed_batch
    expected = ref.detect(pictures())
    assert sum(map(len, expected)) >= 6
    assert_close(ov.detect(pictures()), expected)
    assert_close([ov.detect_one(p) for p in pictures()], expected)
    raw_ref, raw_ov = ref.raw_detections(pictures(), 0.0), ov.raw_detections(pictures(), 0.0)
    for (la, sa, ba), (lb, sb, bb) in zip(raw_ref, raw_ov, strict=True):
        assert la == lb
        np.testing.assert_allclose(sa, sb, atol=1e-4)
        np.testing.assert_allclose(ba, bb, atol=0.05)  # OpenVINO sums a mean in another order


def test_e2e_openvino_is_thread_safe(graphs, tmp_path):
    ov = OnnxEndToEndDetector(graphs["main"], thresholds=ALL, runtime="openvino", cache_dir=tmp_path)
    expected = ov.detect(pictures())
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: ov.detect(pictures()), range(16)))
    for result in results:  # one infer request per thread: nobody reads another's buffers
        assert result == expected


def test_e2e_openvino_bf16_is_close_or_refused(graphs, tmp_path):
    if not host_info().native_bf16:
        with pytest.raises(ConfigurationError, match="bf16"):
            OnnxEndToEndDetector(graphs["main"], runtime="openvino-bf16")
        return
    ref = OnnxEndToEndDetector(graphs["main"], thresholds=ALL)
    bf16 = OnnxEndToEndDetector(graphs["main"], thresholds=ALL, runtime="openvino-bf16", cache_dir=tmp_path)
    assert bf16.model_version == ref.model_version + "+bf16"
    for a, b in zip(ref.detect(pictures()), bf16.detect(pictures()), strict=True):
        assert [d.label for d in a] == [d.label for d in b]
        np.testing.assert_allclose([d.score for d in a], [d.score for d in b], atol=0.02)


def test_e2e_from_settings_honours_the_runtime(graphs, tmp_path, monkeypatch):
    base = dict(home=tmp_path, detector_threads=1, detector=f"onnx:{graphs['main']}")
    from traffic_platform.detection.factory import build_detector

    assert build_detector(Settings(**base, detector_runtime="openvino")).runtime == "openvino"
    # A transformers runtime names nothing for a graph: its fp32 reference, ONNX Runtime.
    assert build_detector(Settings(**base, detector_runtime="torch")).runtime == "onnx"
    auto = build_detector(Settings(**base))
    chosen = choose_runtime("auto", model_type=None, end_to_end=True)
    # openvino-mixed needs a backbone/encoder cut, which the tiny graph lacks: then ONNX Runtime
    assert auto.runtime == ("onnx" if chosen == "openvino-mixed" else chosen)
    assert any((tmp_path / "models" / "openvino").iterdir())

    # auto falls back to ONNX Runtime when OpenVINO cannot compile; an explicit choice fails.
    def broken(*args, **kwargs):
        raise RuntimeError("no CPU plugin")

    monkeypatch.setattr(openvino_runtime, "compile_model", broken)
    monkeypatch.setattr(runtime, "choose_runtime", lambda requested, **kw: "openvino" if requested == "auto" else requested)
    assert build_detector(Settings(**base)).runtime == "onnx"
    with pytest.raises(ConfigurationError, match="OpenVINO cannot load"):
        build_detector(Settings(**base, detector_runtime="openvino"))
