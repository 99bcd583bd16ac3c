"""Runs a model on batches: device, precision, memory format, padding, tiling.

``Engine.run_network`` takes tensors in the model's own input space;
``Engine.upscale_batch`` takes decoded planes and returns encoded-ready planes,
doing colour conversion and quantisation on the model's device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from vidsr.errors import OptionsError
from vidsr.io.colour import (
    ColourSpec,
    luma_to_model,
    model_to_luma,
    planes_to_rgb,
    rgb_to_planes,
)
from vidsr.io.frames import FrameBatch, PlaneLayout
from vidsr.models import SRModel
from vidsr.resize import imresize

log = logging.getLogger("vidsr")

Precision = Literal["auto", "fp32", "fp16", "bf16"]
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class EngineOptions:
    """How to run the network. ``tile`` = 0 runs whole frames."""

    device: str = "auto"
    precision: Precision = "auto"
    channels_last: bool = True
    tile: int = 0
    tile_overlap: int = 16
    compile: bool = False


def resolve_device(name: str) -> torch.device:
    """``auto`` picks the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise OptionsError(f"unknown device {name!r} (use cpu, cuda or cuda:N)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionsError(f"device {name!r} asked for, but no CUDA device is available")
    return device


def resolve_precision(precision: str, device: torch.device, supports_half: bool) -> torch.dtype:
    """fp16 on CUDA by default where the model allows it; fp32 on the CPU.

    fp16 on the CPU is refused: its kernels are slow and inexact there; bf16 is the CPU's fast type.
    """
    if precision == "auto":
        return torch.float16 if device.type == "cuda" and supports_half else torch.float32
    if precision not in _DTYPES:
        raise OptionsError(f"unknown precision {precision!r} (use fp32, fp16 or bf16)")
    if precision == "fp16" and device.type == "cpu":
        raise OptionsError("fp16 is not usable on the CPU; use --precision bf16 or fp32")
    return _DTYPES[precision]


def _depth_factor(in_layout: PlaneLayout, out_layout: PlaneLayout, full_range: bool) -> float:
    """Factor that moves code values from one bit depth to another."""
    if full_range:
        return out_layout.max_code / in_layout.max_code
    # Limited range scales by powers of two (16..235 at 8 bits is 64..940 at 10).
    return float(2 ** (out_layout.bit_depth - in_layout.bit_depth))


class Engine:
    """A model placed on its device, ready to run batches."""

    def __init__(self, model: SRModel, options: EngineOptions | None = None) -> None:
        self.model = model
        self.options = options or EngineOptions()
        self.spec = model.spec
        self.scale = model.scale
        self.device = resolve_device(self.options.device)
        self.dtype = resolve_precision(
            self.options.precision, self.device, model.spec.supports_half
        )
        module = model.module.to(self.device, self.dtype)
        if self.options.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if self.options.compile:
            module = torch.compile(module)
        self.module = module

    # -- the network in its own space -------------------------------------------------

    @torch.inference_mode()
    def run_network(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale a float (N, C, h, w) batch in the model's input space, [0, 1].

        Returns (N, C, h*scale, w*scale) float32 on the engine's device, unclamped.
        """
        x = x.to(self.device, torch.float32)
        out_h, out_w = x.shape[-2] * self.scale, x.shape[-1] * self.scale
        if self.spec.pre_upsampled:
            x = imresize(x, size=(out_h, out_w))
        tile = self.options.tile
        if tile and max(x.shape[-2:]) > tile:
            y = self._run_tiled(x, tile, self.options.tile_overlap)
        else:
            y = self._run_padded(x)
        return y[..., :out_h, :out_w]

    def _network_scale(self) -> int:
        return 1 if self.spec.pre_upsampled else self.scale

    def _run_padded(self, x: torch.Tensor) -> torch.Tensor:
        multiple = self.spec.size_multiple
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % multiple, (-w) % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        y = self._forward(x)
        s = self._network_scale()
        return y[..., : h * s, : w * s]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.module(x)
        if self.dtype == torch.float16 and not bool(torch.isfinite(y).all()):
            # fp16 overflows on some content; redo this batch in fp32 rather than emit garbage.
            log.warning("fp16 gave non-finite values on a batch; redoing it in fp32")
            self.module.float()
            y = self.module(x.float())
            self.module.to(self.dtype)
        return y.float()

    def _run_tiled(self, x: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
        """Run overlapping tiles and keep only each tile's core: no seams when the
        model's receptive radius fits in ``overlap``."""
        s = self._network_scale()
        n, c, h, w = x.shape
        out = torch.empty(n, c, h * s, w * s, device=x.device, dtype=torch.float32)
        for top in range(0, h, tile):
            for left in range(0, w, tile):
                bottom, right = min(top + tile, h), min(left + tile, w)
                t0, l0 = max(top - overlap, 0), max(left - overlap, 0)
                b0, r0 = min(bottom + overlap, h), min(right + overlap, w)
                y = self._run_padded(x[..., t0:b0, l0:r0])
                core = y[..., (top - t0) * s : (bottom - t0) * s, (left - l0) * s : (right - l0) * s]
                out[..., top * s : bottom * s, left * s : right * s] = core
        return out

    # -- decoded planes in, encoder-ready planes out -----------------------------------

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return width * self.scale, height * self.scale

    @torch.inference_mode()
    def upscale_batch(
        self, batch: FrameBatch, colour: ColourSpec, out_layout: PlaneLayout
    ) -> FrameBatch:
        """Upscale a batch of decoded planes into planes of ``out_layout``."""
        in_layout = batch.layout
        planes = [
            torch.from_numpy(np.ascontiguousarray(p)).to(self.device).float()
            for p in batch.planes
        ]
        out_w, out_h = self.output_size(batch.width, batch.height)
        space = self.spec.input_space
        if space == "planes" and _same_shape_family(in_layout, out_layout):
            out_planes = self._planes_path(planes, in_layout, out_layout, colour.full_range)
        elif space == "y" and in_layout.family != "rgb" and out_layout.family != "rgb":
            out_planes = self._luma_path(planes, colour, in_layout, out_layout, out_w, out_h)
        else:
            out_planes = self._rgb_path(planes, colour, in_layout, out_layout)
        host = [_quantise(p, out_layout) for p in out_planes]
        return FrameBatch(
            planes=host,
            pts=list(batch.pts),
            time_base=batch.time_base,
            first_index=batch.first_index,
            layout=out_layout,
        )

    def _planes_path(
        self, planes: list[torch.Tensor], in_layout: PlaneLayout, out_layout: PlaneLayout,
        full_range: bool,
    ) -> list[torch.Tensor]:
        factor = _depth_factor(in_layout, out_layout, full_range)
        out = []
        for p in planes:
            y = self.run_network(p[:, None] / in_layout.max_code)[:, 0]
            out.append(y * in_layout.max_code * factor)
        return out

    def _luma_path(
        self, planes: list[torch.Tensor], colour: ColourSpec, in_layout: PlaneLayout,
        out_layout: PlaneLayout, out_w: int, out_h: int,
    ) -> list[torch.Tensor]:
        luma_in = luma_to_model(planes[0], colour, in_layout)
        luma_out = self.run_network(luma_in[:, None])[:, 0]
        out = [model_to_luma(luma_out, colour, out_layout)]
        if out_layout.family == "yuv":
            factor = _depth_factor(in_layout, out_layout, colour.full_range)
            for index in (1, 2):
                size = out_layout.plane_shape(index, out_w, out_h)
                if in_layout.family == "gray":
                    neutral = float(1 << (out_layout.bit_depth - 1))
                    out.append(torch.full((planes[0].shape[0], *size), neutral, device=self.device))
                else:
                    out.append(imresize(planes[index], size=size) * factor)
        return out

    def _rgb_path(
        self, planes: list[torch.Tensor], colour: ColourSpec, in_layout: PlaneLayout,
        out_layout: PlaneLayout,
    ) -> list[torch.Tensor]:
        y, u, v = (planes + [None, None])[:3]
        rgb = planes_to_rgb(y, u, v, colour, in_layout)
        if self.spec.input_space == "rgb":
            rgb_out = self.run_network(rgb)
        else:
            # Plane-wise references, or a luma model on RGB footage: run each channel on its own.
            n, c, h, w = rgb.shape
            flat = self.run_network(rgb.reshape(n * c, 1, h, w))
            rgb_out = flat.reshape(n, c, h * self.scale, w * self.scale)
        return list(rgb_to_planes(rgb_out, colour, out_layout))


def _same_shape_family(a: PlaneLayout, b: PlaneLayout) -> bool:
    return (a.family, a.log2_chroma_w, a.log2_chroma_h) == (b.family, b.log2_chroma_w, b.log2_chroma_h)


def _quantise(plane: torch.Tensor, layout: PlaneLayout) -> np.ndarray:
    """Round to code values, clamp to the layout's range and bring to the host."""
    q = plane.round_().clamp_(0, layout.max_code)
    if layout.bit_depth <= 8:
        return q.to(torch.uint8).cpu().numpy()
    return q.to(torch.int32).cpu().numpy().astype(np.uint16)
