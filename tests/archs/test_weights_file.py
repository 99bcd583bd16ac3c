"""vidsr.weights_file: safe reading of weight files, containers, and our own writers.

(Kept beside the archs tests: loading weights is part of the model zoo.)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from vidsr.archs import load_arch_from_state_dict
from vidsr.errors import UnsafeCheckpointError, WeightsError
from vidsr.weights_file import read_state_dict, save_pth_params, save_state_dict


def _tensors() -> dict[str, torch.Tensor]:
    return {"conv.weight": torch.arange(6.0).view(2, 3), "conv.bias": torch.ones(2)}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _Evil:
    """Unpickling this runs code: it would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


# --- the real legacy pickle ------------------------------------------------------------

def test_whole_model_pickle_is_refused_with_explanation(weights_dir: Path) -> None:
    path = weights_dir / "vdsr" / "model_epoch_50.pth"
    with pytest.raises(UnsafeCheckpointError) as error:
        read_state_dict(path)
    message = str(error.value)
    assert str(path) in message
    assert "vdsr.Net" in message
    assert "arbitrary code" in message
    assert "--allow-unsafe-weights" in message


def test_opt_in_loads_it_with_a_warning(weights_dir: Path, caplog) -> None:
    path = weights_dir / "vdsr" / "model_epoch_50.pth"
    with caplog.at_level(logging.WARNING, logger="vidsr"):
        state_dict = read_state_dict(path, allow_unsafe=True)
    assert any(r.levelno == logging.WARNING and str(path) in r.getMessage() for r in caplog.records)
    reference = read_state_dict(weights_dir / "vdsr" / "vdsr_statedict.safetensors")
    assert _equal(state_dict, reference)
    assert load_arch_from_state_dict(state_dict).spec.arch == "vdsr"


# --- permissive reading never runs code ------------------------------------------------

def test_code_in_a_pickle_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "was-run"
    path = tmp_path / "evil.pth"
    torch.save({"params": _tensors(), "extra": _Evil(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match="posix.mkdir|os.mkdir"):
        read_state_dict(path)
    state_dict = read_state_dict(path, allow_unsafe=True)
    assert not marker.exists()
    assert _equal(state_dict, _tensors())


# --- containers ------------------------------------------------------------------------

@pytest.mark.parametrize("container", ["params", "state_dict", "model", None])
def test_containers_are_unwrapped(tmp_path: Path, container: str | None) -> None:
    path = tmp_path / "w.pth"
    torch.save(_tensors() if container is None else {container: _tensors(), "epoch": 3}, path)
    assert _equal(read_state_dict(path), _tensors())


def test_params_ema_is_preferred(tmp_path: Path) -> None:
    ema = {k: v + 1 for k, v in _tensors().items()}
    path = tmp_path / "w.pth"
    torch.save({"params": _tensors(), "params_ema": ema}, path)
    assert _equal(read_state_dict(path), ema)


def test_data_parallel_prefix_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in _tensors().items()}}, path)
    assert _equal(read_state_dict(path), _tensors())


# --- errors name the file --------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found: .*nope.pth"):
        read_state_dict(tmp_path / "nope.pth")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="is a directory"):
        read_state_dict(tmp_path)


@pytest.mark.parametrize("name", ["junk.pth", "junk.safetensors", "empty.ckpt"])
def test_not_a_checkpoint(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"" if name.startswith("empty") else b"this is not a checkpoint at all")
    with pytest.raises(WeightsError, match=name):
        read_state_dict(path)


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "weights.onnx"
    path.write_bytes(b"x")
    with pytest.raises(WeightsError, match=r"weights.onnx.*\.safetensors"):
        read_state_dict(path)


def test_checkpoint_without_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(WeightsError, match="meta.pth: no state dict found.*epoch"):
        read_state_dict(path)


# --- writers ---------------------------------------------------------------------------

def test_save_state_dict_writes_safetensors_with_metadata(tmp_path: Path) -> None:
    base = torch.arange(12.0).view(3, 4)
    # A transposed view and two views of one storage: both need a copy to be saved.
    state_dict = {"a": base.t(), "b": base[0], "c": base[1]}
    path = tmp_path / "w.safetensors"
    save_state_dict(path, state_dict, metadata={"arch": "rrdb"})
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"arch": "rrdb"}
    assert _equal(read_state_dict(path), {k: v.contiguous() for k, v in state_dict.items()})


def test_save_pth_params_is_a_basicsr_container(tmp_path: Path) -> None:
    ema = {k: v * 2 for k, v in _tensors().items()}
    path = tmp_path / "w.pth"
    save_pth_params(path, _tensors(), params_ema=ema)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {"params", "params_ema"}
    assert _equal(raw["params"], _tensors())
    assert _equal(read_state_dict(path), ema)
    save_pth_params(path, _tensors())
    assert set(torch.load(path, map_location="cpu", weights_only=True)) == {"params"}
