"""EDSR (Lim et al. 2017), baseline and full, in EDSR-PyTorch's key layout.

Keys: ``sub_mean``, ``head.0``, ``body.N.body.{0,2}``, ``body.<num_block>`` (the
conv closing the trunk), ``tail.0.{0,2,..}`` (pixel-shuffle stages), ``tail.1``, ``add_mean``.
"""

from __future__ import annotations

import math
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
from vidsr.archs.blocks import (
    DIV2K_RGB_MEAN,
    MeanShift,
    PixelShuffleUpsampler,
    ScaledResidual,
    conv3x3,
)
from vidsr.archs.spec import ArchSpec

# The two published configurations; pass them to create_arch("edsr", **EDSR_FULL).
EDSR_BASELINE: dict[str, Any] = {"num_feat": 64, "num_block": 16, "res_scale": 1.0}
EDSR_FULL: dict[str, Any] = {"num_feat": 256, "num_block": 32, "res_scale": 0.1}


class EDSR(nn.Module):
    """Residual trunk without batch norm, pixel-shuffle tail; works internally on 0..rgb_range.

    EDSR-PyTorch's weights were trained on 0..255 input (``rgb_range`` 255);
    this module takes [0, 1] and scales on the way in and out.
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 16,
        res_scale: float = 1.0,
        rgb_range: float = 255,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "scale": scale, "num_feat": num_feat, "num_block": num_block,
            "res_scale": res_scale, "rgb_range": rgb_range,
        }
        self.sub_mean = MeanShift(rgb_range=rgb_range, sign=-1)
        self.head = nn.Sequential(conv3x3(3, num_feat))
        blocks: list[nn.Module] = [
            ScaledResidual(
                nn.Sequential(conv3x3(num_feat, num_feat), nn.ReLU(inplace=True),
                              conv3x3(num_feat, num_feat)),
                res_scale,
            )
            for _ in range(num_block)
        ]
        self.body = nn.Sequential(*blocks, conv3x3(num_feat, num_feat))
        self.tail = nn.Sequential(
            PixelShuffleUpsampler(scale=scale, num_feat=num_feat), conv3x3(num_feat, 3)
        )
        self.add_mean = MeanShift(rgb_range=rgb_range, sign=1)

    @property
    def spec(self) -> ArchSpec:
        c = self.config
        stages = 1 if c["scale"] == 3 else int(math.log2(c["scale"]))
        return ArchSpec(
            "edsr", (c["scale"],), "rgb",
            receptive_radius=2 + 2 * c["num_block"] + stages,
            picture_layers=("sub_mean", "head.0", "tail.1", "add_mean"), config=dict(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb_range = self.config["rgb_range"]
        feat = self.head(self.sub_mean(x * rgb_range))
        feat = feat + self.body(feat)
        return self.add_mean(self.tail(feat)) / rgb_range


KEY_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "edsr-pytorch": ("sub_mean.weight", "head.0.weight", "body.0.body.0.weight",
                     "tail.0.0.weight", "add_mean.bias"),
}


def detect(state_dict: StateDict) -> bool:
    return has_keys(state_dict, KEY_REQUIREMENTS["edsr-pytorch"])


def from_state_dict(state_dict: StateDict, config: dict[str, Any] | None = None) -> EDSR:
    num_feat = state_dict["head.0.weight"].shape[0]
    stages = indices(state_dict, "tail.0.")
    if len(stages) == 1:
        scale = 3 if state_dict["tail.0.0.weight"].shape[0] == 9 * num_feat else 2
    else:
        scale = 2 ** len(stages)
    # add_mean's bias is rgb_range * mean, so the range the weights expect is a value
    # we can read (EDSR-PyTorch uses 255; some retrainings use 1).
    ratio = float(state_dict["add_mean.bias"][0]) / DIV2K_RGB_MEAN[0]
    read = {
        "scale": scale,
        "num_feat": num_feat,
        "num_block": len(indices(state_dict, "body.")) - 1,
        # Not readable from shapes: res_scale. EDSR-PyTorch uses 0.1 for the full
        # (256-feature) model and 1 for the baseline.
        "res_scale": 0.1 if num_feat >= 256 else 1.0,
        "rgb_range": max(round(ratio), 1),
    }
    return load_canonical("edsr", EDSR, with_overrides(read, config), state_dict)


ARCHITECTURE = Architecture(
    name="edsr",
    create=EDSR,
    detect=detect,
    from_state_dict=from_state_dict,
    key_requirements=KEY_REQUIREMENTS,
)
