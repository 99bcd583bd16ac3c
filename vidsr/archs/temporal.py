"""A compact network that sees a window of frames: early fusion of the neighbours.

Input layout: ``(N, T, C, H, W)`` with ``T = 2r + 1`` frames, the output frame's
own frame at index ``r`` (the centre) and its neighbours in display order on
either side; the output is the SR of the centre frame, ``(N, C, sH, sW)``. A
frame-wise input ``(N, C, H, W)`` is taken as a still window (the frame repeated).

The network is ``compact`` (Real-ESRGAN's SRVGGNetCompact) with two additions:
its first convolution takes every frame of the window (one ``head.frames.t`` conv per
frame, summed), and ``refine`` residual blocks after it give the fusion room.
Grown from a frame-wise compact (:func:`from_frame_model`) the neighbours'
head weights and the last conv of each refine block start at zero, so at step 0
it computes exactly what the frame-wise network did: training can only add.

Canonical keys: ``head.frames.{t}`` (conv per frame), ``head_act`` (PReLU),
``refine.{k}.conv1 / act / conv2``, then ``body`` as compact's body without its
first conv: ``num_conv`` x (conv, act) and the conv to ``C * scale**2``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
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
from vidsr.archs.compact import Activation, SRVGGNetCompact, activation, body_layers
from vidsr.archs.spec import ArchSpec
from vidsr.errors import ModelError


class RefineBlock(nn.Module):
    """conv, act, conv, added to its input: a residual that is the identity when conv2 is zero."""

    def __init__(self, num_feat: int, act_type: Activation) -> None:
        super().__init__()
        self.conv1 = conv3x3(num_feat, num_feat)
        self.act = activation(act_type, num_feat)
        self.conv2 = conv3x3(num_feat, num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class FrameFusion(nn.Module):
    """The first convolution over a window: one conv per frame, summed, as (N, T, C, H, W) -> (N,
    F, H, W). One module, so reduced precision keeps it in fp32 as a picture layer."""

    def __init__(self, num_in_ch: int, num_feat: int, window: int) -> None:
        super().__init__()
        self.frames = nn.ModuleList(conv3x3(num_in_ch, num_feat) for _ in range(window))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One convolution over the frames' channels side by side: the same sum as one conv
        # per frame, at the cost of a single call.
        weight = torch.cat([conv.weight for conv in self.frames], dim=1)
        bias = torch.stack([conv.bias for conv in self.frames]).sum(0)
        # channels_last, as the engine and training lay out every other layer's input.
        stacked = x.flatten(1, 2).contiguous(memory_format=torch.channels_last)
        return F.conv2d(stacked, weight, bias, padding=1)


class WindowCompact(nn.Module):
    """compact with a window of ``2 * radius + 1`` frames fused by its first convolution."""

    def __init__(
        self,
        *,
        num_in_ch: int = 3,
        num_feat: int = 32,
        num_conv: int = 10,
        num_refine: int = 2,
        radius: int = 2,
        scale: int = 4,
        act_type: Activation = "prelu",
    ) -> None:
        super().__init__()
        if radius < 0 or num_refine < 0:
            raise ModelError(f"temporal radius and num_refine must be >= 0, not {radius}, "
                             f"{num_refine}")
        if scale < 1:
            raise ModelError(f"temporal scale must be at least 1, got {scale}")
        input_space_for(num_in_ch, "temporal")
        self.config: dict[str, Any] = {
            "num_in_ch": num_in_ch, "num_feat": num_feat, "num_conv": num_conv,
            "num_refine": num_refine, "radius": radius, "scale": scale, "act_type": act_type,
        }
        self.head = FrameFusion(num_in_ch, num_feat, 2 * radius + 1)
        self.head_act = activation(act_type, num_feat)
        self.refine = nn.Sequential(*(RefineBlock(num_feat, act_type) for _ in range(num_refine)))
        self.body = nn.Sequential(*body_layers(num_feat, num_conv, num_in_ch, scale, act_type))
        self.upsampler = nn.PixelShuffle(scale)

    @property
    def spec(self) -> ArchSpec:
        c = self.config
        return ArchSpec(
            "temporal", (c["scale"],), input_space_for(c["num_in_ch"], "temporal"),
            receptive_radius=c["num_conv"] + 2 + 2 * c["num_refine"],
            picture_layers=("head", f"body.{2 * c['num_conv']}"),
            window=2 * c["radius"] + 1, config=dict(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        window = 2 * self.config["radius"] + 1
        if x.ndim == 4:
            x = x.unsqueeze(1).expand(-1, window, -1, -1, -1)
        if x.ndim != 5 or x.shape[1] != window:
            raise ModelError(f"temporal expects (N, {window}, C, H, W) windows, got "
                             f"{tuple(x.shape)}")
        features = self.refine(self.head_act(self.head(x)))
        out = self.upsampler(self.body(features))
        centre = x[:, window // 2]
        return out + nearest_upsample(centre, self.config["scale"])


def from_frame_model(frame_model: SRVGGNetCompact, *, radius: int = 2,
                     num_refine: int = 2) -> WindowCompact:
    """The window network that computes exactly what ``frame_model`` does, ready to train.

    The centre frame's head conv is the frame model's first conv; the neighbours'
    are zero; each refine block's last conv is zero, so the blocks pass their input
    through; the body is the frame model's body.
    """
    c = frame_model.config
    if c["num_out_ch"] != c["num_in_ch"]:
        raise ModelError("temporal needs a compact model with as many output as input channels")
    model = WindowCompact(num_in_ch=c["num_in_ch"], num_feat=c["num_feat"],
                          num_conv=c["num_conv"], num_refine=num_refine, radius=radius,
                          scale=c["scale"], act_type=c["act_type"])
    frame = frame_model.body
    with torch.no_grad():
        for t, conv in enumerate(model.head.frames):
            if t == radius:
                conv.load_state_dict(frame[0].state_dict())
            else:
                conv.weight.zero_()
                conv.bias.zero_()
        model.head_act.load_state_dict(frame[1].state_dict())
        for block in model.refine:
            block.conv2.weight.zero_()
            block.conv2.bias.zero_()
        model.body.load_state_dict(nn.Sequential(*frame[2:]).state_dict())
    return model.train(frame_model.training)


def grow(frame_model: nn.Module, config: dict[str, Any]) -> WindowCompact:
    """``from_frame_model`` for the training loop: ``config`` is the preset's model config."""
    if not isinstance(frame_model, SRVGGNetCompact):
        raise ModelError(f"temporal grows from a compact model, not {frame_model.spec.arch}")
    grown = from_frame_model(frame_model, radius=config.get("radius", 2),
                             num_refine=config.get("num_refine", 2))
    differ = {k: v for k, v in config.items() if grown.config.get(k) != v}
    if differ:
        raise ModelError(f"temporal grown from compact {dict(frame_model.config)} cannot take "
                         + ", ".join(f"{k} = {v!r}" for k, v in differ.items()))
    return grown


