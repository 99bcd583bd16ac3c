"""Batches in flight on a CUDA device, and the handle a caller waits on.

Each CUDA device has a ring of slots, each owning a stream, an event and
reused pinned host buffers, so the upload of one batch, the compute of another
and the download of a third overlap. A :class:`PendingBatch` is what
``Engine.submit`` returns on every device: on CUDA it waits on its slot's
event; on the CPU it holds planes already computed, or the future of a CPU
worker computing them.

This module knows nothing of the network: the engine hands a slot the work to
queue on its stream and the synchronous rerun for a batch whose reduced
precision went non-finite.

A slot also builds on the CPU, from torch's device-agnostic stand-ins for
streams and events (which never wait): the engine never uses one there, but
tests run the very code of the CUDA path that way on machines without a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager, ExitStack

import numpy as np
import torch

from vidsr.io.frames import FrameBatch, PlaneLayout

log = logging.getLogger("vidsr")

# Whether each reduced-precision forward stayed finite, as device tensors.
Flags = list[torch.Tensor]
# compute(device planes, fp32, flags) -> quantised device planes of the output layout.
Compute = Callable[[list[torch.Tensor], bool, Flags], list[torch.Tensor]]


def warn_nonfinite(dtype: torch.dtype, batch: FrameBatch) -> None:
    """Say which frames ``dtype`` spoilt, before they are redone in fp32."""
    name = str(dtype).removeprefix("torch.")
    log.warning("%s gave non-finite values on frames %d-%d; redoing that batch in fp32",
                name, batch.first_index, batch.first_index + len(batch) - 1)


class Slot:
    """One in-flight batch on a CUDA device: its stream, its pinned buffers, its event.

    Buffers are reused from batch to batch (pinned allocations are slow and
    pinned copies are what lets ``non_blocking`` overlap); the event tells
    when the download has landed, without a device-wide sync.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.pinned = device.type == "cuda"  # pinning needs a CUDA driver
        if device.type == "cuda":
            self.stream = torch.cuda.Stream(device)
            # Blocking: a waiting thread sleeps instead of spinning on a core that the
            # decoder and the encoder need.
            self.done = torch.cuda.Event(blocking=True)
        else:
            self.stream, self.done = torch.cpu.Stream(), torch.cpu.Event()
        self._host_in: list[torch.Tensor] = []
        self._host_out: list[torch.Tensor] = []
        self.finite = torch.ones((), dtype=torch.bool, pin_memory=self.pinned)
        self.pending: PendingBatch | None = None

    def on_stream(self) -> AbstractContextManager:
        """Make this slot's device and stream the current ones."""
        if self.device.type != "cuda":
            return torch.cpu.stream(self.stream)
        stack = ExitStack()
        stack.enter_context(torch.cuda.device(self.device))
        stack.enter_context(torch.cuda.stream(self.stream))
        return stack

    def launch(
        self, batch: FrameBatch, out_layout: PlaneLayout, compute: Compute, *,
        redo: Callable[[], list[np.ndarray]], dtype: torch.dtype,
    ) -> PendingBatch:
        """Queue ``batch`` on this slot's stream; ``redo`` reruns it in fp32 if ``dtype``
        went non-finite."""
        if self.pending is not None:
            self.pending.wait()  # its buffers are about to be overwritten
        sources = [torch.from_numpy(np.ascontiguousarray(p)) for p in batch.planes]
        host_in = staging(self._host_in, sources, pin=self.pinned)
        for buffer, source in zip(host_in, sources, strict=True):
            buffer.copy_(source)
        with self.on_stream():
            planes = [buffer.to(self.device, non_blocking=True) for buffer in host_in]
            flags: Flags = []
            out = compute(planes, False, flags)
            host_out = staging(self._host_out, out, pin=self.pinned)
            for buffer, plane in zip(host_out, out, strict=True):
                buffer.copy_(plane, non_blocking=True)
            if flags:
                self.finite.copy_(torch.stack(flags).all(), non_blocking=True)
            else:
                self.finite.fill_(True)
            self.done.record(self.stream)
        pending = PendingBatch(batch, out_layout, slot=self, host_out=host_out,
                               redo=redo, dtype=dtype)
        self.pending = pending
        return pending


def staging(
    buffers: list[torch.Tensor], like: list[torch.Tensor], *, pin: bool
) -> list[torch.Tensor]:
    """Host views shaped like ``like``, reusing ``buffers`` (grown in place when too small).

    ``pin`` on CUDA: pinned allocations are slow, so a slot keeps its buffers.
    """
    views = []
    for i, tensor in enumerate(like):
        need = tensor.numel()
        if i >= len(buffers) or buffers[i].dtype != tensor.dtype or buffers[i].numel() < need:
            buffer = torch.empty(need, dtype=tensor.dtype, pin_memory=pin)
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
        planes: list[np.ndarray] | None = None, slot: Slot | None = None,
        host_out: list[torch.Tensor] | None = None,
        redo: Callable[[], list[np.ndarray]] | None = None, dtype: torch.dtype | None = None,
        future: Future[list[np.ndarray]] | None = None,
    ) -> None:
        self._batch = batch
        self._layout = out_layout
        self._planes = planes
        self._slot = slot
        self._host_out = host_out or []
        self._redo = redo
        self._dtype = dtype
        self._future = future

    def ready(self) -> bool:
        """Whether ``result()`` would return at once."""
        if self._future is not None:
            return self._future.done()
        return self._planes is not None or (self._slot is not None and self._slot.done.query())

    def wait(self) -> None:
        """Wait for the device and take the planes out of the slot's buffers."""
        if self._planes is not None:
            return
        if self._future is not None:
            self._planes = self._future.result()  # a worker's error is raised here
            self._future = None
            return
        slot = self._slot
        assert slot is not None and self._redo is not None and self._dtype is not None
        slot.done.synchronize()
        if bool(slot.finite):
            # Copied out: the pinned buffers belong to the slot's next batch.
            self._planes = [buffer.numpy().copy() for buffer in self._host_out]
        else:
            warn_nonfinite(self._dtype, self._batch)
            with slot.on_stream():
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
