"""MATLAB-style bicubic resizing (``imresize``), the resize of the SR papers.

The field's protocol makes low-resolution images with MATLAB's antialiased
bicubic downscale; torch's ``interpolate(mode="bicubic")`` uses a different
kernel (a = -0.75) and no antialiasing, so PSNR figures would not match the
papers. This module is torch only, so archs, the engine and training share it.
"""

from __future__ import annotations

import functools
import math

import torch


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic kernel with a = -0.5, as MATLAB uses."""
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


@functools.lru_cache(maxsize=128)
def resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True) -> torch.Tensor:
    """The (out_len, in_len) float64 matrix that resizes one axis, on the CPU (cached).

    Rows are MATLAB's contributions with its symmetric border handling folded
    in, so resizing is two matrix products.
    """
    return _build_resize_matrix(in_len, out_len, scale, antialias, torch.device("cpu"))


def _axis_matrix(
    in_len: int, out_len: int, scale: float, antialias: bool, like: torch.Tensor
) -> torch.Tensor:
    """The resize matrix on ``like``'s device, in its dtype."""
    if like.device.type == "cpu":
        matrix = resize_matrix(in_len, out_len, scale, antialias)
    else:
        # Built where it is used: copying the cached host matrix over would be a blocking
        # copy, which makes the submitting thread wait for all the work on the stream.
        matrix = _build_resize_matrix(in_len, out_len, scale, antialias, like.device)
    return matrix.to(like.dtype)


def _build_resize_matrix(
    in_len: int, out_len: int, scale: float, antialias: bool, device: torch.device
) -> torch.Tensor:
    kernel_width = 4.0
    shrink = scale < 1 and antialias
    if shrink:
        kernel_width /= scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64, device=device)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in 1-based input coordinates
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64, device=device)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(distance * scale) if shrink else _cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Mirror out-of-range taps back inside (MATLAB's "symmetric" padding).
    zero_based = torch.remainder(indices.long() - 1, 2 * in_len)
    zero_based = torch.where(zero_based >= in_len, 2 * in_len - 1 - zero_based, zero_based)
    matrix = torch.zeros(out_len, in_len, dtype=torch.float64, device=device)
    matrix.scatter_add_(1, zero_based, weights)
    return matrix


def imresize(
    image: torch.Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
    quantize: int | None = None,
) -> torch.Tensor:
    """Resize the last two axes of a float tensor like MATLAB's ``imresize(..., 'bicubic')``.

    Give ``scale`` (output size is ``ceil(in * scale)``, the kernel uses
    ``scale`` itself, as MATLAB does) or ``size`` = (height, width).
    ``quantize`` = max code (255 for uint8) rounds and clamps after each axis,
    as MATLAB does when it resizes an integer image. Integer images are
    computed in float64 (MATLAB's double) and returned as float32.
    """
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale or size")
    in_h, in_w = image.shape[-2:]
    if size is not None:
        out_h, out_w = size
        scale_h, scale_w = out_h / in_h, out_w / in_w
    else:
        out_h, out_w = math.ceil(in_h * scale), math.ceil(in_w * scale)
        scale_h = scale_w = float(scale)
    dtype = image.dtype if image.is_floating_point() else torch.float32
    x = image if image.is_floating_point() else image.to(torch.float64)
    # MATLAB resizes the axis with the smaller scale first; for equal scales, rows first.
    passes = [("h", scale_h, out_h), ("w", scale_w, out_w)]
    passes.sort(key=lambda p: p[1])
    compute_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    x = x.to(compute_dtype)
    for axis, axis_scale, out_len in passes:
        if axis == "h":
            x = torch.matmul(_axis_matrix(x.shape[-2], out_len, axis_scale, antialias, x), x)
        else:
            x = torch.matmul(x, _axis_matrix(x.shape[-1], out_len, axis_scale, antialias, x).T)
        if quantize is not None:
            # MATLAB rounds halves away from zero; torch.round would send 2.5 to 2.
            x = torch.floor(x + 0.5).clamp(0, quantize)
    return x.to(dtype)
