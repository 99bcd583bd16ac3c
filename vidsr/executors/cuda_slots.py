"""The CUDA-slots executor: batches in flight on CUDA streams, with reused pinned buffers.

Each device has a ring of slots, each owning a stream, an event and reused
pinned host buffers, so the upload of one batch, the compute of another and the
download of a third overlap. Several devices (``cuda:0,cuda:1``) take batches
in turn; callers read results in submission order, so frame order holds.

A slot also builds on the CPU, from torch's device-agnostic stand-ins for
streams and events (which never wait): a plan never picks this executor for a
CPU by itself, but tests run the very code of the CUDA path that way on
machines without a GPU.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack

import numpy as np
import torch

from vidsr.executors.replica import Compute, Flags, Replica, frames_text
from vidsr.io.frames import FrameBatch


class Slot:
    """One in-flight batch on a device: its stream, its pinned buffers, its event.

    Buffers are reused from batch to batch (pinned allocations are slow and
    pinned copies are what lets ``non_blocking`` overlap); the event tells
    when the download has landed, without a device-wide sync.
    """

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        device = replica.device
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
        self.pending: SlotPending | None = None

    def on_stream(self) -> AbstractContextManager:
        """Make this slot's device and stream the current ones."""
        if self.device.type != "cuda":
            return torch.cpu.stream(self.stream)
        stack = ExitStack()
        stack.enter_context(torch.cuda.device(self.device))
        stack.enter_context(torch.cuda.stream(self.stream))
        return stack

    def launch(self, batch: FrameBatch, compute: Compute) -> SlotPending:
        """Queue ``batch`` on this slot's stream."""
        if self.pending is not None:
            self.pending.planes()  # its buffers are about to be overwritten
        sources = [torch.from_numpy(np.ascontiguousarray(p)) for p in batch.planes]
        host_in = staging(self._host_in, sources, pin=self.pinned)
        for buffer, source in zip(host_in, sources, strict=True):
            buffer.copy_(source)
        with self.on_stream():
            planes = [buffer.to(self.device, non_blocking=True) for buffer in host_in]
            flags: Flags = []
            out = compute(self.replica, planes, False, flags)
            host_out = staging(self._host_out, out, pin=self.pinned)
            for buffer, plane in zip(host_out, out, strict=True):
                buffer.copy_(plane, non_blocking=True)
            if flags:
                self.finite.copy_(torch.stack(flags).all(), non_blocking=True)
            else:
                self.finite.fill_(True)
            self.done.record(self.stream)
        pending = SlotPending(self, batch, compute, host_out)
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


class SlotPending:
    """A batch in a slot; ``planes()`` waits on the slot's event and copies the planes out."""

    def __init__(self, slot: Slot, batch: FrameBatch, compute: Compute,
                 host_out: list[torch.Tensor]) -> None:
        self._slot: Slot | None = slot
        self._batch = batch
        self._compute = compute
        self._host_out = host_out
        self._planes: list[np.ndarray] | None = None

    def ready(self) -> bool:
        return self._planes is not None or (self._slot is not None and self._slot.done.query())

    def planes(self) -> list[np.ndarray]:
        if self._planes is not None:
            return self._planes
        slot = self._slot
        assert slot is not None
        slot.done.synchronize()
        if bool(slot.finite):
            # Copied out: the pinned buffers belong to the slot's next batch.
            self._planes = [buffer.numpy().copy() for buffer in self._host_out]
        else:
            replica = slot.replica
            with slot.on_stream():
                self._planes = replica.redo_in_fp32(
                    replica.synchronous(self._batch, self._compute), frames_text(self._batch))
        slot.pending = None
        self._slot, self._host_out = None, []
        return self._planes


class CudaSlotsExecutor:
    """``in_flight`` slots on each replica's device; the devices take batches in turn.

    ``cudnn_benchmark``: cuDNN times its convolution algorithms on the first batch of
    each size and keeps the fastest; a video's frames all have one size, so that is
    paid once. The process's setting is put back by ``close()``.
    """

    def __init__(self, replicas: tuple[Replica, ...], in_flight: int,
                 cudnn_benchmark: bool) -> None:
        self.rings = [[Slot(replica) for _ in range(in_flight)] for replica in replicas]
        self.in_flight = in_flight * len(replicas)
        self._next = 0
        self._saved_benchmark = torch.backends.cudnn.benchmark
        if cudnn_benchmark and any(r.device.type == "cuda" for r in replicas):
            torch.backends.cudnn.benchmark = True

    def submit(self, batch: FrameBatch, compute: Compute) -> SlotPending:
        ring = self.rings[self._next % len(self.rings)]
        slot = ring[(self._next // len(self.rings)) % len(ring)]
        self._next += 1
        return slot.launch(batch, compute)

    def close(self) -> None:
        torch.backends.cudnn.benchmark = self._saved_benchmark
