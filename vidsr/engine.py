"""Runs a model on batches: devices, precision, memory format, padding, tiling, CUDA streams.

``Engine.run_network`` takes tensors in the model's own input space;
``Engine.upscale_batch`` takes decoded planes and returns encoder-ready planes,
doing colour conversion and quantisation on the model's device.
``Engine.submit`` is the overlapped form of ``upscale_batch``: it starts a batch
and returns a ``PendingBatch`` whose ``result()`` waits for it. On CUDA each
device has a ring of slots, each owning a stream, an event and reused pinned
host buffers, so the upload of one batch, the compute of another and the
download of a third overlap. Several devices (``device="cuda:0,cuda:1"``) take
batches in turn; callers read results in submission order, so frame order holds.

Out of memory on a batch is not fatal: the batch is split in halves, then run
in tiles of halving size, and the engine remembers what fitted.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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

Precision = Literal["auto", "fp32", "fp16", "bf16"]
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# Whether each reduced-precision forward stayed finite, as device tensors.
Flags = list[torch.Tensor]
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
    the process setting; see :func:`plan_cpu_threads`).
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


@dataclass(frozen=True)
class CpuThreads:
    """How to share the CPU between torch and the codecs in an overlapped run."""

    torch: int
    interop: int
    decoder: int
    encoder: int


def plan_cpu_threads(cores: int | None = None) -> CpuThreads:
    """A thread split for a CPU-only run with decode, infer and encode overlapped.

    The network gets all but one core when there are more than two: decoding
    and encoding need about one core between them at the sizes CPU models run
    at, and oversubscribed cores make every stage slower than its share. With
    two cores or fewer, torch keeps both: the codec threads then run in the
    gaps (torch releases the cores between batches) and the network, by far the
    slowest stage, is not halved. Interop threads stay at one: the pipeline
    itself supplies the parallelism between stages.
    """
    cores = cores or os.cpu_count() or 1
    network = cores if cores <= 2 else cores - 1
    codec = 1 if cores <= 2 else max(1, min(4, cores // 4))
    return CpuThreads(torch=network, interop=1, decoder=codec, encoder=codec)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise OptionsError(f"unknown device {name!r} (use cpu, cuda or cuda:N)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionsError(f"device {name!r} asked for, but no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device.index >= torch.cuda.device_count():
            raise OptionsError(
                f"device {name!r} asked for, but there are {torch.cuda.device_count()}"
                " CUDA device(s) (cuda:0 ...)"
            )
    return device


def resolve_devices(names: str) -> tuple[torch.device, ...]:
    """``cuda:0,cuda:1`` -> both devices; a single name -> one device."""
    parts = [part.strip() for part in names.split(",")]
    if not all(parts):
        raise OptionsError(f"empty device name in {names!r} (use e.g. cuda:0,cuda:1)")
    return tuple(resolve_device(part) for part in parts)


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


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says an allocation failed, on CUDA or on the CPU."""
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc)
    # The CPU allocator raises a plain RuntimeError; so do some CUDA library calls (cuDNN).
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _depth_factor(in_layout: PlaneLayout, out_layout: PlaneLayout, full_range: bool) -> float:
    """Factor that moves code values from one bit depth to another."""
    if full_range:
        return out_layout.max_code / in_layout.max_code
    # Limited range scales by powers of two (16..235 at 8 bits is 64..940 at 10).
    return float(2 ** (out_layout.bit_depth - in_layout.bit_depth))


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


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
        self._fp32: nn.Module | None = None
        self.max_batch: int | None = None  # learned from out-of-memory errors
        self.tile = options.tile  # grows smaller on out-of-memory errors
        self.slots = (
            [_Slot(device) for _ in range(options.in_flight)] if device.type == "cuda" else []
        )
        self._next_slot = 0

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
        if self._fp32 is None:
            self._fp32 = copy.deepcopy(self._eager).float()
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

    def run_now(self, batch: FrameBatch, compute: _Compute) -> list[np.ndarray]:
        """Upscale ``batch`` synchronously; a reduced-precision batch that went non-finite
        is redone in fp32."""
        planes = [torch.from_numpy(np.ascontiguousarray(p)).to(self.device) for p in batch.planes]
        flags: Flags = []
        out = compute(self, planes, False, flags)
        if flags and not bool(torch.stack(flags).all()):
            _warn_nonfinite(self.dtype, batch)
            out = compute(self, planes, True, [])
        return [p.cpu().numpy() for p in out]

    def submit(self, batch: FrameBatch, out_layout: PlaneLayout, compute: _Compute) -> PendingBatch:
        if not self.slots:
            return PendingBatch(batch, out_layout, planes=self.run_now(batch, compute))
        slot = self.slots[self._next_slot]
        self._next_slot = (self._next_slot + 1) % len(self.slots)
        return slot.launch(self, batch, out_layout, compute)


# compute(replica, device planes, fp32, flags) -> quantised device planes of the output layout.
_Compute = Callable[[_Replica, list[torch.Tensor], bool, list[torch.Tensor]], list[torch.Tensor]]


def _warn_nonfinite(dtype: torch.dtype, batch: FrameBatch) -> None:
    name = str(dtype).removeprefix("torch.")
    log.warning("%s gave non-finite values on frames %d-%d; redoing that batch in fp32",
                name, batch.first_index, batch.first_index + len(batch) - 1)


