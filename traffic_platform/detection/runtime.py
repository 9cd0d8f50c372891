"""What this host can run fast, and which detector runtime ``auto`` picks from it.

Machines of the same kind land on different CPUs (see ``shared/PERF-NOTES.md``: one
host has AMX, another only AVX-512 BF16), so the runtime is chosen at start-up from
what *this* host declares, never from a table measured elsewhere.

The ``auto`` rule (:func:`choose_runtime`), from ``bench/RESULTS.md``:

0. torch sees a CUDA GPU -> ``cuda`` (eager fp32 on the GPU; ``cuda-fp16`` is the lossy,
   faster option, measured on an H100 in ``bench/RESULTS.md``);
1. the CPU has AMX (``amx_bf16`` in ``/proc/cpuinfo``) -> ``torch-bf16`` (bf16 autocast +
   channels_last; AMX made bf16 GEMM 3x fp32 on the AMX host of ``shared/PERF-NOTES.md``);
   bf16 is lossy (parity F1 ~0.93 vs fp32 on RT-DETR-R18), so it needs AMX's margin;
2. otherwise -> ``onnx`` (ONNX Runtime fp32): on the AVX-512-BF16-without-AMX host it was
   3x eager torch at exact parity (F1 1.000) on RT-DETRv2-R18; the export is checked
   against eager at first use and, under ``auto``, a failed export falls back to ``torch``;
3. ``torch`` (eager fp32) is the fallback that is always correct.

``onnx-int8`` is never chosen automatically: on this CPU kind it was slower than fp32 ONNX
and lost parity (F1 ~0.8).

``TRAFFIC_DETECTOR_RUNTIME`` overrides the rule; ``torch-bf16`` on a host without bf16
instructions is refused at start-up (it would run emulated, slower than fp32).
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass, field

RUNTIMES = ("torch", "torch-bf16", "onnx", "onnx-int8", "cuda", "cuda-fp16")

# model_type values whose TorchScript ONNX export is verified in the tests (others are
# checked against eager at export time all the same).
ONNX_VERIFIED_MODEL_TYPES = frozenset({"detr", "yolos", "rt_detr", "rt_detr_v2"})


@dataclass(frozen=True)
class HostInfo:
    """The CPU facts the runtime choice and the benchmark headers rely on."""

    cpu_model: str
    logical_cores: int
    flags: frozenset[str] = field(default_factory=frozenset)
    torch_capability: str = "unknown"

    @property
    def has_amx(self) -> bool:
        return "amx_bf16" in self.flags

    @property
    def has_avx512_bf16(self) -> bool:
        return "avx512_bf16" in self.flags

    @property
    def native_bf16(self) -> bool:
        """bf16 matrix instructions in hardware (AMX tiles or AVX-512 BF16 dot products)."""
        return self.has_amx or self.has_avx512_bf16

    def relevant_flags(self) -> list[str]:
        wanted = (
            "avx2",
            "avx512f",
            "avx512_vnni",
            "avx512_bf16",
            "amx_bf16",
            "amx_int8",
            "amx_tile",
            "avx_vnni",
        )
        return [f for f in wanted if f in self.flags]

    def describe(self) -> dict[str, object]:
        return {
            "cpu_model": self.cpu_model,
            "logical_cores": self.logical_cores,
            "torch_cpu_capability": self.torch_capability,
            "flags": self.relevant_flags(),
            "native_bf16": self.native_bf16,
        }


def _read_cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str, frozenset[str]]:
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = frozenset(value.split())
                if flags and key == "model name":
                    break
    except OSError:
        pass
    return model, flags


@functools.lru_cache(maxsize=1)
def host_info() -> HostInfo:
    """Facts about this host (cached: the CPU does not change while the process runs)."""
    model, flags = _read_cpuinfo()
    try:
        import torch

        capability = str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - torch missing or too old: the flags still decide
        capability = "unknown"
    return HostInfo(
        cpu_model=model, logical_cores=os.cpu_count() or 1, flags=flags, torch_capability=capability
    )


def choose_runtime(requested: str, *, model_type: str | None, host: HostInfo | None = None) -> str:
    """The runtime to use for ``requested`` (``auto`` or one of :data:`RUNTIMES`) on ``host``."""
    host = host or host_info()
    if requested != "auto":
        if requested not in RUNTIMES:
            raise ValueError(
                f"unknown detector runtime {requested!r}; expected auto or one of {', '.join(RUNTIMES)}"
            )
        return requested
    if cuda_available():
        return "cuda"
    if host.has_amx:
        return "torch-bf16"
    return "onnx"


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU (a GPU SageMaker endpoint, a workstation)."""
    import torch

    return torch.cuda.is_available()


__all__ = ["HostInfo", "ONNX_VERIFIED_MODEL_TYPES", "RUNTIMES", "choose_runtime", "host_info"]
