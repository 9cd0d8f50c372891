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

import io
import json
import logging
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from traffic_platform.config import Settings
from traffic_platform.domain.errors import BadRequest, PayloadTooLarge, UnsupportedImage

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

    Raises:
        UnsupportedImage: the content type is not an image type we accept (HTTP 415).
        BadRequest: the body is empty or not a decodable image (HTTP 400).
        PayloadTooLarge: the body or the picture exceeds the configured limits (HTTP 413).
    """
    ctype = media_type(content_type)
    if ctype not in SUPPORTED_CONTENT_TYPES:
        raise UnsupportedImage(
            f"Content type {content_type!r} is not supported; send the image bytes as "
            f"{', '.join(SUPPORTED_CONTENT_TYPES)}."
        )
    body = bytes(request_body)
    if not body:
        raise BadRequest("The request body is empty; send the image bytes.", code="empty_body")
    limits = settings()
    if len(body) > limits.max_upload_bytes:
        raise PayloadTooLarge(
            f"The image is {len(body)} bytes; the limit is {limits.max_upload_bytes}."
        )
    return decode_image(body, max_pixels=limits.max_pixels)


def decode_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Bytes -> RGB picture with EXIF orientation applied; the pixel limit is checked before decoding."""
    from PIL import Image, UnidentifiedImageError

    from traffic_platform.domain.pixels import apply_orientation, exif_orientation, to_rgb

    try:
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise PayloadTooLarge(
                    f"The image has {width}x{height} = {width * height} pixels; the limit is {max_pixels}."
                )
            opened.load()
            return to_rgb(apply_orientation(opened, exif_orientation(opened)))
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as exc:
        raise BadRequest(
            f"The request body could not be decoded as an image: {exc}", code="undecodable_image"
        ) from None


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
    "decode_image",
    "input_fn",
    "model_fn",
    "output_fn",
    "predict_fn",
]
