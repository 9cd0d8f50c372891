"""Image -> model input, equal to the checkpoint's own image processor but cheaper.

transformers' PIL image processors (torchvision is not installable here, so those are
what ``AutoImageProcessor`` returns) copy the image into a channel-first array, back
into a PIL image to resize, then rescale in float64 and normalise in float32. We do the
same arithmetic with fewer copies: PIL resizes the decoded image directly, and rescale +
normalise is one lookup table per channel built from the *same* float operations, so
the result is bit-for-bit what the processor produces (the tests and
:meth:`PreprocessSpec.verify_against` check it).

Everything is read from the processor: ``size`` (``shortest_edge``/``longest_edge``,
``height``/``width`` or ``max_height``/``max_width``), ``resample``, ``do_resize``,
``do_rescale``/``rescale_factor``, ``do_normalize``/``image_mean``/``image_std``,
``do_pad``/``pad_size`` and whether the model takes a ``pixel_mask``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class PreprocessSpec:
    """What the checkpoint's image processor does, as plain values."""

    do_resize: bool
    shortest_edge: int | None
    longest_edge: int | None
    height: int | None
    width: int | None
    max_height: int | None
    max_width: int | None
    resample: int
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    do_pad: bool
    pad_size: tuple[int, int] | None
    returns_pixel_mask: bool
    yolos_sizing: bool = False  # YOLOS rounds its aspect-ratio resize differently

    @classmethod
    def from_processor(cls, processor: Any) -> PreprocessSpec:
        size = processor.size
        get = (lambda k: getattr(size, k, None)) if not isinstance(size, dict) else size.get
        mean = processor.image_mean if processor.image_mean is not None else (0.0, 0.0, 0.0)
        std = processor.image_std if processor.image_std is not None else (1.0, 1.0, 1.0)
        mean = tuple(float(v) for v in (mean if isinstance(mean, (list, tuple)) else [mean] * 3))
        std = tuple(float(v) for v in (std if isinstance(std, (list, tuple)) else [std] * 3))
        pad_size = getattr(processor, "pad_size", None)
        if pad_size is not None:
            pg = (
                (lambda k: getattr(pad_size, k, None))
                if not isinstance(pad_size, dict)
                else pad_size.get
            )
            pad_size = (int(pg("height")), int(pg("width")))
        resample = (
            processor.resample if processor.resample is not None else Image.Resampling.BILINEAR
        )
        return cls(
            do_resize=bool(processor.do_resize),
            shortest_edge=get("shortest_edge"),
            longest_edge=get("longest_edge"),
            height=get("height"),
            width=get("width"),
            max_height=get("max_height"),
            max_width=get("max_width"),
            resample=int(resample),
            do_rescale=bool(processor.do_rescale),
            rescale_factor=float(
                processor.rescale_factor if processor.rescale_factor is not None else 1 / 255
            ),
            do_normalize=bool(processor.do_normalize),
            image_mean=mean,  # type: ignore[arg-type]
            image_std=std,  # type: ignore[arg-type]
            do_pad=bool(getattr(processor, "do_pad", False)),
            pad_size=pad_size,
            returns_pixel_mask="pixel_mask"
            in (getattr(processor, "model_input_names", None) or []),
            yolos_sizing=type(processor).__name__.startswith("Yolos"),
        )

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        """``(height, width)`` every image is resized to, if the processor fixes it."""
        if (
            self.do_resize
            and self.height
            and self.width
            and not (self.shortest_edge and self.longest_edge)
        ):
            return (int(self.height), int(self.width))
        return None

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """``(height, width)`` of the resized image, computed as the processor computes it, but
        never 0: the processor's formulas round the short side of an extreme aspect ratio (a
        20000x1 strip) to 0 px, which no resize accepts; such images fail the quality gate
        (``too_small``) anyway, so the detector only has to survive them."""
        h, w = self._output_size(width, height)
        return (max(1, int(h)), max(1, int(w)))

    def _output_size(self, width: int, height: int) -> tuple[int, int]:
        if not self.do_resize:
            return (height, width)
        if self.shortest_edge and self.longest_edge:
            if self.yolos_sizing:
                from transformers.models.yolos.image_processing_pil_yolos import (
                    get_size_with_aspect_ratio_yolos,
                )

                return tuple(
                    get_size_with_aspect_ratio_yolos(
                        (height, width), self.shortest_edge, self.longest_edge
                    )
                )  # type: ignore[return-value]
            from transformers.image_transforms import get_size_with_aspect_ratio

            return tuple(
                get_size_with_aspect_ratio((height, width), self.shortest_edge, self.longest_edge)
            )  # type: ignore[return-value]
        if self.max_height and self.max_width:
            from transformers.image_utils import get_image_size_for_max_height_width

            return tuple(
                get_image_size_for_max_height_width(
                    (height, width), self.max_height, self.max_width
                )
            )  # type: ignore[return-value]
        if self.height and self.width:
            return (int(self.height), int(self.width))
        if self.shortest_edge:
            short, long = (height, width) if height <= width else (width, height)
            new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
            return (new_short, new_long) if height <= width else (new_long, new_short)
        raise ValueError(f"unsupported processor size settings: {self}")

    def lookup_table(self) -> np.ndarray:
        """``(3, 256)`` float32: the processor's rescale + normalise of every uint8 value, per channel."""
        values = np.arange(256, dtype=np.uint8)
        out = np.empty((3, 256), dtype=np.float32)
        for c in range(3):
            x = values
            if self.do_rescale:  # transformers: float64 multiply, then cast to float32
                x = (values.astype(np.float64) * self.rescale_factor).astype(np.float32)
            x = x.astype(np.float32)
            if self.do_normalize:  # transformers: float32 (x - mean) / std
                x = (x - np.float32(self.image_mean[c])) / np.float32(self.image_std[c])
            out[c] = x
        return out

    def vector_rescale(self) -> tuple[np.float32, bool] | None:
        """``(op, divide)``: one float32 multiply (or divide) that gives :meth:`lookup_table`'s
        values bit for bit for every uint8 value, checked exhaustively; ``None`` if none does.

        Dividing by 255 in float32 rounds exactly as the processor's float64 multiply by 1/255
        followed by a cast (multiplying by float32(1/255) does not: 126 of 256 values differ).
        Applied over a whole image it is ~5x cheaper than the table's gather.
        """
        table = self.lookup_table()
        values = np.arange(256, dtype=np.float32)
        candidates: list[tuple[np.float32, bool]] = [(np.float32(1.0), False)]
        if self.do_rescale:
            candidates = [(np.float32(self.rescale_factor), False)]
            inverse = 1.0 / self.rescale_factor
            if abs(inverse - round(inverse)) < 1e-9:
                candidates.insert(0, (np.float32(round(inverse)), True))
        for op, divide in candidates:
            x = values / op if divide else values * op
            if self.do_normalize:
                mean = np.asarray(self.image_mean, dtype=np.float32)[:, None]
                std = np.asarray(self.image_std, dtype=np.float32)[:, None]
                x = (x[None, :] - mean) / std
            if np.array_equal(np.broadcast_to(x, table.shape), table):
                return op, divide
        return None


