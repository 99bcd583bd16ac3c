"""The registry (vidsr.archs): names, creation, detection and the errors users see."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vidsr.archs import ARCHITECTURES, Architecture, create_arch, load_arch_from_state_dict
from vidsr.errors import ModelError, WeightsError

TINY_RRDB = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}


def _rrdb_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return create_arch("rrdb", **TINY_RRDB).state_dict()


def test_names() -> None:
    assert set(ARCHITECTURES) == {"rrdb", "vdsr", "espcn", "edsr", "wdsr", "rednet", "compact",
                                  "temporal"}
    for name, arch in ARCHITECTURES.items():
        assert isinstance(arch, Architecture) and arch.name == name
        assert arch.key_requirements and all(arch.key_requirements.values())


def test_architecture_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ARCHITECTURES["rrdb"].name = "other"  # type: ignore[misc]


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(ModelError, match="unknown architecture 'rdb'.*did you mean rrdb"):
        create_arch("rdb")


def test_unknown_hyperparameter_is_model_error() -> None:
    with pytest.raises(ModelError, match="num_feats"):
        create_arch("edsr", num_feats=8)


def test_invalid_hyperparameter_value_is_model_error() -> None:
    with pytest.raises(ModelError, match="scale 3"):
        create_arch("rrdb", scale=3)


def test_no_match_lists_closest_architectures_and_missed_keys() -> None:
    partial = {k: v for k, v in _rrdb_state_dict().items() if not k.startswith("conv_body")}
    with pytest.raises(WeightsError) as error:
        load_arch_from_state_dict(partial)
    message = str(error.value)
    assert "no known architecture" in message
    assert "rrdb (basicsr layout): missing conv_body.weight" in message


def test_forced_wrong_architecture_names_what_is_missing() -> None:
    with pytest.raises(WeightsError, match="not a state dict for edsr: missing sub_mean.weight"):
        load_arch_from_state_dict(_rrdb_state_dict(), arch="edsr")


def test_forced_config_that_does_not_fit_names_first_key_and_shapes() -> None:
    with pytest.raises(WeightsError) as error:
        load_arch_from_state_dict(_rrdb_state_dict(), arch="rrdb", config={"num_feat": 16})
    message = str(error.value)
    assert "'conv_first.weight' has shape (8, 3, 3, 3), expected (16, 3, 3, 3)" in message


def test_forced_architecture_that_matches_loads() -> None:
    model = load_arch_from_state_dict(_rrdb_state_dict(), arch="rrdb")
    assert model.spec.arch == "rrdb" and not model.training


def test_unexpected_extra_key_is_reported() -> None:
    state_dict = _rrdb_state_dict() | {"extra.weight": torch.zeros(1)}
    with pytest.raises(WeightsError, match="unexpected key 'extra.weight'"):
        load_arch_from_state_dict(state_dict)


def test_state_dict_mixing_two_architectures_is_ambiguous() -> None:
    torch.manual_seed(0)
    mixed = _rrdb_state_dict() | create_arch("vdsr", num_feat=4, num_layers=3).state_dict()
    with pytest.raises(WeightsError, match=r"several architectures \(rrdb, vdsr\)"):
        load_arch_from_state_dict(mixed)


def test_non_finite_weights_are_refused() -> None:
    state_dict = _rrdb_state_dict()
    state_dict["conv_last.bias"] = state_dict["conv_last.bias"].clone()
    state_dict["conv_last.bias"][0] = float("nan")
    with pytest.raises(WeightsError, match="'conv_last.bias' contains NaN or infinite"):
        load_arch_from_state_dict(state_dict)


def test_non_float_weights_are_refused() -> None:
    state_dict = _rrdb_state_dict() | {"conv_last.bias": torch.zeros(3, dtype=torch.int64)}
    with pytest.raises(WeightsError, match="'conv_last.bias' has dtype torch.int64"):
        load_arch_from_state_dict(state_dict)


def test_half_precision_weights_load_as_float32() -> None:
    state_dict = {k: v.half() for k, v in _rrdb_state_dict().items()}
    model = load_arch_from_state_dict(state_dict)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert not any(p.is_meta for p in model.parameters())
