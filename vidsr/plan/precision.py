"""Which number format the network runs in, decided from the machine and from measurement.

``auto`` is not a guess: a reduced precision is chosen only where the device
computes it in hardware (bf16 on a CPU with AVX-512 BF16 or AMX, fp16 on CUDA)
and where ``vidsr eval --precision`` measured that this model's weights lose at
most :data:`TOLERATED_LOSS_DB` on Set5 with it. Everything else runs in fp32.
The choice carries its reason, which the run plan prints.

int8 is never automatic: it is post-training quantisation on OpenVINO, asked for
with ``--precision int8``, and refused for a model whose measured Set5 loss is
unknown or over :data:`INT8_TOLERATED_LOSS_DB` unless forced.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch

from vidsr.errors import OptionsError
from vidsr.plan.machine import Machine

log = logging.getLogger("vidsr")

Precision = Literal["auto", "fp32", "fp16", "bf16", "int8"]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Set5 PSNR a reduced precision may cost and still count as tolerated by a model.
TOLERATED_LOSS_DB = 0.02
# What int8 (asked for, never automatic) may cost before the plan refuses it unforced:
# about what separates two fp32 trainings of one model, invisible in a picture.
INT8_TOLERATED_LOSS_DB = 0.1


@dataclass(frozen=True)
class MeasuredLoss:
    """Set5 PSNR (dB) a model's weights lose per reduced precision, and where that comes from.

    ``losses`` lacks a precision that was never measured for these weights.
    """

    losses: Mapping[str, float]
    source: str  # e.g. "card compact x4", or why there is no measurement


UNMEASURED = MeasuredLoss({}, "no measurement for these weights")


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses and why."""

    name: str  # fp32, fp16 or bf16
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        """torch's dtype for the network; int8 runs on OpenVINO, and what torch still
        does in an int8 run (padding, the fp32 redo) is fp32."""
        return DTYPES.get(self.name, torch.float32)


def choose_precision(
    requested: str, device_type: str, machine: Machine, measured: MeasuredLoss, *,
    strict: bool = False, measuring: bool = False, runtime: str = "torch",
    force_int8: bool = False,
) -> PrecisionChoice:
    """Resolve ``requested`` (auto, fp32, fp16, bf16, int8) for a device of ``device_type``
    and the run's ``runtime`` (torch or openvino).

    ``measuring`` (``vidsr eval``) allows fp16 on the CPU, slow as it is there, and int8
    whose loss is not measured yet, so their cost can be measured. ``strict`` turns the
    warning about bf16 on a CPU without native bf16 into an error. ``force_int8`` runs
    int8 whatever its measured loss.
    """
    if requested == "int8":
        return _int8(runtime, measured, measuring=measuring, force=force_int8)
    if requested == "auto":
        return _automatic(device_type, machine, measured, runtime)
    if requested not in DTYPES:
        raise OptionsError(f"unknown precision {requested!r} (use fp32, fp16, bf16 or int8)")
    if runtime == "openvino" and requested == "fp16":
        raise OptionsError("fp16 is not usable with OpenVINO on the CPU; use --precision"
                           " bf16, int8 or fp32")
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


def loss_key(precision: str, runtime: str) -> str:
    """The ``precision_loss`` entry of ``precision`` on ``runtime``. OpenVINO's bf16 casts
    the picture layers' convolutions too, where torch's autocast keeps them in fp32: its
    loss is measured apart (``openvino-bf16``). int8 is OpenVINO's alone."""
    return f"openvino-{precision}" if runtime == "openvino" and precision == "bf16" else precision


def _automatic(device_type: str, machine: Machine, measured: MeasuredLoss,
               runtime: str) -> PrecisionChoice:
    reduced = "fp16" if device_type == "cuda" else "bf16"
    if device_type == "cpu" and not machine.native_bf16:
        return PrecisionChoice("fp32", f"auto: this CPU has no native bf16 (torch "
                                       f"{machine.cpu_capability})")
    key = loss_key(reduced, runtime)
    what = f"OpenVINO's {reduced}" if key != reduced else reduced
    loss = measured.losses.get(key)
    if loss is None:
        return PrecisionChoice("fp32", f"auto: {what} is not measured for this model"
                                       f" ({measured.source})")
    if loss > TOLERATED_LOSS_DB:
        return PrecisionChoice("fp32", f"auto: {what} costs this model {loss:.3f} dB on Set5"
                                       f" ({measured.source}), over {TOLERATED_LOSS_DB} dB")
    where = "CUDA" if device_type == "cuda" else "native bf16 on this CPU"
    return PrecisionChoice(reduced, f"auto: {where}; {what} costs {loss:.3f} dB on Set5"
                                    f" ({measured.source})")


def _int8(runtime: str, measured: MeasuredLoss, *, measuring: bool,
          force: bool) -> PrecisionChoice:
    """int8, if the runtime quantises and the measured loss allows it (or it is forced)."""
    if runtime != "openvino":
        raise OptionsError("int8 is OpenVINO's post-training quantisation; add --runtime"
                           " openvino")
    loss = measured.losses.get("int8")
    if measuring:
        return PrecisionChoice("int8", "asked for, to measure its cost")
    if loss is None:
        if not force:
            raise OptionsError(
                f"int8 is not measured for this model ({measured.source}): measure it with"
                " `vidsr eval SET5 --runtime openvino --precision int8`, or pass --force-int8")
        return PrecisionChoice("int8", f"asked for and forced; its loss is not measured"
                                       f" ({measured.source})")
    text = f"costs {loss:.3f} dB on Set5 ({measured.source})"
    if loss > INT8_TOLERATED_LOSS_DB:
        if not force:
            raise OptionsError(
                f"int8 {text}, over the {INT8_TOLERATED_LOSS_DB} dB vidsr allows; use fp32 or"
                " bf16, or pass --force-int8 to accept the loss")
        return PrecisionChoice("int8", f"asked for and forced; {text}")
    return PrecisionChoice("int8", f"asked for; {text}, within {INT8_TOLERATED_LOSS_DB} dB")
