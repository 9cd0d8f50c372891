"""What this host can run fast, and which detector runtime ``auto`` picks from it.

Machines of the same kind land on different CPUs (see ``shared/PERF-NOTES.md``: one
host has AMX, another only AVX-512 BF16), so the runtime is chosen at start-up from
what *this* host declares, never from a table measured elsewhere.

Runtimes (``TRAFFIC_DETECTOR_RUNTIME``): ``torch`` (eager fp32, the reference), ``torch-bf16``
(bf16 autocast + channels_last), ``onnx`` / ``onnx-int8`` (ONNX Runtime on the exported
graph), ``openvino`` / ``openvino-bf16`` (OpenVINO's CPU plugin on the same ONNX graph, fp32 /
bf16: AMX tiles on Intel, AVX-512 BF16 elsewhere), ``openvino-mixed`` (bf16 backbone + encoder,
fp32 from the query selection on: :mod:`.openvino_runtime`), ``cuda`` / ``cuda-fp16``.
End-to-end ONNX graphs (``onnx:``, DEIMv2) take ``onnx`` and the three ``openvino*``.

The ``auto`` rule (:func:`choose_runtime`), from ``bench/RESULTS.md``; a lossy runtime is a
candidate only while :data:`FIDELITY` records F1 >= :data:`MIN_FIDELITY_F1` for it on real
weights (DEIMv2-Atto on the street photos against ONNX Runtime fp32) *on this host's bf16 unit*
(AMX or AVX-512 BF16: their kernels round differently):

0. torch sees a CUDA GPU -> ``cuda`` (transformers checkpoints; eager fp32 on the GPU);
1. the CPU has bf16 instructions (``amx_bf16`` or ``avx512_bf16``) and OpenVINO imports -> the
   first of ``openvino-bf16``, ``openvino-mixed`` that passes its check for the unit:
   - AMX (Intel Xeon): ``openvino-bf16``, 4.2x the pipeline on RT-DETRv2-R18, F1 0.986;
   - AVX-512 BF16 (AMD EPYC): ``openvino-bf16`` is F1 0.978 there (softmax, norms and the box
     decoding in bf16 moved scores by up to 0.08 across the 0.5 threshold), so it is out;
     ``openvino-mixed`` kept F1 0.986 (2.0-2.7x) and is the choice. A graph it cannot cut (no
     ``*/backbone/*`` / ``*/encoder/*`` nodes) falls back to ``onnx``;
2. AMX without OpenVINO -> ``torch-bf16`` for checkpoints (2.2-2.4x, F1 0.989);
3. otherwise -> ``onnx`` (ONNX Runtime fp32, exact parity). ``openvino`` fp32 is lossless but
   was 0.85-0.94x ONNX Runtime on RT-DETRv2 (EPYC and Xeon alike) and its thread pool is
   unmeasured on the ingest path (where ORT runs without spinning), so the reference runtime
   stays. The export is checked against eager at first use and, under ``auto``, a failed
   export falls back to ``torch`` (a failed OpenVINO compile or cut to ``onnx``).

End-to-end graphs follow steps 1 and 3 (they cannot run on torch). Hosts measured: three AMD
EPYC generations with AVX-512 BF16 and an Intel Xeon with AMX (OpenVINO, ONNX Runtime, torch);
AVX2-only and AVX-512-without-BF16 hosts get the lossless ``onnx`` by construction.

:func:`fidelity_checked` is that gate. ``onnx-int8`` has no check
(F1 ~0.8 on random weights, and slower than fp32 ONNX on this CPU kind) and ``cuda-fp16`` was
slower than fp32: neither is chosen automatically.

``TRAFFIC_DETECTOR_RUNTIME`` overrides the rule; ``torch-bf16`` / ``openvino-bf16`` on a host
without bf16 instructions are refused at start-up (they would run emulated, slower than fp32).
``torch.compile`` is not a runtime: on the AVX-512-BF16 EPYC it was slower than plain bf16
(374 vs 343 ms) after a 126 s first call (64 s with a warm inductor cache), and on the AMX Xeon
no faster (206 vs 210 ms) after 178 s (``bench/RESULTS.md``).
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass, field

RUNTIMES = (
    "torch",
    "torch-bf16",
    "onnx",
    "onnx-int8",
    "openvino",
    "openvino-bf16",
    "openvino-mixed",
    "cuda",
    "cuda-fp16",
)
# What an end-to-end ONNX graph (``TRAFFIC_DETECTOR=onnx:``) can run on.
E2E_RUNTIMES = ("onnx", "openvino", "openvino-bf16", "openvino-mixed")
OPENVINO_RUNTIMES = frozenset({"openvino", "openvino-bf16", "openvino-mixed"})
BF16_RUNTIMES = frozenset({"torch-bf16", "openvino-bf16", "openvino-mixed"})
# Lossy runtimes tag the model version so their detections are never mixed with fp32 ones.
LOSSY_SUFFIX = {
    "torch-bf16": "+bf16",
    "openvino-bf16": "+bf16",
    "openvino-mixed": "+bf16mix",
    "onnx-int8": "+int8",
    "cuda-fp16": "+fp16",
}
MIN_FIDELITY_F1 = 0.98


@dataclass(frozen=True)
class FidelityCheck:
    """A lossy runtime's detections against fp32 on real (trained) weights."""

    f1: float
    model: str
    reference: str
    measured: str  # where and when (bench/RESULTS.md section)


