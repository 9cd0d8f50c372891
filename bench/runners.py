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


def onnx_e2e_runner(model: str | Path, *, threads: int, threshold: float) -> Runner:
    """An end-to-end ONNX export (a local ``.onnx`` file or a directory holding one): every label
    above ``threshold``, one ``session.run`` per call (a list of images is one batch)."""
    from traffic_platform.config import Settings
    from traffic_platform.detection.onnx_e2e import OnnxEndToEndDetector, resolve_model

    path, name = resolve_model(str(model), Settings(detector_threads=threads))
    detector = OnnxEndToEndDetector(path, model_name=name, threads=threads)
    return as_runner(lambda images: detector.raw_detections(images, threshold))


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
    return as_runner(detector.raw_detections)
