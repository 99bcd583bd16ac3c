"""The synchronous executor: each batch runs to the end in the thread that submits it.

What ``vidsr eval``, training's validation and a one-worker CPU run use; on a
CPU the pipeline still overlaps it with decoding and encoding, in their own
threads.
"""

from __future__ import annotations

from vidsr.executors.base import Done
from vidsr.executors.replica import Compute, Replica
from vidsr.io.frames import FrameBatch
from vidsr.plan.devices import TorchThreads


class SyncExecutor:
    """Batches on one replica, one at a time; ``threads`` torch threads on a CPU
    (0 leaves the process setting alone)."""

    in_flight = 1

    def __init__(self, replica: Replica, threads: int) -> None:
        self.replica = replica
        self._threads = TorchThreads(threads)

    def submit(self, batch: FrameBatch, compute: Compute) -> Done:
        return Done(self.replica.compute_batch(batch, compute))

    def close(self) -> None:
        self._threads.restore()
