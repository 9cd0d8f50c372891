"""Inference script for the Hugging Face inference container on a SageMaker endpoint.

The container (``sagemaker-huggingface-inference-toolkit``) loads this module as
``code/inference.py`` from the model archive and calls, per process and per request::

    model = model_fn(model_dir)                        # once
    data = input_fn(request_body, content_type)        # the image bytes -> a decoded picture
    prediction = predict_fn(data, model)               # detections + model name/version
    body = output_fn(prediction, accept)               # the shared JSON shape

The endpoint is sent the **image bytes** (``image/jpeg``, ``image/png`` or
``application/x-image``), never an object-store link, and answers::

    {"model_name": "...", "model_version": "...", "image_size": [w, h],
     "detections": [{"class": "car", "label": "car", "score": 0.91, "box": [x1, y1, x2, y2]}, ...]}

The model runs in-process through the same backend as the embedded home
(:class:`~traffic_platform.detection.transformers_backend.TransformersDetector`), so
the class mapping, thresholds (``TRAFFIC_SCORE_THRESHOLD`` / ``TRAFFIC_CLASS_THRESHOLDS``
in the endpoint's environment) and box clipping are the ones everything else uses.
The archive therefore needs ``traffic_platform`` installed (``code/requirements.txt``);
imports are absolute so this file can be copied as ``code/inference.py`` unchanged.

:mod:`traffic_platform.detection.model_server` serves these same four functions over
the SageMaker container contract for local runs and tests.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from traffic_platform.config import Settings
from traffic_platform.domain.errors import UnsupportedImage

if TYPE_CHECKING:
    from PIL import Image

    from traffic_platform.detection.base import Detector

log = logging.getLogger(__name__)

#: Content types the endpoint accepts; ``application/x-image`` is what SageMaker's own
#: image examples send when the format is left to the decoder.
SUPPORTED_CONTENT_TYPES: tuple[str, ...] = ("image/jpeg", "image/png", "application/x-image")
#: ``Accept`` values the endpoint answers; all get JSON.
SUPPORTED_ACCEPTS: tuple[str, ...] = ("application/json", "*/*", "application/*")


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The endpoint's settings, read once from its ``TRAFFIC_*`` environment."""
    return Settings.from_env()


def media_type(value: str | None) -> str:
    """``"Image/JPEG; charset=x"`` -> ``"image/jpeg"``; ``None`` -> ``""``."""
    return (value or "").split(";", 1)[0].strip().lower()


def model_fn(model_dir: str) -> Detector:
    """Load the detector once per worker from the unpacked model archive ``model_dir``."""
    from traffic_platform.detection.transformers_backend import (
        TransformersDetector,  # heavy: torch + transformers
    )

    detector = TransformersDetector.from_settings(str(model_dir), settings())
    detector.warmup()
    log.info("model loaded: %s", detector.describe())
    return detector


def input_fn(request_body: bytes | bytearray | memoryview, content_type: str | None) -> Image.Image:
    """Decode the request's image bytes into an RGB picture, EXIF orientation applied.

    The bytes are decoded by :func:`traffic_platform.domain.images.decode_image`, so the
    endpoint refuses exactly what the ingest API refuses, with the same codes.

    Raises:
        UnsupportedImage: the content type is not an image type we accept, the body is
            empty or not a JPEG/PNG (HTTP 415).
        PayloadTooLarge: the body or the picture exceeds the configured limits (HTTP 413).
        DistortedImage: a JPEG/PNG that does not decode, ``image_undecodable`` (HTTP 422).
    """
    ctype = media_type(content_type)
    if ctype not in SUPPORTED_CONTENT_TYPES:
        raise UnsupportedImage(
            f"Content type {content_type!r} is not supported; send the image bytes as "
            f"{', '.join(SUPPORTED_CONTENT_TYPES)}."
        )
    from traffic_platform.domain.images import decode_image

    limits = settings()
    return decode_image(
        bytes(request_body),
        declared_content_type=ctype,
        max_bytes=limits.max_upload_bytes,
        max_pixels=limits.max_pixels,
    ).image


def predict_fn(data: Image.Image, model: Detector) -> dict[str, Any]:
    """Run the detector on one picture; the answer in the shared JSON shape (as a dict)."""
    from traffic_platform.detection.base import ImageInput

    detections = model.detect_one(ImageInput(image=data))
    return {
        "model_name": model.model_name,
        "model_version": model.model_version,
        "image_size": list(data.size),
        "detections": [d.to_dict() for d in detections],
    }


def output_fn(prediction: dict[str, Any], accept: str | None) -> str:
    """Serialise the prediction as JSON; any ``Accept`` other than JSON is refused (HTTP 415)."""
    wanted = [media_type(part) for part in (accept or "").split(",") if part.strip()]
    if wanted and not any(w in SUPPORTED_ACCEPTS for w in wanted):
        raise UnsupportedImage(
            f"Accept {accept!r} is not supported; the endpoint answers application/json.",
            code="unsupported_accept",
        )
    return json.dumps(prediction, separators=(",", ":"))


__all__ = [
    "SUPPORTED_ACCEPTS",
    "SUPPORTED_CONTENT_TYPES",
    "input_fn",
    "model_fn",
    "output_fn",
    "predict_fn",
]
