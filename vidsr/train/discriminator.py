"""ESRGAN's VGG-style discriminator for 128x128 patches (SRGAN's design with more width).

Five stages, each a 3x3 conv and a strided 4x4 conv with batch norm and
LeakyReLU(0.2), halve the patch five times (128 -> 4); two linear layers give
one logit per patch. Parameter names follow BasicSR's ``VGGStyleDiscriminator``
so its GAN checkpoints load.
"""

from __future__ import annotations

import torch
from torch import nn


class VGGStyleDiscriminator(nn.Module):
    """A patch discriminator returning one raw logit per input image."""

    def __init__(self, *, num_in_ch: int = 3, num_feat: int = 64, input_size: int = 128) -> None:
        super().__init__()
        if input_size % 32:
            raise ValueError(f"input_size must be divisible by 32, got {input_size}")
        self.num_in_ch, self.num_feat, self.input_size = num_in_ch, num_feat, input_size
        widths = [num_feat, num_feat * 2, num_feat * 4, num_feat * 8, num_feat * 8]
        self.conv0_0 = nn.Conv2d(num_in_ch, widths[0], 3, 1, 1, bias=True)
        self.conv0_1 = nn.Conv2d(widths[0], widths[0], 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(widths[0], affine=True)
        for stage in range(1, 5):
            c_in, c_out = widths[stage - 1], widths[stage]
            setattr(self, f"conv{stage}_0", nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False))
            setattr(self, f"bn{stage}_0", nn.BatchNorm2d(c_out, affine=True))
            setattr(self, f"conv{stage}_1", nn.Conv2d(c_out, c_out, 4, 2, 1, bias=False))
            setattr(self, f"bn{stage}_1", nn.BatchNorm2d(c_out, affine=True))
        side = input_size // 32
        self.linear1 = nn.Linear(widths[4] * side * side, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"the discriminator takes {self.input_size}x{self.input_size} "
                             f"patches, got {tuple(x.shape[-2:])}")
        feat = self.lrelu(self.conv0_0(x))
        feat = self.lrelu(self.bn0_1(self.conv0_1(feat)))
        for stage in range(1, 5):
            for half in (0, 1):
                conv = getattr(self, f"conv{stage}_{half}")
                bn = getattr(self, f"bn{stage}_{half}")
                feat = self.lrelu(bn(conv(feat)))
        feat = self.lrelu(self.linear1(feat.flatten(1)))
        return self.linear2(feat)
