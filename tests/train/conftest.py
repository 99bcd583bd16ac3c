"""Fixtures for training tests: small generated images and a tiny training config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidsr.train.config import config_from_dict


def smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A natural-ish test image: random low-frequency colour waves plus a little texture."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = []
    for _ in range(3):
        fy, fx, phase = rng.uniform(1, 6, size=3)
        wave = 0.5 + 0.35 * np.sin(2 * np.pi * (fy * y + fx * x) + phase)
        channels.append(wave + 0.05 * rng.standard_normal((height, width)))
    return (np.clip(np.stack(channels, axis=-1), 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Four PNGs of 40x48 in ``tmp_path/images``."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(4):
        Image.fromarray(smooth_image(rng, 40, 48)).save(folder / f"im{i}.png")
    return folder


@pytest.fixture
def val_folder(tmp_path: Path) -> Path:
    """Two 24x24 PNGs for validation."""
    folder = tmp_path / "val"
    folder.mkdir()
    rng = np.random.default_rng(11)
    for i in range(2):
        Image.fromarray(smooth_image(rng, 24, 24)).save(folder / f"v{i}.png")
    return folder


@pytest.fixture(autouse=True)
def one_thread():
    """Training numbers are compared bit for bit: pin the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_config():
    """A small compact x2 configuration, adjustable by keyword (dotted keys)."""

    def make(**changes):
        table = {
            "model": {"arch": "compact", "config": {"num_feat": 8, "num_conv": 2, "scale": 2}},
            "data": {"hr_size": 16, "scales": [2], "batch_size": 4},
            "optim": {"lr": 2e-3, "betas": [0.9, 0.99]},
            "train": {"total_steps": 12, "log_every": 2, "val_every": 6,
                      "checkpoint_every": 3, "progress": False, "keep_checkpoints": 0},
        }
        for key, value in changes.items():
            section, leaf = key.split("__")
            table.setdefault(section, {})[leaf] = value
        return config_from_dict(table, name="tiny")

    return make
