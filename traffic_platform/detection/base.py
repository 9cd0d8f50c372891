"""The detector interface every backend implements.

A detector takes decoded images (one or a batch) and returns, per image, the road
users in it as :class:`~traffic_platform.domain.detections.Detection` objects (traffic
classes only, per-class thresholds applied, boxes in original-image pixels). It
names the model (``model_name``) and its version (checkpoint revision or a hash of
the weights), which are stored beside every detection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..domain.detections import ClassThresholds, Detection

if TYPE_CHECKING:
    from PIL import Image

    from ..domain.images import DecodedImage


@dataclass(frozen=True)
class ImageInput:
    """An image as the detectors receive it.

    ``image`` is the decoded RGB picture (EXIF orientation applied) that in-process
    backends use; ``data`` are the original encoded bytes that remote backends send
    as they are (no re-encoding, no object-store link).
    """

    image: Image.Image
    data: bytes | None = None
    content_type: str | None = None

    @classmethod
    def of(cls, decoded: DecodedImage) -> ImageInput:
        """The detector's view of a decoded upload (picture, original bytes, content type)."""
        return cls(image=decoded.image, data=decoded.data, content_type=decoded.content_type)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


class Detector(ABC):
    """Base class of every detector backend. Create once per process; ``detect`` is thread-safe."""

    model_name: str
    model_version: str
    thresholds: ClassThresholds

    @abstractmethod
    def detect(self, batch: Sequence[ImageInput]) -> list[list[Detection]]:
        """Detections for each image of ``batch``, in the same order."""

    def detect_one(self, image: ImageInput) -> list[Detection]:
        return self.detect([image])[0]

    def warmup(self) -> None:  # noqa: B027 - optional hook
        """Run anything slow (first forward, compilation) before serving; default: nothing."""

    def describe(self) -> dict[str, str]:
        return {"model_name": self.model_name, "model_version": self.model_version}
