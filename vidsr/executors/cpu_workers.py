"""The CPU-workers executor: several batches at once, each in its own thread.

On a CPU shared with the decoder and the encoder, independent one-thread
batches beat one batch on a thread team: a team waits at every layer for its
slowest member, so the encoder taking one core stalls all of it, while
independent batches only lose the time it takes (measured in
benchmarks/RESULTS.md; the split is :func:`vidsr.plan.run_plan.plan_cpu_threads`).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from vidsr.executors.replica import Compute, Replica
from vidsr.io.frames import FrameBatch
from vidsr.plan.devices import TorchThreads


class FuturePending:
    """A batch a worker computes; a worker's error is raised by ``planes()``."""

    def __init__(self, future: Future[list[np.ndarray]]) -> None:
        self._future = future

    def ready(self) -> bool:
        return self._future.done()

    def planes(self) -> list[np.ndarray]:
        return self._future.result()


class CpuWorkersExecutor:
    """``workers`` threads each run a batch on ``replica`` with ``threads`` torch threads."""

    def __init__(self, replica: Replica, workers: int, threads: int) -> None:
        self.replica = replica
        self.in_flight = workers
        self._threads = TorchThreads(threads)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="vidsr-cpu-worker")

    def submit(self, batch: FrameBatch, compute: Compute) -> FuturePending:
        return FuturePending(self._pool.submit(self.replica.compute_batch, batch, compute))

    def close(self) -> None:
        """End the workers (batches still running finish first); safe to call twice."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._threads.restore()
