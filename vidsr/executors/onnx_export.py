"""A network to ONNX: the export ``vidsr export`` writes and the OpenVINO runtime caches.

The file holds the network alone, in its own space (the ``spec``'s input space, values in
[0, 1], unclamped output): input ``input`` (N, C, H, W) float32, output ``output``
(N, C, H*s, W*s), batch, height and width dynamic. A network that sees a window of
``T = 2r + 1`` frames takes them stacked on the channel axis, oldest first: ``input``
(N, T*C, H, W), frame ``t``'s channels at ``t*C .. t*C + C - 1``, the output frame's own
frame the centre one (``t = r``); ``output`` is that frame's (N, C, H*s, W*s). It is the
layout vs-mlrt gives a model handed a list of clips (it concatenates their planes);
:func:`stacked_windows` lays the engine's windows out so.

Opset :data:`OPSET` (17), written by torch's TorchScript exporter: it exports every vidsr
architecture in well under a second, and opset 17 is read by ONNX Runtime 1.13+,
OpenVINO 2022.3+ and TensorRT 8.6+ (vs-mlrt).
torch's newer dynamo exporter (``dynamo=True``, needs ``onnxscript``) writes opset 18 and
takes seconds per network.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch
from torch import nn

from vidsr.archs.spec import ArchSpec
from vidsr.errors import OptionsError

OPSET = 17
DYNAMO_OPSET = 18
# Raised whenever the graph written for the same weights changes (2: the skip's nearest
# upsample as data movement, blocks.nearest_upsample): caches name their files by it.
EXPORT_REVISION = 2


def plain_module(module: nn.Module) -> nn.Module:
    """The module itself when ``torch.compile`` wrapped it (export traces the original)."""
    return getattr(module, "_orig_mod", module)


class StackedWindows(nn.Module):
    """A window network taking its windows as (N, T*C, H, W), the frames stacked on the
    channel axis oldest first: the exported layout (module text)."""

    def __init__(self, network: nn.Module, window: int, channels: int) -> None:
        super().__init__()
        self.network = network
        self.window = window
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.unflatten(1, (self.window, self.channels)))


def stacked_windows(windows: torch.Tensor) -> torch.Tensor:
    """Windows (N, T, C, H, W) as the exported network takes them, (N, T*C, H, W)."""
    return windows.flatten(1, 2)


def exported_module(module: nn.Module, spec: ArchSpec) -> nn.Module:
    """What the ONNX file holds: the network, in the exported layout."""
    module = plain_module(module)
    if spec.window > 1:
        return StackedWindows(module, spec.window, spec.channels)
    return module


def node_scope(spec: ArchSpec, layer: str) -> str:
    """The prefix the TorchScript exporter gives the ONNX nodes of submodule ``layer``:
    ``body.0`` -> ``/body/body.0/`` (under ``/network`` in a window network's wrapper)."""
    parts = layer.split(".")
    scope = "".join("/" + ".".join(parts[: i + 1]) for i in range(len(parts))) + "/"
    return ("/network" if spec.window > 1 else "") + scope


def input_channels(spec: ArchSpec) -> int:
    """The exported input's channel count: every frame of a window, each frame's channels."""
    return spec.window * spec.channels


def export_network(module: nn.Module, spec: ArchSpec, path: Path, *,
                   dynamo: bool = False) -> Path:
    """Write ``module`` to ``path`` as ONNX with dynamic batch, height and width."""
    module = exported_module(module, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    side = 16 * spec.size_multiple
    example = torch.rand(1, input_channels(spec), side, side)
    if dynamo:
        if importlib.util.find_spec("onnxscript") is None:
            raise OptionsError("--dynamo needs onnxscript: pip install onnxscript")
        batch = torch.export.Dim("batch", min=1)
        height = torch.export.Dim("height", min=2)
        width = torch.export.Dim("width", min=2)
        torch.onnx.export(module, (example,), str(path), dynamo=True, opset_version=DYNAMO_OPSET,
                          input_names=["input"], output_names=["output"], external_data=False,
                          dynamic_shapes={"x": {0: batch, 2: height, 3: width}})
        return path
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # torch marks the TorchScript exporter deprecated; it is chosen on purpose (module text).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "N", 2: "H", 3: "W"},
                                        "output": {0: "N", 2: "Hs", 3: "Ws"}})
    return path


def centre_crop(picture: torch.Tensor, side: int) -> torch.Tensor:
    """The centre ``side`` x ``side`` pixels of ``picture`` (all of a smaller side)."""
    h, w = picture.shape[-2:]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return picture[..., top : top + side, left : left + side]
