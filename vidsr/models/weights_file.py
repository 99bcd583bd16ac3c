"""Reading and writing weight files, safely.

``read_state_dict`` accepts safetensors and PyTorch checkpoints. PyTorch files
are read with ``weights_only=True``, which cannot run code; a file that needs
more (a pickled whole model, as old repositories saved) is refused with
``UnsafeCheckpointError`` unless the user opts in. Even then, classes named in
the pickle are never imported: each is replaced by an inert stand-in, and the
tensors are collected from it.
"""

from __future__ import annotations

import logging
import os
import pickle
import pickletools
import re
import tarfile
import types
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import safetensors
import safetensors.torch
import torch

from vidsr.errors import OutputError, UnsafeCheckpointError, WeightsError, with_article

log = logging.getLogger("vidsr")

PathLike = str | os.PathLike[str]

_TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
# Containers used by training frameworks, in order of preference: the EMA
# weights are the ones to run when both are there (BasicSR / Real-ESRGAN).
_CONTAINER_KEYS = ("params_ema", "params", "state_dict", "model")


def read_state_dict(path: PathLike, *, allow_unsafe: bool = False) -> dict[str, torch.Tensor]:
    """The state dict stored in ``path`` (.safetensors, or a .pth/.pt/.ckpt/.bin PyTorch file).

    Training containers (``params_ema``, ``params``, ``state_dict``, ``model``)
    are unwrapped and a DataParallel ``module.`` prefix is stripped. A file that
    needs arbitrary unpickling raises ``UnsafeCheckpointError`` unless
    ``allow_unsafe`` (the CLI's ``--allow-unsafe-weights``) is set.
    """
    file = Path(path)
    if not file.exists():
        raise WeightsError(f"weights file not found: {file}")
    if file.is_dir():
        raise WeightsError(f"weights path is a directory, not a file: {file}")
    suffix = file.suffix.lower()
    if suffix == ".safetensors":
        loaded: Any = _read_safetensors(file)
    elif suffix in _TORCH_SUFFIXES:
        loaded = _read_torch(file, allow_unsafe=allow_unsafe)
    else:
        raise WeightsError(
            f"{file}: not a weights file vidsr knows (expected .safetensors or "
            f"{', '.join(_TORCH_SUFFIXES)})"
        )
    return _strip_data_parallel(_find_state_dict(loaded, file))


def _read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(file, device="cpu")
    except (safetensors.SafetensorError, OSError) as error:
        raise WeightsError(f"{file}: not a readable safetensors file ({error})") from error


def _read_torch(file: Path, *, allow_unsafe: bool) -> Any:
    # Recognised from its first bytes (and a zip's central directory) before torch reads it:
    # torch and tarfile scan a blank or sparse file to its end, minutes for gigabytes.
    damage = _damage(file)
    if damage is not None:
        raise WeightsError(f"{file}: not a weights file PyTorch or safetensors can read"
                           f" ({damage})")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises KeyError/RuntimeError/EOFError... for non-checkpoints
        # The safe loader refuses junk with the same error as a pickle that names classes;
        # only a file that is a checkpoint in form may be offered the unsafe flag.
        needs_code = (isinstance(error, pickle.UnpicklingError)
                      and "Weights only load failed" in str(error))
        if not needs_code:
            reason = (str(error).splitlines() or [type(error).__name__])[0]
            raise WeightsError(
                f"{file}: not a weights file PyTorch or safetensors can read ({reason})"
            ) from error
        if not allow_unsafe:
            raise UnsafeCheckpointError(_unsafe_message(file, str(error))) from None
    log.warning(
        "loading %s with a permissive unpickler (--allow-unsafe-weights): its classes are "
        "replaced by inert stand-ins, but only use files from sources you trust",
        file,
    )
    return _read_torch_unsafe(file)


# torch.save's legacy (pre-1.6) format: five pickles (this number, the protocol version,
# system info, the object, the storage keys), then the storages' raw bytes.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PICKLES = 5