# Checks on real weights (random-weight models have near-tied queries and exaggerate the loss),
# per runtime *and* bf16 unit: oneDNN's AMX and AVX-512 BF16 kernels round differently, and the
# same OpenVINO bf16 graph kept F1 0.986 on AMX but 0.978 on AVX-512 BF16.
# F1: same label and IoU >= 0.5, every label with score >= 0.5 (``bench/detect.py``'s parity).
_EPYC = "AMD EPYC, AVX-512 BF16, 2026-12-01 (bench/RESULTS.md, Detection)"
_XEON = "Intel Xeon, AMX, 2026-12-01 (bench/RESULTS.md, Detection, AMX host)"


def _on_deimv2(f1: float, measured: str) -> FidelityCheck:
    """A check from bench/detect.py's fidelity table (DEIMv2-Atto graph, ORT fp32 reference)."""
    return FidelityCheck(f1, "DEIMv2-Atto (ONNX), 27 street photos", "ONNX Runtime fp32", measured)


FIDELITY: dict[tuple[str, str], FidelityCheck] = {
    # Below the bar: bf16 moved scores by up to ~0.08 and boxes (mean IoU 0.975), so 3 of 138
    # detections crossed the 0.5 threshold. Fast (2.4-2.6x the pipeline on RT-DETRv2-R18), not chosen.
    ("openvino-bf16", "avx512_bf16"): _on_deimv2(0.978, _EPYC),
    # AMX tiles: 138 of 138 matched, 2 extra (4.4-4.6x the pipeline on RT-DETRv2-R18).
    ("openvino-bf16", "amx"): _on_deimv2(0.986, _XEON),
    # bf16 backbone + encoder, fp32 from the query selection on (openvino_runtime.split_trunk).
    ("openvino-mixed", "avx512_bf16"): _on_deimv2(0.986, _EPYC),
    ("openvino-mixed", "amx"): _on_deimv2(0.986, _XEON),
    ("torch-bf16", "amx"): FidelityCheck(
        f1=0.989,
        model="DEIMv2-Atto, 41 street photos (IoU >= 0.8)",
        reference="fp32",
        measured="shared/PERF-NOTES.md, 2026-12-01",
    ),
}
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
    def bf16_unit(self) -> str | None:
        """``amx`` / ``avx512_bf16``: the unit bf16 kernels run on here (fidelity is per unit)."""
        if self.has_amx:
            return "amx"
        return "avx512_bf16" if self.has_avx512_bf16 else None

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


def fidelity_checked(runtime: str, host: HostInfo | None = None) -> bool:
    """True for lossless runtimes, and for lossy ones with F1 >= the minimum recorded for
    ``host``'s bf16 unit (default: this host's)."""
    if runtime not in LOSSY_SUFFIX:
        return True
    unit = (host or host_info()).bf16_unit
    check = FIDELITY.get((runtime, unit)) if unit else None
    return check is not None and check.f1 >= MIN_FIDELITY_F1


def choose_runtime(
    requested: str,
    *,
    model_type: str | None,
    host: HostInfo | None = None,
    openvino: bool | None = None,
    end_to_end: bool = False,
) -> str:
    """The runtime for ``requested`` (``auto`` or a name) on ``host``; see the module docstring.

    ``openvino``: whether OpenVINO imports (default: try it); ``end_to_end``: the model is an
    end-to-end ONNX graph, which runs on :data:`E2E_RUNTIMES` only.
    """
    host = host or host_info()
    allowed = E2E_RUNTIMES if end_to_end else RUNTIMES
    if requested != "auto":
        if requested not in allowed:
            raise ValueError(
                f"unknown detector runtime {requested!r}; expected auto or one of {', '.join(allowed)}"
            )
        return requested
    if not end_to_end and cuda_available():
        return "cuda"
    if openvino is None:
        from .openvino_runtime import available

        openvino = available()
    if openvino and host.native_bf16:
        for candidate in ("openvino-bf16", "openvino-mixed"):  # fastest first
            if fidelity_checked(candidate, host):
                return candidate
    if not end_to_end and host.has_amx and fidelity_checked("torch-bf16", host):
        return "torch-bf16"  # AMX without OpenVINO
    return "onnx"


def require_native_bf16(runtime: str, host: HostInfo | None = None) -> None:
    """Refuse a bf16 runtime on a CPU that would emulate bf16 (slower than fp32)."""
    from ..domain.errors import ConfigurationError

    host = host or host_info()
    if runtime in BF16_RUNTIMES and not host.native_bf16:
        raise ConfigurationError(
            f"TRAFFIC_DETECTOR_RUNTIME={runtime} needs a CPU with bf16 instructions (amx_bf16 or "
            f"avx512_bf16); this host ({host.cpu_model}) has neither. Use an fp32 runtime."
        )


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU (a GPU SageMaker endpoint, a workstation)."""
    import torch

    return torch.cuda.is_available()


__all__ = [
    "BF16_RUNTIMES",
    "E2E_RUNTIMES",
    "FIDELITY",
    "LOSSY_SUFFIX",
    "MIN_FIDELITY_F1",
    "ONNX_VERIFIED_MODEL_TYPES",
    "OPENVINO_RUNTIMES",
    "RUNTIMES",
    "FidelityCheck",
    "HostInfo",
    "choose_runtime",
    "fidelity_checked",
    "host_info",
    "require_native_bf16",
]
