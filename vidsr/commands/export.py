"""``vidsr export``: any vidsr network to ONNX, checked against torch on a real frame.

The file is :mod:`vidsr.executors.onnx_export`'s: the network alone, in its own space.
Colour conversion, padding to the size multiple and tiling stay in the program that runs
it (VDSR-like networks, ``pre_upsampled``, take the picture bicubic-upscaled to the output
size);
:class:`~vidsr.engine.model_space.ModelSpace` is where vidsr does both. A network that sees
a window of frames takes them stacked on the channel axis, oldest first (the layout of
:mod:`vidsr.executors.onnx_export`), and is checked on a real window: the sample clip's
first frames.

Verification runs the exported file on ONNX Runtime (OpenVINO where ONNX Runtime is
not installed) on a real frame, the first of the bundled sample clip, and reports the
largest difference from torch.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidsr.archs.spec import ArchSpec
from vidsr.engine.model_space import ModelSpace
from vidsr.errors import ModelError, OptionsError
from vidsr.executors.onnx_export import (
    DYNAMO_OPSET,
    OPSET,
    centre_crop,
    export_network,
    exported_module,
    input_channels,
    stacked_windows,
)
from vidsr.models.zoo import SRModel

log = logging.getLogger("vidsr")

SAMPLE_CLIP = Path(__file__).resolve().parents[1] / "samples" / "bbb_2s.mp4"
# Side of the centre crop of the sample frame the export is checked on: large enough to
# be a real picture, small enough that a 16M-parameter RRDB runs it in seconds.
VERIFY_SIDE = 96
# fp32 against fp32 on another runtime: reordered sums differ by ~1e-6; a wrong graph
# differs by whole code values (1/255).
VERIFY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ExportReport:
    """What ``vidsr export`` wrote and how it was checked."""

    path: Path
    opset: int
    input_shape: str  # e.g. "N x 3 x H x W"; windows: "N x 15 x H x W (5 frames x 3 ...)"
    output_shape: str
    verified_on: str | None  # the runtime that ran the check, None when not checked
    max_difference: float | None  # largest |onnx - torch| on the check frame, model space

    def to_text(self) -> str:
        text = (f"wrote {self.path} (ONNX opset {self.opset}; input {self.input_shape},"
                f" output {self.output_shape}, float32, [0, 1])")
        if self.verified_on is not None and self.max_difference is not None:
            text += (f"; checked on {self.verified_on} against torch on a real frame: max"
                     f" difference {self.max_difference:.2e}")
        return text


def sample_frame(spec: ArchSpec, scale: int, side: int = VERIFY_SIDE) -> torch.Tensor:
    """A real input to check a network on: the centre of the bundled sample clip's first
    frame, as the network takes it (1, C, h, w), ``side`` pixels square (a pre-upsampling
    network's crop is ``side`` once upscaled). For a network that sees a window of T
    frames, the clip's first T frames in the exported layout, (1, T*C, h, w)."""
    from vidsr.io.decode import Decoder

    space = ModelSpace.of(spec, scale)
    if spec.pre_upsampled:
        side = max(1, side // scale)

    with Decoder(SAMPLE_CLIP, batch_size=spec.window) as decoder:
        batch = next(iter(decoder))
        picture = space.picture_of(batch, decoder.info.colour)
    frames = space.network_input(centre_crop(picture, side))
    if spec.window == 1:
        return frames
    return stacked_windows(frames.unsqueeze(0))


def run_onnx(path: Path, x: np.ndarray, runtime: str) -> np.ndarray:
    """``path`` run on ``runtime`` (onnxruntime or openvino) with input ``x``."""
    if runtime == "onnxruntime":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled.create_infer_request().infer({0: x})[0]


def verification_runtime() -> str | None:
    """The runtime the export is checked on: ONNX Runtime, else OpenVINO, else none."""
    for name in ("onnxruntime", "openvino"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def verify_export(path: Path, module: nn.Module, x: torch.Tensor, runtime: str) -> float:
    """Largest |ONNX - torch| of ``module`` (as exported) on ``x``, the ONNX file run on
    ``runtime``."""
    with torch.inference_mode():
        expected = module(x.float()).float().numpy()
    got = run_onnx(path, x.float().numpy(), runtime)
    if got.shape != expected.shape:
        raise ModelError(f"{path}: the ONNX model gives {got.shape} where torch gives"
                         f" {expected.shape}")
    return float(np.abs(got - expected).max())


def export_model(model: SRModel, path: Path, *, verify: bool = True,
                 dynamo: bool = False) -> ExportReport:
    """Export ``model``'s network to ``path`` and, with ``verify``, check it against torch."""
    spec = model.spec
    if model.parameter_count == 0:
        raise ModelError(f"{model.name} is an exact resizer with no network to export")
    path = Path(path)
    export_network(model.module, spec, path, dynamo=dynamo)
    c = spec.channels
    s = "" if spec.pre_upsampled else f"*{model.scale}"
    input_shape = f"N x {input_channels(spec)} x H x W"
    if spec.window > 1:
        input_shape += f" ({spec.window} frames x {c} channels, oldest first)"
    report = ExportReport(path=path, opset=DYNAMO_OPSET if dynamo else OPSET,
                          input_shape=input_shape, output_shape=f"N x {c} x H{s} x W{s}",
                          verified_on=None, max_difference=None)
    if not verify:
        return report
    runtime = verification_runtime()
    if runtime is None:
        raise OptionsError(f"wrote {path}, but nothing here runs ONNX to check it: pip install"
                           " 'vidsr[onnx]' (ONNX Runtime), or pass --no-verify")
    difference = verify_export(path, exported_module(model.module, spec),
                               sample_frame(spec, model.scale), runtime)
    if not difference <= VERIFY_TOLERANCE:
        raise ModelError(f"{path}: the ONNX model differs from torch by {difference:.3g} on a"
                         f" real frame (more than {VERIFY_TOLERANCE}); do not use it")
    log.info("%s: max difference from torch %.2e on %s", path, difference, runtime)
    return replace(report, verified_on=runtime, max_difference=difference)
