"""VDSR (Kim et al. 2016): a plain 20-layer conv net predicting the residual of a bicubic upscale.

Canonical keys are those of the widely used PyTorch port (twtygqyy/pytorch-vdsr):
``input``, ``residual_layer.N.conv``, ``output``, all bias-free. One network
serves every scale because it works on the already upscaled luma.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vidsr.archs.architecture import (
    Architecture,
    StateDict,
    has_keys,
    indices,
    load_canonical,
    with_overrides,
)
from vidsr.archs.blocks import conv3x3, input_space_for
from vidsr.archs.spec import ArchSpec
from vidsr.errors import ModelError


class _ConvReLU(nn.Module):
    """One hidden layer; a module of its own so its key is ``residual_layer.N.conv``."""

    def __init__(self, num_feat: int) -> None:
        super().__init__()
        self.conv = conv3x3(num_feat, num_feat, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class VDSR(nn.Module):
    """``num_layers`` 3x3 convs (ReLU between), output = input + predicted residual."""

    def __init__(
        self,
        *,
        channels: int = 1,
        num_feat: int = 64,
        num_layers: int = 20,
        scales: tuple[int, ...] = (2, 3, 4),
    ) -> None:
        super().__init__()
        if num_layers < 2:
            raise ModelError(f"vdsr needs at least 2 layers, got {num_layers}")
        input_space_for(channels, "vdsr")
        self.config: dict[str, Any] = {
            "channels": channels, "num_feat": num_feat, "num_layers": num_layers,
            "scales": tuple(scales),
        }
        self.input = conv3x3(channels, num_feat, bias=False)
        self.residual_layer = nn.Sequential(*(_ConvReLU(num_feat) for _ in range(num_layers - 2)))
        self.output = conv3x3(num_feat, channels, bias=False)
        self.relu = nn.ReLU(inplace=True)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # He init, as the paper trains it: the default would make a deep
                # plain net start almost silent.
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    @property
    def spec(self) -> ArchSpec:
        c = self.config
        return ArchSpec(
            "vdsr", c["scales"], input_space_for(c["channels"], "vdsr"), pre_upsampled=True,
            receptive_radius=c["num_layers"], picture_layers=("input", "output"),
            config=dict(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.output(self.residual_layer(self.relu(self.input(x))))
        return x + residual


KEY_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "pytorch-vdsr": ("input.weight", "residual_layer.0.conv.weight", "output.weight"),
}


def detect(state_dict: StateDict) -> bool:
    return has_keys(state_dict, KEY_REQUIREMENTS["pytorch-vdsr"])


def from_state_dict(state_dict: StateDict, config: dict[str, Any] | None = None) -> VDSR:
    # Not readable from shapes: the scales it was trained for; the paper's (2, 3, 4) is assumed.
    read = {
        "channels": state_dict["input.weight"].shape[1],
        "num_feat": state_dict["input.weight"].shape[0],
        "num_layers": len(indices(state_dict, "residual_layer.")) + 2,
    }
    return load_canonical("vdsr", VDSR, with_overrides(read, config), state_dict)


ARCHITECTURE = Architecture(
    name="vdsr",
    create=VDSR,
    detect=detect,
    from_state_dict=from_state_dict,
    key_requirements=KEY_REQUIREMENTS,
)
