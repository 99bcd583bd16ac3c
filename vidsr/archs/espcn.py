"""ESPCN (Shi et al. 2016): three convs at low resolution, then a sub-pixel (pixel shuffle) upscale.

Canonical keys: ``conv1`` (5x5), ``conv2`` (3x3), ``conv3`` (3x3, channels * scale**2).
Also loads OpenCV dnn_superres's ESPCN export (``f1, b1, f2, b2, f3, b3``, OIHW, luma): ReLU
inside, and a tanh on the output that its training code (fannymonori/TF-ESPCN) applies
after depth_to_space; without it, bright areas overshoot far above 1.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vidsr.archs.architecture import (
    Architecture,
    StateDict,
    load_canonical,
    matching_layout,
    with_overrides,
)
from vidsr.archs.blocks import input_space_for
from vidsr.archs.spec import ArchSpec
from vidsr.errors import ModelError

Activation = Literal["tanh", "relu"]


class ESPCN(nn.Module):
    """conv5x5 -> act -> conv3x3 -> act -> conv3x3 -> pixel shuffle [-> tanh].

    ``channels`` 1 is the paper's luma network, 3 the RGB variant. The paper's
    hidden activation is tanh; OpenCV's published weights use ReLU (the default
    here, because those are the weights people have) and squash the output
    with tanh (``output_tanh``).
    """

    def __init__(
        self,
        *,
        scale: int = 3,
        channels: int = 1,
        num_feat: int = 64,
        num_mid: int = 32,
        activation: Activation = "relu",
        output_tanh: bool = False,
    ) -> None:
        super().__init__()
        if activation not in ("tanh", "relu"):
            raise ModelError(f"espcn activation must be 'tanh' or 'relu', not {activation!r}")
        if scale < 1:
            raise ModelError(f"espcn scale must be at least 1, got {scale}")
        input_space_for(channels, "espcn")
        self.config: dict[str, Any] = {
            "scale": scale, "channels": channels, "num_feat": num_feat, "num_mid": num_mid,
            "activation": activation, "output_tanh": output_tanh,
        }
        self.conv1 = nn.Conv2d(channels, num_feat, 5, padding=2)
        self.conv2 = nn.Conv2d(num_feat, num_mid, 3, padding=1)
        self.conv3 = nn.Conv2d(num_mid, channels * scale**2, 3, padding=1)
        self.act = nn.Tanh() if activation == "tanh" else nn.ReLU(inplace=True)

    @property
    def spec(self) -> ArchSpec:
        c = self.config
        return ArchSpec(
            "espcn", (c["scale"],), input_space_for(c["channels"], "espcn"),
            receptive_radius=4, picture_layers=("conv1", "conv3"), config=dict(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        out = F.pixel_shuffle(self.conv3(x), self.config["scale"])
        return torch.tanh(out) if self.config["output_tanh"] else out


KEY_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "vidsr": ("conv1.weight", "conv2.weight", "conv3.weight", "conv3.bias"),
    "opencv": ("f1", "b1", "f2", "b2", "f3", "b3"),
}


def detect(state_dict: StateDict) -> bool:
    layout = matching_layout(state_dict, KEY_REQUIREMENTS)
    if layout is None:
        return False
    first = state_dict["conv1.weight" if layout == "vidsr" else "f1"]
    # The 5x5 first layer tells ESPCN apart from other three-conv nets.
    return first.ndim == 4 and tuple(first.shape[-2:]) == (5, 5) and len(state_dict) == 6


def from_state_dict(state_dict: StateDict, config: dict[str, Any] | None = None) -> ESPCN:
    sd = dict(state_dict)
    read: dict[str, Any] = {}
    if matching_layout(sd, KEY_REQUIREMENTS) == "opencv":
        names = {"f1": "conv1.weight", "b1": "conv1.bias", "f2": "conv2.weight",
                 "b2": "conv2.bias", "f3": "conv3.weight", "b3": "conv3.bias"}
        sd = {names.get(k, k): v for k, v in sd.items()}
        read |= {"activation": "relu", "output_tanh": True}  # OpenCV's graph
    channels = sd["conv1.weight"].shape[1]
    scale = round((sd["conv3.weight"].shape[0] / channels) ** 0.5)
    # Not readable from shapes for the canonical layout: the activations (default ReLU, no tanh).
    read |= {
        "scale": scale, "channels": channels, "num_feat": sd["conv1.weight"].shape[0],
        "num_mid": sd["conv2.weight"].shape[0],
    }
    return load_canonical("espcn", ESPCN, with_overrides(read, config), sd)


ARCHITECTURE = Architecture(
    name="espcn",
    create=ESPCN,
    detect=detect,
    from_state_dict=from_state_dict,
    key_requirements=KEY_REQUIREMENTS,
)
