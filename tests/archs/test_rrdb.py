"""RRDBNet: the four public key layouts, scale detection, and the real Real-ESRGAN weights."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from vidsr.archs import load_arch_from_state_dict
from vidsr.archs.rrdb import RRDBNet
from vidsr.imaging.resize import imresize
from vidsr.models.weights_file import read_state_dict

TINY = {"num_feat": 8, "num_block": 2, "num_grow_ch": 4}


def _tiny(**overrides: object) -> RRDBNet:
    torch.manual_seed(0)
    return RRDBNet(**{**TINY, **overrides}).eval()  # type: ignore[arg-type]


def _rename(state_dict: dict[str, torch.Tensor], rules: list[tuple[str, str]]) -> dict:
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in rules:
            key, count = re.subn(pattern, replacement, key)
            if count:
                break
        out[key] = value
    return out


def to_esrgan(model: RRDBNet) -> dict[str, torch.Tensor]:
    """The original ESRGAN layout (one flat Sequential), written out independently of the loader."""
    num_block, num_up = model.config["num_block"], model.config["num_upsample"]
    hr = 3 * num_up + 2
    rules = [
        (r"^conv_first\.", "model.0."),
        (r"^body\.(\d+)\.rdb(\d)\.conv(\d)\.", r"model.1.sub.\1.RDB\2.conv\3.0."),
        (r"^body\.(\d+)\.rdb(\d)\.conv1x1\.", r"model.1.sub.\1.RDB\2.conv1x1."),
        (r"^conv_body\.", f"model.1.sub.{num_block}."),
        *((rf"^conv_up{i}\.", f"model.{3 * i}.") for i in range(1, num_up + 1)),
        (r"^conv_hr\.", f"model.{hr}."),
        (r"^conv_last\.", f"model.{hr + 2}."),
    ]
    return _rename(model.state_dict(), rules)


def to_bsrgan(model: RRDBNet) -> dict[str, torch.Tensor]:
    rules = [
        (r"^body\.(\d+)\.rdb(\d)\.", r"RRDB_trunk.\1.RDB\2."),
        (r"^conv_body\.", "trunk_conv."),
        (r"^conv_up(\d)\.", r"upconv\1."),
        (r"^conv_hr\.", "HRconv."),
    ]
    return _rename(model.state_dict(), rules)


def _same_output(model: RRDBNet, loaded: torch.nn.Module, size: int = 16) -> bool:
    torch.manual_seed(1)
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        return torch.equal(loaded(x), model(x))


@pytest.mark.parametrize(
    ("config", "layout"),
    [
        ({"scale": 4}, to_esrgan),
        ({"scale": 2, "num_upsample": 1}, to_esrgan),  # old ESRGAN x2: one up stage
        ({"scale": 8}, to_esrgan),
        ({"scale": 1, "num_upsample": 0}, to_esrgan),  # community 1x models: no up stage
        ({"scale": 4}, to_bsrgan),
        ({"scale": 2, "num_upsample": 1}, to_bsrgan),  # BSRGAN x2 has only upconv1
        ({"scale": 4}, lambda m: m.state_dict()),  # Real-ESRGAN / BasicSR
        ({"scale": 2}, lambda m: m.state_dict()),
        ({"scale": 1}, lambda m: m.state_dict()),
    ],
    ids=["esrgan-x4", "esrgan-x2", "esrgan-x8", "esrgan-x1", "bsrgan-x4", "bsrgan-x2",
         "basicsr-x4", "basicsr-x2-unshuffle", "basicsr-x1-unshuffle"],
)
def test_public_layouts_map_to_canonical(config: dict, layout) -> None:
    model = _tiny(**config)
    loaded = load_arch_from_state_dict(layout(model))
    assert isinstance(loaded, RRDBNet)
    assert loaded.spec.config == model.spec.config
    assert _same_output(model, loaded)


def test_esrgan_plus_layout_with_conv1x1_and_noise() -> None:
    model = _tiny(scale=4, plus=True)
    state_dict = to_esrgan(model)
    assert "model.1.sub.0.RDB1.conv1x1.weight" in state_dict
    # Noise injection has no effect at inference; tensors saved for it are ignored.
    state_dict["model.1.sub.0.RDB1.noise.weight"] = torch.zeros(1)
    loaded = load_arch_from_state_dict(state_dict)
    assert loaded.spec.config["plus"] is True
    assert _same_output(model, loaded)


@pytest.mark.parametrize(
    ("conv_first_in", "scale", "multiple"), [(3, 4, 1), (12, 2, 2), (48, 1, 4)]
)
def test_scale_read_from_conv_first_channels(conv_first_in: int, scale: int, multiple: int) -> None:
    # Real-ESRGAN's convention: 2 up stages always; x2 and x1 pixel-unshuffle the input by 2 and 4.
    model = _tiny(scale=scale)
    assert model.conv_first.weight.shape[1] == conv_first_in
    loaded = load_arch_from_state_dict(model.state_dict())
    assert loaded.spec.scales == (scale,)
    assert loaded.spec.size_multiple == multiple


def test_real_esrgan_anime_6b_is_rrdb_x4(weights_dir: Path) -> None:
    path = weights_dir / "realesrgan" / "RealESRGAN_x4plus_anime_6B.pth"
    model = load_arch_from_state_dict(read_state_dict(path))
    spec = model.spec
    assert (spec.arch, spec.scales, spec.input_space) == ("rrdb", (4,), "rgb")
    assert spec.config["num_block"] == 6 and spec.config["num_feat"] == 64
    assert sum(p.numel() for p in model.parameters()) == 4_467_779  # NOTE.md's count


def test_real_esrgan_anime_6b_upscales_smooth_image_like_bicubic(
    weights_dir: Path, smooth_image, psnr_db
) -> None:
    path = weights_dir / "realesrgan" / "RealESRGAN_x4plus_anime_6B.pth"
    model = load_arch_from_state_dict(read_state_dict(path))
    x = smooth_image(3, 16, 16)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 3, 64, 64)
    # No edges to invent: a GAN model's x4 of a smooth image is close to bicubic.
    # Borders excluded (zero padding of a 16x16 crop).
    inner = (..., slice(8, -8), slice(8, -8))
    assert psnr_db(out[inner], imresize(x, scale=4)[inner]) > 25


def test_real_esrgan_x4plus_23_blocks_loads_and_runs(weights_dir: Path, smooth_image, psnr_db):
    # 67 MB of weights; about 5 s on two shared cores, so not marked slow.
    path = weights_dir / "realesrgan" / "RealESRGAN_x4plus.pth"
    model = load_arch_from_state_dict(read_state_dict(path))
    assert model.spec.config["num_block"] == 23
    assert sum(p.numel() for p in model.parameters()) == 16_697_987
    x = smooth_image(3, 16, 16)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 3, 64, 64)
    inner = (..., slice(8, -8), slice(8, -8))
    assert psnr_db(out[inner], imresize(x, scale=4)[inner]) > 25
