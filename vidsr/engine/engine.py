"""Runs a model on batches, as its run plan says: decoded planes in, encoder-ready planes out.

``Engine.submit`` takes a batch of decoded planes and returns a pending batch
whose ``result()`` holds the upscaled planes in the output layout
(``Engine.submit_floats`` does the same for float planes, as ``vsvidsr`` has them);
conversion into the model's space and back (a route of :mod:`vidsr.engine.model_space`,
chosen once per pair of layouts) and quantisation happen on the model's device. The batches go
through the plan's executor (:mod:`vidsr.executors`): in the caller's thread,
in CPU workers, or in flight on CUDA streams; callers read results in
submission order, so frame order holds. ``Engine.run_network`` runs tensors in
the model's own space (``vidsr eval``). Each device gets a
:class:`~vidsr.executors.Replica`: the network's own copy in the plan's
precision, with padding, tiling, the fp32 redo and the out-of-memory fallback.

The engine reads the plan and decides nothing: which devices, precision,
executor, tiles and overlap are in :class:`~vidsr.plan.run_plan.RunPlan`.
"""

from __future__ import annotations

import copy
from functools import partial

import torch

from vidsr.engine.converted_frames import ConvertedFrames
from vidsr.engine.model_space import FrameRoute, ModelSpace, is_float_layout
from vidsr.executors import Flags, PendingBatch, Replica, open_executor
from vidsr.imaging.resize import imresize
from vidsr.io.colour import ColourSpec
from vidsr.io.frames import FrameBatch, PlaneLayout
from vidsr.models.zoo import SRModel
from vidsr.plan.run_plan import RunPlan
from vidsr.run.pipeline import InFlight


class Engine:
    """A model placed on the plan's device(s), ready to run batches. Close it (or use it
    as a context manager) to end the executor's threads and restore process settings."""

    def __init__(self, model: SRModel, plan: RunPlan) -> None:
        self.model = model
        self.plan = plan
        self.spec = model.spec
        self.scale = model.scale
        # How frames reach the network and come back, decided here for the whole run.
        self.space = ModelSpace.of(model.spec, model.scale)
        # Every device gets its own copy: the caller's model stays as loaded (device, dtype,
        # memory format), so it can serve another engine or a training loop afterwards.
        self.replicas = tuple(
            Replica(copy.deepcopy(model.module), model.spec, model.scale, torch.device(name),
                    plan)
            for name in plan.devices
        )
        self.executor = open_executor(plan.executor, self.replicas)
        # A window model's converted frames, per replica: each frame converted once while
        # the batches in flight may need it (a batch and 2r neighbours each).
        keep = (plan.batch_size + plan.window - 1) * (self.executor.in_flight + 1)
        self._converted = {id(r): ConvertedFrames(keep) for r in self.replicas}
        self.device = self.replicas[0].device
        self.dtype = self.replicas[0].dtype
        self.module = self.replicas[0].module

    @property
    def in_flight(self) -> int:
        """How many batches a caller should keep submitted to keep every device busy."""
        return self.executor.in_flight

    def prepare(self, width: int, height: int) -> None:
        """Set up now what the first batch of ``width`` x ``height`` frames would: a runtime
        that compiles per input size (OpenVINO) compiles for it. vsvidsr calls it when the
        script is evaluated, where vs-mlrt compiles too, so rendering starts at full speed."""
        window = (self.plan.window,) if self.plan.window > 1 else ()
        x = torch.zeros(self.plan.batch_size, *window, self.spec.channels, height, width)
        for replica in self.replicas:
            replica.prepare(x)

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
        return self._submit(batch, colour, out_layout)

    @torch.inference_mode()
    def submit_floats(self, batch: FrameBatch) -> PendingBatch:
        """Start upscaling a batch of float planes in [0, 1] (a layout of
        :func:`~vidsr.engine.model_space.float_layout`, such as VapourSynth's RGBS or GRAYH):
        unclamped float planes of the same layout come back. As :meth:`submit` otherwise."""
        return self._submit(batch, None, batch.layout)

    def _submit(self, batch: FrameBatch, colour: ColourSpec | None,
                out_layout: PlaneLayout) -> PendingBatch:
        route = self.space.route(batch.layout, out_layout)
        compute = partial(self._compute, route=route, colour=colour)
        if batch.windows is not None:
            stream = batch.windows.stream
            compute = partial(self._compute_windows, route=route, colour=colour,
                              windows=torch.from_numpy(batch.windows.index),
                              keys=[(stream, int(f)) for f in batch.windows.frames])
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
        flags: Flags, *, route: FrameRoute, colour: ColourSpec | None,
    ) -> list[torch.Tensor]:
        """Device planes in -> device planes of the route's output layout: quantised code
        values, or floats for a float layout."""
        net = partial(replica.network, fp32=fp32, flags=flags)
        out = route.run([p.float() for p in planes], colour, net)
        return self._delivered(out, planes, route)

    @torch.inference_mode()
    def _compute_windows(
        self, replica: Replica, planes: list[torch.Tensor], fp32: bool,
        flags: Flags, *, route: FrameRoute, colour: ColourSpec | None,
        windows: torch.Tensor, keys: list[tuple[object, int]],
    ) -> list[torch.Tensor]:
        """As :meth:`_compute` for a batch of windows: ``windows`` index the planes'
        frames, ``keys`` name them among the replica's converted frames."""
        net = partial(replica.network, fp32=fp32, flags=flags)
        out = route.run_windows(planes, colour, net, windows.to(planes[0].device),
                                self._converted[id(replica)], keys)
        return self._delivered(out, planes, route)

    def _delivered(self, out: list[torch.Tensor], planes: list[torch.Tensor],
                   route: FrameRoute) -> list[torch.Tensor]:
        """The route's float output as the output layout's planes: quantised code values
        (resized first to the plan's fit), or floats for a float layout."""
        out_layout = route.output
        if is_float_layout(out_layout):
            dtype = torch.float16 if out_layout.bit_depth == 16 else torch.float32
            return [p.to(dtype) for p in out]
        fit_w, fit_h = self.output_size(planes[0].shape[-1], planes[0].shape[-2])
        if (fit_w, fit_h) != route.output_size(planes):
            # Before rounding: the resize works on the network's unrounded output.
            out = [imresize(p, size=out_layout.plane_shape(index, fit_w, fit_h))
                   for index, p in enumerate(out)]
        return [_quantise(p, out_layout) for p in out]


def _quantise(plane: torch.Tensor, layout: PlaneLayout) -> torch.Tensor:
    """Round to code values and clamp to the layout's range, on the device.

    The smallest integer type goes back to the host: 8 bits cost a quarter of a float.
    """
    q = plane.round_().clamp_(0, layout.max_code)
    return q.to(torch.uint8 if layout.bit_depth <= 8 else torch.uint16)
