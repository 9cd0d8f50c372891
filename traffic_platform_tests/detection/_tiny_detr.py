"""A tiny random-weight YOLOS detector saved like a hub checkpoint (for the SageMaker tests).

Small (about 0.1 MB, built in about a second, a forward pass in milliseconds), but with
detections that exist and differ: the detection tokens and heads get larger random
weights so scores spread over roughly 0.2-0.85 and boxes vary, and the label map mixes
traffic classes (car, person, bus, ...) with labels the platform must drop (dog,
umbrella, traffic light). With the default seed, on the test pictures, car, person, bus
and dog all score above 0.3 and no score lies within 0.02 of 0.3, so a 0.3 threshold
never sits on a near-tie.
"""

from __future__ import annotations

from pathlib import Path

LABELS: tuple[str, ...] = (
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
PROCESSOR_SIZE = {"shortest_edge": 64, "longest_edge": 96}


def build_tiny_yolos(directory: Path, *, seed: int = 2) -> Path:
    """Save a tiny YOLOS checkpoint + image processor into ``directory``; return it."""
    import torch
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

    id2label = dict(enumerate(LABELS))
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
        model.vit.embeddings.detection_tokens.normal_(
            0, 1.0, generator=gen
        )  # tokens differ -> boxes differ
        for layer in model.class_labels_classifier.layers:
            layer.weight.normal_(
                0, 0.25, generator=gen
            )  # scores spread instead of all ~1/num_labels
        # Bias towards car/person/bus and two non-traffic labels; the last logit is "no object".
        model.class_labels_classifier.layers[-1].bias.copy_(
            torch.tensor([3.0, 3.0, 2.5, 0.0, 0.0, 0.0, 2.0, 1.0, 0.0, -1.0])
        )
        for layer in model.bbox_predictor.layers:
            layer.weight.normal_(0, 0.2, generator=gen)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    YolosImageProcessor(size=PROCESSOR_SIZE).save_pretrained(directory)
    return directory


def reference_detections(
    directory: Path, image, *, threshold: float
) -> list[tuple[str, float, list[float]]]:
    """What transformers' own processor + ``post_process_object_detection`` find in ``image``.

    ``(label, score, [x1, y1, x2, y2])`` per detection above ``threshold`` (all labels,
    boxes not clipped): the reference the endpoint's answer is compared with.
    """
    import torch
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    processor = AutoImageProcessor.from_pretrained(directory)
    model = AutoModelForObjectDetection.from_pretrained(directory).eval()
    inputs = processor(images=[image], return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    result = processor.post_process_object_detection(
        outputs, threshold=threshold, target_sizes=[image.size[::-1]]
    )[0]
    return [
        (model.config.id2label[int(label)], float(score), [float(v) for v in box])
        for label, score, box in zip(
            result["labels"], result["scores"], result["boxes"], strict=True
        )
    ]