class _Slot:
    """One in-flight batch on a CUDA device: its stream, its pinned buffers, its event.

    Buffers are reused from batch to batch (pinned allocations are slow and
    pinned copies are what lets ``non_blocking`` overlap); the event tells
    when the download has landed, without a device-wide sync.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self.done = torch.cuda.Event()
        self._host_in: list[torch.Tensor] = []
        self._host_out: list[torch.Tensor] = []
        self.finite = torch.ones((), dtype=torch.bool, pin_memory=True)
        self.pending: PendingBatch | None = None

    def launch(
        self, replica: _Replica, batch: FrameBatch, out_layout: PlaneLayout, compute: _Compute
    ) -> PendingBatch:
        if self.pending is not None:
            self.pending.wait()  # its buffers are about to be overwritten
        sources = [torch.from_numpy(np.ascontiguousarray(p)) for p in batch.planes]
        host_in = _staging(self._host_in, sources)
        for buffer, source in zip(host_in, sources, strict=True):
            buffer.copy_(source)
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            planes = [buffer.to(self.device, non_blocking=True) for buffer in host_in]
            flags: Flags = []
            out = compute(replica, planes, False, flags)
            host_out = _staging(self._host_out, out)
            for buffer, plane in zip(host_out, out, strict=True):
                buffer.copy_(plane, non_blocking=True)
            if flags:
                self.finite.copy_(torch.stack(flags).all(), non_blocking=True)
            else:
                self.finite.fill_(True)
            self.done.record(self.stream)
        pending = PendingBatch(batch, out_layout, slot=self, host_out=host_out,
                               redo=partial(replica.run_now, batch, compute), dtype=replica.dtype)
        self.pending = pending
        return pending


def _staging(buffers: list[torch.Tensor], like: list[torch.Tensor]) -> list[torch.Tensor]:
    """Pinned views shaped like ``like``, reusing ``buffers`` (grown in place when too small)."""
    views = []
    for i, tensor in enumerate(like):
        need = tensor.numel()
        if i >= len(buffers) or buffers[i].dtype != tensor.dtype or buffers[i].numel() < need:
            buffer = torch.empty(need, dtype=tensor.dtype, pin_memory=True)
            if i < len(buffers):
                buffers[i] = buffer
            else:
                buffers.append(buffer)
        views.append(buffers[i][:need].view(tensor.shape))
    return views


class PendingBatch:
    """A batch handed to :meth:`Engine.submit`; ``result()`` waits for it."""

    def __init__(
        self, batch: FrameBatch, out_layout: PlaneLayout, *,
        planes: list[np.ndarray] | None = None, slot: _Slot | None = None,
        host_out: list[torch.Tensor] | None = None,
        redo: Callable[[], list[np.ndarray]] | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        self._batch = batch
        self._layout = out_layout
        self._planes = planes
        self._slot = slot
        self._host_out = host_out or []
        self._redo = redo
        self._dtype = dtype

    def ready(self) -> bool:
        """Whether ``result()`` would return at once."""
        return self._planes is not None or (self._slot is not None and self._slot.done.query())

    def wait(self) -> None:
        """Wait for the device and take the planes out of the slot's buffers."""
        if self._planes is not None:
            return
        slot = self._slot
        assert slot is not None and self._redo is not None and self._dtype is not None
        slot.done.synchronize()
        if bool(slot.finite):
            # Copied out: the pinned buffers belong to the slot's next batch.
            self._planes = [buffer.numpy().copy() for buffer in self._host_out]
        else:
            _warn_nonfinite(self._dtype, self._batch)
            with torch.cuda.device(slot.device), torch.cuda.stream(slot.stream):
                self._planes = self._redo()
        slot.pending = None
        self._slot, self._host_out, self._redo = None, [], None

    def result(self) -> FrameBatch:
        """The upscaled batch, planes in the output layout, timestamps kept."""
        self.wait()
        assert self._planes is not None
        batch = self._batch
        return FrameBatch(
            planes=self._planes,
            pts=list(batch.pts),
            time_base=batch.time_base,
            first_index=batch.first_index,
            layout=self._layout,
        )


class Engine:
    """A model placed on its device(s), ready to run batches."""

    def __init__(self, model: SRModel, options: EngineOptions | None = None) -> None:
        self.model = model
        self.options = options or EngineOptions()
        if self.options.in_flight < 1:
            raise OptionsError(f"in_flight must be at least 1, got {self.options.in_flight}")
        if self.options.tile < 0 or self.options.tile_overlap < 0:
            raise OptionsError("tile and tile overlap must not be negative")
        self.spec = model.spec
        self.scale = model.scale
        self.devices = resolve_devices(self.options.device)
        if self.options.cpu_threads and any(d.type == "cpu" for d in self.devices):
            torch.set_num_threads(self.options.cpu_threads)
        self._replicas = [
            # Every device after the first gets its own copy of the weights.
            _Replica(model.module if i == 0 else copy.deepcopy(model.module), model, d,
                     self.options)
            for i, d in enumerate(self.devices)
        ]
        self.device = self.devices[0]
        self.dtype = self._replicas[0].dtype
        self.module = self._replicas[0].module
        self._turn = 0

    @property
    def in_flight(self) -> int:
        """How many batches a caller should keep submitted to keep every device busy."""
        return sum(max(1, len(r.slots)) for r in self._replicas)

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
