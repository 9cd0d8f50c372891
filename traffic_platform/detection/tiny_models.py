"""Tiny random-weight object-detection checkpoints, built offline from configs.

The one place that builds them: the tests, the benchmark (``bench/detect.py`` reuses the
head calibration on full-size architectures) and the demo (when no pretrained model is on
the machine) all import from here. Nothing is downloaded.

Each ``build_tiny_*`` creates a small DETR, YOLOS or RT-DETR model from a config, makes
its scores well separated (random heads give near-tied scores, which makes detections
flicker between runtimes and makes ``threshold`` comparisons meaningless), and saves it
with a matching image processor, so that ``from_pretrained(directory)`` works exactly as
for a hub checkpoint. :func:`build_spread_yolos` is a second YOLOS recipe whose scores
spread around a 0.3 threshold with margins (the SageMaker tests' model).

Their detections are meaningless: they only show that a path works.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# A COCO-like label map: the six traffic classes (COCO ids) plus non-traffic labels.
COCO_LIKE_ID2LABEL: dict[int, str] = {
    0: "person",
    1: "bicycle",
    2: "car",
    3: "motorcycle",
    4: "airplane",
    5: "bus",
    6: "train",
    7: "truck",
    8: "boat",
    9: "traffic light",
    10: "dog",
    11: "umbrella",
}


def _label_maps() -> tuple[dict[int, str], dict[str, int]]:
    return dict(COCO_LIKE_ID2LABEL), {v: k for k, v in COCO_LIKE_ID2LABEL.items()}


def _randomise(param, *, std: float, seed: int) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        param.copy_(torch.randn(param.shape, generator=gen) * std)


def torch_default_init(model) -> None:
    """Re-initialise linear/conv/embedding layers with PyTorch's defaults.

    transformers initialises with std 0.02, under which a tiny random model's queries come
    out almost identical (every query predicts the same box); the defaults keep them apart.
    """
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            # He init keeps activations alive through the ResNet stages (no vanishing signal).
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            module.reset_parameters()
        elif hasattr(module, "running_mean") and hasattr(module, "running_var"):
            # (Frozen) batch norms: identity, not the tiny scales some configs initialise.
            with torch.no_grad():
                module.weight.fill_(1.0)
                module.bias.zero_()
                module.running_mean.zero_()
                module.running_var.fill_(1.0)


def calibrate_heads(
    model, processor, heads: dict[str, tuple[list, np.ndarray, float]], *, seed: int
) -> None:
    """Centre and scale the final prediction layers on a probe image.

    ``heads`` maps a name to ``(linear layers fed the same input, target bias, target std)``.
    A random model's final hidden states share one big common component, so every query
    predicts the same label and box; subtracting it (bias -= W @ mean) and scaling the
    per-query deviations to ``target std`` gives varied labels, scores and boxes, like a
    trained model, without amplifying numerical noise much (the deviations are not tiny).
    """
    import torch

    captured: dict[str, torch.Tensor] = {}
    hooks = []
    for name, (layers, _, _) in heads.items():
        hooks.append(
            layers[0].register_forward_pre_hook(
                lambda mod, args, name=name: captured.setdefault(name, args[0].detach().clone())
            )
        )
    probe = street_like_image(160, 112, seed=seed + 99)
    with torch.inference_mode():
        model(**processor(images=[probe], return_tensors="pt"))
    for h in hooks:
        h.remove()
    for name, (layers, bias, target_std) in heads.items():
        x = captured[name].reshape(-1, captured[name].shape[-1]).double()
        mean = x.mean(0)
        with torch.no_grad():
            w = layers[0].weight.double()
            spread = ((x - mean) @ w.T).std().item()
            w = w * (target_std / max(spread, 1e-6))
            b = torch.as_tensor(bias, dtype=torch.float64) - w @ mean
            for layer in layers:
                layer.weight.copy_(w.to(layer.weight.dtype))
                layer.bias.copy_(b.to(layer.bias.dtype))


def build_tiny_detr(
    out_dir: str | Path, *, seed: int = 0, shortest_edge: int = 96, longest_edge: int = 160
) -> Path:
    """A DETR with a 4-stage basic ResNet backbone (no timm), 1 encoder + 1 decoder layer."""
    import torch
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessorPil, ResNetConfig

    torch.manual_seed(seed)
    id2label, label2id = _label_maps()
    backbone = ResNetConfig(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16, 16, 32],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage4"],
    )
    config = DetrConfig(
        use_timm_backbone=False,
        backbone_config=backbone,
        use_pretrained_backbone=False,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_queries=25,
        id2label=id2label,
        label2id=label2id,
    )
    model = DetrForObjectDetection(config).eval()
    torch_default_init(model)
    # Initialisation leaves the object queries nearly equal: every query would predict the same.
    _randomise(model.model.query_position_embeddings.weight, std=1.0, seed=seed + 2)
    processor = DetrImageProcessorPil(
        size={"shortest_edge": shortest_edge, "longest_edge": longest_edge}
    )
    separate_softmax_scores(model, processor, seed=seed)
    return save_checkpoint(model, processor, out_dir)


def separate_softmax_scores(model, processor, *, seed: int = 0) -> None:
    """Varied labels and boxes for a random DETR or YOLOS (softmax class head + box MLP), any size."""
    head = model.class_labels_classifier  # DETR: one linear layer; YOLOS: an MLP
    calibrate_heads(
        model,
        processor,
        {
            "class": (
                [head.layers[-1] if hasattr(head, "layers") else head],
                _softmax_class_bias(model.config.num_labels, model.config.id2label),
                1.5,
            ),
            "box": ([model.bbox_predictor.layers[-1]], BOX_BIAS, 1.0),
        },
        seed=seed,
    )


def build_tiny_yolos(
    out_dir: str | Path, *, seed: int = 0, shortest_edge: int = 96, longest_edge: int = 160
) -> Path:
    """A 2-layer YOLOS (ViT) with 16-px patches and 10 detection tokens."""
    import torch
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessorPil

    torch.manual_seed(seed)
    id2label, label2id = _label_maps()
    config = YolosConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=[96, 160],
        patch_size=16,
        num_detection_tokens=10,
        id2label=id2label,
        label2id=label2id,
    )
    model = YolosForObjectDetection(config).eval()
    torch_default_init(model)
    # Detection tokens start as zeros (all identical): give each its own identity.
    _randomise(model.vit.embeddings.detection_tokens, std=1.0, seed=seed + 2)
    _randomise(model.vit.embeddings.position_embeddings, std=0.2, seed=seed + 3)
    processor = YolosImageProcessorPil(
        size={"shortest_edge": shortest_edge, "longest_edge": longest_edge}
    )
    separate_softmax_scores(model, processor, seed=seed)
    return save_checkpoint(model, processor, out_dir)


def tiny_rtdetr_kwargs() -> dict:
    """Config keyword arguments of a tiny RT-DETR (v1 and v2 share them)."""
    from transformers import RTDetrResNetConfig

    id2label, label2id = _label_maps()
    backbone = RTDetrResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16, 32, 32],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage2", "stage3", "stage4"],
    )
    return dict(
        backbone_config=backbone,
        encoder_in_channels=[16, 32, 32],
        encoder_hidden_dim=32,
        encoder_ffn_dim=64,
        encoder_attention_heads=2,
        d_model=32,
        decoder_in_channels=[32, 32, 32],
        decoder_ffn_dim=64,
        decoder_attention_heads=2,
        decoder_layers=2,
        num_queries=30,
        hidden_expansion=0.5,
        id2label=id2label,
        label2id=label2id,
    )


def tiny_rtdetr(*, seed: int = 0, image_size: int = 96, v2: bool = False):
    """``(model, processor)``: a small RT-DETR (v1 or v2) with transformers' own initialisation.

    Its encoder query scores come out tied (see :func:`separate_rtdetr_scores`); the export
    tests use it as it is to show why :func:`build_tiny_rtdetr` separates them.
    """
    import torch
    from transformers import (
        RTDetrConfig,
        RTDetrForObjectDetection,
        RTDetrImageProcessorPil,
        RTDetrV2Config,
        RTDetrV2ForObjectDetection,
    )

    torch.manual_seed(seed)
    common = tiny_rtdetr_kwargs()
    if v2:
        model = RTDetrV2ForObjectDetection(RTDetrV2Config(**common)).eval()
    else:
        model = RTDetrForObjectDetection(RTDetrConfig(**common)).eval()
    return model, RTDetrImageProcessorPil(size={"height": image_size, "width": image_size})


def build_tiny_rtdetr(
    out_dir: str | Path, *, seed: int = 0, image_size: int = 96, v2: bool = False
) -> Path:
    """A small RT-DETR (v1 or v2) with a basic-block ResNet backbone, fixed square input."""
    model, processor = tiny_rtdetr(seed=seed, image_size=image_size, v2=v2)
    torch_default_init(model)
    separate_rtdetr_scores(model, processor, seed=seed)
    return save_checkpoint(model, processor, out_dir)


def separate_rtdetr_scores(model, processor, *, seed: int = 0, query_spread: float = 3.0) -> None:
    """Give an RT-DETR well-separated encoder query scores and varied decoder labels.

    RT-DETR picks its decoder queries by top-k over ``enc_score_head`` logits; with random
    weights those are near-tied, so tiny numerical differences (ONNX vs eager, bf16) pick
    different queries. Spreading the logits (std ``query_spread``) makes top-k stable.
    Works on any RT-DETR / RT-DETRv2 size (the benchmark uses it on full-size models).
    """
    num_labels = model.config.num_labels
    class_heads = [model.model.decoder.class_embed[-1]]
    if getattr(model, "class_embed", None) is not None:
        class_heads.append(model.class_embed[-1])
    calibrate_heads(
        model,
        processor,
        {
            "queries": (
                [model.model.enc_score_head],
                np.full(num_labels, -2.0, dtype=np.float32),
                query_spread,
            ),
            "class": (class_heads, _sigmoid_class_bias(num_labels, model.config.id2label), 1.5),
        },
        seed=seed,
    )


def _traffic_ids(id2label) -> list[int]:
    from traffic_platform.domain.classes import traffic_class_for

    return [int(i) for i, label in id2label.items() if traffic_class_for(label) is not None]


def _softmax_class_bias(num_labels: int, id2label=None) -> np.ndarray:
    """Logit bias for softmax heads (labels + "no object"): road users favoured, no-object likely."""
    bias = np.zeros(num_labels + 1, dtype=np.float32)
    bias[_traffic_ids(id2label or COCO_LIKE_ID2LABEL)] = 2.0
    bias[-1] = 1.5
    return bias


def _sigmoid_class_bias(num_labels: int, id2label) -> np.ndarray:
    """Logit bias for sigmoid (focal) heads: about a third of queries above 0.3 for road users."""
    bias = np.full(num_labels, -3.0, dtype=np.float32)
    bias[[i for i in _traffic_ids(id2label) if i < num_labels]] = -1.0
    return bias


BOX_BIAS = np.array([0.0, 0.0, -1.5, -1.5], dtype=np.float32)  # centred boxes ~18% of the image


def save_checkpoint(model, processor, out_dir: str | Path) -> Path:
    """Save ``model`` and its image processor into ``out_dir`` like a hub checkpoint."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