def _damage(file: Path) -> str | None:
    """Why ``file`` is not a PyTorch file vidsr reads (junk, cut short, or a kind ``weights_only``
    cannot read), or None when it is one in form: a whole zip archive (torch's format) or
    whole pickles of protocol 2 or later (the legacy format, or any pickled object).

    Reads the first bytes, a zip's central directory, or the pickles up to their ends,
    never the tensors' bytes: a huge blank file is told in a moment. Pickles are parsed
    with :mod:`pickletools`, which never builds or imports anything.
    """
    with file.open("rb") as stream:
        head = stream.read(tarfile.BLOCKSIZE)
        if not head:
            return "the file is empty"
        stream.seek(0)
        if head.startswith(b"PK\x03\x04"):
            if not zipfile.is_zipfile(stream):
                return "a zip archive cut short or damaged"
            with zipfile.ZipFile(stream) as archive:
                if not any(n.endswith("/data.pkl") for n in archive.namelist()):
                    return "a zip archive without the data.pkl that torch.save writes"
            return None
        if _is_tar_header(head):
            # torch.save's oldest format, which weights_only=True cannot read.
            return ("a tar archive, PyTorch's oldest format, which cannot be read safely;"
                    " load it with torch and save it again as .safetensors")
        if not head.strip(b"\0"):
            return f"it begins with {len(head)} zero bytes: a blank or sparse file"
        # Every torch.save writes protocol 2 or later, which starts with PROTO (0x80).
        if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= pickle.HIGHEST_PROTOCOL:
            return "neither a zip archive nor a pickle"
        expected, read = 1, 0
        while read < expected:
            try:
                ops = list(pickletools.genops(stream))
            except ValueError:  # an unknown opcode, or the end of the file before STOP
                return "a pickle cut short or damaged"
            if read == 0 and any(arg == _LEGACY_MAGIC for op, arg, _ in ops
                                 if op.name == "LONG1"):
                expected = _LEGACY_PICKLES
            read += 1
    return None


def _is_tar_header(block: bytes) -> bool:
    """Whether ``block`` is a tar archive's first header (its checksum holds)."""
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _unsafe_message(file: Path, torch_message: str) -> str:
    found = re.search(r"GLOBAL ([\w.]+)", torch_message)
    what = f" (it references {found.group(1)})" if found else ""
    return (
        f"{file}: refused to load: this checkpoint is a pickle that names Python classes or "
        f"functions{what}, not just tensors. Unpickling such a file can run arbitrary code, so "
        "vidsr only reads plain weights by default. If you trust where the file came from, "
        "pass --allow-unsafe-weights (allow_unsafe=True in Python), or convert it once to "
        ".safetensors."
    )


class _StandIn:
    """Replaces any class a permissive load meets: keeps the pickled state, runs nothing."""

    dump_patches = False  # torch's legacy loader checks this on module classes

    def __new__(cls, *args: Any, **kwargs: Any) -> _StandIn:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict | None):
            state = {**(state[0] or {}), **(state[1] or {})}  # (dict state, slot state)
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self._state = state


