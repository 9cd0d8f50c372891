"""Detector backend for end-to-end real-time DETR ONNX exports (RT-DETR, D-FINE, DEIM, DEIMv2).

These exports carry their post-processing inside the graph. The contract::

    inputs   images             N×3×H×W float, RGB, resized to the model size, scaled (and
                                optionally normalised) as the sidecar says
             orig_target_sizes  N×2 int64, (width, height) of each original image
    outputs  labels             N×K int64 class ids
             boxes              N×K×4 xyxy in original-image pixels
             scores             N×K in [0, 1]

Metadata sidecar (optional, JSON, next to the ``.onnx`` file; the first found wins key by
key, in this order): ``<model stem>.json``, ``model_info.json``, ``config.json``. Keys::

    input_size  320 | [height, width] | {"height": 320, "width": 320}
                (default: the graph's static H×W; required when H/W are dynamic)
    scale       factor applied to 0..255 pixels (default 1/255)
    mean, std   3 floats applied after scaling, (x*scale - mean) / std (default none)
    id2label    a list (index = id), a mapping {"0": "person", ...}, or "coco80" / "coco91"
                (default "coco80": COCO-80 contiguous ids, as DEIMv2 and D-FINE exports use;
                RT-DETR exports with remapped COCO category ids need "coco91")

Unknown keys are ignored, so the DEIMv2 folder's ``model_info.json`` works as it is, and a
Hugging Face ``config.json`` contributes its ``id2label``.

Pre-processing is one bilinear resize (what the exports' ``Resize`` on a PIL image does) into
a float32 N×3×H×W buffer, scaled and normalised in place. ``reduced_decode``: decoding JPEG
bytes at 1/2-1/8 scale (``Image.draft``) only pays when the picture has not been decoded yet.
Measured for a 320×320 model on one shared 2-core host (Pillow 13, interleaved runs, best of
25): reduced decode + resize vs resizing the already decoded picture: 640×360 2.3 vs 1.6 ms,
1280×720 4.0 vs 4.0, 810×1080 6.4 vs 4.8, 1920×1080 13.8 vs 7.4, 2000×1333 23.8 vs 9.1
(a full decode alone: 0.8, 5.7, 6.4, 23.3, 28.1 ms): it beats full decode + resize, never
the resize of a picture the caller already decoded (ingest decodes fully for its checks).
So ``"auto"`` (default) uses it for a picture still lazy from ``Image.open``.

Runtime (``TRAFFIC_DETECTOR_RUNTIME``): ``onnx`` (ONNX Runtime fp32, the reference),
``openvino`` (OpenVINO fp32), ``openvino-bf16`` (OpenVINO at bf16 inference precision) or
``openvino-mixed`` (bf16 backbone + encoder, fp32 after them; :mod:`.openvino_runtime`); the
lossy ones' F1 against ONNX Runtime on DEIMv2 is in :data:`.runtime.FIDELITY`; ``auto`` per
:func:`.runtime.choose_runtime`. The graph, the pre-processing and the decoding of its outputs
are the same for all of them, so are the output format and the per-class thresholds; a bf16
runtime tags ``model_version`` (``+bf16``, ``+bf16mix``).

``TRAFFIC_DETECTOR=onnx:<file.onnx | directory | s3://bucket/key.onnx | s3://bucket/prefix/>``.
An S3 model is fetched through the shared model cache (:mod:`.model_cache`: a folder per set of
objects + ETags in ``TRAFFIC_MODEL_CACHE_DIR``, with a completion marker), together with any
sidecar next to it; a model replaced under the same URI is fetched again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..domain.detections import ClassThresholds, Detection, to_traffic_detections
from ..domain.errors import ConfigurationError
from . import model_cache
from .base import Detector, ImageInput

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from ..config import Settings

log = logging.getLogger(__name__)

INPUT_IMAGES = "images"
INPUT_SIZES = "orig_target_sizes"
OUTPUTS = ("labels", "boxes", "scores")
SIDECAR_NAMES = ("{stem}.json", "model_info.json", "config.json")
REDUCED_DECODE_POLICIES = ("auto", "always", "never")

COCO80: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
# COCO category ids (1..90) that the 80 classes skip.
_COCO91_GAPS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
COCO91: dict[int, str] = dict(
    zip([i for i in range(1, 91) if i not in _COCO91_GAPS], COCO80, strict=True)
)

_NUMPY_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
                "tensor(int64)": "int64", "tensor(int32)": "int32"}  # fmt: skip


@dataclass(frozen=True)
class ModelMetadata:
    """What the graph cannot say about itself: input size, scaling, label map."""

    input_size: tuple[int, int] | None = None  # (height, width)
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    id2label: Mapping[int, str] = field(default_factory=lambda: dict(enumerate(COCO80)))
    sources: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "metadata") -> ModelMetadata:
        """Parse sidecar keys; unknown keys are ignored. Errors name ``source`` and the key."""
        kwargs: dict[str, Any] = {"sources": (source,)}
        try:
            if data.get("input_size") is not None:
                kwargs["input_size"] = _parse_size(data["input_size"])
            if data.get("scale") is not None:
                kwargs["scale"] = float(data["scale"])
            for key in ("mean", "std"):
                if data.get(key) is not None:
                    values = tuple(float(v) for v in data[key])
                    if len(values) != 3:
                        raise ValueError(f"{key} needs 3 values (R, G, B), got {len(values)}")
                    if key == "std" and any(v == 0 for v in values):
                        raise ValueError("std values must be non-zero")
                    kwargs[key] = values
            if data.get("id2label") is not None:
                kwargs["id2label"] = _parse_id2label(data["id2label"])
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigurationError(
                f"ONNX model metadata {source} is invalid: {exc}. Expected keys: input_size "
                "(int, [height, width] or {height, width}), scale, mean, std (3 floats), "
                "id2label (list, {id: name} or 'coco80'/'coco91')."
            ) from None
        return cls(**kwargs)

    @classmethod
    def for_model(cls, model_path: Path) -> ModelMetadata:
        """Merge the sidecars next to ``model_path`` (earlier names win key by key)."""
        merged: dict[str, Any] = {}
        sources: list[str] = []
        for pattern in reversed(SIDECAR_NAMES):
            path = model_path.with_name(pattern.format(stem=model_path.stem))
            if not path.is_file():
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigurationError(
                    f"ONNX model metadata {path} is not valid JSON: {exc}"
                ) from None
            if not isinstance(data, dict):
                raise ConfigurationError(f"ONNX model metadata {path} must hold a JSON object.")
            # config.json (Hugging Face) only contributes its label map.
            keys = ("id2label",) if pattern == "config.json" else tuple(data)
            merged.update({k: data[k] for k in keys if k in data})
            sources.insert(0, str(path))
        meta = cls.from_mapping(merged, source=" + ".join(sources) or "defaults")
        return meta


def _parse_size(raw: Any) -> tuple[int, int]:
    if isinstance(raw, bool):
        raise ValueError("input_size must be a number or a pair")
    if isinstance(raw, int | float):
        height = width = raw
    elif isinstance(raw, Mapping):
        height, width = raw["height"], raw["width"]
    else:
        height, width = raw
    size = (int(height), int(width))
    if min(size) <= 0 or size != (height, width):
        raise ValueError(f"input_size must be positive integers, got {raw!r}")
    return size


def _parse_id2label(raw: Any) -> dict[int, str]:
    if isinstance(raw, str):
        presets = {"coco80": dict(enumerate(COCO80)), "coco91": COCO91}
        if raw.lower() not in presets:
            raise ValueError(f"id2label preset must be 'coco80' or 'coco91', got {raw!r}")
        return dict(presets[raw.lower()])
    if isinstance(raw, Mapping):
        return {int(k): str(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return {i: str(v) for i, v in enumerate(raw)}
    raise ValueError(
        f"id2label must be a list, a mapping or a preset name, got {type(raw).__name__}"
    )


class OnnxEndToEndDetector(Detector):
    """An end-to-end DETR ONNX graph run by ONNX Runtime or OpenVINO. Create once; ``detect`` is
    thread-safe.

    ONNX Runtime's ``InferenceSession.run`` may be called from several threads at once, an
    OpenVINO graph keeps one infer request per thread, and every buffer here is local to a
    call, so no lock is needed.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        model_name: str | None = None,
        threads: int = 1,
        thresholds: ClassThresholds | None = None,
        metadata: ModelMetadata | None = None,
        reduced_decode: str = "auto",
        runtime: str = "onnx",
        cache_dir: str | Path | None = None,
    ) -> None:
        import numpy as np

        from .runtime import E2E_RUNTIMES, LOSSY_SUFFIX, require_native_bf16

        if reduced_decode not in REDUCED_DECODE_POLICIES:
            raise ConfigurationError(
                f"reduced_decode must be one of {', '.join(REDUCED_DECODE_POLICIES)}, got {reduced_decode!r}."
            )
        self.reduced_decode = reduced_decode
        path = Path(model_path)
        self.model_path = path
        self.model_name = model_name or path.name
        if runtime not in E2E_RUNTIMES:
            raise ConfigurationError(
                f"TRAFFIC_DETECTOR_RUNTIME={runtime} cannot run an end-to-end ONNX graph; "
                f"use auto or one of {', '.join(E2E_RUNTIMES)}."
            )
        require_native_bf16(runtime)
        self.runtime = runtime
        self.model_version = file_sha256(path)[:16] + LOSSY_SUFFIX.get(runtime, "")
        self.thresholds = thresholds or ClassThresholds()
        self.metadata = metadata if metadata is not None else ModelMetadata.for_model(path)
        self._session = (
            self._onnxruntime_session(path, threads)
            if runtime == "onnx"
            else self._openvino_graph(path, runtime, threads, cache_dir)
        )
        self._check_contract()

        mean = (
            np.zeros(3)
            if self.metadata.mean is None
            else np.asarray(self.metadata.mean, dtype=np.float64)
        )
        std = (
            np.ones(3)
            if self.metadata.std is None
            else np.asarray(self.metadata.std, dtype=np.float64)
        )
        # x' = (x * scale - mean) / std = x * (scale / std) - mean / std, applied in place.
        self._mul = (self.metadata.scale / std).astype(np.float32).reshape(1, 3, 1, 1)
        self._sub = (mean / std).astype(np.float32).reshape(1, 3, 1, 1)
        self._normalise = bool(np.any(self._sub != 0))

    def _onnxruntime_session(self, path: Path, threads: int) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle intra-op threads spin by default; on a small shared host that steals the core
        # the request thread and the persistence worker need (bench/ingest.py: 41 -> 29 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ConfigurationError(f"ONNX Runtime cannot load {self.model_name}: {exc}") from None

    def _openvino_graph(
        self, path: Path, runtime: str, threads: int, cache_dir: str | Path | None
    ) -> Any:
        try:
            from .openvino_runtime import open_graph

            return open_graph(path, runtime=runtime, threads=threads, cache_dir=cache_dir)
        except Exception as exc:  # ImportError, or OpenVINO's own errors on a bad graph
            raise ConfigurationError(f"OpenVINO cannot load {self.model_name}: {exc}") from None

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_settings(cls, target: str, settings: Settings) -> OnnxEndToEndDetector:
        """``target``: a ``.onnx`` file, a directory holding one, or an ``s3://`` URI."""
        from .runtime import E2E_RUNTIMES, choose_runtime

        path, name = resolve_model(target, settings)
        requested = settings.detector_runtime
        if requested != "auto" and requested not in E2E_RUNTIMES:
            # A transformers runtime (torch, cuda, ...) names nothing for a graph: its fp32 reference.
            log.warning(
                "TRAFFIC_DETECTOR_RUNTIME=%s does not apply to an ONNX graph; using onnx", requested
            )
            requested = "onnx"
        runtime = choose_runtime(requested, model_type=None, end_to_end=True)
        kwargs: dict[str, Any] = {
            "model_name": settings.detector_model_name or name,
            "threads": settings.threads,
            "thresholds": settings.thresholds,
            "cache_dir": Path(settings.model_cache_dir or settings.home / "models") / "openvino",
        }
        try:
            return cls(path, runtime=runtime, **kwargs)
        except ConfigurationError:
            if requested != "auto" or runtime == "onnx":
                raise
            # auto: OpenVINO could not compile this graph; ONNX Runtime is the reference anyway.
            return cls(path, runtime="onnx", **kwargs)

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "runtime": self.runtime}

    def _check_contract(self) -> None:
        name = self.model_name
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = [o.name for o in self._session.get_outputs()]
        hint = (
            f"an end-to-end DETR export needs inputs {INPUT_IMAGES!r} (N×3×H×W float) and "
            f"{INPUT_SIZES!r} (N×2 int64) and outputs {', '.join(map(repr, OUTPUTS))} "
            "(export with post-processing inside, e.g. the RT-DETR/D-FINE/DEIM export_onnx.py tools; "
            "a graph without it is not supported by the onnx: detector)"
        )
        missing = [n for n in (INPUT_IMAGES, INPUT_SIZES) if n not in inputs]
        if missing:
            raise ConfigurationError(
                f"ONNX graph {name} lacks input(s) {', '.join(map(repr, missing))} (it has {sorted(inputs)}): {hint}."
            )
        extra = sorted(set(inputs) - {INPUT_IMAGES, INPUT_SIZES})
        if extra:
            raise ConfigurationError(f"ONNX graph {name} has unexpected input(s) {extra}: {hint}.")
        missing_out = [n for n in OUTPUTS if n not in outputs]
        if missing_out:
            raise ConfigurationError(
                f"ONNX graph {name} lacks output(s) {', '.join(map(repr, missing_out))} (it has {outputs}): {hint}."
            )
        images, sizes = inputs[INPUT_IMAGES], inputs[INPUT_SIZES]
        if (
            images.type not in ("tensor(float)", "tensor(float16)", "tensor(double)")
            or len(images.shape) != 4
        ):
            raise ConfigurationError(
                f"ONNX graph {name}: input {INPUT_IMAGES!r} must be a 4-D float tensor, got {images.type} {images.shape}: {hint}."
            )
        if isinstance(images.shape[1], int) and images.shape[1] != 3:
            raise ConfigurationError(
                f"ONNX graph {name}: input {INPUT_IMAGES!r} must have 3 (RGB) channels, got shape {images.shape}."
            )
        if sizes.type not in _NUMPY_TYPES or len(sizes.shape) != 2:
            raise ConfigurationError(
                f"ONNX graph {name}: input {INPUT_SIZES!r} must be an N×2 integer tensor, got {sizes.type} {sizes.shape}."
            )
        self._image_dtype = _NUMPY_TYPES[images.type]
        self._sizes_dtype = _NUMPY_TYPES[sizes.type]

        batch = images.shape[0]
        self.fixed_batch: int | None = batch if isinstance(batch, int) and batch > 0 else None
        static = images.shape[2:]
        static_size = tuple(static) if all(isinstance(d, int) and d > 0 for d in static) else None
        wanted = self.metadata.input_size
        if wanted is None and static_size is None:
            raise ConfigurationError(
                f"ONNX graph {name} has a dynamic input size {images.shape}; set it in a sidecar "
                f'{self.model_path.stem}.json next to the model, e.g. {{"input_size": [640, 640]}} '
                "(height, width)."
            )
        if wanted is not None and static_size is not None and tuple(wanted) != static_size:
            raise ConfigurationError(
                f"ONNX graph {name} takes {static_size[0]}×{static_size[1]} (height×width) images but its "
                f"metadata ({', '.join(self.metadata.sources)}) says input_size {list(wanted)}; fix or remove input_size."
            )
        self.input_height, self.input_width = wanted or static_size  # type: ignore[misc]

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` the graph is fed."""
        return (self.input_height, self.input_width)

    # ----------------------------------------------------------------- inference
    def detect(self, batch: Sequence[ImageInput]) -> list[list[Detection]]:
        results: list[list[Detection]] = []
        for outputs, sizes, real in self._runs(batch):
            results.extend(self.postprocess(outputs, sizes)[:real])
        return results

    def _runs(self, batch: Sequence[ImageInput]):
        """``(outputs, sizes, n real images)`` per ``session.run``: one for the whole batch,
        or per chunk of a graph exported with a fixed batch (the last chunk padded)."""
        step = self.fixed_batch or len(batch)
        for start in range(0, len(batch), max(1, step)):
            chunk = list(batch[start : start + step])
            real = len(chunk)
            if self.fixed_batch and real < self.fixed_batch:
                chunk += [chunk[-1]] * (self.fixed_batch - real)
            tensor, sizes = self.preprocess(chunk)
            yield self.forward(tensor, sizes), sizes, real

    def warmup(self) -> None:
        from PIL import Image

        self.detect(
            [ImageInput(Image.new("RGB", (self.input_width, self.input_height), (114, 114, 114)))]
        )

    def preprocess(self, batch: Sequence[ImageInput]) -> tuple[np.ndarray, np.ndarray]:
        """The graph's two inputs for ``batch``: the N×3×H×W tensor and the N×2 (width, height) sizes."""
        import numpy as np

        n = len(batch)
        tensor = np.empty((n, 3, self.input_height, self.input_width), dtype=np.float32)
        sizes = np.empty((n, 2), dtype=np.int64)
        for i, item in enumerate(batch):
            resized = self.resized_rgb(item)
            # uint8 HWC -> float32 CHW in one strided copy into the batch buffer.
            tensor[i] = np.asarray(resized).transpose(2, 0, 1)
            sizes[i] = item.size
        tensor *= self._mul
        if self._normalise:
            tensor -= self._sub
        if self._image_dtype != "float32":
            tensor = tensor.astype(self._image_dtype)
        if self._sizes_dtype != "int64":
            sizes = sizes.astype(self._sizes_dtype)
        return tensor, sizes

    def resized_rgb(self, item: ImageInput) -> Image.Image:
        """``item`` as an RGB picture of the model's input size (one bilinear resize).

        Reduced decode: a JPEG whose bytes are at hand can be decoded at 1/2, 1/4 or 1/8
        scale (``Image.draft``, the smallest scale still at least the input size), which
        skips most of a full decode. It only pays when the picture has *not* been decoded
        yet: re-decoding the bytes costs more than resizing an already-decoded picture
        (measured: see the module docstring). So with ``"auto"`` it is used
        for a picture that is still lazy (``Image.open`` without ``load``); ``"always"``
        uses it whenever JPEG bytes are given, ``"never"`` never.
        """
        from PIL import Image

        from ..domain.images import decode_resized, is_undecoded

        size = (self.input_width, self.input_height)
        if self.reduced_decode != "never" and item.data is not None:
            if self.reduced_decode == "always" or is_undecoded(item.image):
                drafted = decode_resized(item.data, size, item.image.size)
                if drafted is not None:
                    return drafted

        image = item.image if item.image.mode == "RGB" else item.image.convert("RGB")
        return image if image.size == size else image.resize(size, Image.Resampling.BILINEAR)

    def forward(
        self, tensor: np.ndarray, sizes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One ``session.run``: ``(labels, boxes, scores)``."""
        labels, boxes, scores = self._session.run(
            list(OUTPUTS), {INPUT_IMAGES: tensor, INPUT_SIZES: sizes}
        )
        return labels, boxes, scores

    def postprocess(
        self, outputs: tuple[np.ndarray, np.ndarray, np.ndarray], sizes: np.ndarray
    ) -> list[list[Detection]]:
        """Road users per image: label names, per-class thresholds and clipping via
        :func:`~traffic_platform.domain.detections.to_traffic_detections`."""
        results = []
        for (names, scores, boxes), (width, height) in zip(
            self.raw_outputs(outputs, self.thresholds.minimum), sizes.tolist(), strict=True
        ):
            results.append(
                to_traffic_detections(
                    names,
                    scores,
                    boxes,
                    width=int(width),
                    height=int(height),
                    thresholds=self.thresholds,
                )
            )
        return results

    def raw_outputs(
        self, outputs: tuple[np.ndarray, np.ndarray, np.ndarray], threshold: float
    ) -> list[tuple[list[str], list[float], list[list[float]]]]:
        """Every label (traffic or not) scoring at least ``threshold``, score-descending, boxes
        as the graph gave them (original pixels, not clipped); non-finite rows dropped."""
        import numpy as np

        labels, boxes, scores = outputs
        id2label = self.metadata.id2label
        results = []
        for i in range(len(scores)):
            s = np.asarray(scores[i], dtype=np.float64)
            b = np.asarray(boxes[i], dtype=np.float64).reshape(-1, 4)
            keep = np.flatnonzero((s >= threshold) & np.isfinite(b).all(axis=1))
            keep = keep[np.argsort(-s[keep], kind="stable")]
            names = [id2label.get(int(label), f"class_{int(label)}") for label in labels[i][keep]]
            results.append((names, s[keep].tolist(), b[keep].tolist()))
        return results

    def raw_detections(
        self, images: Sequence[Image.Image | ImageInput], threshold: float | None = None
    ) -> list[tuple[list[str], list[float], list[list[float]]]]:
        """``(labels, scores, boxes)`` per image for every label the model reports above
        ``threshold`` (default: the lowest class threshold); the parity view (``bench/runners.py``).
        One ``session.run`` per batch (per fixed-size chunk for a fixed-batch graph)."""
        items = [im if isinstance(im, ImageInput) else ImageInput(im) for im in images]
        floor = self.thresholds.minimum if threshold is None else threshold
        out: list[tuple[list[str], list[float], list[list[float]]]] = []
        for outputs, _, real in self._runs(items):
            out.extend(self.raw_outputs(outputs, floor)[:real])
        return out


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------- locating the model
def resolve_model(target: str, settings: Settings) -> tuple[Path, str]:
    """``(local .onnx path, model name)`` for a file, a directory or an ``s3://`` URI."""
    if target.startswith("s3://"):
        return fetch_s3_model(target, settings)
    path = Path(target).expanduser()
    if path.is_dir():
        candidates = sorted(path.glob("*.onnx"))
        if len(candidates) != 1:
            found = ", ".join(c.name for c in candidates) or "none"
            raise ConfigurationError(
                f"TRAFFIC_DETECTOR=onnx:{target}: the directory must hold exactly one .onnx file (found {found}); name the file instead."
            )
        path = candidates[0]
    elif not path.is_file():
        raise ConfigurationError(
            f"TRAFFIC_DETECTOR=onnx:{target}: no such .onnx file or directory."
        )
    return path, path.name


def fetch_s3_model(uri: str, settings: Settings, *, client: Any = None) -> tuple[Path, str]:
    """``(local path, object URI)`` of ``s3://bucket/key.onnx`` (or of the one ``.onnx`` under
    ``s3://bucket/prefix/``) and its sidecars, through the shared model cache
    (:mod:`.model_cache`: fetched again only when an ETag changed)."""
    label = f"TRAFFIC_DETECTOR=onnx:{uri}"

    def select(client_: Any, bucket: str, key: str) -> list[model_cache.S3Object]:
        if key.endswith(".onnx"):
            model = model_cache.head(client_, bucket, key, key.rsplit("/", 1)[-1])
            if model is None:
                raise model_cache.ArtifactMissing(
                    f"{label}: cannot read s3://{bucket}/{key}: no such object."
                )
        else:
            prefix = key.rstrip("/") + "/" if key else ""
            listed = model_cache.listing(client_, bucket, prefix, delimiter="/")
            models = [o for o in listed if o["Key"].endswith(".onnx")]
            if len(models) != 1:
                error = ConfigurationError if models else model_cache.ArtifactMissing
                raise error(
                    f"{label}: expected exactly one .onnx object under the prefix, found {[o['Key'] for o in models] or 'none'}."
                )
            model = model_cache.listed(models[0], models[0]["Key"].rsplit("/", 1)[-1])
        folder, stem = model.key[: -len(model.dest)], model.dest[: -len(".onnx")]
        names = dict.fromkeys(pattern.format(stem=stem) for pattern in SIDECAR_NAMES)
        # Optional: absent (404), or unlistable (403 when the role may not list the bucket).
        sidecars = [model_cache.head(client_, bucket, folder + n, n, optional=True) for n in names]
        return [model, *(s for s in sidecars if s is not None)]

    entry = model_cache.fetch(uri, settings, select, label=label, client=client)
    bucket = model_cache.split_uri(uri, label)[0]
    key = next(k for k in model_cache.cached_objects(entry) if k.endswith(".onnx"))
    return entry / key.rsplit("/", 1)[-1], f"s3://{bucket}/{key}"


__all__ = [
    "COCO80",
    "COCO91",
    "ModelMetadata",
    "OnnxEndToEndDetector",
    "fetch_s3_model",
    "file_sha256",
    "resolve_model",
]
