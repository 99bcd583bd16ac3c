"""Layers shared by several architectures, each written once."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vidsr.archs.spec import InputSpace
from vidsr.errors import ModelError

# Mean RGB of DIV2K's training set, which EDSR and WDSR subtract before the body.
DIV2K_RGB_MEAN: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)


def conv3x3(in_channels: int, out_channels: int, *, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


def nearest_upsample(picture: torch.Tensor, scale: int) -> torch.Tensor:
    """``picture`` (N, C, H, W) upsampled ``scale`` times by repeating pixels.

    In an ONNX export it is written as data movement (each channel repeated ``scale**2``
    times, then a depth-to-space) instead of a Resize: OpenVINO's CPU plugin runs every
    Resize in bf16 when the network runs in bf16 (it counts it as a super-resolution
    network's compute), which rounds the picture itself to 8 significant bits before the
    skip adds it to the output; data movement at the graph's end stays in f32. The values
    are the same either way.
    """
    if not torch.onnx.is_in_onnx_export():
        return F.interpolate(picture, scale_factor=scale, mode="nearest")
    # No sizes read from the tensor: a traced size can be frozen into the graph.
    repeated = picture.unsqueeze(2).expand(-1, -1, scale * scale, -1, -1)
    return F.pixel_shuffle(repeated.flatten(1, 2), scale)


class MeanShift(nn.Conv2d):
    """Adds (sign=+1) or subtracts (sign=-1) a per-channel mean, as a frozen 1x1 conv.

    A conv rather than a buffer because EDSR-PyTorch checkpoints store it as
    ``sub_mean.weight`` / ``sub_mean.bias``; loading it keeps those keys exact.
    """

    def __init__(
        self,
        *,
        rgb_range: float,
        mean: Sequence[float] = DIV2K_RGB_MEAN,
        std: Sequence[float] = (1.0, 1.0, 1.0),
        sign: int = -1,
    ) -> None:
        super().__init__(3, 3, kernel_size=1)
        std_t = torch.tensor(std, dtype=torch.float32)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1) / std_t.view(3, 1, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(mean, dtype=torch.float32) / std_t)
        for parameter in self.parameters():
            parameter.requires_grad = False


class WeightNormConv2d(nn.Module):
    """Conv2d with weight normalisation: weight = g * v / ||v|| (norm per output channel).

    Written out rather than through ``torch.nn.utils.weight_norm`` (deprecated)
    or its parametrization (which renames the keys), so the parameters keep the
    ``weight_g`` / ``weight_v`` names of the published WDSR checkpoints.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight_v = nn.Parameter(torch.empty(shape))
        self.weight_g = nn.Parameter(torch.empty(out_channels, 1, 1, 1))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same initial weight as a plain Conv2d, with g chosen so that weight == v.
        nn.init.kaiming_uniform_(self.weight_v, a=math.sqrt(5))
        with torch.no_grad():
            self.weight_g.copy_(self._v_norm())
        fan_in = self.weight_v[0].numel()
        bound = 1 / math.sqrt(fan_in) if fan_in else 0.0
        nn.init.uniform_(self.bias, -bound, bound)

    def _v_norm(self) -> torch.Tensor:
        return torch.linalg.vector_norm(self.weight_v, dim=(1, 2, 3), keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_g * self.weight_v / self._v_norm()
        return F.conv2d(x, weight, self.bias, padding=self.padding)


class ScaledResidual(nn.Module):
    """x + res_scale * body(x): the residual block of EDSR and WDSR, whatever its body."""

    def __init__(self, body: nn.Sequential, res_scale: float) -> None:
        super().__init__()
        self.body = body
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class PixelShuffleUpsampler(nn.Sequential):
    """conv -> pixel shuffle, once for x2/x3 and repeated x2 stages for x4/x8 (EDSR's tail).

    The layer order (conv at 0, 2, ...) matches EDSR-PyTorch's ``Upsampler``.
    """

    def __init__(self, *, scale: int, num_feat: int) -> None:
        layers: list[nn.Module] = []
        if scale == 3:
            layers += [conv3x3(num_feat, 9 * num_feat), nn.PixelShuffle(3)]
        elif scale in (2, 4, 8):
            for _ in range(int(math.log2(scale))):
                layers += [conv3x3(num_feat, 4 * num_feat), nn.PixelShuffle(2)]
        else:
            raise ModelError(f"pixel-shuffle upsampler supports scales 2, 3, 4 and 8, not {scale}")
        super().__init__(*layers)


def input_space_for(channels: int, arch: str) -> InputSpace:
    """ArchSpec's input space for a network with this many input channels."""
    if channels == 3:
        return "rgb"
    if channels == 1:
        return "y"
    raise ModelError(f"{arch}: vidsr runs networks on 1 (luma) or 3 (RGB) channels, not {channels}")
