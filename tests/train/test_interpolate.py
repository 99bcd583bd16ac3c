from __future__ import annotations

import pytest
import torch

from vidsr.archs import create_arch, load_arch_from_state_dict
from vidsr.errors import OptionsError, WeightsError
from vidsr.models.interpolate import interpolate_checkpoints, interpolate_state_dicts
from vidsr.models.weights_file import read_state_dict, save_state_dict


def two_nets(**config):
    torch.manual_seed(0)
    a = create_arch("compact", **config).state_dict()
    torch.manual_seed(1)
    b = create_arch("compact", **config).state_dict()
    return a, b


def test_alpha_zero_and_one_return_the_inputs_exactly():
    a, b = two_nets(num_feat=8, num_conv=2, scale=2)
    at0, at1 = interpolate_state_dicts(a, b, 0.0), interpolate_state_dicts(a, b, 1.0)
    for key in a:
        assert torch.equal(at0[key], a[key]) and at0[key].dtype == a[key].dtype
        assert torch.equal(at1[key], b[key])
        assert at0[key].data_ptr() != a[key].data_ptr()  # copies, not views


def test_half_way_is_the_mean():
    a = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor([3])}
    b = {"w": torch.tensor([1.0, 4.0]), "n": torch.tensor([3])}
    out = interpolate_state_dicts(a, b, 0.5)
    assert out["w"].tolist() == [0.5, 3.0] and out["n"].tolist() == [3]
    half = interpolate_state_dicts({"w": a["w"].half()}, {"w": b["w"].half()}, 0.25)
    assert half["w"].dtype == torch.float16 and half["w"].tolist() == [0.25, 2.5]


def test_mismatches_are_refused():
    a = {"w": torch.zeros(2)}
    with pytest.raises(WeightsError, match="differ in layout"):
        interpolate_state_dicts(a, {"v": torch.zeros(2)}, 0.5)
    with pytest.raises(WeightsError, match="not one config"):
        interpolate_state_dicts(a, {"w": torch.zeros(3)}, 0.5)
    with pytest.raises(WeightsError, match="cannot be blended"):
        interpolate_state_dicts({"n": torch.tensor([1])}, {"n": torch.tensor([2])}, 0.5)
    with pytest.raises(OptionsError, match=r"alpha must be in \[0, 1\]"):
        interpolate_state_dicts(a, a, 1.5)


def test_interpolate_checkpoint_files(tmp_path):
    a, b = two_nets(num_feat=8, num_conv=2, scale=2)
    save_state_dict(tmp_path / "a.safetensors", a)
    save_state_dict(tmp_path / "b.safetensors", b)
    for alpha, expected in ((0.0, a), (1.0, b)):
        out = interpolate_checkpoints(tmp_path / "a.safetensors", tmp_path / "b.safetensors",
                                      alpha, tmp_path / f"mix{alpha}.safetensors")
        mixed = read_state_dict(out)
        assert all(torch.equal(mixed[k], expected[k]) for k in expected)
    out = interpolate_checkpoints(tmp_path / "a.safetensors", tmp_path / "b.safetensors", 0.3,
                                  tmp_path / "mix.safetensors")
    model = load_arch_from_state_dict(read_state_dict(out))
    assert model.spec.arch == "compact"
    key = "body.0.weight"
    assert torch.allclose(read_state_dict(out)[key], 0.7 * a[key] + 0.3 * b[key])


def test_interpolating_different_configs_is_refused(tmp_path):
    a, _ = two_nets(num_feat=8, num_conv=2, scale=2)
    _, c = two_nets(num_feat=8, num_conv=3, scale=2)
    save_state_dict(tmp_path / "a.safetensors", a)
    save_state_dict(tmp_path / "c.safetensors", c)
    with pytest.raises(WeightsError):
        interpolate_checkpoints(tmp_path / "a.safetensors", tmp_path / "c.safetensors", 0.5,
                                tmp_path / "x.safetensors")
