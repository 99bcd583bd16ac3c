"""Executors: how batches reach the network, one class per kind behind one protocol.

The run plan picks the kind and its options (:class:`~vidsr.plan.run_plan.ExecutorPlan`);
:func:`open_executor` builds it over the engine's replicas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vidsr.executors.base import Done, Executor, Pending, PendingBatch
from vidsr.executors.cpu_workers import CpuWorkersExecutor
from vidsr.executors.cuda_slots import CudaSlotsExecutor
from vidsr.executors.replica import Compute, Flags, Forward, Replica
from vidsr.executors.sync import SyncExecutor

if TYPE_CHECKING:
    from vidsr.plan.run_plan import ExecutorPlan

__all__ = ["Compute", "Done", "Executor", "Flags", "Forward", "Pending", "PendingBatch",
           "Replica", "open_executor"]


def open_executor(plan: ExecutorPlan, replicas: tuple[Replica, ...]) -> Executor:
    """The executor ``plan`` names, over ``replicas`` (one per device)."""
    from vidsr.plan.run_plan import CpuWorkersPlan, CudaSlotsPlan, OpenVinoPlan, SyncPlan

    match plan:
        case OpenVinoPlan():
            # Imported here: OpenVINO is an optional extra.
            from vidsr.executors.openvino import OpenVinoExecutor

            return OpenVinoExecutor(replicas[0], plan)
        case CudaSlotsPlan(in_flight=in_flight, cudnn_benchmark=benchmark):
            return CudaSlotsExecutor(replicas, in_flight, benchmark)
        case CpuWorkersPlan(workers=workers, threads=threads):
            return CpuWorkersExecutor(replicas[0], workers, threads)
        case SyncPlan(threads=threads):
            return SyncExecutor(replicas[0], threads)
    raise AssertionError(f"unknown executor plan {plan!r}")
