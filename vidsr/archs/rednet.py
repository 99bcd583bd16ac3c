"""RED-Net (Mao et al. 2016): symmetric conv / deconv encoder-decoder with skips every two layers.

Works on the bicubic-upscaled image and predicts its residual, like VDSR.
Canonical keys: ``convs.N`` (Conv2d) and ``deconvs.N`` (ConvTranspose2d), depth/2 of each.
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
from vidsr.archs.blocks import input_space_for
from vidsr.archs.spec import ArchSpec
from vidsr.errors import ModelError


class REDNet(nn.Module):
    """``depth`` layers (RED30 = 15 convs + 15 deconvs), 3x3, stride 1, ReLU.

    The output of every second conv is added to the output of the mirrored
    deconv (the one whose output has the same role), followed by ReLU; the
    last deconv gives the residual, added to the input.
    """

    def __init__(
        self,
        *,
        channels: int = 1,
        num_feat: int = 64,
        depth: int = 30,
        scales: tuple[int, ...] = (2, 3, 4),
    ) -> None:
        super().__init__()
        if depth < 4 or depth % 2:
            raise ModelError(f"rednet depth must be an even number of layers >= 4, got {depth}")
        input_space_for(channels, "rednet")
        self.config: dict[str, Any] = {
            "channels": channels, "num_feat": num_feat, "depth": depth, "scales": tuple(scales),
        }
        half = depth // 2
        self.convs = nn.ModuleList(
            nn.Conv2d(channels if i == 0 else num_feat, num_feat, 3, padding=1) for i in range(half)
        )
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(num_feat, channels if i == half - 1 else num_feat, 3, padding=1)
            for i in range(half)
        )
        self.relu = nn.ReLU(inplace=True)
        for layer in (*self.convs, *self.deconvs):
            # He init: with torch's default a 20-layer plain net starts almost silent
            # and trained for thousands of steps without leaving bicubic (measured).
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        # ...but the residual starts at zero: the skips add up, and a He-initialised last
        # layer would start with a residual of std ~2 on a [0, 1] picture.
        nn.init.zeros_(self.deconvs[-1].weight)

    @property
    def spec(self) -> ArchSpec:
        c = self.config
        return ArchSpec(
            "rednet", c["scales"], input_space_for(c["channels"], "rednet"), pre_upsampled=True,
            receptive_radius=c["depth"],
            picture_layers=("convs.0", f"deconvs.{c['depth'] // 2 - 1}"), config=dict(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = len(self.convs)
        skips: dict[int, torch.Tensor] = {}
        feat = x
        for i, conv in enumerate(self.convs, start=1):
            feat = self.relu(conv(feat))
            if i % 2 == 0 and i < half:
                # Conv i's output mirrors deconv (half - i)'s output (1-based).
                skips[half - i] = feat
        for j, deconv in enumerate(self.deconvs, start=1):
            feat = deconv(feat)
            if j in skips:
                feat = feat + skips[j]
            if j < half:
                feat = self.relu(feat)
        return x + feat


KEY_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "vidsr": ("convs.0.weight", "deconvs.0.weight"),
}


def detect(state_dict: StateDict) -> bool:
    return has_keys(state_dict, KEY_REQUIREMENTS["vidsr"])


def from_state_dict(state_dict: StateDict, config: dict[str, Any] | None = None) -> REDNet:
    # Not readable from shapes: the scales it was trained for; (2, 3, 4) is assumed.
    read = {
        "channels": state_dict["convs.0.weight"].shape[1],
        "num_feat": state_dict["convs.0.weight"].shape[0],
        "depth": 2 * len(indices(state_dict, "convs.")),
    }
    return load_canonical("rednet", REDNet, with_overrides(read, config), state_dict)


ARCHITECTURE = Architecture(
    name="rednet",
    create=REDNet,
    detect=detect,
    from_state_dict=from_state_dict,
    key_requirements=KEY_REQUIREMENTS,
)
