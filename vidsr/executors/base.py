"""The protocol every executor implements, and the handle a caller waits on.

An executor decides how batches reach the network: in the caller's thread
(:mod:`~vidsr.executors.sync`), in CPU worker threads
(:mod:`~vidsr.executors.cpu_workers`), in flight on CUDA streams
(:mod:`~vidsr.executors.cuda_slots`), or with the forward on OpenVINO
(:mod:`~vidsr.executors.openvino`, through :data:`~vidsr.executors.replica.Forward`).
It never touches colour or tiles: it is handed a batch and the ``compute`` that turns
the batch's device planes into output planes on a
:class:`~vidsr.executors.replica.Replica`, and it returns a :class:`Pending` whose
``planes()`` waits for the result. A new backend is a new
executor; the engine does not change.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from vidsr.executors.replica import Compute
from vidsr.io.frames import FrameBatch, PlaneLayout


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
