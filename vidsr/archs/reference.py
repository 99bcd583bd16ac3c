"""Parameter-free reference upscalers: exact baselines, per plane."""

from __future__ import annotations

import torch
from torch import nn

from vidsr.archs.spec import ArchSpec
from vidsr.imaging.resize import imresize


class NearestUpscaler(nn.Module):
    """Pixel replication: every input pixel becomes a ``scale`` x ``scale`` block."""

    def __init__(self, *, scale: int) -> None:
        super().__init__()
        self.scale = scale

    @property
    def spec(self) -> ArchSpec:
        return ArchSpec("nearest", (self.scale,), "planes", receptive_radius=0,
                        config={"scale": self.scale})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.scale, dim=-2).repeat_interleave(self.scale, dim=-1)


class BicubicUpscaler(nn.Module):
    """MATLAB-style bicubic interpolation (a = -0.5), the papers' baseline."""

    def __init__(self, *, scale: int) -> None:
        super().__init__()
        self.scale = scale

    @property
    def spec(self) -> ArchSpec:
        return ArchSpec("bicubic", (self.scale,), "planes", receptive_radius=2,
                        config={"scale": self.scale})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return imresize(x, scale=float(self.scale))
