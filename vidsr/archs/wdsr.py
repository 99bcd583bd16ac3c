"""WDSR-A and WDSR-B (Yu et al. 2018): wide activation residual blocks, weight normalisation.

Official key layout (JiahuiYu/wdsr_ntire2018): ``head.0``, ``body.N.body.M``, ``tail.0``,
``skip.0``, each conv with ``weight_g`` / ``weight_v`` / ``bias``. A's block is
3x3 (wide) -> ReLU -> 3x3; B's is 1x1 (wider) -> ReLU -> 1x1 (low-rank linear) -> 3x3,
so ``body.0.body.3`` tells them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

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
from vidsr.archs.blocks import DIV2K_RGB_MEAN, ScaledResidual, WeightNormConv2d
from vidsr.archs.spec import ArchSpec
from vidsr.errors import ModelError

Variant = Literal["a", "b"]


def _block_a(num_feat: int, block_feat: int) -> nn.Sequential:
    return nn.Sequential(
        WeightNormConv2d(num_feat, block_feat, 3), nn.ReLU(inplace=True),
        WeightNormConv2d(block_feat, num_feat, 3),
    )


def _block_b(num_feat: int, block_feat: int, linear_feat: int) -> nn.Sequential:
    return nn.Sequential(
        WeightNormConv2d(num_feat, block_feat, 1), nn.ReLU(inplace=True),
        WeightNormConv2d(block_feat, linear_feat, 1),
        WeightNormConv2d(linear_feat, num_feat, 3),
    )


class WDSR(nn.Module):
    """Head conv, wide-activation residual blocks, pixel-shuffle tail, plus a 5x5 skip branch.

    Internally works like the official code on (x - mean) / 0.5, i.e. 0..255
    input shifted by the DIV2K mean and divided by 127.5.
    """

    def __init__(
        self,
        *,
        variant: Variant = "a",
        scale: int = 4,
        num_feat: int = 32,
        num_block: int = 16,
        block_feat: int | None = None,
        linear_feat: int | None = None,
        res_scale: float = 1.0,
        rgb_mean: Sequence[float] = DIV2K_RGB_MEAN,
    ) -> None:
        super().__init__()
        if variant not in ("a", "b"):
            raise ModelError(f"wdsr variant must be 'a' or 'b', not {variant!r}")
        if scale < 1:
            raise ModelError(f"wdsr scale must be at least 1, got {scale}")
        # The paper's widths: A expands 4x in a 3x3 conv; B expands 6x in a 1x1
        # conv then narrows to 0.8x before its 3x3 conv.
        if block_feat is None:
            block_feat = num_feat * (4 if variant == "a" else 6)
        if variant == "b" and linear_feat is None:
            linear_feat = int(num_feat * 0.8)
        if variant == "a":
            linear_feat = None
        self.config: dict[str, Any] = {
            "variant": variant, "scale": scale, "num_feat": num_feat, "num_block": num_block,
            "block_feat": block_feat, "linear_feat": linear_feat, "res_scale": res_scale,
            "rgb_mean": tuple(rgb_mean),
        }
        out_feat = 3 * scale**2
        self.head = nn.Sequential(WeightNormConv2d(3, num_feat, 3))
        self.body = nn.Sequential(*(
            ScaledResidual(
                _block_a(num_feat, block_feat) if linear_feat is None
                else _block_b(num_feat, block_feat, linear_feat),
                res_scale,
            )
            for _ in range(num_block)
        ))
        self.tail = nn.Sequential(WeightNormConv2d(num_feat, out_feat, 3), nn.PixelShuffle(scale))
        self.skip = nn.Sequential(WeightNormConv2d(3, out_feat, 5), nn.PixelShuffle(scale))

    @property
    def spec(self) -> ArchSpec:
        c = self.config
        per_block = 2 if c["variant"] == "a" else 1
        return ArchSpec(
            "wdsr", (c["scale"],), "rgb",
            receptive_radius=max(2 + per_block * c["num_block"], 2),
            picture_layers=("head.0", "tail.0", "skip.0"), config=dict(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.config["rgb_mean"], dtype=x.dtype, device=x.device)
        mean = mean.view(1, 3, 1, 1)
        x = (x - mean) * 2
        out = self.tail(self.body(self.head(x))) + self.skip(x)
        return out / 2 + mean


KEY_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "official": ("head.0.weight_v", "body.0.body.0.weight_v", "tail.0.weight_v",
                 "skip.0.weight_v"),
}


def detect(state_dict: StateDict) -> bool:
    return has_keys(state_dict, KEY_REQUIREMENTS["official"])


def from_state_dict(state_dict: StateDict, config: dict[str, Any] | None = None) -> WDSR:
    variant: Variant = "b" if "body.0.body.3.weight_v" in state_dict else "a"
    read = {
        "variant": variant,
        "scale": round((state_dict["tail.0.weight_v"].shape[0] / 3) ** 0.5),
        "num_feat": state_dict["head.0.weight_v"].shape[0],
        "num_block": len(indices(state_dict, "body.")),
        "block_feat": state_dict["body.0.body.0.weight_v"].shape[0],
        "linear_feat": state_dict["body.0.body.2.weight_v"].shape[0] if variant == "b" else None,
        # Not readable from shapes: res_scale and rgb_mean (the official defaults, 1 and DIV2K's).
    }
    return load_canonical("wdsr", WDSR, with_overrides(read, config), state_dict)


ARCHITECTURE = Architecture(
    name="wdsr",
    create=WDSR,
    detect=detect,
    from_state_dict=from_state_dict,
    key_requirements=KEY_REQUIREMENTS,
)
