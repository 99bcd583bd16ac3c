"""VDSR: the published PyTorch weights, residual behaviour, and a real-image golden check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vidsr.archs import load_arch_from_state_dict
from vidsr.archs.vdsr import VDSR
from vidsr.imaging.resize import imresize
from vidsr.models.weights_file import read_state_dict


@pytest.fixture(scope="module")
def vdsr(weights_dir: Path) -> torch.nn.Module:
    path = weights_dir / "vdsr" / "vdsr_statedict.safetensors"
    return load_arch_from_state_dict(read_state_dict(path))


def test_published_weights_load_unchanged(vdsr: torch.nn.Module, weights_dir: Path) -> None:
    file = read_state_dict(weights_dir / "vdsr" / "vdsr_statedict.safetensors")
    assert vdsr.state_dict().keys() == file.keys()
    assert all(torch.equal(vdsr.state_dict()[k], file[k]) for k in file)
    spec = vdsr.spec
    assert (spec.arch, spec.scales, spec.input_space, spec.pre_upsampled) == (
        "vdsr", (2, 3, 4), "y", True
    )
    assert spec.config["num_layers"] == 20


def test_output_is_input_plus_residual() -> None:
    torch.manual_seed(0)
    model = VDSR(num_feat=8, num_layers=4).eval()
    with torch.no_grad():
        model.output.weight.zero_()
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), x)


def test_smooth_image_passes_almost_unchanged(vdsr: torch.nn.Module, smooth_image, psnr_db):
    # Nothing to restore in a smooth picture: the predicted residual stays tiny.
    x = smooth_image(1, 16, 16) * 219 / 255 + 16 / 255
    with torch.no_grad():
        out = vdsr(x)
    inner = (..., slice(2, -2), slice(2, -2))
    assert psnr_db(out[inner], x[inner]) > 40


@pytest.mark.parametrize(("scale", "gain_db"), [(2, 5.0), (3, 5.0), (4, 4.0)])
def test_restores_detail_of_a_real_image(
    vdsr: torch.nn.Module, butterfly_y: torch.Tensor, psnr_db, scale: int, gain_db: float
) -> None:
    # Measured on this crop: bicubic 27.4 / 24.1 / 22.2 dB, VDSR 34.3 / 31.0 / 28.7 dB.
    hr = butterfly_y
    bicubic = imresize(imresize(hr, scale=1 / scale), scale=scale)
    with torch.no_grad():
        out = vdsr(bicubic)
    crop = (..., slice(scale, -scale), slice(scale, -scale))
    assert psnr_db(out[crop], hr[crop]) > psnr_db(bicubic[crop], hr[crop]) + gain_db
