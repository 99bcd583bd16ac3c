"""EDSR: EDSR-PyTorch's key layout, baseline vs full, and the 0..255 range handled inside."""

from __future__ import annotations

import pytest
import torch

from vidsr.archs import create_arch, load_arch_from_state_dict
from vidsr.archs.edsr import EDSR, EDSR_BASELINE, EDSR_FULL

TINY = {"num_feat": 8, "num_block": 2}


@pytest.mark.parametrize(
    ("scale", "tail_convs"), [(2, ["tail.0.0"]), (3, ["tail.0.0"]), (4, ["tail.0.0", "tail.0.2"])]
)
def test_keys_are_edsr_pytorch_names(scale: int, tail_convs: list[str]) -> None:
    keys = set(EDSR(scale=scale, **TINY).state_dict())
    expected = {"sub_mean", "head.0", "body.0.body.0", "body.0.body.2", "body.1.body.0",
                "body.1.body.2", "body.2", *tail_convs, "tail.1", "add_mean"}
    assert keys == {f"{name}.{p}" for name in expected for p in ("weight", "bias")}


def test_published_configs() -> None:
    assert EDSR_BASELINE == {"num_feat": 64, "num_block": 16, "res_scale": 1.0}
    assert EDSR_FULL == {"num_feat": 256, "num_block": 32, "res_scale": 0.1}
    assert create_arch("edsr", **EDSR_BASELINE).spec.config["res_scale"] == 1.0


def test_full_model_res_scale_read_from_width() -> None:
    # res_scale has no tensor; EDSR-PyTorch's convention is 0.1 at 256 features.
    model = EDSR(scale=2, num_feat=256, num_block=1, res_scale=0.1)
    assert load_arch_from_state_dict(model.state_dict()).spec.config["res_scale"] == 0.1


def test_mean_shift_is_div2k_mean_at_255() -> None:
    model = EDSR(scale=2, **TINY)
    expected = -255 * torch.tensor([0.4488, 0.4371, 0.4040])
    assert torch.allclose(model.sub_mean.bias, expected)
    assert not model.sub_mean.weight.requires_grad


@pytest.mark.parametrize("rgb_range", [1, 255])
def test_rgb_range_read_from_mean_shift(rgb_range: int) -> None:
    torch.manual_seed(0)
    model = EDSR(scale=2, rgb_range=rgb_range, **TINY).eval()
    loaded = load_arch_from_state_dict(model.state_dict())
    assert loaded.spec.config["rgb_range"] == rgb_range
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_output_in_unit_range_for_unit_input() -> None:
    # A model whose tail predicts zero returns the DIV2K mean: the output is on
    # the input's [0, 1] scale, not 0..255.
    model = EDSR(scale=2, **TINY).eval()
    with torch.no_grad():
        model.tail[1].weight.zero_()
        model.tail[1].bias.zero_()
        out = model(torch.rand(1, 3, 8, 8))
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.4488, 0.4371, 0.4040]), atol=1e-6)
