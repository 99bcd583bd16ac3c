"""Runs a model on batches, as its run plan says: decoded planes in, encoder-ready planes out.

``Engine.submit`` takes a batch of decoded planes and returns a pending batch
whose ``result()`` holds the upscaled planes in the output layout; colour
conversion and quantisation happen on the model's device. The batches go
through the plan's executor (:mod:`vidsr.executors`): in the caller's thread,
in CPU workers, or in flight on CUDA streams; callers read results in
submission order, so frame order holds. ``Engine.run_network`` runs tensors in
the model's own space (``vidsr eval``). Each device gets a
:class:`~vidsr.executors.Replica`: the network's own copy in the plan's
precision, with padding, tiling, the fp32 redo and the out-of-memory fallback.

The engine reads the plan and decides nothing: which devices, precision,
executor, tiles and overlap are in :class:`~vidsr.plan.RunPlan`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial

import torch

from vidsr.executors import Flags, PendingBatch, Replica, open_executor
from vidsr.io.colour import (
    ColourSpec,
    colour_for_layout,
    luma_to_model,
    model_to_luma,
    planes_to_rgb,
    rgb_to_planes,
)
from vidsr.io.frames import FrameBatch, PlaneLayout
from vidsr.models import SRModel
from vidsr.pipeline import InFlight
from vidsr.plan import RunPlan
from vidsr.resize import imresize

# Network: float (N, C, h, w) in model space -> float32 (N, C, h*s, w*s) on the device.
Network = Callable[[torch.Tensor], torch.Tensor]


def _depth_factor(in_layout: PlaneLayout, out_layout: PlaneLayout, full_range: bool) -> float:
    """Factor that moves code values from one bit depth to another."""
    if full_range:
        return out_layout.max_code / in_layout.max_code
    # Limited range scales by powers of two (16..235 at 8 bits is 64..940 at 10).
    return float(2 ** (out_layout.bit_depth - in_layout.bit_depth))


class Engine:
    """A model placed on the plan's device(s), ready to run batches. Close it (or use it
    as a context manager) to end the executor's threads and restore process settings."""

    def __init__(self, model: SRModel, plan: RunPlan) -> None:
        self.model = model
        self.plan = plan
        self.spec = model.spec
        self.scale = model.scale
        # Every device gets its own copy: the caller's model stays as loaded (device, dtype,
        # memory format), so it can serve another engine or a training loop afterwards.
        self.replicas = tuple(
            Replica(copy.deepcopy(model.module), model.spec, model.scale, torch.device(name),
                    plan)
            for name in plan.devices
        )
        self.executor = open_executor(plan.executor, self.replicas)
        self.device = self.replicas[0].device
        self.dtype = self.replicas[0].dtype
        self.module = self.replicas[0].module

    @property
    def in_flight(self) -> int:
        """How many batches a caller should keep submitted to keep every device busy."""
        return self.executor.in_flight

    def close(self) -> None:
        """End the executor's threads (batches still running finish first) and put back
        the process settings it changed. Safe to call twice."""
        self.executor.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the network in its own space -------------------------------------------------

    @torch.inference_mode()
    def run_network(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale a float (N, C, h, w) batch in the model's input space, [0, 1].

        Returns (N, C, h*scale, w*scale) float32 on the first device, unclamped.
        A reduced-precision result with NaN, Inf or values far out of range is redone in
        fp32; an fp32 one is a ModelError.
        """
        return self.replicas[0].run_tensor(x)

    # -- decoded planes in, encoder-ready planes out -----------------------------------

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """The picture delivered for a ``width`` x ``height`` one: the plan's fit, or scale x."""
        fit = self.plan.fit
        return (fit.width, fit.height) if fit is not None else (width * self.scale,
                                                               height * self.scale)

    @torch.inference_mode()
    def submit(
        self, batch: FrameBatch, colour: ColourSpec, out_layout: PlaneLayout
    ) -> PendingBatch:
        """Start upscaling ``batch``; call ``result()`` on the returned batches in
        submission order. At most ``in_flight`` may be outstanding: a further submit
        may wait for the oldest."""
        compute = partial(self._compute, batch=batch, colour=colour, out_layout=out_layout)
        return PendingBatch(self.executor.submit(batch, compute), batch, out_layout)

    def upscale_batch(
        self, batch: FrameBatch, colour: ColourSpec, out_layout: PlaneLayout
    ) -> FrameBatch:
        """Upscale a batch of decoded planes into planes of ``out_layout``."""
        return self.submit(batch, colour, out_layout).result()

    def infer_stage(self, colour: ColourSpec, out_layout: PlaneLayout) -> InFlight:
        """The pipeline stage that keeps ``in_flight`` batches submitted."""
        return InFlight(partial(self.submit, colour=colour, out_layout=out_layout),
                        depth=self.in_flight)

    @torch.inference_mode()
    def _compute(
        self, replica: Replica, planes: list[torch.Tensor], fp32: bool,
        flags: Flags, *, batch: FrameBatch, colour: ColourSpec,
        out_layout: PlaneLayout,
    ) -> list[torch.Tensor]:
        """Device planes of code values in -> quantised device planes of ``out_layout``."""
        net = partial(replica.network, fp32=fp32, flags=flags)
        in_layout = batch.layout
        floats = [p.float() for p in planes]
        out_w, out_h = batch.width * self.scale, batch.height * self.scale
        space = self.spec.input_space
        if space == "planes" and _same_shape_family(in_layout, out_layout):
            out = self._planes_path(floats, in_layout, out_layout, colour.full_range, net,
                                    out_w, out_h)
        elif space == "y" and in_layout.family != "rgb" and out_layout.family != "rgb":
            out = self._luma_path(floats, colour, in_layout, out_layout, out_w, out_h, net)
        else:
            out = self._rgb_path(floats, colour, in_layout, out_layout, net)
        fit_w, fit_h = self.output_size(batch.width, batch.height)
        if (fit_w, fit_h) != (out_w, out_h):
            # Before rounding: the resize works on the network's unrounded output.
            out = [imresize(p, size=out_layout.plane_shape(index, fit_w, fit_h))
                   for index, p in enumerate(out)]
        return [_quantise(p, out_layout) for p in out]

    def _planes_path(
        self, planes: list[torch.Tensor], in_layout: PlaneLayout, out_layout: PlaneLayout,
        full_range: bool, net: Network, out_w: int, out_h: int,
    ) -> list[torch.Tensor]:
        factor = _depth_factor(in_layout, out_layout, full_range)
        out = []
        for index, p in enumerate(planes):
            y = net(p[:, None] / in_layout.max_code)[:, 0]
            # Odd sizes: a chroma plane covers half a pixel past the luma edge; crop that half.
            h, w = out_layout.plane_shape(index, out_w, out_h)
            out.append(y[:, :h, :w] * in_layout.max_code * factor)
        return out

    def _luma_path(
        self, planes: list[torch.Tensor], colour: ColourSpec, in_layout: PlaneLayout,
        out_layout: PlaneLayout, out_w: int, out_h: int, net: Network,
    ) -> list[torch.Tensor]:
        luma_in = luma_to_model(planes[0], colour, in_layout)
        luma_out = net(luma_in[:, None])[:, 0]
        out = [model_to_luma(luma_out, colour, out_layout)]
        if out_layout.family == "yuv":
            factor = _depth_factor(in_layout, out_layout, colour.full_range)
            for index in (1, 2):
                size = out_layout.plane_shape(index, out_w, out_h)
                if in_layout.family == "gray":
                    neutral = float(1 << (out_layout.bit_depth - 1))
                    out.append(torch.full((planes[0].shape[0], *size), neutral,
                                          device=planes[0].device))
                else:
                    out.append(imresize(planes[index], size=size) * factor)
        return out

    def _rgb_path(
        self, planes: list[torch.Tensor], colour: ColourSpec, in_layout: PlaneLayout,
        out_layout: PlaneLayout, net: Network,
    ) -> list[torch.Tensor]:
        y, u, v = (planes + [None, None])[:3]
        rgb = planes_to_rgb(y, u, v, colour, in_layout)
        if self.spec.input_space == "rgb":
            rgb_out = net(rgb)
        else:
            # Plane-wise references, or a luma model on RGB footage: run each channel on its own.
            n, c, h, w = rgb.shape
            flat = net(rgb.reshape(n * c, 1, h, w))
            rgb_out = flat.reshape(n, c, h * self.scale, w * self.scale)
        # An RGB source written as YUV (or the reverse) needs the matrix the encoder tags.
        out_colour = colour_for_layout(colour, out_layout, rgb_out.shape[-2])
        return list(rgb_to_planes(rgb_out, out_colour, out_layout))


def _same_shape_family(a: PlaneLayout, b: PlaneLayout) -> bool:
    def shape(layout: PlaneLayout) -> tuple[str, int, int]:
        return layout.family, layout.log2_chroma_w, layout.log2_chroma_h

    return shape(a) == shape(b)


def _quantise(plane: torch.Tensor, layout: PlaneLayout) -> torch.Tensor:
    """Round to code values and clamp to the layout's range, on the device.

    The smallest integer type goes back to the host: 8 bits cost a quarter of a float.
    """
    q = plane.round_().clamp_(0, layout.max_code)
    return q.to(torch.uint8 if layout.bit_depth <= 8 else torch.uint16)
