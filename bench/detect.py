"""Detection benchmark: transformers ``pipeline("object-detection")`` vs our runtimes, same run.

    .venv/bin/python bench/detect.py --build-random rtdetr_r18 --runs 2
    .venv/bin/python bench/detect.py --model path/or/hub-id --runtimes pipeline,torch,onnx

For every runtime: per-image latency at batch 1 (p50/p90, pre-processing + forward +
post-processing; JPEG decode excluded, images are decoded once up front), throughput at
each batch size, and parity against our fp32 torch runtime (greedy matching by score:
same label and IoU >= 0.5 -> F1; mean IoU and label agreement over matched pairs). The
``auto`` row is the runtime ``TRAFFIC_DETECTOR_RUNTIME=auto`` picks on this host, named.

Fidelity on real weights (``--fidelity-model``, default the DEIMv2-Atto graph in
``shared/models``): the end-to-end graph on ONNX Runtime fp32 (the reference), OpenVINO fp32
and bf16, and ``auto``, over the street photos: F1 at IoU >= 0.5 (and >= 0.8) with the same
parity definition, plus their latency, measured interleaved like the main table. The main
table's "F1 real" column carries each runtime's figure from there (random weights exaggerate
bf16's effect: near-tied queries flip).

``torch-compile-bf16`` (not a product runtime): ``torch.compile`` (inductor, freezing) over the
``torch-bf16`` forward; its setup column is the first call, i.e. the compile, with a cold
inductor cache, and the notes give the first call again with the cache warm (a restart).

Hubs are unreachable here, so ``--build-random`` builds a full-size architecture from its
config with random weights (speed does not depend on weight values), with live
activations and separated query/class scores so that parity compares real, varied boxes
rather than ties. The table says so.

Adding a runtime is one entry: decorate a factory with ``@register_runtime("name")``
(here or in a module passed with ``--plugin``); it receives a :class:`BenchContext` and
returns a callable ``list[PIL.Image] -> list[list[(label, score, box)]]``.

Numbers are only comparable within one run (same host, same load): shared 2-core machines
are noisy, and other processes may be running.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.runners import RawDet, Runner, onnx_e2e_runner, transformers_runner  # noqa: E402


@dataclass
class BenchContext:
    model: str  # directory or hub id
    threads: int
    threshold: float
    cache_dir: Path
    args: argparse.Namespace
    notes: list[str] = field(default_factory=list)


RUNTIMES: dict[str, Callable[[BenchContext], Runner]] = {}


def register_runtime(
    name: str,
) -> Callable[[Callable[[BenchContext], Runner]], Callable[[BenchContext], Runner]]:
    """Register a runtime factory under ``name`` (usable in ``--runtimes``)."""

    def wrap(factory: Callable[[BenchContext], Runner]) -> Callable[[BenchContext], Runner]:
        RUNTIMES[name] = factory
        return factory

    return wrap


@register_runtime("pipeline")
def _pipeline(ctx: BenchContext) -> Runner:
    import torch
    from transformers import pipeline

    torch.set_num_threads(ctx.threads)
    pipe = pipeline("object-detection", model=ctx.model, device="cpu")  # transformers 5 would pick a GPU

    def run(images: list[Any]) -> list[list[RawDet]]:
        # One image per call: the pipeline's own batching (batch_size=N) crashes on RT-DETRv2
        # outputs in transformers 5.24 (IndexError in loader_batch_item), so the baseline is
        # the per-image pipeline at every "batch size".
        out = [pipe(im, threshold=ctx.threshold) for im in images]
        return [
            [
                (r["label"], r["score"], [r["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")])
                for r in res
            ]
            for res in out
        ]

    return run


def _ours(runtime: str) -> Callable[[BenchContext], Runner]:
    def factory(ctx: BenchContext) -> Runner:
        return transformers_runner(
            ctx.model,
            runtime=runtime,
            threads=ctx.threads,
            threshold=ctx.threshold,
            cache_dir=ctx.cache_dir,
        )

    return factory


@register_runtime("onnx-e2e")
def _onnx_e2e(ctx: BenchContext) -> Runner:
    """End-to-end ONNX exports (RT-DETR / D-FINE / DEIMv2: pre/post-processing in the graph)."""
    return onnx_e2e_runner(ctx.model, threads=ctx.threads, threshold=ctx.threshold)


@register_runtime("pipeline-cuda")
def _pipeline_cuda(ctx: BenchContext) -> Runner:
    """The baseline on a GPU: ``pipeline("object-detection", device=0)``, one image per call."""
    from transformers import pipeline

    pipe = pipeline("object-detection", model=ctx.model, device=0)

    def run(images: list[Any]) -> list[list[RawDet]]:
        out = [pipe(im, threshold=ctx.threshold) for im in images]
        return [[(r["label"], r["score"], [r["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")]) for r in res] for res in out]

    return run


for _name in (
    "torch",
    "torch-bf16",
    "onnx",
    "onnx-int8",
    "openvino",
    "openvino-bf16",
    "openvino-mixed",
    "auto",
    "cuda",
    "cuda-fp16",
):
    register_runtime(_name)(_ours(_name))


@register_runtime("torch-compile-bf16")
def _torch_compile_bf16(ctx: BenchContext) -> Runner:
    """``torch.compile`` + bf16 autocast + channels_last; compiled here (counted in setup)."""
    import torch
    import torch._inductor.config as inductor

    from bench.runners import as_runner
    from traffic_platform.config import Settings
    from traffic_platform.detection import transformers_backend as tb
    from traffic_platform.detection.onnx_export import sample_images
    from traffic_platform.domain.detections import ClassThresholds

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(ctx.cache_dir / "inductor"))  # cold
    inductor.freezing = True  # weights as constants: oneDNN pre-packs them (CPU inference)
    settings = Settings(home=ctx.cache_dir, model_cache_dir=ctx.cache_dir / "models",
                        detector_runtime="torch-bf16", detector_threads=ctx.threads,
                        detector_batch_size=64)  # fmt: skip

    def compiled() -> tuple[Any, float]:
        loaded = tb._load(ctx.model, settings, "torch-bf16")  # its own copy: torch-bf16 stays eager
        loaded.forward.model = torch.compile(loaded.forward.model)  # type: ignore[attr-defined]
        detector = tb.TransformersDetector(
            loaded, ClassThresholds(default=ctx.threshold), model_name=ctx.model, batch_size=64
        )
        started = time.perf_counter()
        detector.raw_detections(sample_images(loaded.preprocessor.spec, 1, sizes=[(1280, 720)]))
        return detector, time.perf_counter() - started

    _, cold = compiled()
    torch._dynamo.reset()  # as a restarted process: only the on-disk inductor cache is left
    detector, warm = compiled()
    ctx.notes.append(
        f"torch-compile-bf16: first call {cold:.0f} s with a cold inductor cache, "
        f"{warm:.0f} s with it warm (a restart); later shapes (batch sizes) compile again in the warm-up"
    )
    return as_runner(detector.raw_detections)


# ---------------------------------------------------------------- random full-size models


def build_random(kind: str, out_dir: Path) -> Path:
    """A full-size architecture with random weights, saved with its image processor."""
    import torch
    from transformers import (
        DetrConfig,
        DetrForObjectDetection,
        DetrImageProcessorPil,
        ResNetConfig,
        RTDetrImageProcessorPil,
        RTDetrResNetConfig,
        RTDetrV2Config,
        RTDetrV2ForObjectDetection,
        YolosConfig,
        YolosForObjectDetection,
        YolosImageProcessorPil,
    )

    from traffic_platform.detection.onnx_e2e import COCO80
    from traffic_platform.detection.tiny_models import (
        save_checkpoint,
        separate_rtdetr_scores,
        separate_softmax_scores,
        torch_default_init,
    )

    torch.manual_seed(0)
    id2label = dict(enumerate(COCO80))
    if kind == "rtdetr_r18":  # the architecture of PekingU/rtdetr_v2_r18vd
        backbone = RTDetrResNetConfig(
            embedding_size=64,
            hidden_sizes=[64, 128, 256, 512],
            depths=[2, 2, 2, 2],
            layer_type="basic",
            out_features=["stage2", "stage3", "stage4"],
        )
        config = RTDetrV2Config(
            backbone_config=backbone,
            encoder_in_channels=[128, 256, 512],
            hidden_expansion=0.5,
            decoder_layers=3,
            num_queries=300,
            id2label=id2label,
        )
        model = RTDetrV2ForObjectDetection(config).eval()
        processor = RTDetrImageProcessorPil(size={"height": 640, "width": 640})
        torch_default_init(model)
        separate_rtdetr_scores(model, processor)
    elif kind == "detr_r50":  # facebook/detr-resnet-50 without timm
        config = DetrConfig(
            use_timm_backbone=False,
            backbone_config=ResNetConfig(out_features=["stage4"]),
            use_pretrained_backbone=False,
            id2label=id2label,
        )
        model = DetrForObjectDetection(config).eval()
        processor = DetrImageProcessorPil()
        torch_default_init(model)
        separate_softmax_scores(model, processor)
    elif kind == "yolos_tiny":  # hustvl/yolos-tiny
        config = YolosConfig(
            hidden_size=192,
            num_hidden_layers=12,
            num_attention_heads=3,
            intermediate_size=768,
            image_size=[800, 1333],
            num_detection_tokens=100,
            use_mid_position_embeddings=False,  # as hustvl/yolos-tiny's config (only YOLOS-S/B use them)
            id2label=id2label,
        )
        model = YolosForObjectDetection(config).eval()
        processor = YolosImageProcessorPil(size={"shortest_edge": 512, "longest_edge": 864})
        torch_default_init(model)
        separate_softmax_scores(model, processor)
    else:
        raise SystemExit(f"--build-random: unknown {kind!r}")
    return save_checkpoint(model, processor, out_dir)




# ---------------------------------------------------------------- measurement


def load_images(
    directory: str | None, limit: int, max_bytes: int | None = 2_000_000
) -> tuple[list[Any], str]:
    from PIL import Image, ImageOps

    if directory and Path(directory).is_dir():
        files = sorted(
            p
            for p in Path(directory).iterdir()
            if p.suffix.lower() in (".jpg", ".jpeg", ".png")
            and not p.name.startswith("BAD_")
            and (max_bytes is None or p.stat().st_size < max_bytes)
        )
        images = []
        for p in files[:limit]:
            with Image.open(p) as im:
                images.append(ImageOps.exif_transpose(im).convert("RGB"))
        return images, f"{len(images)} photos from {directory}"
    from traffic_platform.detection.onnx_export import sample_images

    return sample_images(None, limit, sizes=[(1280, 720)]), f"{limit} synthetic 1280x720 images"


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def parity(
    reference: list[list[RawDet]], candidate: list[list[RawDet]], min_iou: float = 0.5
) -> dict[str, float]:
    """Greedy one-to-one matching of reference detections (score order) to candidates.

    F1: a match needs the same label and IoU >= ``min_iou`` (0.5). Mean IoU: over those matches.
    Label agreement: of the reference detections that some candidate box overlaps at
    IoU >= 0.5, the share matched with the same label (sigmoid heads such as RT-DETR's can
    report one box under several labels, so a box-only match would be ambiguous).
    """
    tp = n_ref = n_cand = overlapped = 0
    ious: list[float] = []
    for ref, cand in zip(reference, candidate, strict=True):
        n_ref += len(ref)
        n_cand += len(cand)
        used: set[int] = set()
        for label, _, box in ref:
            best, best_iou, any_overlap = None, min_iou, False
            for j, (clabel, _, cbox) in enumerate(cand):
                v = iou(box, cbox)
                any_overlap |= v >= 0.5
                if j not in used and clabel == label and v >= best_iou:
                    best, best_iou = j, v
            overlapped += any_overlap
            if best is not None:
                used.add(best)
                tp += 1
                ious.append(best_iou)
    f1 = 1.0 if n_ref + n_cand == 0 else 2 * tp / (n_ref + n_cand)
    return {
        "f1": f1,
        "mean_iou": statistics.fmean(ious) if ious else float("nan"),
        "label_agreement": tp / overlapped if overlapped else float("nan"),
        "n_ref": n_ref,
        "n": n_cand,
    }


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def measure_all(
    runners: dict[str, Runner], images: list[Any], runs: int, batch_sizes: list[int]
) -> dict[str, dict[str, Any]]:
    """Latency and throughput of every runtime, **interleaved**: each image (and each batch)
    goes through all runtimes in turn, so load from other processes on a shared host hits
    them alike instead of favouring whichever ran during a quiet minute."""
    names = list(runners)
    for name in names:  # warm-up (first-call allocations, ORT arenas) at every shape
        for bs in batch_sizes:
            if len(images) >= bs:
                runners[name](images[:bs])
    lat: dict[str, list[float]] = {n: [] for n in names}
    outputs: dict[str, list[list[RawDet]]] = {n: [] for n in names}
    for r in range(runs):
        for i, im in enumerate(images):
            order = names[i % len(names) :] + names[: i % len(names)]  # rotate who goes first
            for name in order:
                t = time.perf_counter()
                res = runners[name]([im])
                lat[name].append(time.perf_counter() - t)
                if r == 0:
                    outputs[name].append((i, res[0]))  # type: ignore[arg-type]
    spent: dict[str, dict[int, float]] = {n: {} for n in names}
    counted: dict[str, dict[int, int]] = {n: {} for n in names}
    for bs in batch_sizes:
        if bs == 1:
            continue
        for _ in range(runs):
            for i in range(0, len(images) - bs + 1, bs):
                for name in names:
                    t = time.perf_counter()
                    runners[name](images[i : i + bs])
                    spent[name][bs] = spent[name].get(bs, 0.0) + time.perf_counter() - t
                    counted[name][bs] = counted[name].get(bs, 0) + bs
    results = {}
    for name in names:
        throughput = {1: len(lat[name]) / sum(lat[name])}
        for bs in batch_sizes:
            if bs != 1:
                throughput[bs] = (
                    counted[name].get(bs, 0) / spent[name][bs]
                    if spent[name].get(bs)
                    else float("nan")
                )
        ordered = [res for _, res in sorted(outputs[name], key=lambda x: x[0])]
        results[name] = {
            "p50": percentile(lat[name], 0.5) * 1e3,
            "p90": percentile(lat[name], 0.9) * 1e3,
            "throughput": throughput,
            "outputs": ordered,
        }
    return results


def measure_fidelity(
    args: argparse.Namespace, *, images_dir: str | None, cache_dir: Path
) -> tuple[dict[str, float], list[str]]:
    """Runtimes of an end-to-end graph with real weights against ONNX Runtime fp32, on the
    photos: ``({runtime: F1 at IoU >= 0.5}, markdown lines)``. Latency interleaved as above."""
    from bench.runners import onnx_e2e_runner
    from traffic_platform.config import Settings
    from traffic_platform.detection.onnx_e2e import file_sha256, resolve_model
    from traffic_platform.detection.runtime import MIN_FIDELITY_F1

    names = args.fidelity_runtimes.split(",")
    if "onnx" not in names:
        names.insert(0, "onnx")
    photos, described = load_images(images_dir, 1000, max_bytes=None)  # every photo
    runners = {}
    for name in names:
        runners[name] = onnx_e2e_runner(args.fidelity_model, threads=args.threads,
                                        threshold=args.fidelity_threshold, runtime=name,
                                        cache_dir=cache_dir / "openvino")  # fmt: skip
    measured = measure_all(runners, photos, args.fidelity_runs, [1])
    reference = measured["onnx"]["outputs"]
    path, _ = resolve_model(args.fidelity_model, Settings())
    lines = [
        "### Fidelity on real weights (end-to-end graph, ONNX Runtime fp32 as the reference)",
        "",
        f"- model: `{path.name}` (sha256 {file_sha256(path)[:16]}), real COCO-trained weights; "
        f"{described}, all labels with score >= {args.fidelity_threshold}; {args.fidelity_runs} run(s), interleaved",
        f"- a lossy runtime may be chosen by `auto` only with F1 >= {MIN_FIDELITY_F1} here "
        "(`traffic_platform/detection/runtime.py`, FIDELITY)",
        "",
        "| runtime | p50 ms/img | p90 ms/img | vs onnx | F1 (IoU ≥ 0.5) | F1 (IoU ≥ 0.8) | mean IoU | label agree | dets (ref) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    f1s: dict[str, float] = {}
    base = measured["onnx"]["p50"]
    for name in names:
        r = measured[name]
        chosen = getattr(runners[name], "runtime", name)
        p, strict = parity(reference, r["outputs"]), parity(reference, r["outputs"], 0.8)
        f1s.setdefault(chosen, p["f1"])
        label = f"auto → {chosen}" if name == "auto" else name
        lines.append(
            f"| {label} | {r['p50']:.1f} | {r['p90']:.1f} | {base / r['p50']:.2f}x | {p['f1']:.3f} | "
            f"{strict['f1']:.3f} | {p['mean_iou']:.4f} | {p['label_agreement']:.3f} | {p['n']} ({p['n_ref']}) |"
        )
        print(f"fidelity {label}: p50 {r['p50']:.1f} ms, F1 {p['f1']:.3f}", file=sys.stderr)
    return f1s, lines


def record(path: Path, section: str) -> None:
    """Replace the '## Detection' section of ``path`` (or append it); other sections stay as they are."""
    import re

    current = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    pattern = re.compile(r"^## Detection\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _: section.rstrip("\n") + "\n\n", current, count=1)
    else:
        updated = current.rstrip("\n") + "\n\n" + section
    path.write_text(updated, encoding="utf-8")


def header(threads: int) -> list[str]:
    import torch

    from traffic_platform.detection.runtime import host_info

    info = host_info()
    return [
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- CPU: {info.cpu_model} ({info.logical_cores} logical cores), torch.backends.cpu.get_cpu_capability() = {info.torch_capability}",
        f"- flags relied on: {', '.join(info.relevant_flags()) or 'none'}; native bf16: {info.native_bf16}; AMX: {info.has_amx}",
        f"- threads: {threads}; torch {torch.__version__}, onnxruntime {importlib.import_module('onnxruntime').__version__}, transformers {importlib.import_module('transformers').__version__}",
    ]


def main(argv: list[str] | None = None) -> int:
    default_images = ROOT.parent / "shared" / "data" / "street"
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", help="model directory or hub id")
    parser.add_argument(
        "--build-random",
        choices=["rtdetr_r18", "detr_r50", "yolos_tiny"],
        help="build a full-size random-weight model (hubs unreachable)",
    )
    parser.add_argument(
        "--images", default=str(default_images) if default_images.is_dir() else None
    )
    parser.add_argument("--max-images", type=int, default=8)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-sizes", default="1,4,8")
    parser.add_argument(
        "--runtimes",
        default="pipeline,torch,torch-bf16,onnx,openvino,openvino-bf16,openvino-mixed,auto",
    )
    default_fidelity = ROOT.parent / "shared" / "models" / "deimv2-hgnetv2-atto-coco-onnx"
    parser.add_argument(
        "--fidelity-model",
        default=str(default_fidelity) if default_fidelity.is_dir() else None,
        help="end-to-end ONNX graph with real weights for the fidelity table ('' to skip)",
    )
    parser.add_argument(
        "--fidelity-runtimes", default="onnx,openvino,openvino-bf16,openvino-mixed,auto"
    )
    parser.add_argument("--fidelity-threshold", type=float, default=0.5)
    parser.add_argument("--fidelity-runs", type=int, default=3)
    parser.add_argument(
        "--threshold", type=float, default=0.3, help="score threshold for parity (all labels)"
    )
    parser.add_argument(
        "--plugin", action="append", default=[], help="module that registers extra runtimes"
    )
    parser.add_argument(
        "--cache-dir", help="model cache (ONNX exports); default: a temporary directory"
    )
    parser.add_argument(
        "--record",
        nargs="?",
        const=str(ROOT / "bench" / "RESULTS.md"),
        help="write the table into this file's '## Detection' section (default bench/RESULTS.md), leaving other sections alone",
    )
    args = parser.parse_args(argv)
    for plugin in args.plugin:
        importlib.import_module(plugin)

    import torch

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as our detector does; set here so the pipeline gets it too
    work = (
        Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="bench-detect-"))
    )
    notes = []
    if args.build_random:
        started = time.perf_counter()
        model = str(build_random(args.build_random, work / f"random-{args.build_random}"))
        notes.append(
            f"model: `{args.build_random}` full-size architecture built from config with **random weights** (hubs unreachable); live activations, separated query/class scores so parity compares real boxes; built in {time.perf_counter() - started:.0f} s"
        )
    elif args.model:
        model = args.model
        notes.append(f"model: `{model}`")
    else:
        parser.error("give --model or --build-random")
    notes.append(
        "denormals flushed to zero for every runtime (torch.set_flush_denormal, ORT set_denormal_as_zero)"
    )
    images, described = load_images(args.images, args.max_images)
    notes.append(
        f"images: {described}, decoded once up front (decode not timed); {args.runs} run(s) over them"
    )
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    ctx = BenchContext(
        model=model,
        threads=args.threads,
        threshold=args.threshold,
        cache_dir=work,
        args=args,
        notes=notes,
    )

    results: dict[str, dict[str, Any]] = {}
    runners: dict[str, Runner] = {}
    setup: dict[str, float] = {}
    for name in args.runtimes.split(","):
        if name not in RUNTIMES:
            print(f"skip {name}: unknown runtime (known: {', '.join(RUNTIMES)})", file=sys.stderr)
            continue
        started = time.perf_counter()
        try:
            runners[name] = RUNTIMES[name](ctx)
        except Exception as exc:  # noqa: BLE001 - e.g. torch-bf16 refused on a host without bf16
            results[name] = {"error": f"{type(exc).__name__}: {str(exc)[:160]}"}
            print(f"{name}: {results[name]['error']}", file=sys.stderr)
            continue
        setup[name] = time.perf_counter() - started
    for name, r in measure_all(runners, images, args.runs, batch_sizes).items():
        results[name] = {**r, "setup_s": setup[name]}
        print(f"{name}: p50 {r['p50']:.1f} ms (setup {setup[name]:.0f} s)", file=sys.stderr)
    results = {n: results[n] for n in args.runtimes.split(",") if n in results}

    fidelity, fidelity_lines = (
        measure_fidelity(args, images_dir=args.images, cache_dir=work)
        if args.fidelity_model
        else ({}, [])
    )

    reference = results.get("torch", {}).get("outputs")
    base = results.get("pipeline", {}).get("p50")
    eager = results.get("torch", {}).get("p50")
    lines = [
        "## Detection",
        "",
        *header(args.threads),
        *[f"- {n}" for n in notes],
        f"- parity: vs our fp32 `torch` runtime, all labels with score > {args.threshold}; F1 = same label and IoU >= 0.5",
        "- runtimes measured interleaved (image by image, batch by batch) so that load from other processes hits them alike; still, compare only within this run (shared, noisy 2-core host)",
        '- pipeline: `pipeline("object-detection")` one image per call at every batch size (its own batching crashes on RT-DETRv2 outputs in transformers 5.24); its boxes are integers, hence mean IoU < 1',
        "",
    ]
    tput_cols = " | ".join(f"img/s @{b}" for b in batch_sizes)
    lines.append(
        f"| runtime | p50 ms/img | p90 ms/img | vs pipeline | vs torch | {tput_cols} | F1 | mean IoU | label agree | dets (ref) | F1 real | setup s |"
    )
    lines.append("|" + "---|" * (11 + len(batch_sizes)))
    for name, r in results.items():
        if "error" in r:
            lines.append(
                f"| {name} | – | – | – | – | {' | '.join('–' for _ in batch_sizes)} | – | – | – | – | – | {r['error']} |"
            )
            continue
        chosen = getattr(runners[name], "runtime", name)
        label = f"auto → {chosen}" if name == "auto" else name
        real = fidelity.get(chosen)
        real_f1 = f"{real:.3f}" if real is not None else "–"
        p = parity(reference, r["outputs"]) if reference else {}
        tput = " | ".join(f"{r['throughput'][b]:.2f}" for b in batch_sizes)
        vs_base = f"{base / r['p50']:.2f}x" if base else "–"
        vs_eager = f"{eager / r['p50']:.2f}x" if eager else "–"
        par = (
            f"{p['f1']:.3f} | {p['mean_iou']:.4f} | {p['label_agreement']:.3f} | {p['n']} ({p['n_ref']})"
            if p
            else "– | – | – | –"
        )
        lines.append(f"| {label} | {r['p50']:.1f} | {r['p90']:.1f} | {vs_base} | {vs_eager} | {tput} | {par} | {real_f1} | {r['setup_s']:.0f} |")
    if fidelity_lines:
        lines += ["", "- F1 real: the same runtime on real weights, from the fidelity table below", "", *fidelity_lines]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        record(Path(args.record), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
