"""The model registry and ``load_model``: a name or a file becomes a ready network.

Names resolve through model cards (``vidsr/weights/cards.toml``): the
architecture, the scales, the licence and where each scale's weights come from
(a bundled file, or a URL fetched once into a cache and checked by sha256).
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from vidsr.archs.reference import BicubicUpscaler, NearestUpscaler
from vidsr.archs.spec import ArchSpec
from vidsr.engine.model_space import ModelSpace
from vidsr.errors import ModelChoiceError, ModelError, OptionsError, WeightsError, with_article
from vidsr.models.download import fetch_weights
from vidsr.models.interpolate import interpolate_state_dicts
from vidsr.models.strength import strength_value
from vidsr.plan.precision import UNMEASURED, MeasuredLoss

log = logging.getLogger("vidsr")

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
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
    # Set5 PSNR lost against fp32, per reduced precision and scale ("bf16" -> "4" -> dB).
    precision_loss: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # The PSNR-trained model of the same architecture and lineage that ``--strength``
    # blends this one with (ESRGAN's network interpolation); None: no strength knob.
    strength_from: str | None = None

    @property
    def parameter_free(self) -> bool:
        return not self.weights

    def weights_for(self, scale: int) -> WeightsSource | None:
        return self.weights.get(str(scale)) or self.weights.get("any")

    def measured_loss(self, scale: int) -> MeasuredLoss:
        """What its own weights at ``scale`` lose in each reduced precision (measured)."""
        if self.parameter_free:
            # Exact resizers compute the same in any precision wide enough for code values.
            return MeasuredLoss({}, f"{self.name} is an exact resizer")
        losses = {precision: by_scale[str(scale)]
                  for precision, by_scale in self.precision_loss.items()
                  if str(scale) in by_scale}
        return MeasuredLoss(losses, f"card {self.name} x{scale}")


@dataclass
class SRModel:
    """A network ready to run, with the descriptor the engine asks."""

    name: str
    module: nn.Module
    spec: ArchSpec
    scale: int
    card: ModelCard | None = None
    weights_path: Path | None = None
    card_weights: bool = False  # the weights are the card's own (not a --weights file)

    @classmethod
    def from_module(cls, module: nn.Module, scale: int) -> SRModel:
        """A network built or trained in this process (no card, no file)."""
        return cls(name=module.spec.arch, module=module, spec=module.spec, scale=scale)

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def measured_loss(self) -> MeasuredLoss:
        """What reduced precisions cost these weights on Set5, as far as it was measured.

        The card's figures hold for the card's own weights; a weights file gets them
        when its tensors are those of a bundled card (the same model under another name).
        """
        if self.card is not None and self.card_weights:
            return self.card.measured_loss(self.scale)
        twin = bundled_twin(self)
        if twin is not None:
            found = twin.measured_loss(self.scale)
            return MeasuredLoss(found.losses, f"same tensors as {found.source}")
        return UNMEASURED


# Cards added at run time (plugins, tests); they take precedence over cards.toml.
_REGISTERED: dict[str, ModelCard] = {}


@cache
def _bundled_cards() -> Mapping[str, ModelCard]:
    """The cards of cards.toml, read once; never changed afterwards."""
    with CARDS_FILE.open("rb") as f:
        raw = tomllib.load(f)
    cards = {}
    for name, entry in raw.items():
        weights = {str(k): WeightsSource(**v) for k, v in entry.get("weights", {}).items()}
        losses = {precision: {str(k): float(v) for k, v in by_scale.items()}
                  for precision, by_scale in entry.get("precision_loss", {}).items()}
        cards[name] = ModelCard(
            name=name,
            arch=entry["arch"],
            scales=tuple(entry["scales"]),
            description=entry.get("description", ""),
            licence=entry.get("licence", "unknown"),
            config=entry.get("config", {}),
            weights=weights,
            precision_loss=losses,
            strength_from=entry.get("strength_from"),
        )
    return MappingProxyType(cards)


def model_cards() -> dict[str, ModelCard]:
    """All cards by name: cards.toml's, then those registered at run time."""
    return {**_bundled_cards(), **_REGISTERED}


def register_card(card: ModelCard) -> None:
    """Add or replace a card at run time (plugins, tests, user presets)."""
    _REGISTERED[card.name] = card


def unregister_card(name: str) -> None:
    """Remove a card added with :func:`register_card` (no-op for others)."""
    _REGISTERED.pop(name, None)


def tensor_digest(module: nn.Module, *, with_names: bool = True) -> str:
    """sha256 of a network's tensors (names, shapes, fp32 values), whatever file held them.

    ``with_names=False`` leaves the names out and takes the tensors in the module's order:
    for a network whose wrappers rename its tensors but change nothing it computes.
    """
    digest = hashlib.sha256()
    tensors = module.state_dict().items()
    for key, tensor in sorted(tensors) if with_names else tensors:
        if with_names:
            digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def bundled_twin(model: SRModel) -> ModelCard | None:
    """The bundled card whose own weights at ``model.scale`` are ``model``'s tensors, if any."""
    candidates = [
        card for card in _bundled_cards().values()
        if card.arch == model.spec.arch and model.scale in card.scales
        and (source := card.weights_for(model.scale)) is not None and source.bundled
    ]
    if not candidates:
        return None
    digest = tensor_digest(model.module)
    for card in candidates:
        if _bundled_digest(card.name, model.scale) == digest:
            return card
    return None


