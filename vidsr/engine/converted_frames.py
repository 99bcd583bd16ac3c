"""Frames already in a window model's input space, kept so each is converted once.

A batch of windows holds its output frames and the ``2r`` neighbours their windows need
(:class:`~vidsr.io.frames.FrameWindows`), so the frames next to a batch boundary come
again in the next batch (with a batch of one, each frame in ``2r + 1`` batches). A
replica keeps the model-space inputs of the frames it converted last, keyed by the
source's stream and the frame's index, and converts only the frames it has not seen.

Workers that share a replica (CPU workers, CUDA slots) share its frames: a frame another
worker is converting is waited for, not converted again; on CUDA the reader's stream
waits for the converter's event. Bounded: the oldest frames go once more than
``capacity`` are kept, as the decode stage's ring lets frames go; a frame that went is
only converted again (the conversion is deterministic, so outputs do not change).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import torch

# convert(rows) -> the route's model-space inputs for the batch's frames ``rows``: one
# tensor per network call, each (len(rows) * k, C, h, w), k pictures per frame.
Convert = Callable[[torch.Tensor], list[torch.Tensor]]


class _Entry:
    """One frame's inputs, or the promise of them while a worker converts it."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.inputs: list[torch.Tensor] | None = None  # None once ready: the conversion failed
        self.event: torch.cuda.Event | None = None  # on CUDA: when the inputs are written


class ConvertedFrames:
    """The model-space inputs of a replica's last ``capacity`` frames."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()

    def inputs(self, keys: list[Hashable], convert: Convert) -> list[torch.Tensor]:
        """The model-space inputs of the frames ``keys`` (one per frame of the batch), as
        ``convert`` gives them for all of them: only the frames not kept are converted."""
        mine, theirs = self._claim(keys)
        frames: dict[int, list[torch.Tensor] | None] = {}
        try:
            if mine:
                rows = torch.tensor(sorted(mine), dtype=torch.long)
                converted = _per_frame(convert(rows), len(mine))
                event = _written_event(converted[0][0])
                for i, inputs in zip(sorted(mine), converted, strict=True):
                    mine[i].inputs, mine[i].event = inputs, event
                    frames[i] = inputs
        finally:
            failed = [keys[i] for i, entry in mine.items() if entry.inputs is None]
            if failed:  # not kept: a later batch converts them afresh
                with self._lock:
                    for key in failed:
                        if key in self._entries and self._entries[key].inputs is None:
                            del self._entries[key]
            for entry in mine.values():
                entry.ready.set()  # after a failure without inputs: a reader converts its own
        for i, entry in theirs.items():
            frames[i] = self._wait(entry)
        missing = sorted(i for i, inputs in frames.items() if inputs is None)
        if missing:  # failed in another worker: converted here
            redone = _per_frame(convert(torch.tensor(missing, dtype=torch.long)), len(missing))
            frames.update(zip(missing, redone, strict=True))
        ordered = [frames[i] for i in range(len(keys))]
        return [torch.cat([f[n] for f in ordered]) for n in range(len(ordered[0]))]

    def _claim(self, keys: list[Hashable]) -> tuple[dict[int, _Entry], dict[int, _Entry]]:
        """The batch's frames this call converts, and those kept or under way elsewhere,
        by their place in the batch."""
        mine: dict[int, _Entry] = {}
        theirs: dict[int, _Entry] = {}
        with self._lock:
            for i, key in enumerate(keys):
                entry = self._entries.get(key)
                if entry is None:
                    mine[i] = self._entries[key] = _Entry()
                else:
                    self._entries.move_to_end(key)
                    theirs[i] = entry
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return mine, theirs

    @staticmethod
    def _wait(entry: _Entry) -> list[torch.Tensor] | None:
        entry.ready.wait()
        inputs = entry.inputs
        if inputs is not None and entry.event is not None:
            stream = torch.cuda.current_stream(inputs[0].device)
            stream.wait_event(entry.event)
            for tensor in inputs:
                # The memory is not handed out again while this stream may still read it.
                tensor.record_stream(stream)
        return inputs


def _written_event(tensor: torch.Tensor) -> torch.cuda.Event | None:
    """On CUDA, an event on the current stream after the conversion's kernels."""
    if tensor.device.type != "cuda":
        return None
    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(tensor.device))
    return event


def _per_frame(inputs: list[torch.Tensor], frames: int) -> list[list[torch.Tensor]]:
    """Each frame's share of the route's inputs: per frame, (k, C, h, w) per network call."""
    split = [x.reshape(frames, -1, *x.shape[1:]) for x in inputs]
    return [[x[f] for x in split] for f in range(frames)]
