"""Devices by name, torch's thread count, and out-of-memory errors.

Names given by the user (``auto``, ``cpu``, ``cuda:N``, lists of them) become
torch devices here, checked once, with errors that say what to use instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from vidsr.errors import OptionsError


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


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says an allocation failed, on CUDA or on the CPU."""
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc)
    # The CPU allocator raises a plain RuntimeError; so do some CUDA library calls (cuDNN).
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


class TorchThreads:
    """Sets torch's intra-op thread count (0: leaves it) until :meth:`restore`.

    The count is process-wide: executors set it for their life, and every other
    place that needs another count for a while goes through here too.
    """

    def __init__(self, threads: int) -> None:
        self._saved = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)

    def restore(self) -> None:
        """Put the count back; safe to call twice."""
        torch.set_num_threads(self._saved)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch intra-op threads set to ``threads`` (0: unchanged) inside the block."""
    setting = TorchThreads(threads)
    try:
        yield
    finally:
        setting.restore()
