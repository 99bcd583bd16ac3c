"""The protocol every executor implements, and the handle a caller waits on.

An executor decides how batches reach the network: in the caller's thread
(:mod:`~vidsr.executors.sync`), in CPU worker threads
(:mod:`~vidsr.executors.cpu_workers`), in flight on CUDA streams
(:mod:`~vidsr.executors.cuda_slots`), or with the forward on OpenVINO
(:mod:`~vidsr.executors.openvino`, through :data:`Forward`). It never touches colour or tiles: it is
handed a batch and the ``compute`` that turns the batch's device planes into
output planes on a :class:`~vidsr.executors.replica.Replica`, and it returns a
:class:`Pending` whose ``planes()`` waits for the result. A new backend is a new
executor; the engine does not change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from vidsr.io.frames import FrameBatch, PlaneLayout

if TYPE_CHECKING:
    from vidsr.executors.replica import Replica

# Whether each forward gave a picture (see usable_output), as device tensors (reading
# them as bools would make the host wait for the device).
Flags = list[torch.Tensor]
# A working network overshoots its [0, 1] picture by a fraction (ringing at edges); this
# many full ranges out, it is broken (damaged weights), and its frames would be clamped
# into flat colour.
OUTPUT_LIMIT = 16.0
# compute(replica, device planes, fp32, flags) -> quantised device planes of the output.
Compute = Callable[["Replica", list[torch.Tensor], bool, Flags], list[torch.Tensor]]
# forward(padded float32 batch in model space, fp32, flags) -> the network's float32 output:
# what a runtime other than torch supplies (Replica.use_runtime).
Forward = Callable[[torch.Tensor, bool, Flags], torch.Tensor]


def usable_output(y: torch.Tensor) -> torch.Tensor:
    """Whether the network's output ``y`` is a picture: finite and within
    ±:data:`OUTPUT_LIMIT`, as a device tensor (NaN propagates and compares false)."""
    low, high = torch.aminmax(y)  # no copy of the output, unlike abs()
    return (low >= -OUTPUT_LIMIT) & (high <= OUTPUT_LIMIT)


class Pending(Protocol):
    """A batch an executor is working on."""

    def ready(self) -> bool:
        """Whether ``planes()`` would return at once."""
        ...

    def planes(self) -> list[np.ndarray]:
        """Wait for the batch; its output planes on the host."""
        ...


class Executor(Protocol):
    """Runs batches on replicas of the network."""

    @property
    def in_flight(self) -> int:
        """How many batches a caller should keep submitted to keep the devices busy."""
        ...

    def submit(self, batch: FrameBatch, compute: Compute) -> Pending:
        """Start ``batch``; results must be read in submission order."""
        ...

    def close(self) -> None:
        """End the executor's threads and put back the process settings it changed."""
        ...


class Done:
    """A batch already computed."""

    def __init__(self, planes: list[np.ndarray]) -> None:
        self._planes = planes

    def ready(self) -> bool:
        return True

    def planes(self) -> list[np.ndarray]:
        return self._planes


class PendingBatch:
    """What :meth:`Engine.submit` returns: an executor's handle and the batch it came from."""

    def __init__(self, pending: Pending, batch: FrameBatch, out_layout: PlaneLayout) -> None:
        self._pending = pending
        self._batch = batch
        self._layout = out_layout

    def ready(self) -> bool:
        """Whether ``result()`` would return at once."""
        return self._pending.ready()

    def result(self) -> FrameBatch:
        """The upscaled batch, planes in the output layout, timestamps kept."""
        batch = self._batch
        return FrameBatch(planes=self._pending.planes(), pts=list(batch.pts),
                          time_base=batch.time_base, first_index=batch.first_index,
                          layout=self._layout, side_data=batch.side_data,
                          alpha=batch.alpha)
