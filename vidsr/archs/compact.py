"""Real-ESRGAN's SRVGGNetCompact: a plain VGG-style body at low resolution, pixel shuffle,
plus the nearest-upsampled input, so the network only learns the residual.

Canonical keys are Real-ESRGAN's: ``body.0`` (conv in), then for each of ``num_conv``
layers an activation (``body.odd``, with weights when PReLU) and a conv (``body.even``);
the last ``body`` conv outputs ``num_out_ch * scale**2`` channels.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
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


def widened(trained: SRVGGNetCompact, *, num_feat: int, num_conv: int,
            seed: int = 0) -> SRVGGNetCompact:
    """A wider, deeper compact network that computes exactly what ``trained`` does.

    ``trained``'s features are the first of each layer's; its convs are the first
    ``num_conv`` of the body and the layers after them pass those features through (a
    centre-tap identity conv and a PReLU of slope 1). The new features start from torch's
    default initialisation, drawn from numpy's legacy generator (whose stream never
    changes) seeded with ``seed``; they reach the old ones and the output only through
    weights at zero, so training grows into them: the weights into the old features learn
    from the new features' activations. A model trained this way from its strength
    partner stays in the partner's lineage, so the two interpolate (``--strength``): the
    zoo widens the partner again, to the same weights.
    """
    c = trained.config
    old_feat, old_conv = c["num_feat"], c["num_conv"]
    if num_feat < old_feat or num_conv < old_conv:
        raise ModelError(f"compact widens only: {old_feat} features, {old_conv} convs cannot"
                         f" become {num_feat} and {num_conv}")
    if c["act_type"] != "prelu" and num_conv > old_conv:
        raise ModelError("compact deepens only with PReLU (a layer of slope 1 passes through)")
    draw = np.random.RandomState(seed)
    grown = SRVGGNetCompact(num_in_ch=c["num_in_ch"], num_out_ch=c["num_out_ch"],
                            num_feat=num_feat, num_conv=num_conv, scale=c["scale"],
                            act_type=c["act_type"])
    old, new = trained.body, grown.body
    f = old_feat
    last_old, last_new = 2 * old_conv + 2, 2 * num_conv + 2
    with torch.no_grad():
        for index, layer in enumerate(new):
            if isinstance(layer, nn.PReLU):
                if index < last_old:
                    layer.weight[:f] = old[index].weight
                else:
                    layer.weight[:f] = 1.0  # identity
            elif isinstance(layer, nn.Conv2d):
                # torch's default: uniform within 1/sqrt(fan-in), weights and bias alike.
                bound = 1 / math.sqrt(layer.weight[0].numel())
                for tensor in (layer.weight, layer.bias):
                    tensor.copy_(torch.from_numpy(draw.uniform(-bound, bound, tensor.shape)))
                if index == last_new:
                    layer.weight.zero_()
                    layer.weight[:, :f] = old[last_old].weight
                    layer.bias.copy_(old[last_old].bias)
                    continue
                layer.weight[:f].zero_()
                layer.bias[:f].zero_()
                if index < last_old:
                    inputs = old[index].weight.shape[1]
                    layer.weight[:f, :inputs] = old[index].weight
                    layer.bias[:f] = old[index].bias
                else:
                    layer.weight[:f, :f, 1, 1] = torch.eye(f)
    return grown.train(trained.training)


def grow(trained: nn.Module, config: dict[str, Any]) -> SRVGGNetCompact:
    """:func:`widened` for the training loop: ``config`` is the preset's model config."""
    if not isinstance(trained, SRVGGNetCompact):
        raise ModelError(f"compact grows from a compact model, not {trained.spec.arch}")
    c = trained.config
    fixed = {k: v for k, v in config.items()
             if k not in ("num_feat", "num_conv") and c.get(k) != v}
    if fixed:
        raise ModelError(f"compact {dict(c)} grows wider and deeper only, not to "
                         + ", ".join(f"{k} = {v!r}" for k, v in fixed.items()))
    return widened(trained, num_feat=config.get("num_feat", c["num_feat"]),
                   num_conv=config.get("num_conv", c["num_conv"]))


ARCHITECTURE = Architecture(
    name="compact",
    create=SRVGGNetCompact,
    detect=detect,
    from_state_dict=from_state_dict,
    key_requirements=KEY_REQUIREMENTS,
    grow=grow,
)
