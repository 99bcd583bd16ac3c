"""Runs a model on batches: devices, precision, memory format, padding, tiling, CUDA streams.

``Engine.run_network`` takes tensors in the model's own input space;
``Engine.upscale_batch`` takes decoded planes and returns encoder-ready planes,
doing colour conversion and quantisation on the model's device.
``Engine.submit`` is the overlapped form of ``upscale_batch``: it starts a batch
and returns a ``PendingBatch`` whose ``result()`` waits for it. On CUDA each
device has a ring of slots, each owning a stream, an event and reused pinned
host buffers, so the upload of one batch, the compute of another and the
download of a third overlap. On the CPU, ``cpu_workers`` threads each run a
batch at once (see :func:`vidsr.devices.plan_cpu_threads` for why). Several
devices (``device="cuda:0,cuda:1"``) take batches in turn; callers read results
in submission order, so frame order holds. ``close()`` ends the CPU workers.

Out of memory on a batch is not fatal: the batch is split in halves, then run
in tiles of halving size, and the engine remembers what fitted.

Device names, precisions and the CPU thread split are resolved in
:mod:`vidsr.devices`; the CUDA slots and ``PendingBatch`` live in
:mod:`vidsr.cuda_slots`.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidsr.cuda_slots import Flags, PendingBatch, Slot, warn_nonfinite
from vidsr.devices import (
    CpuThreads,
    Precision,
    is_out_of_memory,
    resolve_devices,
    resolve_precision,
)
from vidsr.errors import OptionsError, OutOfMemoryError
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
from vidsr.resize import imresize

log = logging.getLogger("vidsr")

# Network: float (N, C, h, w) in model space -> float32 (N, C, h*s, w*s) on the device.
Network = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EngineOptions:
    """How to run the network.

    ``device``: auto, cpu, cuda, cuda:N, or a comma-separated list (``cuda:0,cuda:1``)
    to deal batches round-robin over several devices. ``tile`` = 0 runs whole
    frames. ``in_flight``: batches in flight per CUDA device, each on its own
    stream. ``min_tile``: the smallest tile an out-of-memory retry goes down to.
    ``cpu_threads``: torch's intra-op threads when a device is the CPU (0 keeps
    the process setting). ``cpu_workers``: batches the CPU runs at once, each in
    its own thread with ``cpu_threads`` threads (0 is one; :func:`with_cpu_plan`
    fills both in for an overlapped run). ``cudnn_benchmark``: let cuDNN time its
    convolution algorithms on the first batch of each size and keep the fastest;
    a video's frames all have one size, so the timing is paid once.
    """

    device: str = "auto"
    precision: Precision = "auto"
    channels_last: bool = True
    tile: int = 0
    tile_overlap: int = 16
    compile: bool = False
    in_flight: int = 2
    min_tile: int = 32
    cpu_threads: int = 0
    cpu_workers: int = 0
    cudnn_benchmark: bool = True


def with_cpu_plan(options: EngineOptions, plan: CpuThreads) -> EngineOptions:
    """``options`` for an overlapped run on the CPU: ``plan``'s threads and workers
    wherever the caller left them at 0."""
    return replace(options, cpu_threads=options.cpu_threads or plan.torch,
                   cpu_workers=options.cpu_workers or plan.workers)


def _depth_factor(in_layout: PlaneLayout, out_layout: PlaneLayout, full_range: bool) -> float:
    """Factor that moves code values from one bit depth to another."""
    if full_range:
        return out_layout.max_code / in_layout.max_code
    # Limited range scales by powers of two (16..235 at 8 bits is 64..940 at 10).
    return float(2 ** (out_layout.bit_depth - in_layout.bit_depth))


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _settle(device: torch.device) -> None:
    """Wait until weights just placed on ``device`` are there.

    The dtype and memory-format conversions run as kernels on the stream that was
    current, and the slots' streams do not wait on it: their first batch could read
    half-converted weights.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Replica:
    """The network on one device, and what out-of-memory retries taught it."""

    def __init__(
        self, module: nn.Module, model: SRModel, device: torch.device, options: EngineOptions
    ) -> None:
        self.spec = model.spec
        self.scale = model.scale
        self.device = device
        self.options = options
        self.dtype = resolve_precision(options.precision, device, model.spec.supports_half)
        module = module.to(device, self.dtype)
        if options.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self._eager = module
        self.module = torch.compile(module) if options.compile else module
        _settle(device)
        self._fp32: nn.Module | None = None
        self._fp32_lock = threading.Lock()  # CPU workers may spoil batches at the same time
        self.max_batch: int | None = None  # learned from out-of-memory errors
        self.tile = options.tile  # grows smaller on out-of-memory errors
        self.slots = (
            [Slot(device) for _ in range(options.in_flight)] if device.type == "cuda" else []
        )
        self._next_slot = 0
        self.workers = (
            ThreadPoolExecutor(options.cpu_workers, thread_name_prefix="vidsr-cpu-worker")
            if device.type == "cpu" and options.cpu_workers > 1 else None
        )

    @property
    def network_scale(self) -> int:
        return 1 if self.spec.pre_upsampled else self.scale

    def fp32_module(self) -> nn.Module:
        """An fp32 copy for batches the reduced precision spoilt, made on first need.

        A copy rather than converting the module in place: batches in flight on
        other streams still read the reduced-precision weights.
        """
        if self.dtype == torch.float32:
            return self.module
        with self._fp32_lock:
            if self._fp32 is None:
                self._fp32 = copy.deepcopy(self._eager).float()
                _settle(self.device)
        return self._fp32

    # -- the network ---------------------------------------------------------------

    def network(self, x: torch.Tensor, *, fp32: bool, flags: Flags) -> torch.Tensor:
        """Run float ``x`` in model space; ``flags`` collects whether reduced precision
        stayed finite."""
        x = x.to(self.device, torch.float32)
        out_h, out_w = x.shape[-2] * self.scale, x.shape[-1] * self.scale
        if self.spec.pre_upsampled:
            x = imresize(x, size=(out_h, out_w))
        y = self._fitting(x, fp32, flags)
        return y[..., :out_h, :out_w]

    def _fitting(self, x: torch.Tensor, fp32: bool, flags: Flags) -> torch.Tensor:
        """Whole batch, halves or tiles: whatever fits in memory. Frames keep their order."""
        n = x.shape[0]
        if self.max_batch is not None and n > self.max_batch:
            step = self.max_batch
            parts = [self._fitting(x[i : i + step], fp32, flags) for i in range(0, n, step)]
            return torch.cat(parts)
        failure = ""
        try:
            return self._tiled_or_whole(x, fp32, flags)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            # Only the text is kept: the exception's traceback pins every tensor of the attempt.
            failure = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        self._release_cached_memory()
        if n > 1:
            self.max_batch = max(1, n // 2)
            log.warning(
                "out of memory on %s with a batch of %d frame(s); retrying in batches of %d",
                self.device, n, self.max_batch,
            )
            return self._fitting(x, fp32, flags)
        h, w = x.shape[-2:]
        smaller = _round_up(max(self.tile or max(h, w), 2) // 2, self.spec.size_multiple)
        if smaller < self.options.min_tile:
            raise OutOfMemoryError(
                f"out of memory on {self.device} even for one frame in {self.tile}-pixel tiles"
                f" ({failure}); use a smaller model, a smaller --tile with less overlap,"
                " or another device"
            )
        self.tile = smaller
        log.warning("out of memory on %s for one %dx%d frame; retrying in %d-pixel tiles",
                    self.device, w, h, smaller)
        return self._fitting(x, fp32, flags)

    def _release_cached_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _tiled_or_whole(self, x: torch.Tensor, fp32: bool, flags: Flags) -> torch.Tensor:
        if self.tile and max(x.shape[-2:]) > self.tile:
            return self._run_tiled(x, self.tile, self.options.tile_overlap, fp32, flags)
        return self._run_padded(x, fp32, flags)

    def _run_padded(self, x: torch.Tensor, fp32: bool, flags: Flags) -> torch.Tensor:
        multiple = self.spec.size_multiple
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % multiple, (-w) % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        y = self._forward(x, fp32, flags)
        s = self.network_scale
        return y[..., : h * s, : w * s]

    def _forward(self, x: torch.Tensor, fp32: bool, flags: Flags) -> torch.Tensor:
        module, dtype = (self.fp32_module(), torch.float32) if fp32 else (self.module, self.dtype)
        x = x.to(dtype)
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = module(x)
        if dtype != torch.float32:
            # A device tensor, not a bool: reading it here would wait for the device.
            flags.append(torch.isfinite(y).all())
        return y.float()

    def _run_tiled(
        self, x: torch.Tensor, tile: int, overlap: int, fp32: bool, flags: Flags
    ) -> torch.Tensor:
        """Run overlapping tiles and keep only each tile's core: no seams when the
        model's receptive radius fits in ``overlap``."""
        s = self.network_scale
        n, c, h, w = x.shape
        out = torch.empty(n, c, h * s, w * s, device=x.device, dtype=torch.float32)
        for top in range(0, h, tile):
            for left in range(0, w, tile):
                bottom, right = min(top + tile, h), min(left + tile, w)
                t0, l0 = max(top - overlap, 0), max(left - overlap, 0)
                b0, r0 = min(bottom + overlap, h), min(right + overlap, w)
                y = self._run_padded(x[..., t0:b0, l0:r0], fp32, flags)
                rows = slice((top - t0) * s, (bottom - t0) * s)
                cols = slice((left - l0) * s, (right - l0) * s)
                core = y[..., rows, cols]
                out[..., top * s : bottom * s, left * s : right * s] = core
        return out

    # -- batches ---------------------------------------------------------------------

    def run_now(
        self, batch: FrameBatch, compute: _Compute, *, fp32: bool = False
    ) -> list[np.ndarray]:
        """Upscale ``batch`` synchronously; a reduced-precision batch that went non-finite
        is redone in fp32. ``fp32`` skips straight to that (a slot's batch already known
        to go non-finite)."""
        planes = [torch.from_numpy(np.ascontiguousarray(p)).to(self.device) for p in batch.planes]
        flags: Flags = []
        out = compute(self, planes, fp32, flags)
        if flags and not bool(torch.stack(flags).all()):
            warn_nonfinite(self.dtype, batch)
            out = compute(self, planes, True, [])
        return [p.cpu().numpy() for p in out]

    @property
    def in_flight(self) -> int:
        if self.slots:
            return len(self.slots)
        return self.options.cpu_workers if self.workers else 1

    def submit(self, batch: FrameBatch, out_layout: PlaneLayout, compute: _Compute) -> PendingBatch:
        if self.workers is not None:
            future = self.workers.submit(self.run_now, batch, compute)
            return PendingBatch(batch, out_layout, future=future)
        if not self.slots:
            return PendingBatch(batch, out_layout, planes=self.run_now(batch, compute))
        slot = self.slots[self._next_slot]
        self._next_slot = (self._next_slot + 1) % len(self.slots)
        return slot.launch(batch, out_layout, partial(compute, self),
                           redo=partial(self.run_now, batch, compute, fp32=True),
                           dtype=self.dtype)


# compute(replica, device planes, fp32, flags) -> quantised device planes of the output layout.
_Compute = Callable[[_Replica, list[torch.Tensor], bool, list[torch.Tensor]], list[torch.Tensor]]


class Engine:
    """A model placed on its device(s), ready to run batches."""

    def __init__(self, model: SRModel, options: EngineOptions | None = None) -> None:
        self.model = model
        self.options = options or EngineOptions()
        if self.options.in_flight < 1:
            raise OptionsError(f"in_flight must be at least 1, got {self.options.in_flight}")
        if self.options.cpu_workers < 0 or self.options.cpu_threads < 0:
            raise OptionsError("CPU workers and threads must not be negative")
        if self.options.tile < 0 or self.options.tile_overlap < 0:
            raise OptionsError("tile and tile overlap must not be negative")
        self.spec = model.spec
        self.scale = model.scale
        self.devices = resolve_devices(self.options.device)
        # Process-wide settings this engine changes; close() puts them back.
        self._process_threads = torch.get_num_threads()
        self._process_cudnn_benchmark = torch.backends.cudnn.benchmark
        if self.options.cpu_threads and any(d.type == "cpu" for d in self.devices):
            torch.set_num_threads(self.options.cpu_threads)
        if self.options.cudnn_benchmark and any(d.type == "cuda" for d in self.devices):
            torch.backends.cudnn.benchmark = True
        self._replicas = [
            # Every device gets its own copy: the caller's model stays as loaded (device, dtype,
            # memory format), so it can serve another engine or a training loop afterwards.
            _Replica(copy.deepcopy(model.module), model, d, self.options)
            for d in self.devices
        ]
        self.device = self.devices[0]
        self.dtype = self._replicas[0].dtype
        self.module = self._replicas[0].module
        self._turn = 0

    @property
    def in_flight(self) -> int:
        """How many batches a caller should keep submitted to keep every device busy."""
        return sum(r.in_flight for r in self._replicas)

    def close(self) -> None:
        """End the CPU worker threads (batches still running finish first) and put back
        the process's torch thread count and cuDNN setting. Safe to call twice."""
        for replica in self._replicas:
            if replica.workers is not None:
                replica.workers.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(self._process_threads)
        torch.backends.cudnn.benchmark = self._process_cudnn_benchmark

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the network in its own space -------------------------------------------------

    @torch.inference_mode()
    def run_network(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale a float (N, C, h, w) batch in the model's input space, [0, 1].

        Returns (N, C, h*scale, w*scale) float32 on the first device, unclamped.
        A reduced-precision result with NaN or Inf is redone in fp32.
        """
        replica = self._replicas[0]
        flags: Flags = []
        y = replica.network(x, fp32=False, flags=flags)
        if flags and not bool(torch.stack(flags).all()):
            log.warning("%s gave non-finite values; redoing the batch in fp32",
                        str(replica.dtype).removeprefix("torch."))
            y = replica.network(x, fp32=True, flags=[])
        return y

    # -- decoded planes in, encoder-ready planes out -----------------------------------

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return width * self.scale, height * self.scale

    @torch.inference_mode()
    def submit(
        self, batch: FrameBatch, colour: ColourSpec, out_layout: PlaneLayout
    ) -> PendingBatch:
        """Start upscaling ``batch``; the devices take batches in turn.

        On CUDA this returns once the work is queued; call ``result()`` on the
        returned batches in submission order. At most ``in_flight`` may be
        outstanding: the next submit to a busy slot waits for its batch.
        """
        replica = self._replicas[self._turn % len(self._replicas)]
        self._turn += 1
        compute = partial(self._compute, batch=batch, colour=colour, out_layout=out_layout)
        return replica.submit(batch, out_layout, compute)

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
        self, replica: _Replica, planes: list[torch.Tensor], fp32: bool,
        flags: Flags, *, batch: FrameBatch, colour: ColourSpec,
        out_layout: PlaneLayout,
    ) -> list[torch.Tensor]:
        """Device planes of code values in -> quantised device planes of ``out_layout``."""
        net = partial(replica.network, fp32=fp32, flags=flags)
        in_layout = batch.layout
        floats = [p.float() for p in planes]
        out_w, out_h = self.output_size(batch.width, batch.height)
        space = self.spec.input_space
        if space == "planes" and _same_shape_family(in_layout, out_layout):
            out = self._planes_path(floats, in_layout, out_layout, colour.full_range, net,
                                    out_w, out_h)
        elif space == "y" and in_layout.family != "rgb" and out_layout.family != "rgb":
            out = self._luma_path(floats, colour, in_layout, out_layout, out_w, out_h, net)
        else:
            out = self._rgb_path(floats, colour, in_layout, out_layout, net)
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
