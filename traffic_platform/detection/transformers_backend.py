"""In-process detector over any transformers ``AutoModelForObjectDetection`` checkpoint.

DETR, Conditional/Deformable DETR, YOLOS, RT-DETR and RT-DETRv2 load through
``from_pretrained`` from a hub id, a local directory or an ``s3://`` artifact
(:mod:`.model_source`). The model is loaded once per process and shared by every
detector built for the same checkpoint and runtime.

What runs per batch, and why it equals ``pipeline("object-detection")``:

1. pre-processing: :class:`.preprocess.Preprocessor`, bit-equal to the checkpoint's
   image processor (resize, rescale, normalise, pad + ``pixel_mask``) at 2-3x its speed;
2. forward, by runtime (``TRAFFIC_DETECTOR_RUNTIME``, ``auto`` per :mod:`.runtime`):
   ``torch`` eager fp32 under ``inference_mode``; ``torch-bf16`` bf16 autocast +
   channels_last (only on CPUs with bf16 instructions); ``onnx`` / ``onnx-int8`` ONNX
   Runtime on a graph exported on first use into the model cache (or found beside the
   checkpoint); ``openvino`` / ``openvino-bf16`` / ``openvino-mixed`` OpenVINO on that graph
   (:mod:`.openvino_runtime`; under ``auto`` a failed compile falls back to ``onnx``);
3. post-processing: the checkpoint's own ``post_process_object_detection`` at the lowest
   class threshold, then :func:`~traffic_platform.domain.detections.to_traffic_detections`.

Batches: images are cut into chunks of ``detector_batch_size``. Models that take a
``pixel_mask`` (DETR family) get the chunk padded to its largest image, as the processor
pads it; models without one (YOLOS would attend to the padding, RT-DETR resizes to a fixed
size anyway) run one forward per distinct input size, so a batch gives the same detections
as single images.

``model_version`` is the hub revision if known, else the first 16 hex of sha256 over the
weight files; lossy runtimes add a suffix (``+bf16``, ``+int8``, ``+fp16``) so their detections are
never mixed up with fp32 ones.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..domain.detections import ClassThresholds, Detection, to_traffic_detections
from ..domain.errors import ConfigurationError
from .base import Detector, ImageInput
from .model_source import ResolvedModel, model_version, resolve_model
from .preprocess import Preprocessor, gpu_batch
from .runtime import LOSSY_SUFFIX, OPENVINO_RUNTIMES, choose_runtime, require_native_bf16

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger(__name__)


@dataclass
class _Outputs:
    """What ``post_process_object_detection`` reads from model outputs."""

    logits: Any
    pred_boxes: Any

    def __getitem__(self, key: str) -> Any:  # some post-processors index outputs like a dict
        return getattr(self, key)


class _Forward:
    """One runtime's forward: ``dict of numpy inputs -> (logits, pred_boxes)`` as torch tensors."""

    name: str

    def __call__(
        self, inputs: dict[str, np.ndarray]
    ) -> tuple[Any, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


class _TorchForward(_Forward):
    """Eager torch on the CPU (fp32 or bf16 autocast + channels_last) or a CUDA GPU (fp32 or fp16)."""

    def __init__(self, model: Any, *, runtime: str, takes_mask: bool):
        import torch

        self.name = runtime
        self.takes_mask = takes_mask
        self.device = torch.device("cuda" if runtime.startswith("cuda") else "cpu")
        self.autocast = {"torch-bf16": ("cpu", torch.bfloat16), "cuda-fp16": ("cuda", torch.float16)}.get(runtime)
        self.channels_last = runtime != "torch"
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def __call__(self, inputs: dict[str, np.ndarray]) -> tuple[Any, Any]:
        import torch

        pixel_values = torch.as_tensor(inputs["pixel_values"]).to(self.device, non_blocking=True)
        kwargs: dict[str, Any] = {}
        if self.takes_mask and "pixel_mask" in inputs:
            kwargs["pixel_mask"] = torch.as_tensor(inputs["pixel_mask"]).to(self.device)
        if self.channels_last:
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.autocast:
                with torch.autocast(self.autocast[0], dtype=self.autocast[1]):
                    out = self.model(pixel_values=pixel_values, **kwargs)
            else:
                out = self.model(pixel_values=pixel_values, **kwargs)
            return out.logits.float().cpu(), out.pred_boxes.float().cpu()


class _OnnxForward(_Forward):
    def __init__(self, onnx_path: Path, *, threads: int, name: str):
        import onnxruntime as ort

        self.name = name
        self.path = onnx_path
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.set_denormal_as_zero", "1")
        self.session = ort.InferenceSession(
            str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.input_names = {i.name for i in self.session.get_inputs()}

    def __call__(self, inputs: dict[str, np.ndarray]) -> tuple[Any, Any]:
        import torch

        feed = {k: v for k, v in inputs.items() if k in self.input_names}
        logits, boxes = self.session.run(["logits", "pred_boxes"], feed)
        return torch.from_numpy(logits), torch.from_numpy(boxes)


class _OpenVinoForward(_Forward):
    """OpenVINO's CPU plugin on the exported fp32 graph: fp32, bf16, or mixed (bf16 trunk)."""

    def __init__(self, onnx_path: Path, *, threads: int, name: str, cache_dir: Path | None):
        from .openvino_runtime import open_graph

        self.name = name
        self.path = onnx_path
        self.graph = open_graph(onnx_path, runtime=name, threads=threads, cache_dir=cache_dir)
        self.input_names = {i.name for i in self.graph.get_inputs()}

    def __call__(self, inputs: dict[str, np.ndarray]) -> tuple[Any, Any]:
        import torch

        feed = {k: v for k, v in inputs.items() if k in self.input_names}
        logits, boxes = self.graph.run(["logits", "pred_boxes"], feed)
        return torch.from_numpy(logits), torch.from_numpy(boxes)


def _graph_forward(
    onnx_dir: Path, runtime: str, settings: Settings, *, requested: str
) -> tuple[_Forward, str]:
    """The ONNX Runtime or OpenVINO forward over an export directory, and the runtime it runs.

    Under ``auto`` an OpenVINO compile failure falls back to ONNX Runtime fp32.
    """
    from .onnx_export import FP32_FILE, INT8_FILE

    if runtime in OPENVINO_RUNTIMES:
        cache = Path(settings.model_cache_dir or "var/models") / "openvino"
        try:
            return (
                _OpenVinoForward(
                    onnx_dir / FP32_FILE, threads=settings.threads, name=runtime, cache_dir=cache
                ),
                runtime,
            )
        except Exception as exc:  # noqa: BLE001 - missing package or an unsupported op
            if requested != "auto":
                raise ConfigurationError(
                    f"TRAFFIC_DETECTOR_RUNTIME={runtime}: OpenVINO cannot run {onnx_dir / FP32_FILE}: {exc}"
                ) from exc
            log.warning("OpenVINO failed; falling back to ONNX Runtime", extra={"error": str(exc)[:300]})
            runtime = "onnx"
    path = onnx_dir / (INT8_FILE if runtime == "onnx-int8" else FP32_FILE)
    return _OnnxForward(path, threads=settings.threads, name=runtime), runtime


@dataclass
class LoadedModel:
    """Everything loaded once per process for one checkpoint + runtime."""

    resolved: ResolvedModel
    config: Any
    processor: Any
    preprocessor: Preprocessor
    forward: _Forward
    runtime: str
    version: str
    takes_mask: bool
    lock: threading.Lock


_CACHE: dict[tuple[Any, ...], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def load_model(target: str, settings: Settings, runtime: str | None = None) -> LoadedModel:
    """Load (once per process) the checkpoint ``target`` for ``runtime`` (default: the settings')."""
    requested = runtime or settings.detector_runtime
    key = (
        target,
        requested,
        settings.threads,
        str(settings.model_cache_dir),
        settings.s3_endpoint_url,
    )
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load(target, settings, requested)
        return _CACHE[key]


def clear_model_cache() -> None:
    """Forget loaded models (tests; a re-detection job switching checkpoints)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _load(target: str, settings: Settings, requested: str) -> LoadedModel:
    import inspect

    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection

    started = time.perf_counter()
    torch.set_num_threads(settings.threads)
    # Denormal floats are 10-100x slower on x86 and carry no information for detection;
    # flushing them cut a forward from 2.3 s to 0.96 s on a random-weight RT-DETR-R18 here.
    torch.set_flush_denormal(True)
    resolved = resolve_model(target, settings)
    cache_dir = (
        str(Path(settings.model_cache_dir) / "hub")
        if not resolved.is_local and settings.model_cache_dir
        else None
    )
    try:
        config = AutoConfig.from_pretrained(resolved.location, cache_dir=cache_dir)
        # The PIL ("slow") processor is the reference our numpy pre-processing reproduces exactly;
        # with torchvision installed transformers would otherwise hand back its torchvision one.
        processor = AutoImageProcessor.from_pretrained(resolved.location, cache_dir=cache_dir, use_fast=False)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"TRAFFIC_DETECTOR: cannot load model {target!r}: {exc}") from exc
    runtime = choose_runtime(requested, model_type=config.model_type)
    require_native_bf16(runtime)
    preprocessor = Preprocessor.from_processor(processor)
    _check_preprocessing(preprocessor, processor)
    from .onnx_export import INT8_FILE, read_metadata

    export_meta = read_metadata(resolved.location) if resolved.is_local else None
    if (
        export_meta
        and not any(Path(resolved.location).glob("*.safetensors"))
        and not any(Path(resolved.location).glob("*.bin"))
    ):
        # An exported directory (``traffic-platform model export``): ONNX only, no torch weights.
        if runtime not in ("onnx", "onnx-int8", *OPENVINO_RUNTIMES):
            if requested != "auto":
                raise ConfigurationError(
                    f"TRAFFIC_DETECTOR: {target!r} holds only an ONNX export; use runtime onnx, "
                    "onnx-int8, openvino or openvino-bf16."
                )
            runtime = "onnx"
        version = str(export_meta["model_version"])
        onnx_dir = Path(resolved.location)
        if runtime == "onnx-int8" and not (onnx_dir / INT8_FILE).is_file():
            raise ConfigurationError(
                f"TRAFFIC_DETECTOR: {target!r} has no {INT8_FILE}; export it with --int8."
            )
        forward, runtime = _graph_forward(onnx_dir, runtime, settings, requested=requested)
        takes_mask = "pixel_mask" in forward.input_names  # type: ignore[attr-defined]
    else:
        version = model_version(config, resolved)
        model = AutoModelForObjectDetection.from_pretrained(
            resolved.location, cache_dir=cache_dir
        ).eval()
        takes_mask = (
            "pixel_mask" in inspect.signature(model.forward).parameters
            and preprocessor.spec.do_pad
            and preprocessor.spec.returns_pixel_mask
        )
        if runtime in ("torch", "torch-bf16", "cuda", "cuda-fp16"):
            forward = _TorchForward(model, runtime=runtime, takes_mask=takes_mask)
        else:
            try:
                onnx_dir = _onnx_export_for(
                    resolved, version, settings, int8=runtime == "onnx-int8"
                )
            except Exception as exc:  # noqa: BLE001 - export or parity failure
                if requested != "auto":
                    raise ConfigurationError(
                        f"TRAFFIC_DETECTOR_RUNTIME={runtime}: ONNX export of {target!r} failed: {exc}"
                    ) from exc
                log.warning(
                    "ONNX export failed; falling back to eager torch",
                    extra={"model": target, "error": str(exc)[:300]},
                )
                onnx_dir = None
            if onnx_dir is None:
                runtime = "torch"
                forward = _TorchForward(model, runtime="torch", takes_mask=takes_mask)
            else:
                del model  # the torch weights are not needed once the graph exists
                forward, runtime = _graph_forward(onnx_dir, runtime, settings, requested=requested)
    log.info(
        "detector loaded",
        extra={
            "model": target,
            "runtime": runtime,
            "requested_runtime": requested,
            "threads": settings.threads,
            "load_s": round(time.perf_counter() - started, 2),
        },
    )
    return LoadedModel(
        resolved,
        config,
        processor,
        preprocessor,
        forward,
        runtime,
        version + LOSSY_SUFFIX.get(runtime, ""),
        takes_mask,
        threading.Lock(),
    )


def _check_preprocessing(pre: Preprocessor, processor: Any) -> None:
    """Refuse to start if our pre-processing does not reproduce the processor's (new processor kinds)."""
    from .onnx_export import sample_images

    probes = sample_images(pre.spec, 2, sizes=[(161, 97), (83, 129)])
    diff = pre.verify_against(processor, probes)
    if diff > 1e-6:
        raise ConfigurationError(
            f"pre-processing of {type(processor).__name__} is not reproduced (max |Δ| {diff:.3g}); this processor kind needs support in preprocess.py"
        )


def _onnx_export_for(
    resolved: ResolvedModel, version: str, settings: Settings, *, int8: bool
) -> Path:
    """A directory with an ONNX export of the checkpoint: beside it if present, else exported into the cache."""
    from .onnx_export import FP32_FILE, INT8_FILE, export_onnx, read_metadata

    wanted = INT8_FILE if int8 else FP32_FILE
    if resolved.is_local:
        for candidate in (Path(resolved.location), Path(resolved.location) / "onnx"):
            meta = read_metadata(candidate)
            if meta and (candidate / wanted).is_file() and meta.get("model_version") == version:
                return candidate
    key = hashlib.sha256(f"{resolved.location}\0{version}".encode()).hexdigest()[:24]
    out = Path(settings.model_cache_dir or "var/models") / "onnx" / key
    meta = read_metadata(out)  # written last: its presence marks a complete export
    if meta and (out / FP32_FILE).is_file():
        if int8 and not (out / INT8_FILE).is_file():
            from .onnx_export import quantize_int8

            quantize_int8(out / FP32_FILE, out / INT8_FILE)
        return out
    log.info("exporting ONNX graph", extra={"model": resolved.reference, "into": str(out)})
    export_onnx(resolved.location, out, int8=int8, settings=settings)
    return out


class TransformersDetector(Detector):
    """Detector over a transformers object-detection checkpoint, in this process."""

    def __init__(
        self,
        loaded: LoadedModel,
        thresholds: ClassThresholds,
        *,
        model_name: str,
        batch_size: int = 4,
    ):
        self.loaded = loaded
        self.thresholds = thresholds
        self.model_name = model_name
        self.model_version = loaded.version
        self.batch_size = max(1, batch_size)
        self.id2label = {int(k): v for k, v in loaded.config.id2label.items()}

    @classmethod
    def from_settings(cls, target: str, settings: Settings) -> TransformersDetector:
        """Build from ``TRAFFIC_DETECTOR=local:<target>``; the model loads once per process."""
        loaded = load_model(target, settings)
        return cls(
            loaded, settings.thresholds, model_name=settings.detector_model_name or target, batch_size=settings.detector_batch_size
        )

    @property
    def runtime(self) -> str:
        return self.loaded.runtime

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "runtime": self.runtime}

    def warmup(self) -> None:
        from .onnx_export import sample_images

        self.detect(
            [
                ImageInput(img)
                for img in sample_images(self.loaded.preprocessor.spec, 1, sizes=[(640, 480)])
            ]
        )

    def detect(self, batch: Sequence[ImageInput]) -> list[list[Detection]]:
        results: list[list[Detection]] = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            raw = self.raw_detections([item.image for item in chunk])
            for item, (labels, scores, boxes) in zip(chunk, raw, strict=True):
                width, height = item.size
                results.append(
                    to_traffic_detections(
                        labels,
                        scores,
                        boxes,
                        width=width,
                        height=height,
                        thresholds=self.thresholds,
                    )
                )
        return results

    def raw_detections(
        self, images: Sequence[Any], threshold: float | None = None
    ) -> list[tuple[list[str], list[float], list[list[float]]]]:
        """Every label the model reports (traffic or not) above ``threshold`` (default: the lowest class threshold)."""
        threshold = self.thresholds.minimum if threshold is None else threshold
        pre = self.loaded.preprocessor
        on_gpu = self.loaded.runtime.startswith("cuda")
        # On a GPU the resize/normalise runs there too (the CPU path would dominate a ~5 ms forward).
        arrays = [] if on_gpu else [pre.image_array(im) for im in images]
        shapes = [pre.spec.output_size(im.width, im.height) for im in images] if on_gpu else [a.shape[1:] for a in arrays]
        out: list[Any] = [None] * len(images)
        for indices in self._groups(shapes):
            if on_gpu:
                inputs = gpu_batch([images[i] for i in indices], pre.spec)
            else:
                inputs = pre.collate([arrays[i] for i in indices])
            with (
                self.loaded.lock
            ):  # one forward at a time: concurrent ones would fight over the cores
                logits, boxes = self.loaded.forward(inputs)
            sizes = [(images[i].height, images[i].width) for i in indices]
            processed = self.loaded.processor.post_process_object_detection(
                _Outputs(logits, boxes), threshold=threshold, target_sizes=sizes
            )
            for i, res in zip(indices, processed, strict=True):
                out[i] = (
                    [self.id2label[int(label)] for label in res["labels"].tolist()],
                    res["scores"].tolist(),
                    res["boxes"].tolist(),
                )
        return out

    def _groups(self, shapes: Sequence[tuple[int, ...]]) -> list[list[int]]:
        """Indices that share one forward: all (padded with a mask) or one group per input size."""
        if self.loaded.takes_mask or len(shapes) == 1:
            return [list(range(len(shapes)))]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, shape in enumerate(shapes):
            by_shape.setdefault(tuple(shape), []).append(i)
        return list(by_shape.values())


__all__ = ["LoadedModel", "TransformersDetector", "clear_model_cache", "load_model"]
