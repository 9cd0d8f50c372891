"""OpenVINO as a second runtime for ONNX graphs (beside ONNX Runtime), CPU only.

One helper compiles an ``.onnx`` file for the CPU plugin with the settings every caller
wants, and :class:`OpenVinoGraph` runs it behind the small part of the ONNX Runtime session
API the detectors use (``get_inputs`` / ``get_outputs`` with ``name``, ``type``, ``shape``,
and ``run(output_names, feed)``), so the transformers backend (exported raw heads) and the
end-to-end graphs (DEIMv2) keep their own pre/post-processing and output format.

Precision is always explicit: OpenVINO's CPU plugin **defaults to bf16** on CPUs with bf16
instructions (AMX or AVX-512 BF16 — it reported ``INFERENCE_PRECISION_HINT = bfloat16`` on
the AMD EPYC of ``bench/RESULTS.md``), which would make the "fp32" runtime silently lossy.
So ``openvino`` sets ``f32`` and ``openvino-bf16`` sets ``bf16`` (refused on a CPU without
bf16 instructions, where it would be emulated).

``openvino-mixed``: OpenVINO's bf16 mode runs nearly every op in bf16 (softmax, norms,
reductions, the query selection and box decoding too), which cost fidelity on real weights
(``bench/RESULTS.md``: F1 0.978 on DEIMv2-Atto). Marking nodes to keep fp32 had no effect in
the CPU plugin, so this runtime cuts the graph instead (:func:`split_trunk`): the backbone +
encoder (the convolutions, most of the FLOPs; nodes named ``*/backbone/*``, ``*/encoder/*`` and
``*/encoder_input_proj*``, as the RT-DETR / D-FINE / DEIM exports and transformers' DETR-family
exports name them) run in bf16, everything after the cut (query selection, decoder, heads,
post-processing) in fp32 — the autocast idea, at graph level: F1 0.986 on DEIMv2-Atto. The two
parts are cut once per graph file (``onnx.utils.extract_model``) into
``<model cache>/openvino/split/<sha256>``. A graph without such a boundary is refused.

Threads: ``INFERENCE_NUM_THREADS`` = ``TRAFFIC_DETECTOR_THREADS``, one stream, the latency
hint; denormals flushed (as the torch and ONNX Runtime paths do). The compiled blob is cached
under ``<model cache>/openvino/<runtime>`` (``CACHE_DIR``), so a restart imports instead of compiling.

Thread safety: a compiled model is shared; each calling thread gets its own infer request
(requests are not re-entrant), and ``infer`` copies the outputs out of the request buffers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PRECISIONS = {"openvino": "f32", "openvino-bf16": "bf16"}
MIXED = "openvino-mixed"
TRUNK_MARKERS = ("/backbone/", "/encoder/", "/encoder_input_proj")  # bf16 part of openvino-mixed

_TYPE_NAMES = {
    "f32": "tensor(float)",
    "f16": "tensor(float16)",
    "f64": "tensor(double)",
    "i64": "tensor(int64)",
    "i32": "tensor(int32)",
    "boolean": "tensor(bool)",
}


def available() -> bool:
    """True when the ``openvino`` package imports (it is a dependency; a slim image may lack it)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class PortInfo:
    """What ``onnxruntime.NodeArg`` tells the detectors: name, ONNX type string, shape."""

    name: str
    type: str
    shape: list[int | str]


def _port(port: Any, index: int) -> PortInfo:
    names = port.get_names()
    name = port.get_any_name() if names else f"port_{index}"
    shape = [
        d.get_length() if d.is_static else f"dim_{index}_{i}"
        for i, d in enumerate(port.get_partial_shape())
    ]
    etype = port.get_element_type().get_type_name()
    return PortInfo(name, _TYPE_NAMES.get(etype, f"tensor({etype})"), shape)


