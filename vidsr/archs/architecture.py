"""What every architecture file provides to the registry, and the state-dict helpers they share.

An architecture file defines its ``nn.Module``, a ``detect`` function (key
conditions and shapes, as data), a ``from_state_dict`` function (public key
layouts -> canonical keys, hyperparameters read from tensor shapes), and one
``Architecture`` value that ties them together.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vidsr.errors import ModelError, WeightsError, with_article

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Architecture:
    """One entry of the model zoo.

    ``create(**config)`` builds a randomly initialised network (for training);
    ``detect(state_dict)`` says whether a state dict is this architecture in any
    layout we know; ``from_state_dict(state_dict, config=None)`` maps the keys to
    the canonical layout, reads hyperparameters from the shapes (``config``
    overrides the few that shapes cannot tell) and returns the loaded network in
    eval mode. ``key_requirements`` names, per public layout, the keys ``detect``
    looks for; the registry uses it to tell users what a state dict missed.
    ``grow(trained, config)``, where an architecture has it, builds this
    architecture from a trained network of another (``config`` as for ``create``)
    so that it computes the same at step 0: training starts from that network.
    """

    name: str
    create: Callable[..., nn.Module]
    detect: Callable[[StateDict], bool]
    from_state_dict: Callable[..., nn.Module]
    key_requirements: Mapping[str, tuple[str, ...]]
    grow: Callable[[nn.Module, dict[str, Any]], nn.Module] | None = None


def has_keys(state_dict: StateDict, keys: Iterable[str]) -> bool:
    return all(key in state_dict for key in keys)


def matching_layout(
    state_dict: StateDict, requirements: Mapping[str, tuple[str, ...]]
) -> str | None:
    """The first layout whose required keys are all present, or None."""
    for layout, keys in requirements.items():
        if has_keys(state_dict, keys):
            return layout
    return None


def indices(state_dict: StateDict, prefix: str) -> list[int]:
    """Sorted distinct integers N of keys starting with ``prefix`` + ``N.``."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for key in state_dict if (m := pattern.match(key))}
    return sorted(found)


def rename(state_dict: StateDict, rules: Iterable[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Apply regex substitutions to every key; the first rule that matches a key wins."""
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for pattern, replacement in compiled:
            new_key, count = pattern.subn(replacement, key, count=1)
            if count:
                key = new_key
                break
        renamed[key] = value
    return renamed


def load_canonical[M: nn.Module](
    name: str,
    cls: Callable[..., M],
    config: Mapping[str, Any],
    state_dict: StateDict,
) -> M:
    """Build ``cls(**config)`` on the meta device and load ``state_dict`` into it.

    Building on meta allocates nothing; ``assign=True`` then adopts the loaded
    tensors as the parameters. Every key and shape is compared first so a
    mismatch is reported as the first differing key with both shapes, which is
    what a user who forced an architecture or a config needs to see.
    """
    try:
        with torch.device("meta"):
            model = cls(**config)
    except TypeError as error:  # unknown or missing hyperparameter name
        raise WeightsError(f"cannot build {name} with config {dict(config)}: {error}") from error
    except ModelError as error:
        raise WeightsError(
            f"these weights describe {with_article(name)} that vidsr cannot build ({error})"
        ) from error

    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state_dict:
            raise WeightsError(
                f"weights do not fit {name} {dict(config)}: missing key {key!r} "
                f"(expected shape {tuple(tensor.shape)})"
            )
        found = state_dict[key]
        if tuple(found.shape) != tuple(tensor.shape):
            raise WeightsError(
                f"weights do not fit {name} {dict(config)}: key {key!r} has shape "
                f"{tuple(found.shape)}, expected {tuple(tensor.shape)}"
            )
    unexpected = [key for key in state_dict if key not in expected]
    if unexpected:
        raise WeightsError(
            f"weights do not fit {name} {dict(config)}: unexpected key {unexpected[0]!r}"
            + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else "")
        )
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()


def with_overrides(read: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Hyperparameters read from shapes, updated with the caller's explicit ones."""
    config = dict(read)
    if overrides:
        config.update(overrides)
    return config
