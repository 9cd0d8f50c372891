"""A tiny end-to-end detection graph with the RT-DETR / D-FINE / DEIM ONNX contract (tests, benchmarks).

Inputs ``images`` (N×3×H×W float RGB in [0, 1]) and ``orig_target_sizes`` (N×2 int64,
width/height); outputs ``labels`` (N×K int64), ``boxes`` (N×K×4 xyxy in original pixels)
and ``scores`` (N×K), post-processing inside the graph, like the real exports.

What it "detects" is predictable from the image content, so tests can compute the
expected answer: a 1×1 convolution (identity weights) and a global average pool give the
mean ``(r, g, b)`` of the resized image in [0, 1]. Query ``k`` is a box centred at
``(r + DX[k], g + DY[k])`` with size ``(W[k], H[k])`` in normalised coordinates, scaled by
``orig_target_sizes`` inside the graph; its score is ``SCORES[k] * b`` and its label
``LABELS[k]`` (COCO-80 contiguous ids). A uniform image of colour ``(r, g, b)`` therefore
yields known boxes in original pixels for any original size.
"""

from __future__ import annotations

import warnings
from pathlib import Path

# COCO-80 contiguous ids: 0 person, 1 bicycle, 2 car, 3 motorcycle, 5 bus, 7 truck,
# 9 traffic light and 16 dog are not road users.
LABELS = (2, 0, 9, 7, 5, 3, 1, 16)
SCORES = (0.95, 0.90, 0.85, 0.80, 0.70, 0.60, 0.55, 0.50)
DX = (0.0, 0.1, 0.0, -0.1, 0.0, 0.05, -0.05, 0.0)
DY = (0.0, 0.0, 0.1, 0.0, -0.1, 0.05, 0.05, 0.0)
W = (0.2, 0.1, 0.1, 0.3, 1.6, 0.1, 0.1, 0.2)  # query 4 (bus) is wider than the image: clipped
H = (0.2, 0.3, 0.1, 0.2, 0.4, 0.1, 0.1, 0.2)
K = len(LABELS)


def expected_box(
    k: int, rgb: tuple[float, float, float], width: int, height: int
) -> tuple[float, float, float, float]:
    """Query ``k``'s box in original pixels (before clipping) for a uniform image of colour ``rgb`` (0..1)."""
    cx, cy = rgb[0] + DX[k], rgb[1] + DY[k]
    return (
        (cx - W[k] / 2) * width,
        (cy - H[k] / 2) * height,
        (cx + W[k] / 2) * width,
        (cy + H[k] / 2) * height,
    )


def build_module(*, outputs: tuple[str, ...] = ("labels", "boxes", "scores")):
    import torch
    from torch import nn

    class TinyEndToEnd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, kernel_size=1, bias=False)
            with torch.no_grad():
                self.conv.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.register_buffer("labels_table", torch.tensor(LABELS, dtype=torch.int64))
            self.register_buffer("scores_table", torch.tensor(SCORES, dtype=torch.float32))
            self.register_buffer("offsets", torch.tensor([DX, DY], dtype=torch.float32).T)  # K×2
            self.register_buffer(
                "half_sizes", torch.tensor([W, H], dtype=torch.float32).T / 2
            )  # K×2

        def forward(self, images, orig_target_sizes):
            means = self.pool(self.conv(images)).flatten(1)  # N×3
            centres = means[:, None, :2] + self.offsets[None]  # N×K×2
            boxes = torch.cat(
                [centres - self.half_sizes[None], centres + self.half_sizes[None]], dim=-1
            )
            scale = orig_target_sizes.to(torch.float32).repeat(1, 2)[
                :, None, :
            ]  # N×1×4 (w, h, w, h)
            boxes = boxes * scale
            scores = self.scores_table[None] * means[:, 2:3]  # N×K
            labels = (means[:, :1] * 0).to(torch.int64) + self.labels_table[
                None
            ]  # data-dependent: not folded
            named = {"labels": labels, "boxes": boxes, "scores": scores}
            return tuple(named[name] for name in outputs)

    return TinyEndToEnd().eval()


def export(
    path: Path,
    *,
    size: tuple[int, int] = (64, 64),
    dynamic_batch: bool = True,
    batch: int = 1,
    dynamic_size: bool = False,
    input_names: tuple[str, str] = ("images", "orig_target_sizes"),
    outputs: tuple[str, ...] = ("labels", "boxes", "scores"),
) -> Path:
    """Export the tiny graph to ``path``; ``size`` is the (height, width) of a static input,
    ``batch`` the fixed batch size when ``dynamic_batch`` is false."""
    import torch

    module = build_module(outputs=outputs)
    height, width = size
    images = torch.rand(2 if dynamic_batch else batch, 3, height, width)
    sizes = torch.tensor([[640, 480]] * images.shape[0], dtype=torch.int64)
    axes: dict[str, dict[int, str]] = {}
    if dynamic_batch or dynamic_size:
        image_axes: dict[int, str] = {}
        if dynamic_batch:
            image_axes[0] = "N"
            axes[input_names[1]] = {0: "N"}
            for name in outputs:
                axes[name] = {0: "N"}
        if dynamic_size:
            image_axes.update({2: "H", 3: "W"})
        axes[input_names[0]] = image_axes
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        warnings.catch_warnings()
    ):  # the TorchScript exporter is deprecated but still the simple, stable one
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (images, sizes),
            str(path),
            input_names=list(input_names),
            output_names=list(outputs),
            dynamic_axes=axes or None,
            opset_version=17,
            dynamo=False,
        )
    return path
