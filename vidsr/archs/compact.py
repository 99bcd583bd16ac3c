"""Real-ESRGAN's SRVGGNetCompact: a plain VGG-style body at low resolution, pixel shuffle,
plus the nearest-upsampled input, so the network only learns the residual.

Canonical keys are Real-ESRGAN's: ``body.0`` (conv in), then for each of ``num_conv``
layers an activation (``body.odd``, with weights when PReLU) and a conv (``body.even``);
the last ``body`` conv outputs ``num_out_ch * scale**2`` channels.
"""

from __future__ import annotations

import math
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
from vidsr.archs.blocks import conv3x3, input_space_for, nearest_upsample
from vidsr.archs.spec import ArchSpec
from vidsr.errors import ModelError

Activation = Literal["prelu", "relu", "leakyrelu"]


def activation(kind: Activation, num_feat: int) -> nn.Module:
    if kind not in ("prelu", "relu", "leakyrelu"):
        raise ModelError(f"compact act_type must be prelu, relu or leakyrelu, not {kind!r}")
    if kind == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if kind == "leakyrelu":
        return nn.LeakyReLU(0.1, inplace=True)
    return nn.ReLU(inplace=True)


def body_layers(num_feat: int, num_conv: int, num_out_ch: int, scale: int,
                act_type: Activation) -> list[nn.Module]:
    """The body after the first conv and its activation: ``num_conv`` x (conv, act), then
    the conv to ``num_out_ch * scale**2`` channels for the pixel shuffle."""
    layers: list[nn.Module] = []
    for _ in range(num_conv):
        layers += [conv3x3(num_feat, num_feat), activation(act_type, num_feat)]
    layers.append(conv3x3(num_feat, num_out_ch * scale**2))
    return layers


class SRVGGNetCompact(nn.Module):
    """conv, ``num_conv`` x (act, conv), act, conv to out*scale^2, shuffle, + nearest(input)."""

    def __init__(
        self,
        *,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        scale: int = 4,
        act_type: Activation = "prelu",
    ) -> None:
        super().__init__()
        if scale < 1:
            raise ModelError(f"compact scale must be at least 1, got {scale}")
        input_space_for(num_in_ch, "compact")
        if num_out_ch != num_in_ch:
            # The skip adds the upsampled input to the output, channel by channel.
            raise ModelError("compact needs as many output channels as input channels")
        self.config: dict[str, Any] = {
            "num_in_ch": num_in_ch, "num_out_ch": num_out_ch, "num_feat": num_feat,
            "num_conv": num_conv, "scale": scale, "act_type": act_type,
        }
        self.body = nn.Sequential(conv3x3(num_in_ch, num_feat), activation(act_type, num_feat),
                                  *body_layers(num_feat, num_conv, num_out_ch, scale, act_type))
        self.upsampler = nn.PixelShuffle(scale)

    @property
    def spec(self) -> ArchSpec:
        c = self.config
        return ArchSpec(
            "compact", (c["scale"],), input_space_for(c["num_in_ch"], "compact"),
            receptive_radius=c["num_conv"] + 2,
            picture_layers=("body.0", f"body.{2 * c['num_conv'] + 2}"), config=dict(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.upsampler(self.body(x))
        return out + nearest_upsample(x, self.config["scale"])


KEY_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "real-esrgan": ("body.0.weight", "body.0.bias", "body.2.weight"),
}


def detect(state_dict: StateDict) -> bool:
    if not has_keys(state_dict, KEY_REQUIREMENTS["real-esrgan"]):
        return False
    # Every body entry is a conv, or a PReLU's weight: nothing nested (EDSR's
    # body.N.body.M), so the body is a flat sequence of layers.
    return all(
        key.startswith("body.") and key.count(".") == 2 for key in state_dict
    ) and state_dict["body.0.weight"].ndim == 4


def from_state_dict(state_dict: StateDict, config: dict[str, Any] | None = None) -> SRVGGNetCompact:
    last = max(indices(state_dict, "body."))
    num_in_ch = state_dict["body.0.weight"].shape[1]
    num_out_ch = num_in_ch  # not readable apart from the scale; the skip requires it anyway
    read = {
        "num_in_ch": num_in_ch,
        "num_out_ch": num_out_ch,
        "num_feat": state_dict["body.0.weight"].shape[0],
        "num_conv": last // 2 - 1,
        "scale": math.isqrt(state_dict[f"body.{last}.weight"].shape[0] // num_out_ch),
        # Not readable from shapes: relu vs leakyrelu (neither has weights); PReLU has.
        "act_type": "prelu" if "body.1.weight" in state_dict else "relu",
    }
    return load_canonical("compact", SRVGGNetCompact, with_overrides(read, config), state_dict)


ARCHITECTURE = Architecture(
    name="compact",
    create=SRVGGNetCompact,
    detect=detect,
    from_state_dict=from_state_dict,
    key_requirements=KEY_REQUIREMENTS,
)
