"""Build the configured detector from ``TRAFFIC_DETECTOR`` (the only place that reads the spec).

    local:<hub id | directory | s3://…>   in-process transformers model
    onnx:<path | s3://…>                  end-to-end ONNX graph (RT-DETR / D-FINE / DEIM exports)
    sagemaker:<endpoint name>             remote SageMaker endpoint, sent the image bytes
"""

from __future__ import annotations

from ..config import Settings
from ..domain.errors import ConfigurationError
from .base import Detector


def build_detector(settings: Settings) -> Detector:
    kind, _, target = settings.detector.partition(":")
    if not target:
        raise ConfigurationError(f"TRAFFIC_DETECTOR={settings.detector!r} names no model.")
    if kind == "local":
        from .transformers_backend import TransformersDetector

        return TransformersDetector.from_settings(target, settings)
    if kind == "onnx":
        from .onnx_e2e import OnnxEndToEndDetector

        return OnnxEndToEndDetector.from_settings(target, settings)
    if kind == "sagemaker":
        from .sagemaker import SageMakerDetector

        return SageMakerDetector.from_settings(target, settings)
    raise ConfigurationError(f"TRAFFIC_DETECTOR kind {kind!r} is not local, onnx or sagemaker.")