KEY_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "vidsr": ("head.frames.0.weight", "head.frames.0.bias", "body.0.weight"),
}


def detect(state_dict: StateDict) -> bool:
    return (has_keys(state_dict, KEY_REQUIREMENTS["vidsr"])
            and state_dict["head.frames.0.weight"].ndim == 4
            and all(key.split(".")[0] in ("head", "head_act", "refine", "body")
                    for key in state_dict))


def from_state_dict(state_dict: StateDict, config: dict[str, Any] | None = None) -> WindowCompact:
    window = len(indices(state_dict, "head.frames."))
    last = max(indices(state_dict, "body."))
    num_in_ch = state_dict["head.frames.0.weight"].shape[1]
    read = {
        "num_in_ch": num_in_ch,
        "num_feat": state_dict["head.frames.0.weight"].shape[0],
        "num_conv": last // 2,
        "num_refine": len(indices(state_dict, "refine.")),
        "radius": window // 2,
        "scale": math.isqrt(state_dict[f"body.{last}.weight"].shape[0] // num_in_ch),
        # Not readable from shapes: relu vs leakyrelu (neither has weights); PReLU has.
        "act_type": "prelu" if "head_act.weight" in state_dict else "relu",
    }
    return load_canonical("temporal", WindowCompact, with_overrides(read, config), state_dict)


ARCHITECTURE = Architecture(
    name="temporal",
    create=WindowCompact,
    detect=detect,
    from_state_dict=from_state_dict,
    key_requirements=KEY_REQUIREMENTS,
    grow=grow,
)
