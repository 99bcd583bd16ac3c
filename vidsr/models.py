"""The model registry and ``load_model``: a name or a file becomes a ready network.

Names resolve through model cards (``vidsr/weights/cards.toml``): the
architecture, the scales, the licence and where each scale's weights come from
(a bundled file, or a URL fetched once into a cache and checked by sha256).
"""

from __future__ import annotations

import difflib
import inspect
import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidsr.archs.reference import BicubicUpscaler, NearestUpscaler
from vidsr.archs.spec import ArchSpec
from vidsr.download import fetch_weights
from vidsr.errors import ModelError, WeightsError

log = logging.getLogger("vidsr")

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CARDS_FILE = WEIGHTS_DIR / "cards.toml"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
_REFERENCE_ARCHS = {"nearest": NearestUpscaler, "bicubic": BicubicUpscaler}


@dataclass(frozen=True)
class WeightsSource:
    """Where one set of weights comes from: a bundled file, or a URL fetched into the cache."""

    bundled: str | None = None
    url: str | None = None
    sha256: str | None = None
    filename: str | None = None

    def describe(self) -> str:
        if self.bundled:
            return "bundled"
        return f"download ({self.filename or self.url})"


@dataclass(frozen=True)
class ModelCard:
    """A named model: plain data read from cards.toml."""

    name: str
    arch: str
    scales: tuple[int, ...]
    description: str
    licence: str
    config: Mapping[str, Any] = field(default_factory=dict)
    weights: Mapping[str, WeightsSource] = field(default_factory=dict)  # "2", "4" or "any"

    @property
    def parameter_free(self) -> bool:
        return not self.weights

    def weights_for(self, scale: int) -> WeightsSource | None:
        return self.weights.get(str(scale)) or self.weights.get("any")


@dataclass
class SRModel:
    """A network ready to run, with the descriptor the engine asks."""

    name: str
    module: nn.Module
    spec: ArchSpec
    scale: int
    card: ModelCard | None = None
    weights_path: Path | None = None

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


@cache
def model_cards() -> dict[str, ModelCard]:
    """All cards by name, read once from cards.toml."""
    with CARDS_FILE.open("rb") as f:
        raw = tomllib.load(f)
    cards = {}
    for name, entry in raw.items():
        weights = {str(k): WeightsSource(**v) for k, v in entry.get("weights", {}).items()}
        cards[name] = ModelCard(
            name=name,
            arch=entry["arch"],
            scales=tuple(entry["scales"]),
            description=entry.get("description", ""),
            licence=entry.get("licence", "unknown"),
            config=entry.get("config", {}),
            weights=weights,
        )
    return cards


def register_card(card: ModelCard) -> None:
    """Add or replace a card at run time (plugins, tests, user presets)."""
    model_cards()[card.name] = card


def closest_names(name: str, candidates: list[str], n: int = 3) -> list[str]:
    """The candidates that look most like ``name``, best first."""
    return difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)


def _unknown_model_message(name: str) -> str:
    names = sorted(model_cards())
    close = closest_names(name, names)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return f"unknown model {name!r}: {hint}(known: {', '.join(names)}; or give a weights file)"


def _looks_like_path(name_or_path: str | Path) -> bool:
    text = str(name_or_path)
    return (
        isinstance(name_or_path, Path)
        or text.lower().endswith(WEIGHT_SUFFIXES)
        or "/" in text
        or Path(text).is_file()
    )


def _scale_list(scales: tuple[int, ...]) -> str:
    return ", ".join(f"x{s}" for s in scales)


def _build_from_weights(
    path: Path, arch: str | None, allow_unsafe: bool
) -> tuple[nn.Module, ArchSpec]:
    # Imported here: the full zoo is only needed when weights are read.
    from vidsr.archs import load_arch_from_state_dict
    from vidsr.weights_file import read_state_dict

    state_dict = read_state_dict(path, allow_unsafe=allow_unsafe)
    try:
        module = load_arch_from_state_dict(state_dict, arch=arch)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from exc
    return module, module.spec