def compile_model(
    path: str | Path, *, runtime: str, threads: int, cache_dir: str | Path | None = None
) -> Any:
    """``openvino.CompiledModel`` of the ``.onnx`` file ``path`` for ``runtime`` (see :data:`PRECISIONS`)."""
    import openvino as ov

    if runtime not in PRECISIONS:
        raise ValueError(f"not an OpenVINO runtime: {runtime!r}")
    core = ov.Core()
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": PRECISIONS[runtime],
        "INFERENCE_NUM_THREADS": max(1, int(threads)),
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "CPU_DENORMALS_OPTIMIZATION": True,
    }
    if cache_dir is not None:
        folder = Path(cache_dir) / runtime  # one folder per precision: blobs never mix
        folder.mkdir(parents=True, exist_ok=True)
        config["CACHE_DIR"] = str(folder)
    return core.compile_model(str(path), "CPU", config)


class OpenVinoGraph:
    """An ONNX graph compiled by OpenVINO, with the slice of ``InferenceSession`` we use."""

    def __init__(
        self, path: str | Path, *, runtime: str, threads: int, cache_dir: str | Path | None = None
    ):
        self.runtime = runtime
        self.compiled = compile_model(path, runtime=runtime, threads=threads, cache_dir=cache_dir)
        self._inputs = [_port(p, i) for i, p in enumerate(self.compiled.inputs)]
        self._outputs = [_port(p, i) for i, p in enumerate(self.compiled.outputs)]
        self._local = threading.local()

    def get_inputs(self) -> list[PortInfo]:
        return list(self._inputs)

    def get_outputs(self) -> list[PortInfo]:
        return list(self._outputs)

    @property
    def execution_precision(self) -> str:
        """The precision the CPU plugin actually runs (``f32`` / ``bf16``)."""
        value = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        return value.get_type_name() if hasattr(value, "get_type_name") else str(value)

    def run(self, output_names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer(feed)  # copies outputs (share_outputs=False)
        names = output_names or [o.name for o in self._outputs]
        by_name = {o.name: result[self.compiled.output(o.name)] for o in self._outputs if o.name in names}
        return [np.asarray(by_name[n]) for n in names]


@dataclass(frozen=True)
class SplitGraph:
    """An ONNX graph cut after its trunk: ``trunk`` computes ``cut`` from the graph's inputs,
    ``head`` computes the graph's outputs from ``cut`` (and the graph's inputs)."""

    trunk: Path
    head: Path
    cut: tuple[str, ...]


def split_trunk(path: str | Path, out_dir: str | Path) -> SplitGraph:
    """Cut ``path`` after its backbone + encoder into two ONNX files in ``out_dir`` (reused when
    complete). Raises ``ValueError`` when the graph has no such boundary."""
    import json
    import os
    import shutil

    import onnx
    from onnx.utils import extract_model

    out = Path(out_dir)
    marker = out / "split.json"
    if marker.is_file():
        meta = json.loads(marker.read_text(encoding="utf-8"))
        return SplitGraph(out / "trunk.onnx", out / "head.onnx", tuple(meta["cut"]))
    model = onnx.load(str(path), load_external_data=False)  # names are enough here
    graph = model.graph

    def in_trunk(node: Any) -> bool:
        return any(m in node.name for m in TRUNK_MARKERS)

    produced = {o for n in graph.node if in_trunk(n) for o in n.output}
    cut = sorted({i for n in graph.node if not in_trunk(n) for i in n.input if i in produced})
    if not produced or not cut:
        raise ValueError(
            f"{Path(path).name} has no backbone/encoder -> head boundary "
            f"(nodes named {' or '.join('*' + m + '*' for m in TRUNK_MARKERS)}); use openvino or openvino-bf16"
        )
    initializers = {i.name for i in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    outputs = [o.name for o in graph.output]
    # Cut into a private folder, then rename it into place: a process starting at the same
    # time never reads half-written parts (the one that loses the race drops its copy).
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    trunk_inputs = _needed_inputs(graph, cut, inputs)
    extract_model(str(path), str(tmp / "trunk.onnx"), trunk_inputs, cut)
    head_inputs = cut + [i for i in _needed_inputs(graph, outputs, inputs, stop=set(cut))]
    extract_model(str(path), str(tmp / "head.onnx"), head_inputs, outputs)
    (tmp / "split.json").write_text(json.dumps({"cut": cut, "source": str(path)}), encoding="utf-8")
    try:
        os.replace(tmp, out)
    except OSError:  # another process put its (identical) copy there first
        shutil.rmtree(tmp, ignore_errors=True)
        if not marker.is_file():
            raise
    return SplitGraph(out / "trunk.onnx", out / "head.onnx", tuple(cut))


def _needed_inputs(
    graph: Any, targets: list[str], inputs: list[str], stop: frozenset[str] | set[str] = frozenset()
) -> list[str]:
    """The graph inputs that ``targets`` depend on (not looking past ``stop`` tensors)."""
    producer = {o: n for n in graph.node for o in n.output}
    wanted, seen, todo = set(inputs), set(), list(targets)
    found: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name in stop:
            continue
        seen.add(name)
        if name in wanted:
            found.add(name)
        node = producer.get(name)
        if node is not None:
            todo.extend(i for i in node.input if i)
            for attr in node.attribute:  # If/Loop bodies read outer tensors by name
                for sub in ([attr.g] if attr.g.node else []) + list(attr.graphs):
                    todo.extend(i for n in sub.node for i in n.input if i)
    return [i for i in inputs if i in found]


class OpenVinoMixedGraph:
    """``openvino-mixed``: the trunk compiled at bf16, the head at fp32; same API as
    :class:`OpenVinoGraph` (the whole graph's inputs and outputs)."""

    runtime = MIXED

    def __init__(self, path: str | Path, *, threads: int, split_dir: str | Path, cache_dir: str | Path | None = None):
        import openvino as ov

        whole = ov.Core().read_model(str(path))
        self._inputs = [_port(p, i) for i, p in enumerate(whole.inputs)]
        self._outputs = [_port(p, i) for i, p in enumerate(whole.outputs)]
        self.split = split_trunk(path, split_dir)
        self.trunk = OpenVinoGraph(self.split.trunk, runtime="openvino-bf16", threads=threads, cache_dir=cache_dir)
        self.head = OpenVinoGraph(self.split.head, runtime="openvino", threads=threads, cache_dir=cache_dir)
        self._trunk_inputs = {p.name for p in self.trunk.get_inputs()}
        self._head_inputs = {p.name for p in self.head.get_inputs()}

    def get_inputs(self) -> list[PortInfo]:
        return list(self._inputs)

    def get_outputs(self) -> list[PortInfo]:
        return list(self._outputs)

    @property
    def execution_precision(self) -> str:
        return f"{self.trunk.execution_precision}+{self.head.execution_precision}"

    def run(self, output_names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        cut = self.split.cut
        values = self.trunk.run(list(cut), {k: v for k, v in feed.items() if k in self._trunk_inputs})
        head_feed = {k: v for k, v in feed.items() if k in self._head_inputs}
        head_feed.update(zip(cut, values, strict=True))
        return self.head.run(output_names or [o.name for o in self._outputs], head_feed)


def open_graph(
    path: str | Path, *, runtime: str, threads: int, cache_dir: str | Path | None = None
) -> OpenVinoGraph | OpenVinoMixedGraph:
    """The OpenVINO graph for ``runtime`` (``openvino``, ``openvino-bf16``, ``openvino-mixed``);
    a mixed graph's parts are cut once into ``<cache_dir>/split/<sha256 of the file>``."""
    if runtime != MIXED:
        return OpenVinoGraph(path, runtime=runtime, threads=threads, cache_dir=cache_dir)
    import hashlib

    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:24]
    if cache_dir is None:
        import tempfile

        cache_dir = Path(tempfile.gettempdir()) / "traffic-platform-openvino"
    root = Path(cache_dir)
    return OpenVinoMixedGraph(path, threads=threads, split_dir=root / "split" / digest, cache_dir=cache_dir)


__all__ = [
    "MIXED",
    "PRECISIONS",
    "OpenVinoGraph",
    "OpenVinoMixedGraph",
    "PortInfo",
    "SplitGraph",
    "available",
    "compile_model",
    "open_graph",
    "split_trunk",
]
