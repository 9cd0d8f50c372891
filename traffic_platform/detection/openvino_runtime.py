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


__all__ = ["PRECISIONS", "OpenVinoGraph", "PortInfo", "available", "compile_model"]
