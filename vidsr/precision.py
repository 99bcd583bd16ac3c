"""Which number format the network runs in, decided from the machine and from measurement.

``auto`` is not a guess: a reduced precision is chosen only where the device
computes it in hardware (bf16 on a CPU with AVX-512 BF16 or AMX, fp16 on CUDA)
and where ``vidsr eval --precision`` measured that this model's weights lose at
most :data:`TOLERATED_LOSS_DB` on Set5 with it. Everything else runs in fp32.
The choice carries its reason, which the run plan prints.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch

from vidsr.errors import OptionsError
from vidsr.machine import Machine

log = logging.getLogger("vidsr")

Precision = Literal["auto", "fp32", "fp16", "bf16"]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Set5 PSNR a reduced precision may cost and still count as tolerated by a model.
TOLERATED_LOSS_DB = 0.02


@dataclass(frozen=True)
class MeasuredLoss:
    """Set5 PSNR (dB) a model's weights lose per reduced precision, and where that comes from.

    ``losses`` lacks a precision that was never measured for these weights.
    """

    losses: Mapping[str, float]
    source: str  # e.g. "card compact x4", or why there is no measurement

    def tolerates(self, precision: str) -> bool:
        loss = self.losses.get(precision)
        return loss is not None and loss <= TOLERATED_LOSS_DB


UNMEASURED = MeasuredLoss({}, "no measurement for these weights")


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses and why."""

    name: str  # fp32, fp16 or bf16
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]


def choose_precision(
    requested: str, device_type: str, machine: Machine, measured: MeasuredLoss, *,
    strict: bool = False, measuring: bool = False,
) -> PrecisionChoice:
    """Resolve ``requested`` (auto, fp32, fp16, bf16) for a device of ``device_type``.

    ``measuring`` (``vidsr eval``) allows fp16 on the CPU, slow as it is there, so
    its cost can be measured without a GPU. ``strict`` turns the warning about bf16
    on a CPU without native bf16 into an error.
    """
    if requested == "auto":
        return _automatic(device_type, machine, measured)
    if requested not in DTYPES:
        raise OptionsError(f"unknown precision {requested!r} (use fp32, fp16 or bf16)")
    if device_type == "cpu" and requested == "fp16" and not measuring:
        raise OptionsError("fp16 is not usable on the CPU; use --precision bf16 or fp32")
    if device_type == "cpu" and requested == "bf16" and not machine.native_bf16:
        message = (f"this CPU has no native bf16 ({machine.cpu}, torch {machine.cpu_capability}):"
                   " bf16 runs on torch's reference convolution, many times slower than fp32")
        if strict:
            raise OptionsError(f"{message}; use --precision fp32")
        log.warning("%s; --precision fp32 or auto avoids it", message)
        return PrecisionChoice(requested, "asked for; " + message.split(":")[0])
    return PrecisionChoice(requested, "asked for")


def _automatic(device_type: str, machine: Machine, measured: MeasuredLoss) -> PrecisionChoice:
    reduced = "fp16" if device_type == "cuda" else "bf16"
    if device_type == "cpu" and not machine.native_bf16:
        return PrecisionChoice("fp32", f"auto: this CPU has no native bf16 (torch "
                                       f"{machine.cpu_capability})")
    loss = measured.losses.get(reduced)
    if loss is None:
        return PrecisionChoice("fp32", f"auto: {reduced} is not measured for this model"
                                       f" ({measured.source})")
    if loss > TOLERATED_LOSS_DB:
        return PrecisionChoice("fp32", f"auto: {reduced} costs this model {loss:.3f} dB on Set5"
                                       f" ({measured.source}), over {TOLERATED_LOSS_DB} dB")
    where = "CUDA" if device_type == "cuda" else "native bf16 on this CPU"
    return PrecisionChoice(reduced, f"auto: {where}; costs {loss:.3f} dB on Set5"
                                    f" ({measured.source})")
