"""The network on one device, and the two ways a batch recovers from a failure.

A :class:`Replica` holds its own copy of the network in the plan's precision
and memory format, pads inputs to the network's size multiple (through its
:class:`~vidsr.engine.model_space.ModelSpace`), runs large
frames in overlapping tiles, and owns the only copies of the two recovery
paths every executor shares:

- **out of memory**: the batch is split in halves, then run in tiles of halving
  size; what fitted is remembered for the next batches;
- **no picture**: a batch whose fp16/bf16 result has NaN, Inf or values far out of
  range is redone in fp32; one that still has them (or had them in fp32) is a
  ``ModelError`` naming its frames, never written as flat colour.

Reduced precision is torch's autocast over fp32 weights: convolutions run in
bf16/fp16, while the additions that carry the picture (a network's global skip,
VDSR's residual) and the layers the spec names as reading or writing the
picture (``ArchSpec.picture_layers``) stay fp32. Casting the whole network held
the picture itself to bf16's 8 bits of mantissa, about a code value near white:
``realesr-animevideov3`` lost 0.025 dB on Set5 that way, 0.006 dB now, for a
few percent of its time. The fp32 redo is the same module without autocast.

Out-of-memory adaptation changes the replica's state, which CPU workers share:
one lock guards it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import nn

from vidsr.archs.spec import ArchSpec
from vidsr.engine.model_space import ModelSpace
from vidsr.errors import ModelError, OutOfMemoryError
from vidsr.io.frames import FrameBatch
from vidsr.plan.devices import is_out_of_memory

if TYPE_CHECKING:
    from vidsr.plan.run_plan import RunPlan

log = logging.getLogger("vidsr")

# Whether each forward gave a picture (see usable_output), as device tensors (reading
# them as bools would make the host wait for the device).
Flags = list[torch.Tensor]
# A working network overshoots its [0, 1] picture by a fraction (ringing at edges); this
# many full ranges out, it is broken (damaged weights), and its frames would be clamped
# into flat colour.
OUTPUT_LIMIT = 16.0
# compute(replica, device planes, fp32, flags) -> quantised device planes of the output.
Compute = Callable[["Replica", list[torch.Tensor], bool, Flags], list[torch.Tensor]]


class Forward(Protocol):
    """What a runtime other than torch supplies (:meth:`Replica.use_runtime`)."""

    def __call__(self, x: torch.Tensor, fp32: bool, flags: Flags) -> torch.Tensor:
        """The network's float32 output for ``x``, a padded float32 batch in model space."""
        ...

    def prepare(self, shape: tuple[int, ...]) -> None:
        """Set up now for inputs of ``shape`` (what the first such input would set up)."""
        ...