# A YOLOS whose scores spread around 0.3 with margins (the SageMaker tests' model).
SPREAD_YOLOS_LABELS: tuple[str, ...] = (
    "car",
    "person",
    "bus",
    "truck",
    "bicycle",
    "motorcycle",
    "dog",
    "traffic light",
    "umbrella",
)
NON_TRAFFIC_LABELS = frozenset({"dog", "traffic light", "umbrella"})
# Processor input size: small so a forward pass costs milliseconds.
SPREAD_YOLOS_PROCESSOR_SIZE = {"shortest_edge": 64, "longest_edge": 96}


def build_spread_yolos(directory: str | Path, *, seed: int = 2) -> Path:
    """A tiny YOLOS (about 0.1 MB, built in about a second) with detections that exist and differ.

    The detection tokens and heads get larger random weights so scores spread over roughly
    0.2-0.85 and boxes vary, and the label map (:data:`SPREAD_YOLOS_LABELS`) mixes traffic
    classes with labels the platform must drop (:data:`NON_TRAFFIC_LABELS`). With the default
    seed, on the SageMaker tests' pictures, car, person, bus and dog all score above 0.3 and
    no score lies within 0.02 of 0.3, so a 0.3 threshold never sits on a near-tie.
    """
    import torch
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

    id2label = dict(enumerate(SPREAD_YOLOS_LABELS))
    config = YolosConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=[64, 96],
        patch_size=16,
        num_detection_tokens=16,
        id2label=id2label,
        label2id={label: i for i, label in id2label.items()},
    )
    torch.manual_seed(seed)
    model = YolosForObjectDetection(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.vit.embeddings.detection_tokens.normal_(0, 1.0, generator=gen)  # boxes differ
        for layer in model.class_labels_classifier.layers:
            layer.weight.normal_(0, 0.25, generator=gen)  # scores spread, not all ~1/num_labels
        # Bias towards car/person/bus and two non-traffic labels; the last logit is "no object".
        model.class_labels_classifier.layers[-1].bias.copy_(
            torch.tensor([3.0, 3.0, 2.5, 0.0, 0.0, 0.0, 2.0, 1.0, 0.0, -1.0])
        )
        for layer in model.bbox_predictor.layers:
            layer.weight.normal_(0, 0.2, generator=gen)
    return save_checkpoint(model, YolosImageProcessor(size=SPREAD_YOLOS_PROCESSOR_SIZE), directory)


def street_like_image(width: int, height: int, *, seed: int = 0):
    """A deterministic RGB image with smooth structure (random noise would be JPEG-hostile)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(x / (7 + seed) + y / 13),
            128 + 100 * np.cos(y / (5 + seed % 3) - x / 17),
            128 + 60 * np.sin((x + y) / 11),
        ],
        axis=-1,
    )
    for _ in range(6):  # a few "vehicles": bright rectangles
        x0, y0 = rng.integers(0, max(1, width - 20)), rng.integers(0, max(1, height - 12))
        base[y0 : y0 + rng.integers(6, 30), x0 : x0 + rng.integers(8, 40)] = rng.integers(0, 255, 3)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


BUILDERS = {"detr": build_tiny_detr, "yolos": build_tiny_yolos, "rtdetr": build_tiny_rtdetr}