@cache
def _bundled_digest(name: str, scale: int) -> str:
    return tensor_digest(load_model(name, scale=scale).module)


def closest_names(name: str, candidates: list[str], n: int = 3) -> list[str]:
    """The candidates that look most like ``name``, best first."""
    return difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)


def _unknown_model_message(name: str) -> str:
    names = sorted(model_cards())
    close = closest_names(name, names)
    hint = f": did you mean {' or '.join(close)}?" if close else ""
    return f"unknown model {name!r}{hint} (known: {', '.join(names)}; or give a weights file)"


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
    from vidsr.models.weights_file import read_state_dict

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
    strength: float | None = None,
) -> SRModel:
    """Resolve a model name (or a weights file) to a ready ``SRModel``.

    ``scale`` defaults to the model's only or largest scale. ``weights``
    replaces the card's weights with a file of the same architecture.
    ``allow_unsafe`` lets a legacy pickle be unpickled (after a warning).
    ``strength`` (0 to 1, models whose card names ``strength_from``): the network blended
    with its PSNR-trained partner, 0 the partner's tensors, 1 the model's own, once here.
    ``NAME@S`` (``crisp@0.5``, the name the blend is given) is the same as ``strength=S``:
    how a list of models to compare names several strengths.
    """
    name_or_path, strength = _split_strength(name_or_path, strength)
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
            raise ModelChoiceError(
                f"model {name!r} supports {_scale_list(card.scales)}, not x{scale}"
            )
    elif _looks_like_path(name_or_path):
        weights_path = Path(name_or_path)
        name = weights_path.stem
    else:
        raise ModelChoiceError(_unknown_model_message(str(name_or_path)))

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
                f"{weights_path}: holds {with_article(spec.arch)} network, not the {card.arch}"
                f" that model {name!r} is (use --model {weights_path} to run it as it is)"
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
    own_weights = card is not None and weights is None
    if strength is not None:  # 1 is the model itself, but only a model with the knob takes it
        assert scale is not None
        _blend_with_partner(module, card, name, scale, strength)
        if strength != 1.0:
            name, own_weights = f"{name}@{strength:g}", False
    return SRModel(
        name=name, module=module, spec=spec, scale=scale, card=card, weights_path=weights_path,
        card_weights=own_weights,
    )


def _split_strength(name_or_path: str | Path,
                    strength: float | None) -> tuple[str | Path, float | None]:
    """``crisp@0.5`` as ``crisp`` with strength 0.5 (a card's name or a path stays whole)."""
    text = str(name_or_path)
    base, sep, value = text.rpartition("@")
    if not sep or text in model_cards() or base not in model_cards():
        return name_or_path, strength
    try:
        blend = strength_value(value)
    except OptionsError as exc:
        raise OptionsError(f"model {text!r}: {exc}") from None
    if strength is not None and strength != blend:
        raise OptionsError(f"model {text!r} names strength {blend:g} but --strength is"
                           f" {strength:g}")
    return base, blend


def _blend_with_partner(module: nn.Module, card: ModelCard | None, name: str, scale: int,
                        strength: float) -> None:
    """Turn ``module`` (the card's model at ``scale``) into its blend with the card's
    ``strength_from`` partner: ``(1 - strength) * partner + strength * module``."""
    if not 0.0 <= strength <= 1.0:
        raise OptionsError(f"--strength must be from 0 to 1, got {strength:g}")
    if card is None or card.strength_from is None:
        knobbed = sorted(c.name for c in model_cards().values() if c.strength_from)
        raise ModelChoiceError(f"model {name!r} has no --strength (it is for "
                               f"{', '.join(knobbed) or 'no model here'})")
    if strength == 1.0:  # the model itself: no partner to load
        return
    partner = load_model(card.strength_from, scale=scale)
    partner_module = partner.module
    config = dict(module.spec.config)
    if partner.spec.arch == module.spec.arch and dict(partner.spec.config) != config:
        # A model trained from its partner widened (vidsr.archs.compact.widened) blends
        # with the partner widened the same way: the weights its training started from.
        from vidsr.archs import ARCHITECTURES

        grow = ARCHITECTURES[module.spec.arch].grow
        try:
            partner_module = grow(partner_module, config) if grow else None
        except ModelError:
            partner_module = None
    if partner_module is None or partner.spec.arch != module.spec.arch:
        raise WeightsError(f"model {name!r} and its strength partner {partner.name!r} are not"
                           " one architecture and config")
    blended = interpolate_state_dicts(partner_module.state_dict(), module.state_dict(), strength)
    module.load_state_dict(blended)


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

    space = ModelSpace.of(spec, scale)
    device = next((p.device for p in module.parameters()), torch.device("meta"))
    x = torch.zeros(1, space.channels, *space.network_size(size, size), device=device)
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