def usable_output(y: torch.Tensor) -> torch.Tensor:
    """Whether the network's output ``y`` is a picture: finite and within
    ±:data:`OUTPUT_LIMIT`, as a device tensor (NaN propagates and compares false)."""
    low, high = torch.aminmax(y)  # no copy of the output, unlike abs()
    return (low >= -OUTPUT_LIMIT) & (high <= OUTPUT_LIMIT)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _settle(device: torch.device) -> None:
    """Wait until weights just placed on ``device`` are there.

    The copy and the memory-format conversion run as kernels on the stream that was
    current, and the slots' streams do not wait on it: their first batch could read
    half-placed weights.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Replica:
    """``module`` (the replica's own copy) placed on ``device`` as ``plan`` says."""

    def __init__(self, module: nn.Module, spec: ArchSpec, scale: int, device: torch.device,
                 plan: RunPlan) -> None:
        self.spec = spec
        self.scale = scale
        # Pre-upsampling and padding to the size multiple, as everywhere else.
        self.space = ModelSpace.of(spec, scale)
        self.device = device
        self.dtype = plan.precision.dtype
        self.channels_last = plan.channels_last
        self.overlap = plan.tile.overlap
        self.min_tile = plan.tile.min_tile
        module = module.to(device, torch.float32)
        for name in spec.picture_layers:
            _keep_in_fp32(module, name)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = torch.compile(module) if plan.compile else module
        _settle(device)
        # Guards what the out-of-memory path changes: max_batch and tile.
        self._lock = threading.Lock()
        self.max_batch: int | None = None  # learned from out-of-memory errors
        self.tile = plan.tile.size  # grows smaller on out-of-memory errors
        self._runtime: Forward | None = None

    def use_runtime(self, forward: Forward | None) -> None:
        """Run the network's forward on another runtime (OpenVINO) from now on; ``None``
        goes back to torch. Padding, tiles, the out-of-memory path and the fp32 redo stay
        here: ``forward`` only sees padded float32 batches in model space."""
        self._runtime = forward

    def torch_forward(self, x: torch.Tensor, fp32: bool, flags: Flags) -> torch.Tensor:
        """The torch module on a padded batch, in the replica's precision (or fp32)."""
        if self.channels_last and x.ndim == 4:  # a window network lays out its own input
            x = x.contiguous(memory_format=torch.channels_last)
        if fp32 or self.dtype == torch.float32:
            y = self.module(x).float()
        else:
            with torch.autocast(self.device.type, dtype=self.dtype):
                y = self.module(x).float()
        # A device tensor, not a bool: reading it here would wait for the device.
        flags.append(usable_output(y))
        return y

    # -- batches ---------------------------------------------------------------------

    def compute_batch(self, batch: FrameBatch, compute: Compute) -> list[np.ndarray]:
        """Upscale ``batch`` synchronously: host planes in, host planes out."""
        return self.finite_or_fp32(self.synchronous(batch, compute), frames_text(batch))

    def synchronous(self, batch: FrameBatch,
                    compute: Compute) -> Callable[[bool, Flags], list[np.ndarray]]:
        """``batch`` from the host through ``compute`` and back, as a ``run`` for
        :meth:`finite_or_fp32` and :meth:`redo_in_fp32`."""
        def run(fp32: bool, flags: Flags) -> list[np.ndarray]:
            planes = [torch.from_numpy(np.ascontiguousarray(p)).to(self.device)
                      for p in batch.planes]
            return [p.cpu().numpy() for p in compute(self, planes, fp32, flags)]

        return run

    def prepare(self, x: torch.Tensor) -> None:
        """Let the runtime set up for batches like ``x`` (model space, before padding) now:
        OpenVINO compiles for their padded size. Tiles are set up when they come."""
        if self._runtime is None or (self.tile and max(x.shape[-2:]) > self.tile):
            return
        self._runtime.prepare(tuple(self.space.pad(self.space.pre_upsample(x)).shape))

    def run_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """The network on a float batch in model space (see :meth:`network`)."""
        return self.finite_or_fp32(lambda fp32, flags: self.network(x, fp32=fp32, flags=flags),
                                   f"a batch of {x.shape[0]}")

    def finite_or_fp32[T](self, run: Callable[[bool, Flags], T], what: str) -> T:
        """``run`` in the replica's precision; if that gave no picture, see
        :meth:`redo_in_fp32`."""
        flags: Flags = []
        out = run(False, flags)
        if flags and not bool(torch.stack(flags).all()):
            return self.redo_in_fp32(run, what)
        return out

    def redo_in_fp32[T](self, run: Callable[[bool, Flags], T], what: str) -> T:
        """After ``run`` gave no picture on the frames ``what`` names: run them again in
        fp32 if they ran below it; ModelError if fp32 gives no picture either."""
        below_fp32 = self.dtype != torch.float32 or self._runtime is not None
        if below_fp32:
            name = str(self.dtype).removeprefix("torch.")
            log.warning("%s gave non-finite or out-of-range values on %s; redoing it in fp32",
                        name, what)
            flags: Flags = []
            out = run(True, flags)
            if bool(torch.stack(flags).all()):
                return out
        raise ModelError(f"the model gave non-finite or out-of-range values (NaN, Inf or past"
                         f" ±{OUTPUT_LIMIT:g}) on {what}{', in fp32 too' if below_fp32 else ''};"
                         " the weights look damaged")

    # -- the network -----------------------------------------------------------------

    def network(self, x: torch.Tensor, *, fp32: bool, flags: Flags) -> torch.Tensor:
        """Run float ``x`` (N, C, h, w) in model space, or windows (N, T, C, h, w) for a
        network that sees several frames; (N, C, h*s, w*s) float32 out.

        ``flags`` collects whether each forward gave a picture.
        """
        x = x.to(self.device, torch.float32)
        out_h, out_w = x.shape[-2] * self.scale, x.shape[-1] * self.scale
        x = self.space.pre_upsample(x)
        y = self._fitting(x, fp32, flags)
        return y[..., :out_h, :out_w]

    def _fitting(self, x: torch.Tensor, fp32: bool, flags: Flags) -> torch.Tensor:
        """Whole batch, halves or tiles: whatever fits in memory. Frames keep their order."""
        n = x.shape[0]
        max_batch = self.max_batch
        if max_batch is not None and n > max_batch:
            parts = [self._fitting(x[i : i + max_batch], fp32, flags)
                     for i in range(0, n, max_batch)]
            return torch.cat(parts)
        tile = self.tile
        try:
            return self._tiled_or_whole(x, tile, fp32, flags)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            # Only the text is kept: the exception's traceback pins every tensor of the attempt.
            failure = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        self._adapt_to_memory(x, tile, failure)
        return self._fitting(x, fp32, flags)

    def _adapt_to_memory(self, x: torch.Tensor, tile: int, failure: str) -> None:
        """After an out-of-memory error on ``x`` in ``tile``-pixel tiles: fewer frames per
        call, else smaller tiles, else give up."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        n, (h, w) = x.shape[0], x.shape[-2:]
        with self._lock:
            if n > 1:
                # Another worker may have lowered it already: never raise it again.
                self.max_batch = min(self.max_batch or n, max(1, n // 2))
                log.warning("out of memory on %s with a batch of %d frame(s); retrying in"
                            " batches of %d", self.device, n, self.max_batch)
                return
            if self.tile and self.tile < (tile or max(h, w)):
                return  # another worker already went smaller than what failed here
            smaller = _round_up(max(tile or max(h, w), 2) // 2, self.space.size_multiple)
            if smaller < self.min_tile:
                raise OutOfMemoryError(
                    f"out of memory on {self.device} even for one frame in {tile or max(h, w)}"
                    f"-pixel tiles ({failure}); use a smaller model, a smaller --tile with"
                    " less overlap, or another device")
            self.tile = smaller
        log.warning("out of memory on %s for one %dx%d frame; retrying in %d-pixel tiles",
                    self.device, w, h, smaller)

    def _tiled_or_whole(self, x: torch.Tensor, tile: int, fp32: bool,
                        flags: Flags) -> torch.Tensor:
        if tile and max(x.shape[-2:]) > tile:
            return self._run_tiled(x, tile, fp32, flags)
        return self._run_padded(x, fp32, flags)

    def _run_padded(self, x: torch.Tensor, fp32: bool, flags: Flags) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.space.unpad(self._forward(self.space.pad(x), fp32, flags), h, w)

    def _forward(self, x: torch.Tensor, fp32: bool, flags: Flags) -> torch.Tensor:
        runtime = self._runtime
        return self.torch_forward(x, fp32, flags) if runtime is None else runtime(x, fp32, flags)

    def _run_tiled(self, x: torch.Tensor, tile: int, fp32: bool, flags: Flags) -> torch.Tensor:
        """Run overlapping tiles and keep only each tile's core: no seams when the
        model's receptive radius fits in the overlap. A window's tile is the same crop of
        each of its frames."""
        s, overlap = self.space.network_scale, self.overlap
        n, c, (h, w) = x.shape[0], x.shape[-3], x.shape[-2:]
        out = torch.empty(n, c, h * s, w * s, device=x.device, dtype=torch.float32)
        for top in range(0, h, tile):
            for left in range(0, w, tile):
                bottom, right = min(top + tile, h), min(left + tile, w)
                t0, l0 = max(top - overlap, 0), max(left - overlap, 0)
                b0, r0 = min(bottom + overlap, h), min(right + overlap, w)
                y = self._run_padded(x[..., t0:b0, l0:r0], fp32, flags)
                rows = slice((top - t0) * s, (bottom - t0) * s)
                cols = slice((left - l0) * s, (right - l0) * s)
                out[..., top * s : bottom * s, left * s : right * s] = y[..., rows, cols]
        return out


class _Fp32Layer(nn.Module):
    """A layer that runs in fp32 even under autocast."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.layer(x.float())


def _keep_in_fp32(module: nn.Module, name: str) -> None:
    """Wrap ``module``'s submodule ``name`` (one of the spec's picture layers) in place."""
    parent_name, _, child = name.rpartition(".")
    parent = module.get_submodule(parent_name)
    setattr(parent, child, _Fp32Layer(getattr(parent, child)))


def frames_text(batch: FrameBatch) -> str:
    """How messages name a batch's frames."""
    last = batch.first_index + len(batch) - 1
    return f"frame {last}" if len(batch) == 1 else f"frames {batch.first_index}-{last}"