def load_model(
    name_or_path: str | Path,
    scale: int | None = None,
    weights: str | Path | None = None,
    *,
    allow_unsafe: bool = False,
) -> SRModel:
    """Resolve a model name (or a weights file) to a ready ``SRModel``.

    ``scale`` defaults to the model's only or largest scale. ``weights``
    replaces the card's weights with a file of the same architecture.
    ``allow_unsafe`` lets a legacy pickle be unpickled (after a warning).
    """
    if scale is not None and (not isinstance(scale, int) or scale < 1):
        raise ModelError(f"scale must be a whole number >= 1, got {scale!r}")
    card: ModelCard | None = None
    weights_path: Path | None = Path(weights) if weights is not None else None

    if str(name_or_path) in model_cards():
        card = model_cards()[str(name_or_path)]
        name = card.name
        if scale is None:
            scale = max(card.scales)
        if scale not in card.scales and weights_path is None:
            raise ModelError(
                f"model {name!r} supports {_scale_list(card.scales)}, not x{scale}"
            )
    elif _looks_like_path(name_or_path):
        weights_path = Path(name_or_path)
        name = weights_path.stem
    else:
        raise ModelError(_unknown_model_message(str(name_or_path)))

    if card is not None and card.parameter_free:
        if weights_path is not None:
            raise ModelError(f"model {name!r} has no weights; --weights does not apply to it")
        module = _REFERENCE_ARCHS[card.arch](scale=scale)
        spec = module.spec
    else:
        if weights_path is None:
            assert card is not None and scale is not None
            source = card.weights_for(scale)
            if source is None:
                raise ModelError(f"model {name!r} has no weights for x{scale}")
            weights_path = resolve_weights(card, source)
        # A user's file is recognised on its own, so a file of another architecture
        # is named as such; the bundled files are known to be the card's.
        forced_arch = card.arch if card is not None and weights is None else None
        module, spec = _build_from_weights(weights_path, forced_arch, allow_unsafe)
        if card is not None and card.arch != spec.arch:
            raise WeightsError(
                f"{weights_path}: holds a {spec.arch} network, not the {card.arch} that model"
                f" {name!r} is (use --model {weights_path} to run it as it is)"
            )
        if scale is None:
            scale = max(spec.scales)
        if scale not in spec.scales:
            raise ModelError(
                f"{weights_path}: this {spec.arch} network upscales {_scale_list(spec.scales)},"
                f" not x{scale}"
            )

    module.eval()
    module.requires_grad_(False)
    return SRModel(
        name=name, module=module, spec=spec, scale=scale, card=card, weights_path=weights_path
    )


def resolve_weights(card: ModelCard, source: WeightsSource) -> Path:
    """The local file for a card's weights: bundled, cached, or downloaded now."""
    if source.bundled:
        path = WEIGHTS_DIR / source.bundled
        if not path.is_file():
            raise WeightsError(f"bundled weights {path} are missing: reinstall vidsr")
        return path
    if source.url:
        return fetch_weights(source.url, sha256=source.sha256, filename=source.filename)
    raise WeightsError(f"model {card.name!r}: its card names no weights source")


def count_flops_per_pixel(module: nn.Module, spec: ArchSpec, scale: int, size: int = 32) -> float:
    """Floating-point operations per input pixel (a multiply-add counts 2).

    Pass a module built on the meta device (``card_network``) to count without weights.
    """
    from torch.utils.flop_counter import FlopCounterMode

    side = size * scale if spec.pre_upsampled else size
    side = -(-side // spec.size_multiple) * spec.size_multiple
    device = next((p.device for p in module.parameters()), torch.device("meta"))
    x = torch.zeros(1, spec.channels, side, side, device=device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return counter.get_total_flops() / float(size * size)


def card_network(card: ModelCard, scale: int, device: str = "meta") -> nn.Module:
    """The card's network without its weights: on the meta device, shapes and FLOPs for
    `vidsr models`; on a real device, randomly initialised (for speed measurements)."""
    if card.parameter_free:
        return _REFERENCE_ARCHS[card.arch](scale=scale)
    from vidsr.archs import ARCHITECTURES, create_arch

    config = dict(card.config)
    # Networks with a fixed scale take it as a hyperparameter; multi-scale ones do not.
    if "scale" in inspect.signature(ARCHITECTURES[card.arch].create).parameters:
        config.setdefault("scale", scale)
    with torch.device(device):
        return create_arch(card.arch, **config)