class Preprocessor:
    """Resize + rescale + normalise + batch-pad, bit-equal to the checkpoint's processor."""

    def __init__(self, spec: PreprocessSpec):
        self.spec = spec
        self._lut = spec.lookup_table()
        self._vector = spec.vector_rescale()
        self._mean = np.asarray(spec.image_mean, dtype=np.float32)[:, None, None]
        self._std = np.asarray(spec.image_std, dtype=np.float32)[:, None, None]

    @classmethod
    def from_processor(cls, processor: Any) -> Preprocessor:
        return cls(PreprocessSpec.from_processor(processor))

    def image_array(self, image: Image.Image) -> np.ndarray:
        """One image -> ``(3, H, W)`` float32, before padding."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        h, w = self.spec.output_size(image.width, image.height)
        if (w, h) != image.size:
            image = image.resize((w, h), resample=self.spec.resample)
        pixels = np.asarray(image)  # (H, W, 3) uint8, no copy
        out = np.empty((3, h, w), dtype=np.float32)
        if self._vector is None:  # the table: any arithmetic the processor does
            for c in range(3):
                np.take(self._lut[c], pixels[:, :, c], out=out[c])
            return out
        op, divide = self._vector  # the same values, element-wise (checked at start-up)
        out[...] = pixels.transpose(2, 0, 1)
        if divide:
            out /= op
        elif op != 1.0:
            out *= op
        if self.spec.do_normalize:
            out -= self._mean
            out /= self._std
        return out

    def batch(self, images: Sequence[Image.Image]) -> dict[str, np.ndarray]:
        """``pixel_values`` ``(N, 3, H, W)`` (zero-padded bottom/right to the batch maximum or
        ``pad_size``, as the processor pads) and, when the processor returns one, ``pixel_mask``."""
        arrays = [self.image_array(im) for im in images]
        return self.collate(arrays)

    def collate(self, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        shapes = {a.shape[1:] for a in arrays}
        if self.spec.do_pad:
            ph, pw = self.spec.pad_size or (
                max(a.shape[1] for a in arrays),
                max(a.shape[2] for a in arrays),
            )
        elif len(shapes) == 1:
            ph, pw = next(iter(shapes))
        else:
            raise ValueError(
                f"images of different sizes {sorted(shapes)} and the processor does not pad; batch them by size"
            )
        if all(a.shape[1:] == (ph, pw) for a in arrays):  # nothing to pad: no zero-filled copy
            pixel_values = arrays[0][None] if len(arrays) == 1 else np.stack(arrays)
        else:
            pixel_values = np.zeros((len(arrays), 3, ph, pw), dtype=np.float32)
            for i, a in enumerate(arrays):
                pixel_values[i, :, : a.shape[1], : a.shape[2]] = a
        out = {"pixel_values": pixel_values}
        if self.spec.do_pad and self.spec.returns_pixel_mask:
            mask = np.zeros((len(arrays), ph, pw), dtype=np.int64)
            for i, a in enumerate(arrays):
                mask[i, : a.shape[1], : a.shape[2]] = 1
            out["pixel_mask"] = mask
        return out

    def verify_against(self, processor: Any, images: Sequence[Image.Image]) -> float:
        """Largest absolute difference between our batch and the processor's (0.0 when exact)."""
        ours = self.batch(images)
        ref = processor(images=list(images), return_tensors="np")
        if ours["pixel_values"].shape != tuple(ref["pixel_values"].shape):
            return float("inf")
        if (
            "pixel_mask" in ours
            and "pixel_mask" in ref
            and not np.array_equal(ours["pixel_mask"], np.asarray(ref["pixel_mask"]))
        ):
            return float("inf")
        return float(
            np.max(np.abs(ours["pixel_values"] - np.asarray(ref["pixel_values"], dtype=np.float32)))
        )


