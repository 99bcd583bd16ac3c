"""Fixtures for the model-zoo tests: the shared real weights, and small smooth test images."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not available: {path.resolve()} does not exist")
    return path


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    """../shared/data/weights beside the repository; tests using it skip when it is absent."""
    return _shared("weights")


@pytest.fixture(scope="session")
def butterfly_y() -> torch.Tensor:
    """A 72x72 crop of Set5 butterfly as (1, 1, H, W) BT.601 studio-swing luma in [0, 1].

    The papers' evaluation space: VDSR and ESPCN were trained and measured on it.
    """
    from PIL import Image

    with Image.open(_shared("images", "Set5", "butterfly.png")) as image:
        rgb = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float64))
    red, green, blue = rgb.unbind(-1)
    y = (16 + (65.481 * red + 128.553 * green + 24.966 * blue) / 255) / 255
    return y[96:168, 96:168].float()[None, None]


def _smooth(channels: int, height: int, width: int, period: float = 32.0) -> torch.Tensor:
    # Smoothness is set in pixels (a sine of ``period`` px), so a 16x16 crop holds half a
    # cycle: nothing a network could mistake for an edge or texture.
    yy = torch.arange(height, dtype=torch.float32).view(height, 1)
    xx = torch.arange(width, dtype=torch.float32).view(1, width)
    planes = [
        0.5 + 0.25 * torch.sin(2 * math.pi * (0.6 * xx + 0.4 * yy) / period + c)
        for c in range(channels)
    ]
    return torch.stack(planes).unsqueeze(0)


@pytest.fixture(scope="session")
def smooth_image() -> Callable[..., torch.Tensor]:
    """(1, C, H, W) image in [0.25, 0.75]: a slow diagonal sine, phase-shifted per channel."""
    return _smooth


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return 10 * math.log10(1.0 / mse) if mse > 0 else math.inf


@pytest.fixture(scope="session")
def psnr_db() -> Callable[[torch.Tensor, torch.Tensor], float]:
    """PSNR in dB of two images in [0, 1]."""
    return psnr
