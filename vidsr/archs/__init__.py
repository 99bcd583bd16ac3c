"""The model zoo: every architecture vidsr can build or load, by name.

``create_arch(name, **config)`` builds a randomly initialised network;
``load_arch_from_state_dict(state_dict)`` recognises a state dict in any
public layout we know and returns the loaded network with its ``spec``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from vidsr.archs import compact, edsr, espcn, rednet, rrdb, temporal, vdsr, wdsr
from vidsr.archs.architecture import Architecture, StateDict
from vidsr.errors import ModelError, WeightsError

__all__ = ["ARCHITECTURES", "Architecture", "create_arch", "load_arch_from_state_dict"]

ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        rrdb.ARCHITECTURE,
        vdsr.ARCHITECTURE,
        espcn.ARCHITECTURE,
        edsr.ARCHITECTURE,
        wdsr.ARCHITECTURE,
        rednet.ARCHITECTURE,
        compact.ARCHITECTURE,
        temporal.ARCHITECTURE,
    )
}


def _architecture(name: str) -> Architecture:
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    close = difflib.get_close_matches(name, list(ARCHITECTURES), n=3, cutoff=0.4)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ModelError(
        f"unknown architecture {name!r}{hint} (known: {', '.join(sorted(ARCHITECTURES))})"
    )


def create_arch(name: str, **config: Any) -> nn.Module:
    """A randomly initialised network of architecture ``name`` with the given hyperparameters."""
    try:
        return _architecture(name).create(**config)
    except TypeError as error:  # an unknown hyperparameter name
        raise ModelError(f"{name}: {error}") from error


def _check_tensors(state_dict: StateDict) -> None:
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(
                f"state dict entry {key!r} is a {type(value).__name__}, not a tensor"
            )
        if not value.is_floating_point():
            raise WeightsError(
                f"state dict entry {key!r} has dtype {value.dtype}; network weights must be floats"
            )
        if not bool(torch.isfinite(value).all()):
            raise WeightsError(
                f"state dict entry {key!r} contains NaN or infinite values: the weights are broken"
            )


def _layout_misses(state_dict: StateDict) -> list[tuple[str, str, list[str]]]:
    """(architecture, layout, missing keys) for every known layout, best match first."""
    rows = []
    for arch in ARCHITECTURES.values():
        for layout, keys in arch.key_requirements.items():
            missing = [key for key in keys if key not in state_dict]
            rows.append((len(missing) / len(keys), arch.name, layout, missing))
    rows.sort(key=lambda row: row[0])
    return [(name, layout, missing) for _, name, layout, missing in rows]


def _describe_closest(state_dict: StateDict, limit: int = 3) -> str:
    best: dict[str, tuple[str, list[str]]] = {}
    for name, layout, missing in _layout_misses(state_dict):
        best.setdefault(name, (layout, missing))  # each architecture's best layout only
    lines = [
        f"  {name} ({layout} layout): "
        + (f"missing {', '.join(missing)}" if missing else "has all the keys it looks for")
        for name, (layout, missing) in list(best.items())[:limit]
    ]
    return "closest architectures:\n" + "\n".join(lines)


def load_arch_from_state_dict(
    state_dict: StateDict,
    arch: str | None = None,
    *,
    config: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Recognise ``state_dict`` (or take it as ``arch``); return the loaded network in eval mode.

    Keys in any supported public layout are mapped to the canonical one and
    hyperparameters are read from tensor shapes; ``config`` sets the few that
    shapes cannot tell (or forces others, which then must fit the shapes).
    Tensors are converted to float32 so the engine casts from one known dtype.
    """
    _check_tensors(state_dict)
    state_dict = {key: value.float() for key, value in state_dict.items()}
    if arch is None:
        matches = [a for a in ARCHITECTURES.values() if a.detect(state_dict)]
        if not matches:
            sample = ", ".join(list(state_dict)[:5])
            raise WeightsError(
                f"no known architecture matches these weights (first keys: {sample}).\n"
                + _describe_closest(state_dict)
            )
        if len(matches) > 1:
            # Only a state dict mixing several networks' keys gets here.
            names = ", ".join(a.name for a in matches)
            raise WeightsError(
                f"these weights match several architectures ({names}); choose one with arch="
            )
        architecture = matches[0]
    else:
        architecture = _architecture(arch)
        if not architecture.detect(state_dict):
            missing = next(m for name, _, m in _layout_misses(state_dict) if name == arch)
            what = ", ".join(missing) if missing else "the tensor shapes it expects"
            raise WeightsError(
                f"these weights are not a state dict for {arch}: missing {what}.\n"
                + _describe_closest(state_dict)
            )
    try:
        return architecture.from_state_dict(state_dict, dict(config) if config else None)
    except KeyError as error:
        raise WeightsError(
            f"weights look like {architecture.name} but lack key {error.args[0]!r}"
        ) from error
