"""What this machine is: its CPU (and whether it does bf16 natively), its cores, its GPUs.

A :class:`Machine` is read once per run and travels in the run plan, so every
figure and every decision that depends on the hardware names it. Tests build
one by hand to plan for a machine they are not on.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

# CPU flags that give oneDNN bf16 convolutions in hardware. Without them torch falls
# back to a reference bf16 convolution that is 10-20x slower than fp32.
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
OPENVINO_MISSING = "OpenVINO is not installed (pip install 'vidsr[openvino]')"


@dataclass(frozen=True)
class Machine:
    """The hardware a run plans for."""

    cpu: str  # model name
    cores: int  # cores this process may use
    cpu_capability: str  # torch's vectorisation level: "AVX2", "AVX512", "DEFAULT", ...
    native_bf16: bool  # the CPU computes bf16 in hardware (AVX-512 BF16 or AMX)
    cuda_devices: tuple[str, ...] = ()  # names of the CUDA devices, cuda:0 first

    def describe_cpu(self) -> str:
        """The CPU as benchmark reports name it."""
        bf16 = "native bf16" if self.native_bf16 else "no native bf16"
        return f"{self.cpu}, {self.cores} cores, torch {self.cpu_capability}, {bf16}"


@cache
def this_machine() -> Machine:
    """The machine this process runs on (read once)."""
    flags = _cpu_flags()
    cuda = ()
    if torch.cuda.is_available():
        cuda = tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return Machine(
        cpu=cpu_name(),
        cores=usable_cores(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        native_bf16=any(flag in flags for flag in _NATIVE_BF16_FLAGS) and _onednn_may_use_bf16(),
        cuda_devices=cuda,
    )


def _onednn_may_use_bf16() -> bool:
    """False when ``ONEDNN_MAX_CPU_ISA`` keeps oneDNN below its bf16 instruction sets
    (set to emulate an older CPU, or to work around a driver): torch then falls back to
    its slow reference bf16 convolution, as on a CPU without the flags."""
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return not limit or limit == "ALL" or "BF16" in limit or "AMX" in limit


def usable_cores() -> int:
    """Cores this process may run on (a container or ``taskset`` may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_name() -> str:
    """The CPU model, for benchmark reports and model cards."""
    for line in _cpuinfo_lines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpu_flags() -> frozenset[str]:
    for line in _cpuinfo_lines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def _cpuinfo_lines() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.read_text().splitlines() if cpuinfo.exists() else []


# -- runtimes ----------------------------------------------------------------------------------


def openvino_available() -> bool:
    """Whether OpenVINO is installed here."""
    return importlib.util.find_spec("openvino") is not None


def openvino_unusable() -> str | None:
    """Why OpenVINO (``--runtime openvino``) cannot run in this process, or None where it
    can."""
    if not openvino_available():
        return OPENVINO_MISSING
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        problem = f"OpenVINO does not load ({lines[-1] if lines else type(exc).__name__})"
        library = openvino_library()
        if "mismatches with OpenVINO Runtime library" in str(exc) and library is not None:
            # vs-mlrt's plugin (vapoursynth-mlrt-ov) brings its own build of the library,
            # which VapourSynth loads before a script runs, and the Python module refuses it.
            problem = ("another build of OpenVINO's library was loaded first (vs-mlrt's"
                       f" plugin brings one): start the process with LD_PRELOAD={library}")
        return problem
    return None


def openvino_library() -> Path | None:
    """The runtime library of OpenVINO's Python package (Linux), if it is installed."""
    spec = importlib.util.find_spec("openvino")
    if spec is None or spec.origin is None:
        return None
    return next(iter(sorted((Path(spec.origin).parent / "libs").glob("libopenvino.so.*"))),
                None)
