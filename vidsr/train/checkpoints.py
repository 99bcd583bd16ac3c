"""Training checkpoints that resume exactly, and the export of trained weights.

A checkpoint is a folder ``checkpoints/<step, 8 digits>/`` with
``params.safetensors``, ``params_ema.safetensors``, ``discriminator.safetensors``
(GAN recipes), ``training_state.pt`` (optimiser moments, step, RNG states, AMP
scaler; tensors and plain containers only, read back with
``weights_only=True``) and ``model.pth`` (``{'params', 'params_ema'}`` for
spandrel and the vs-* filters). It is written under a temporary name and
renamed, so an interrupted save never looks like a checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vidsr.archs.spec import ArchSpec
from vidsr.errors import WeightsError
from vidsr.io.atomic_write import atomic_write
from vidsr.train.config import TrainConfig

log = logging.getLogger("vidsr")

STATE_FILE = "training_state.pt"


@dataclass
class TrainingState:
    """Everything that changes while training; what a checkpoint saves."""

    generator: nn.Module
    params_ema: nn.Module | None
    optimizer: torch.optim.Optimizer
    discriminator: nn.Module | None = None
    disc_optimizer: torch.optim.Optimizer | None = None
    scaler: torch.amp.GradScaler | None = None
    step: int = 0  # steps completed
    wall_s: float = 0.0  # training wall time over all sessions of the run


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(state: TrainingState, root: Path, cfg: TrainConfig) -> Path:
    """Write the checkpoint of ``state.step`` under ``root``; returns its folder."""
    final = root / f"{state.step:08d}"
    with atomic_write(final) as tmp:
        tmp.mkdir(parents=True)
        _write_checkpoint(state, tmp, cfg)
    return final


def _write_checkpoint(state: TrainingState, folder: Path, cfg: TrainConfig) -> None:
    """The files of a checkpoint, into the empty ``folder``."""
    from vidsr.models.weights_file import save_pth_params

    meta = {"step": str(state.step), "arch": cfg.model.arch}
    save_file(_tensors(state.generator), str(folder / "params.safetensors"), metadata=meta)
    params_ema = None
    if state.params_ema is not None:
        params_ema = _tensors(state.params_ema)
        save_file(params_ema, str(folder / "params_ema.safetensors"), metadata=meta)
    if state.discriminator is not None:
        save_file(_tensors(state.discriminator), str(folder / "discriminator.safetensors"),
                  metadata=meta)
    training = {
        "step": state.step,
        "wall_s": state.wall_s,
        "optimizer": state.optimizer.state_dict(),
        "disc_optimizer": (state.disc_optimizer.state_dict()
                           if state.disc_optimizer is not None else None),
        "scaler": state.scaler.state_dict() if state.scaler is not None else None,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "config": json.dumps(cfg.to_dict()),
    }
    torch.save(training, folder / STATE_FILE)
    save_pth_params(folder / "model.pth", _tensors(state.generator), params_ema)


def _load_into(module: nn.Module, path: Path) -> None:
    sd = load_file(str(path))
    missing, unexpected = module.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise WeightsError(f"checkpoint {path} does not fit the configured model: "
                           f"missing {missing[:3]}, unexpected {unexpected[:3]}; was the preset "
                           "changed since the run started?")


def load_checkpoint(state: TrainingState, folder: Path) -> None:
    """Restore ``state`` in place from a checkpoint folder."""
    _load_into(state.generator, folder / "params.safetensors")
    if state.params_ema is not None:
        ema_path = folder / "params_ema.safetensors"
        _load_into(state.params_ema, ema_path if ema_path.exists()
                   else folder / "params.safetensors")
    if state.discriminator is not None:
        _load_into(state.discriminator, folder / "discriminator.safetensors")
    training: dict[str, Any] = torch.load(folder / STATE_FILE, map_location="cpu",
                                          weights_only=True)
    state.optimizer.load_state_dict(training["optimizer"])
    if state.disc_optimizer is not None and training["disc_optimizer"] is not None:
        state.disc_optimizer.load_state_dict(training["disc_optimizer"])
    if state.scaler is not None and training["scaler"] is not None:
        state.scaler.load_state_dict(training["scaler"])
    torch.set_rng_state(training["torch_rng"])
    if training["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(training["cuda_rng"])
    state.step = int(training["step"])
    state.wall_s = float(training.get("wall_s", 0.0))


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and p.name.isdigit() and (p / STATE_FILE).exists())


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def prune_checkpoints(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (0 keeps all)."""
    if keep > 0:
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old)


def weights_metadata(spec: ArchSpec, recipe: str, step: int, **results: str) -> dict[str, str]:
    """String metadata for a weights file vidsr trained: what it is and how it was made,
    with ``results`` (JSON text) such as the validation scores."""
    return {
        "arch": spec.arch,
        "scales": json.dumps(list(spec.scales)),
        "config": json.dumps(dict(spec.config)),
        "trained_by": "vidsr.train",
        "recipe": recipe,
        "step": str(step),
        **results,
    }


def export_weights(model: nn.Module, path: Path, cfg: TrainConfig, step: int,
                   scores: Mapping[str, float]) -> Path:
    """Save a trained network's weights as safetensors with their provenance."""
    from vidsr.models.weights_file import save_state_dict

    metadata = weights_metadata(model.spec, cfg.name, step, scores=json.dumps(dict(scores)))
    with atomic_write(path) as tmp:
        save_state_dict(tmp, _tensors(model), metadata)
    return path