def _is_allowed_global(module: str, name: str) -> bool:
    """Globals the permissive load resolves for real: tensor rebuilding and plain containers."""
    if module == "__builtin__":  # protocol 2 (torch's) names builtins as Python 2 did
        module = "builtins"
    if module == "torch._utils" and name.startswith("_rebuild"):
        return True
    return (module, name) in {
        ("collections", "OrderedDict"),
        ("torch.nn.parameter", "Parameter"),
        ("torch", "Size"),
        ("torch", "device"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
    } or (module == "torch" and isinstance(getattr(torch, name, None), torch.dtype))


class _StandInUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if _is_allowed_global(module, name):
            return super().find_class(module, name)
        return type(name, (_StandIn,), {"__module__": f"vidsr.standin.{module}"})


def _load_with_stand_ins(file: BinaryIO, **kwargs: Any) -> Any:
    return _StandInUnpickler(file, **kwargs).load()


# torch.load takes a "pickle module": anything with Unpickler and load.
_stand_in_pickle = types.SimpleNamespace(
    Unpickler=_StandInUnpickler, load=_load_with_stand_ins, __name__="vidsr_stand_in_pickle"
)


def _read_torch_unsafe(file: Path) -> Any:
    with warnings.catch_warnings():
        # The legacy format compares each pickled module's source with the live class;
        # stand-ins have none to compare, which is expected.
        warnings.filterwarnings("ignore", message="Couldn't retrieve source code")
        warnings.filterwarnings("ignore", category=torch.serialization.SourceChangeWarning)
        try:
            return torch.load(
                file, map_location="cpu", weights_only=False, pickle_module=_stand_in_pickle
            )
        except Exception as error:  # any failure of the permissive read is the file's
            raise WeightsError(f"{file}: could not be read even permissively ({error})") from error


def _module_state_dict(module: _StandIn, prefix: str = "") -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers of a pickled nn.Module, walked from its saved state."""
    state = module.__dict__
    collected: dict[str, torch.Tensor] = {}
    non_persistent = state.get("_non_persistent_buffers_set", set())
    for group in ("_parameters", "_buffers"):
        for name, tensor in (state.get(group) or {}).items():
            if tensor is not None and name not in non_persistent:
                collected[prefix + name] = tensor.detach()
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, _StandIn):
            collected.update(_module_state_dict(child, f"{prefix}{name}."))
    return collected


def _is_pickled_module(value: Any) -> bool:
    return isinstance(value, _StandIn) and "_parameters" in value.__dict__


def _is_tensor_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    )


def _find_state_dict(loaded: Any, file: Path) -> dict[str, torch.Tensor]:
    if _is_pickled_module(loaded):
        return _module_state_dict(loaded)
    if isinstance(loaded, torch.nn.Module):
        return dict(loaded.state_dict())
    if isinstance(loaded, Mapping):
        for key in _CONTAINER_KEYS:
            inner = loaded.get(key)
            if _is_tensor_mapping(inner) or _is_pickled_module(inner):
                return _find_state_dict(inner, file)
        if _is_tensor_mapping(loaded):
            return {k: v.detach() for k, v in loaded.items()}
        keys = ", ".join(map(str, list(loaded)[:8]))
        raise WeightsError(f"{file}: no state dict found (top-level keys: {keys})")
    raise WeightsError(f"{file}: no state dict found (the file holds"
                       f" {with_article(type(loaded).__name__)})")


def _strip_data_parallel(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state_dict and all(key.startswith("module.") for key in state_dict):
        return {key.removeprefix("module."): value for key, value in state_dict.items()}
    return state_dict


def _plain(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Cloned: safetensors refuses tensors that share storage (tied or sliced weights).
    return {key: value.detach().to("cpu").contiguous().clone() for key, value in state_dict.items()}


def save_state_dict(
    path: PathLike,
    state_dict: Mapping[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
) -> None:
    """Write ``state_dict`` to a .safetensors file, with optional string ``metadata``."""
    try:
        safetensors.torch.save_file(_plain(state_dict), Path(path), metadata=metadata)
    except OSError as error:
        raise OutputError(f"cannot write weights to {path}: {error}") from error


def save_pth_params(
    path: PathLike,
    params: Mapping[str, torch.Tensor],
    params_ema: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Write a BasicSR-style ``{'params', 'params_ema'}`` .pth (read by spandrel, vs-* filters)."""
    container = {"params": _plain(params)}
    if params_ema is not None:
        container["params_ema"] = _plain(params_ema)
    try:
        torch.save(container, Path(path))
    except OSError as error:
        raise OutputError(f"cannot write weights to {path}: {error}") from error
