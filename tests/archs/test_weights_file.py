"""vidsr.models.weights_file: safe reading of weight files, containers, and our own writers.

(Kept beside the archs tests: loading weights is part of the model zoo.)
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import random
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from vidsr.archs import load_arch_from_state_dict
from vidsr.errors import UnsafeCheckpointError, WeightsError
from vidsr.models.weights_file import read_state_dict, save_pth_params, save_state_dict


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


# --- junk is not offered the unsafe flag -------------------------------------------------

class _Arbitrary:
    """Any class: a pickle of it names ``test_weights_file._Arbitrary``."""

    def __init__(self) -> None:
        self.weight = torch.ones(2)


def _torch_bytes(obj: object, *, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


_NOT_READABLE = "not a weights file PyTorch or safetensors can read"


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("random.pth", random.Random(0).randbytes(4096), "neither a zip archive nor a pickle"),
    ("notes.bin", b"these are my notes, not a checkpoint\n" * 10,
     "neither a zip archive nor a pickle"),
    ("cut.pth", _torch_bytes({"conv.weight": torch.ones(8, 8)})[:300],
     "a zip archive cut short or damaged"),
    ("cut-legacy.pth", _torch_bytes(torch.nn.Conv2d(1, 1, 3), legacy=True)[:200],
     "a pickle cut short or damaged"),
    ("empty.pt", b"", "the file is empty"),
])
def test_junk_is_not_a_weights_file(tmp_path: Path, name: str, content: bytes,
                                    reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    for allow_unsafe in (False, True):
        with pytest.raises(WeightsError) as error:
            read_state_dict(path, allow_unsafe=allow_unsafe)
        assert not isinstance(error.value, UnsafeCheckpointError)
        assert str(error.value) == f"{path}: {_NOT_READABLE} ({reason})"


def test_a_zip_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "archive.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(WeightsError) as error:
        read_state_dict(path)
    assert str(error.value) == (f"{path}: {_NOT_READABLE} (a zip archive without the data.pkl"
                                " that torch.save writes)")


@pytest.mark.parametrize(("name", "content", "names"), [
    ("object.pth", pickle.dumps(_Arbitrary()), ""),
    ("module.pth", _torch_bytes(torch.nn.Conv2d(1, 2, 3)), "torch.nn.modules.conv.Conv2d"),
    ("module-legacy.pth", _torch_bytes(torch.nn.Conv2d(1, 2, 3), legacy=True),
     "torch.nn.modules.conv.Conv2d"),
])
def test_a_real_pickle_that_needs_code_is_offered_the_flag(tmp_path: Path, name: str,
                                                           content: bytes, names: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnsafeCheckpointError, match="--allow-unsafe-weights") as error:
        read_state_dict(path)
    assert names in str(error.value) and _NOT_READABLE not in str(error.value)


def test_a_pickled_module_loads_with_the_flag(tmp_path: Path) -> None:
    conv = torch.nn.Conv2d(1, 2, 3)
    path = tmp_path / "module-legacy.pth"
    path.write_bytes(_torch_bytes(conv, legacy=True))
    assert _equal(read_state_dict(path, allow_unsafe=True), dict(conv.state_dict()))


def test_the_real_legacy_pickle_cut_short_is_junk(weights_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "model_epoch_50.pth"
    # Cut inside its pickles (the raw tensor bytes that follow them are not parsed).
    path.write_bytes((weights_dir / "vdsr" / "model_epoch_50.pth").read_bytes()[:1000])
    with pytest.raises(WeightsError, match=f"{_NOT_READABLE} \\(a pickle cut short") as error:
        read_state_dict(path)
    assert not isinstance(error.value, UnsafeCheckpointError)


# --- huge files are told from their first bytes (D24) -------------------------------------

_GIB = 1 << 30


@pytest.mark.parametrize(("name", "head", "size", "reason"), [
    # `truncate -s 10G huge.pth`: tarfile scanned it at 9 MB/s; minutes, then torch's advice
    # to load with weights_only=False.
    ("huge.pth", b"", 10 * _GIB, "it begins with 512 zero bytes: a blank or sparse file"),
    ("m.pth", b"", 100 << 20, "it begins with 512 zero bytes: a blank or sparse file"),
    ("zip-head.pth", b"PK\x03\x04", 10 * _GIB, "a zip archive cut short or damaged"),
    ("pickle-head.pt", b"\x80\x02", 10 * _GIB, "a pickle cut short or damaged"),
])
def test_a_huge_blank_file_fails_at_once_naming_it(tmp_path: Path, name: str, head: bytes,
                                                   size: int, reason: str) -> None:
    import time

    path = tmp_path / name
    path.write_bytes(head)
    os.truncate(path, size)  # sparse: no disk, but every byte reads as zero
    for allow_unsafe in (False, True):
        start = time.monotonic()
        with pytest.raises(WeightsError) as error:
            read_state_dict(path, allow_unsafe=allow_unsafe)
        assert time.monotonic() - start < 5
        assert str(error.value) == f"{path}: {_NOT_READABLE} ({reason})"


def test_a_tar_checkpoint_is_refused_without_torch_advice(tmp_path: Path) -> None:
    import tarfile

    path = tmp_path / "old.pth"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        data = pickle.dumps({"conv.weight": [1.0]}, protocol=2)
        member = tarfile.TarInfo("pickle")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    for allow_unsafe in (False, True):
        with pytest.raises(WeightsError) as error:
            read_state_dict(path, allow_unsafe=allow_unsafe)
        assert str(error.value) == (
            f"{path}: {_NOT_READABLE} (a tar archive, PyTorch's oldest format, which cannot be"
            " read safely; load it with torch and save it again as .safetensors)")


class _Exec:
    """A pickle whose object is a call to ``exec``: never run, held by a stand-in."""

    def __reduce__(self):
        return (exec, ("raise SystemExit",))


def test_a_file_that_holds_no_tensors_says_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "exec.pth"
    torch.save(_Exec(), path)
    with pytest.raises(WeightsError) as error:
        read_state_dict(path, allow_unsafe=True)
    assert str(error.value) == f"{path}: no state dict found (the file holds an exec)"
