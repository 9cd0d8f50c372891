"""Benchmark runners over the platform's detectors: ``list[PIL.Image] -> [[(label, score, box)]]``.

Benchmark-only code, kept out of the package: ``bench/detect.py`` registers these as
runtimes, and the ONNX end-to-end tests check the runner's contract.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RawDet = tuple[str, float, Sequence[float]]
Runner = Callable[[list[Any]], list[list[RawDet]]]


def as_runner(raw_detections: Callable[[list[Any]], list[tuple[list, list, list]]]) -> Runner:
    """Turn a detector's ``raw_detections`` (``(labels, scores, boxes)`` per image) into a runner."""

    def run(images: list[Any]) -> list[list[RawDet]]:
        return [
            list(zip(labels, scores, boxes, strict=True))
            for labels, scores, boxes in raw_detections(images)
        ]

    return run


def onnx_e2e_runner(
    model: str | Path,
    *,
    threads: int,
    threshold: float,
    runtime: str = "onnx",
    cache_dir: Path | None = None,
) -> Runner:
    """An end-to-end ONNX export (a local ``.onnx`` file or a directory holding one): every label
    above ``threshold``, one ``session.run`` per call (a list of images is one batch), on
    ``runtime`` (``onnx``, ``openvino``, ``openvino-bf16`` or ``auto``). The runner's
    ``runtime`` attribute names the runtime that runs (what ``auto`` chose)."""
    from traffic_platform.config import Settings
    from traffic_platform.detection.onnx_e2e import OnnxEndToEndDetector, resolve_model
    from traffic_platform.detection.runtime import choose_runtime

    path, name = resolve_model(str(model), Settings(detector_threads=threads))
    chosen = choose_runtime(runtime, model_type=None, end_to_end=True)
    detector = OnnxEndToEndDetector(
        path, model_name=name, threads=threads, runtime=chosen, cache_dir=cache_dir
    )
    run = as_runner(lambda images: detector.raw_detections(images, threshold))
    run.runtime = detector.runtime  # type: ignore[attr-defined]
    return run


def transformers_runner(
    model: str, *, runtime: str, threads: int, threshold: float, cache_dir: Path
) -> Runner:
    """Our in-process transformers detector on ``runtime``, every label above ``threshold``."""
    from traffic_platform.config import Settings
    from traffic_platform.detection.transformers_backend import TransformersDetector
    from traffic_platform.domain.detections import ClassThresholds

    settings = Settings(
        home=cache_dir,
        model_cache_dir=cache_dir / "models",
        detector_runtime=runtime,
        detector_threads=threads,
        detector_batch_size=64,
        thresholds=ClassThresholds(default=threshold),
    )
    detector = TransformersDetector.from_settings(model, settings)
    run = as_runner(detector.raw_detections)
    run.runtime = detector.runtime  # type: ignore[attr-defined] - what ``auto`` chose
    return run