def gpu_batch(images: Sequence[Image.Image], spec: PreprocessSpec, device: str = "cuda") -> dict[str, Any]:
    """The same batch as :meth:`Preprocessor.batch`, resized and normalised on a GPU.

    Only the uint8 pixels cross the bus; the resize (bilinear, antialiased like PIL's) and
    the rescale/normalise run on the device. Values differ from the PIL path by rounding
    (PIL rounds the resized pixels to uint8), so parity is by detections, not bits.
    """
    import torch
    import torch.nn.functional as F

    sizes = [spec.output_size(im.width, im.height) for im in images]
    if spec.do_pad:
        ph, pw = spec.pad_size or (max(h for h, _ in sizes), max(w for _, w in sizes))
    elif len(set(sizes)) == 1:
        ph, pw = sizes[0]
    else:
        raise ValueError(f"images of different sizes {sorted(set(sizes))} and the processor does not pad; batch them by size")
    pixel_values = torch.zeros((len(images), 3, ph, pw), device=device)
    mask = torch.zeros((len(images), ph, pw), dtype=torch.int64, device=device)
    mean = torch.tensor(spec.image_mean, device=device).view(3, 1, 1)
    std = torch.tensor(spec.image_std, device=device).view(3, 1, 1)
    for i, (image, (h, w)) in enumerate(zip(images, sizes, strict=True)):
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        x = torch.from_numpy(np.asarray(rgb)).to(device, non_blocking=True).permute(2, 0, 1)[None].float()
        if (h, w) != (rgb.height, rgb.width):
            x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False).round_().clamp_(0, 255)
        x = x[0]
        if spec.do_rescale:
            x = x * spec.rescale_factor
        if spec.do_normalize:
            x = (x - mean) / std
        pixel_values[i, :, :h, :w] = x
        mask[i, :h, :w] = 1
    out: dict[str, Any] = {"pixel_values": pixel_values}
    if spec.do_pad and spec.returns_pixel_mask:
        out["pixel_mask"] = mask
    return out


__all__ = ["PreprocessSpec", "Preprocessor", "gpu_batch"]
