"""Where and how the network runs: devices, precision, CPU threads, out-of-memory errors.

Names given by the user (``auto``, ``cpu``, ``cuda:N``, lists of them) become
torch devices here, precisions become dtypes, and a CPU-only run gets its
thread split between torch and the codecs. Everything is checked once, with
errors that say what to use instead.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from vidsr.errors import OptionsError

Precision = Literal["auto", "fp32", "fp16", "bf16"]
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class CpuThreads:
    """How to share the CPU between torch and the codecs in an overlapped run.

    ``workers`` batches run at once, each with ``torch`` intra-op threads.
    """

    torch: int
    interop: int
    decoder: int
    encoder: int
    workers: int = 1


def plan_cpu_threads(cores: int | None = None) -> CpuThreads:
    """A thread split for a CPU-only run with decode, infer and encode overlapped.

    The network gets all but one core when there are more than two: decoding
    and encoding need about one core between them at the sizes CPU models run
    at. With two cores or fewer the network keeps both and the codec threads
    share them.

    The network's cores are used by several batches at once (``workers``), each
    with few intra-op threads, rather than by one batch with many: an intra-op
    team waits at every layer for its slowest thread, so one thread preempted
    by the encoder stalls them all, while independent batches just slow down by
    the time the encoder takes. Measured on 2 cores (espcn x2, foreman, bf16):
    two workers of one thread run the pipeline at 33.6 fps against 27.1 for one
    batch on two threads (benchmarks/RESULTS.md). Up to four network cores get
    a worker each; beyond that two workers share them, which keeps the frames
    held in memory at two batches.
    """
    cores = cores or usable_cores()
    network = cores if cores <= 2 else cores - 1
    codec = 1 if cores <= 2 else max(1, min(4, cores // 4))
    workers = network if network <= 4 else 2
    return CpuThreads(torch=max(1, network // workers), interop=1, decoder=codec,
                      encoder=codec, workers=workers)


def usable_cores() -> int:
    """Cores this process may run on (a container or ``taskset`` may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_device(name: str) -> torch.device:
    """``auto`` picks the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise OptionsError(f"unknown device {name!r} (use cpu, cuda or cuda:N)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionsError(f"device {name!r} asked for, but no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device.index >= torch.cuda.device_count():
            raise OptionsError(
                f"device {name!r} asked for, but there are {torch.cuda.device_count()}"
                " CUDA device(s) (cuda:0 ...)"
            )
    return device


def resolve_devices(names: str) -> tuple[torch.device, ...]:
    """``cuda:0,cuda:1`` -> both devices; a single name -> one device."""
    parts = [part.strip() for part in names.split(",")]
    if not all(parts):
        raise OptionsError(f"empty device name in {names!r} (use e.g. cuda:0,cuda:1)")
    return tuple(resolve_device(part) for part in parts)


def resolve_precision(precision: str, device: torch.device, supports_half: bool) -> torch.dtype:
    """fp16 on CUDA by default where the model allows it; fp32 on the CPU.

    fp16 on the CPU is refused: its kernels are slow and inexact there; bf16 is the CPU's fast type.
    """
    if precision == "auto":
        return torch.float16 if device.type == "cuda" and supports_half else torch.float32
    if precision not in _DTYPES:
        raise OptionsError(f"unknown precision {precision!r} (use fp32, fp16 or bf16)")
    if precision == "fp16" and device.type == "cpu":
        raise OptionsError("fp16 is not usable on the CPU; use --precision bf16 or fp32")
    return _DTYPES[precision]


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says an allocation failed, on CUDA or on the CPU."""
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc)
    # The CPU allocator raises a plain RuntimeError; so do some CUDA library calls (cuDNN).
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def cpu_name() -> str:
    """The CPU model, for benchmark reports and model cards."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
