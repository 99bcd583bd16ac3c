"""SRVGGNetCompact: Real-ESRGAN's video model, loaded unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vidsr.archs import load_arch_from_state_dict
from vidsr.archs.compact import SRVGGNetCompact, widened
from vidsr.errors import ModelError
from vidsr.imaging.resize import imresize
from vidsr.models.weights_file import read_state_dict


def test_animevideov3_loads_unchanged_as_compact_x4(weights_dir: Path) -> None:
    path = weights_dir / "realesr_animevideov3" / "realesr-animevideov3.pth"
    file = torch.load(path, map_location="cpu", weights_only=True)["params"]
    model = load_arch_from_state_dict(read_state_dict(path))
    assert isinstance(model, SRVGGNetCompact)
    assert model.spec.config == {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64,
                                 "num_conv": 16, "scale": 4, "act_type": "prelu"}
    assert model.state_dict().keys() == file.keys()
    assert all(torch.equal(model.state_dict()[k], file[k]) for k in file)


def test_animevideov3_upscales_smooth_image_like_bicubic(
    weights_dir: Path, smooth_image, psnr_db
) -> None:
    path = weights_dir / "realesr_animevideov3" / "realesr-animevideov3.pth"
    model = load_arch_from_state_dict(read_state_dict(path))
    x = smooth_image(3, 16, 16)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 3, 64, 64)
    inner = (..., slice(8, -8), slice(8, -8))  # away from the zero-padded border
    assert psnr_db(out[inner], imresize(x, scale=4)[inner]) > 25


def test_skip_is_nearest_upsampled_input() -> None:
    model = SRVGGNetCompact(num_feat=4, num_conv=1, scale=2).eval()
    with torch.no_grad():
        model.body[-1].weight.zero_()
        model.body[-1].bias.zero_()
        x = torch.rand(1, 3, 4, 4)
        out = model(x)
    assert torch.equal(out, x.repeat_interleave(2, -2).repeat_interleave(2, -1))


def test_a_widened_network_computes_the_same_and_its_new_features_learn() -> None:
    torch.manual_seed(0)
    trained = SRVGGNetCompact(num_feat=8, num_conv=2, scale=2).eval()
    grown = widened(trained, num_feat=12, num_conv=4).eval()
    assert grown.config == {**trained.config, "num_feat": 12, "num_conv": 4}
    x = torch.rand(2, 3, 10, 14)
    with torch.no_grad():
        assert torch.equal(grown(x), trained(x))
    # The weights out of the new features and of the pass-through layers start at zero and
    # identity, but they take gradients: training can use what the new features see.
    grown(x).square().mean().backward()
    last = grown.body[-1].weight.grad
    assert last is not None and float(last[:, 8:].abs().sum()) > 0
    for conv in list(grown.body)[6:-1:2]:  # the pass-through layers' convs
        assert float(conv.weight.grad[:8].abs().sum()) > 0


def test_widening_refuses_a_narrower_network() -> None:
    trained = SRVGGNetCompact(num_feat=8, num_conv=2, scale=2)
    with pytest.raises(ModelError, match="compact widens only"):
        widened(trained, num_feat=4, num_conv=2)
    relu = SRVGGNetCompact(num_feat=8, num_conv=2, scale=2, act_type="relu")
    assert widened(relu, num_feat=12, num_conv=2).config["num_feat"] == 12
    with pytest.raises(ModelError, match="deepens only with PReLU"):
        widened(relu, num_feat=8, num_conv=3)


def test_widening_draws_the_same_new_weights_everywhere() -> None:
    """The zoo widens a crisp model's partner at load to the weights its training started
    from: the new weights come from numpy's legacy generator, whose stream never changes,
    not from torch's generator or the order layers are built in."""
    torch.manual_seed(0)
    trained = SRVGGNetCompact(num_feat=8, num_conv=2, scale=2)
    torch.manual_seed(123)  # torch's generator plays no part
    first = widened(trained, num_feat=12, num_conv=4)
    second = widened(trained, num_feat=12, num_conv=4)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert float(first.body[0].weight[8:].detach().sum()) == pytest.approx(-0.4571133, abs=1e-6)
    assert float(first.body[2].weight[8:].detach().sum()) == pytest.approx(2.7716510, abs=1e-6)
