"""SRVGGNetCompact: Real-ESRGAN's video model, loaded unchanged."""

from __future__ import annotations

from pathlib import Path

import torch

from vidsr.archs import load_arch_from_state_dict
from vidsr.archs.compact import SRVGGNetCompact
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
