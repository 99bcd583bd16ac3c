"""WDSR-A / WDSR-B: official keys with weight normalisation, and telling A from B."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vidsr.archs import load_arch_from_state_dict
from vidsr.archs.blocks import WeightNormConv2d
from vidsr.archs.wdsr import WDSR

TINY = {"num_feat": 8, "num_block": 2, "scale": 2}


def test_official_key_names() -> None:
    a = set(WDSR(variant="a", **TINY).state_dict())
    b = set(WDSR(variant="b", **TINY).state_dict())
    for keys, body in ((a, (0, 2)), (b, (0, 2, 3))):
        blocks = {f"body.{n}.body.{m}" for n in (0, 1) for m in body}
        names = {"head.0", "tail.0", "skip.0", *blocks}
        assert keys == {f"{name}.{p}" for name in names for p in ("weight_g", "weight_v", "bias")}


@pytest.mark.parametrize(
    ("variant", "block_feat", "linear_feat"), [("a", 32, None), ("b", 48, 6), ("a", 20, None)]
)
def test_variant_and_widths_read_from_shapes(variant: str, block_feat: int, linear_feat) -> None:
    torch.manual_seed(0)
    model = WDSR(variant=variant, block_feat=block_feat, linear_feat=linear_feat, **TINY).eval()
    loaded = load_arch_from_state_dict(model.state_dict())
    assert loaded.spec.config == model.spec.config
    assert loaded.spec.config["variant"] == variant
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_weight_norm_conv_is_g_times_unit_v() -> None:
    torch.manual_seed(0)
    conv = WeightNormConv2d(3, 4, 3)
    with torch.no_grad():
        conv.weight_g.mul_(2.5)
        x = torch.rand(1, 3, 8, 8)
        v = conv.weight_v
        weight = conv.weight_g * v / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        assert torch.allclose(conv(x), F.conv2d(x, weight, conv.bias, padding=1), atol=1e-6)
        # Only v's direction counts.
        before = conv(x)
        conv.weight_v.mul_(7.0)
        assert torch.allclose(conv(x), before, atol=1e-6)


def test_fresh_weight_norm_conv_starts_as_plain_weight() -> None:
    conv = WeightNormConv2d(3, 4, 5)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        expected = F.conv2d(x, conv.weight_v, conv.bias, padding=2)
        assert torch.allclose(conv(x), expected, atol=1e-6)
