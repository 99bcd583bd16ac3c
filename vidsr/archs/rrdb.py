"""RRDBNet, the generator of ESRGAN / Real-ESRGAN / BSRGAN, and its four public key layouts.

Canonical keys are Real-ESRGAN's (BasicSR): ``conv_first``, ``body.N.rdb{1,2,3}.conv{1..5}``,
``conv_body``, ``conv_up{1..}``, ``conv_hr``, ``conv_last``. ESRGAN+ adds a bias-free
``conv1x1`` to every dense block (``plus``).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidsr.archs.architecture import (
    Architecture,
    StateDict,
    indices,
    load_canonical,
    matching_layout,
    rename,
    with_overrides,
)
from vidsr.archs.blocks import conv3x3, input_space_for
from vidsr.archs.spec import ArchSpec
from vidsr.errors import ModelError


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; the last one's output, scaled by 0.2, is added to x."""

    def __init__(self, *, num_feat: int, num_grow_ch: int, plus: bool) -> None:
        super().__init__()
        for i in range(5):
            out_ch = num_feat if i == 4 else num_grow_ch
            setattr(self, f"conv{i + 1}", conv3x3(num_feat + i * num_grow_ch, out_ch))
        # ESRGAN+: an extra residual path from the block input into the second conv's output.
        self.conv1x1 = nn.Conv2d(num_feat, num_grow_ch, 1, bias=False) if plus else None
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        if self.conv1x1 is not None:
            x2 = x2 + self.conv1x1(x)
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        if self.conv1x1 is not None:
            x4 = x4 + x2
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Three dense blocks in sequence, with an outer residual scaled by 0.2."""

    def __init__(self, *, num_feat: int, num_grow_ch: int, plus: bool) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat=num_feat, num_grow_ch=num_grow_ch, plus=plus)
        self.rdb2 = ResidualDenseBlock(num_feat=num_feat, num_grow_ch=num_grow_ch, plus=plus)
        self.rdb3 = ResidualDenseBlock(num_feat=num_feat, num_grow_ch=num_grow_ch, plus=plus)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator: RRDB trunk, then ``num_upsample`` nearest-x2 + conv stages.

    Scales below 2**num_upsample pixel-unshuffle the input first (Real-ESRGAN's
    x2 and x1 models), so the input must then be a multiple of the unshuffle factor.
    """

    def __init__(
        self,
        *,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
        scale: int = 4,
        num_upsample: int | None = None,
        plus: bool = False,
    ) -> None:
        super().__init__()
        if num_upsample is None:
            num_upsample = 3 if scale == 8 else 2
        unshuffle, remainder = divmod(2**num_upsample, scale) if scale > 0 else (0, 1)
        if remainder or unshuffle not in (1, 2, 4) or num_upsample not in (0, 1, 2, 3):
            raise ModelError(
                f"rrdb: scale {scale} with {num_upsample} upsampling stages is not supported "
                "(scales 1, 2, 4 with 2 stages; 1 with 0; 2 with 1; 8 with 3)"
            )
        input_space_for(num_in_ch, "rrdb")
        self.config: dict[str, Any] = {
            "num_in_ch": num_in_ch, "num_out_ch": num_out_ch, "num_feat": num_feat,
            "num_block": num_block, "num_grow_ch": num_grow_ch, "scale": scale,
            "num_upsample": num_upsample, "plus": plus,
        }
        self.unshuffle = unshuffle
        self.num_upsample = num_upsample

        self.conv_first = conv3x3(num_in_ch * unshuffle**2, num_feat)
        self.body = nn.Sequential(
            *(RRDB(num_feat=num_feat, num_grow_ch=num_grow_ch, plus=plus) for _ in range(num_block))
        )
        self.conv_body = conv3x3(num_feat, num_feat)
        for i in range(num_upsample):
            setattr(self, f"conv_up{i + 1}", conv3x3(num_feat, num_feat))
        self.conv_hr = conv3x3(num_feat, num_feat)
        self.conv_last = conv3x3(num_feat, num_out_ch)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        self._init_dense_blocks()

    def _init_dense_blocks(self) -> None:
        # Real-ESRGAN scales the dense blocks' initial weights by 0.1: the 0.2
        # residual scalings alone let a 23-block trunk blow up early in training.
        for module in self.body.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
                module.weight.data *= 0.1
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def spec(self) -> ArchSpec:
        c = self.config
        # Context, in trunk pixels: conv_first, 15 convs per RRDB, conv_body, then
        # the up convs and conv_hr/conv_last at finer resolutions.
        trunk = 2 + 15 * c["num_block"]
        fine = sum(0.5**k for k in range(1, self.num_upsample + 1)) + 2 * 0.5**self.num_upsample
        return ArchSpec(
            "rrdb", (c["scale"],), input_space_for(c["num_in_ch"], "rrdb"),
            size_multiple=self.unshuffle,
            receptive_radius=math.ceil((trunk + fine) * self.unshuffle),
            picture_layers=("conv_first", "conv_last"), config=dict(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            height, width = x.shape[-2:]
            if height % self.unshuffle or width % self.unshuffle:
                raise ModelError(
                    f"rrdb x{self.config['scale']} needs input sizes that are multiples of "
                    f"{self.unshuffle}, got {width}x{height}: pad to spec.size_multiple first"
                )
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for i in range(self.num_upsample):
            up = getattr(self, f"conv_up{i + 1}")
            feat = self.lrelu(up(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


KEY_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "basicsr": ("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight",
                "conv_hr.weight", "conv_last.weight"),
    "esrgan": ("model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"),
    "bsrgan": ("conv_first.weight", "RRDB_trunk.0.RDB1.conv1.weight", "trunk_conv.weight",
               "HRconv.weight", "conv_last.weight"),
    "esrgan_plus": ("model.0.weight", "model.1.sub.0.RDB1.conv1x1.weight"),
}


def detect(state_dict: StateDict) -> bool:
    return matching_layout(state_dict, KEY_REQUIREMENTS) is not None


def _from_esrgan(state_dict: StateDict) -> dict[str, torch.Tensor]:
    """The original ESRGAN layout: one flat ``model`` Sequential with the trunk in ``model.1.sub``.

    Layer indices follow the Sequential: 0 conv_first, 1 trunk, then per up stage
    (upsample, conv, act) so up convs sit at 3, 6, ..., followed by conv_hr and
    conv_last two apart.
    """
    trunk_conv = max(indices(state_dict, "model.1.sub."))
    outer = [i for i in indices(state_dict, "model.") if i > 1]
    num_upsample = len(outer) - 2
    rules = [
        (r"^model\.0\.", "conv_first."),
        (r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.", r"body.\1.rdb\2.conv\3."),
        (r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv1x1\.", r"body.\1.rdb\2.conv1x1."),
        (rf"^model\.1\.sub\.{trunk_conv}\.", "conv_body."),
        *((rf"^model\.{3 * (i + 1)}\.", f"conv_up{i + 1}.") for i in range(num_upsample)),
        (rf"^model\.{outer[-2]}\.", "conv_hr."),
        (rf"^model\.{outer[-1]}\.", "conv_last."),
    ]
    return rename(state_dict, rules)


_BSRGAN_RULES = [
    (r"^RRDB_trunk\.(\d+)\.RDB(\d)\.", r"body.\1.rdb\2."),
    (r"^trunk_conv\.", "conv_body."),
    (r"^upconv(\d)\.", r"conv_up\1."),
    (r"^HRconv\.", "conv_hr."),
]


def to_canonical(state_dict: StateDict) -> dict[str, torch.Tensor]:
    """Any known RRDBNet layout -> canonical keys."""
    # ESRGAN+'s noise injection is the identity at inference; any tensor it saved is dropped.
    state_dict = {k: v for k, v in state_dict.items() if not re.search(r"(^|\.)noise(\.|$)", k)}
    layout = matching_layout(state_dict, KEY_REQUIREMENTS)
    if layout in ("esrgan", "esrgan_plus"):
        return _from_esrgan(state_dict)
    if layout == "bsrgan":
        return rename(state_dict, _BSRGAN_RULES)
    return dict(state_dict)


def from_state_dict(state_dict: StateDict, config: dict[str, Any] | None = None) -> RRDBNet:
    sd = to_canonical(state_dict)
    in_total = sd["conv_first.weight"].shape[1]
    num_out_ch = sd["conv_last.weight"].shape[0]
    # Not readable from shapes: how conv_first's input channels split into colour
    # channels and unshuffle. Like Real-ESRGAN, assume num_in_ch == num_out_ch.
    unshuffle = {num_out_ch: 1, 4 * num_out_ch: 2, 16 * num_out_ch: 4}.get(in_total, 1)
    num_upsample = len([k for k in sd if re.fullmatch(r"conv_up\d+\.weight", k)])
    read = {
        "num_in_ch": in_total // unshuffle**2,
        "num_out_ch": num_out_ch,
        "num_feat": sd["conv_first.weight"].shape[0],
        "num_block": len(indices(sd, "body.")),
        "num_grow_ch": sd["body.0.rdb1.conv1.weight"].shape[0],
        "scale": max(2**num_upsample // unshuffle, 1),
        "num_upsample": num_upsample,
        "plus": "body.0.rdb1.conv1x1.weight" in sd,
    }
    return load_canonical("rrdb", RRDBNet, with_overrides(read, config), sd)


ARCHITECTURE = Architecture(
    name="rrdb",
    create=RRDBNet,
    detect=detect,
    from_state_dict=from_state_dict,
    key_requirements=KEY_REQUIREMENTS,
)
