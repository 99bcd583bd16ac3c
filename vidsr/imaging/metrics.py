"""PSNR and SSIM with the conventions of the SR papers' evaluation code.

The papers (SRCNN, VDSR, EDSR, ESRGAN) measure on the luma of MATLAB's
``rgb2ycbcr`` (BT.601 studio swing, values 16..235 on a 0..255 scale), with a
border of ``scale`` pixels cropped, PSNR with a peak of 255 and Wang et al.'s
SSIM (11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, the
'valid' region of the filtered maps only).

Torch rather than numpy: the images come out of the engine as tensors, the
resize that makes the LR is torch, and SSIM's Gaussian filtering is a single
``conv2d``. Everything is computed in float64 so figures match MATLAB's
doubles to the last published digit.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = torch.Tensor | np.ndarray

# MATLAB rgb2ycbcr's luma row (ITU-R BT.601, studio swing), for RGB in [0, 1].
_Y_OFFSET = 16.0
_Y_WEIGHTS = (65.481, 128.553, 24.966)

SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_DYNAMIC_RANGE = 255.0


def _as_float64(image: ArrayLike) -> torch.Tensor:
    return torch.as_tensor(image).to(torch.float64)


def rgb_to_y_bt601(rgb: ArrayLike) -> torch.Tensor:
    """Luma of RGB in [0, 1] as MATLAB's ``rgb2ycbcr`` gives it, on the 0..255 scale.

    ``rgb`` has its three channels in dimension -3 (``(3, H, W)`` or
    ``(N, 3, H, W)``); the result drops that dimension and is float64, not
    rounded (the VDSR code keeps it in double).
    """
    rgb = _as_float64(rgb)
    if rgb.ndim < 3 or rgb.shape[-3] != 3:
        raise ValueError(f"expected RGB in dimension -3, got shape {tuple(rgb.shape)}")
    red, green, blue = rgb.unbind(dim=-3)
    return _Y_OFFSET + _Y_WEIGHTS[0] * red + _Y_WEIGHTS[1] * green + _Y_WEIGHTS[2] * blue


def _crop_pair(a: ArrayLike, b: ArrayLike, border: int) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _as_float64(a), _as_float64(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    if a.ndim < 2:
        raise ValueError(f"expected an image of at least 2 dimensions, got shape {tuple(a.shape)}")
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if border:
        height, width = a.shape[-2:]
        if height <= 2 * border or width <= 2 * border:
            raise ValueError(f"a border of {border} leaves nothing of a {height}x{width} image")
        a = a[..., border:-border, border:-border]
        b = b[..., border:-border, border:-border]
    return a, b


def psnr(a: ArrayLike, b: ArrayLike, *, max_value: float = 255.0, border: int = 0) -> float:
    """Peak signal-to-noise ratio in dB over all of ``a`` and ``b`` (inf when identical).

    ``border`` pixels are dropped on each side of the last two axes first.
    """
    a, b = _crop_pair(a, b, border)
    mse = torch.mean((a - b) ** 2).item()
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(max_value**2 / mse)


@functools.lru_cache(maxsize=4)
def gaussian_window(size: int = SSIM_WINDOW_SIZE, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised (size, size) float64 Gaussian of MATLAB's ``fspecial('gaussian')``."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    profile = torch.exp(-(offsets**2) / (2 * sigma**2))
    window = torch.outer(profile, profile)
    return window / window.sum()


def _filter_valid(image: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    # The window is symmetric, so conv2d's correlation equals MATLAB's filter2.
    return F.conv2d(image, window[None, None])


def ssim(a: ArrayLike, b: ArrayLike, *, border: int = 0) -> float:
    """Mean structural similarity of two single-channel images on the 0..255 scale.

    Wang et al.'s definition as the papers' MATLAB code computes it: Gaussian
    statistics over the 'valid' positions only, no downsampling. ``a`` and
    ``b`` are ``(H, W)``; ``border`` pixels are dropped on each side first.
    """
    a, b = _crop_pair(a, b, border)
    if a.ndim != 2:
        raise ValueError(f"ssim takes one (H, W) plane, got shape {tuple(a.shape)}")
    height, width = a.shape
    if height < SSIM_WINDOW_SIZE or width < SSIM_WINDOW_SIZE:
        raise ValueError(
            f"ssim needs {SSIM_WINDOW_SIZE}x{SSIM_WINDOW_SIZE} pixels or more, got {height}x{width}"
        )
    window = gaussian_window()
    a, b = a[None, None], b[None, None]
    c1 = (SSIM_K1 * SSIM_DYNAMIC_RANGE) ** 2
    c2 = (SSIM_K2 * SSIM_DYNAMIC_RANGE) ** 2
    mu_a = _filter_valid(a, window)
    mu_b = _filter_valid(b, window)
    var_a = _filter_valid(a * a, window) - mu_a**2
    var_b = _filter_valid(b * b, window) - mu_b**2
    cov_ab = _filter_valid(a * b, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov_ab + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return ssim_map.mean().item()
