"""``vidsr batch --engine ray``: a batch's segments run on the actors of a Ray cluster.

The driver (the ``vidsr batch`` process) does what it does locally: it scans the
sources, keeps the job file, plans every file and cuts it into segments. The work goes
to actors, one per GPU of the cluster (or ``--ray-actors`` CPU actors), each of which
loads a model once and keeps it. A segment is a call on an actor with the driver's plan
and paths, never frames: the actor decodes its stretch of the source, upscales it and
writes the packet file itself, next to the model (a segment of a model that sees a window
of frames decodes its context frames there too, as the driver planned it). The actor runs
the plan it is given (planned for its share of a node's CPUs); it refuses one only when its
machine cannot run it (a device or a runtime it lacks), and says why. Once all of a file's
segments are done the driver joins them (a remux: no model, no encoder at work). Inputs and outputs
must be on a path every node sees.

Faults: an actor that dies (a node lost, ``ray.kill``) has its segment run again on
another actor, a replacement is started, and the file's row in the report counts the
retry; after :data:`MAX_ATTEMPTS` the file fails with the reason. A driver that dies
takes its actors with it; the same command resumes from the job file.

Ray is imported only here, and only when asked for (``pip install vidsr[ray]``).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidsr.commands.batch.file_job import FileJob, FileRan, FileRun, ModelCache
from vidsr.errors import OptionsError, VidsrError
from vidsr.plan.run_plan import CpuOptions, EngineOptions, RunPlan

if TYPE_CHECKING:
    from vidsr.commands.batch.segments import Segment, SegmentResult
    from vidsr.run.transcode import RunControl

log = logging.getLogger("vidsr")

MAX_ATTEMPTS = 3  # a segment is tried on at most this many actors before its file fails
NAMESPACE = "vidsr"
_WAIT_S = 0.2  # how often a waiting file looks at the batch's stop request


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: the cluster's address (None: a local Ray on this machine),
    the actors (None: one per GPU of the cluster, or one CPU actor per node when it has
    none), and the CPUs each CPU actor takes (None: a node's CPUs shared among the actors
    it holds)."""

    address: str | None = None
    actors: int | None = None
    actor_cpus: float | None = None


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise OptionsError("--engine ray needs Ray: pip install 'vidsr[ray]'") from None
    return ray


class SegmentWorker:
    """What runs inside one actor: the models it has loaded, and the engine of the plan
    whose segments it is running, kept from one segment to the next."""

    def __init__(self) -> None:
        self._models = ModelCache()
        self._engine: Any = None
        self._engine_plan: RunPlan | None = None

    def host(self) -> str:
        return socket.gethostname()

    def run_segment(self, run: FileRun, plan: RunPlan, segment: Segment, path: str,
                    depth: int) -> SegmentResult:
        from vidsr.commands.batch.segments import run_segment
        from vidsr.engine.engine import Engine

        model = self._model(run, plan)
        if self._engine_plan != plan:
            self._close_engine()
            self._engine = Engine(model, plan)
            self._engine_plan = plan
        return run_segment(self._engine, plan, segment, Path(path), depth=depth)

    def run_whole(self, run: FileRun, plan: RunPlan,
                  control: RunControl) -> tuple[int, float]:
        from vidsr.run.transcode import run_to_file

        self._close_engine()
        result = run_to_file(plan, self._model(run, plan), control)
        return result.frames, result.wall_s

    def _model(self, run: FileRun, plan: RunPlan) -> Any:
        """The plan's model, once this machine is known to run the plan."""
        from vidsr.plan.machine import this_machine
        from vidsr.plan.run_plan import refusal

        problem = refusal(plan, this_machine())
        if problem is not None:
            assert plan.source is not None
            raise OptionsError(f"{plan.source.path}: the Ray worker on {socket.gethostname()}"
                               f" cannot run the driver's plan: {problem}")
        return self._models.get(run)

    def _close_engine(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._engine, self._engine_plan = None, None


class _Actor:
    def __init__(self, handle: Any, name: str) -> None:
        self.handle, self.name, self.busy = handle, name, 0


class _ActorPool:
    """The batch's actors, each call dealt to the least busy; a dead one is replaced."""

    def __init__(self, ray: Any, count: int, cpus: float | None, gpus: float) -> None:
        self._ray = ray
        self._cpus, self._gpus = cpus, gpus
        self._lock = threading.Lock()
        self._started = 0
        self._replacements_left = 2 * count
        self._actors: list[_Actor] = [self._start() for _ in range(count)]
        # Wait for every actor to be up: a missing resource fails here, not per file.
        ray.get([a.handle.host.remote() for a in self._actors], timeout=600)

    def _start(self) -> _Actor:
        remote = self._ray.remote(SegmentWorker).options(
            name=f"vidsr-worker-{id(self):x}-{self._started}", namespace=NAMESPACE,
            num_cpus=self._cpus if not self._gpus else 1, num_gpus=self._gpus,
            max_restarts=0, max_concurrency=1)
        self._started += 1
        handle = remote.remote()
        return _Actor(handle, f"worker {self._started}")

    def submit(self, method: str, *args: Any) -> tuple[Any, _Actor]:
        with self._lock:
            if not self._actors:
                raise VidsrError("every Ray worker of this batch has died")
            actor = min(self._actors, key=lambda a: a.busy)
            actor.busy += 1
        return getattr(actor.handle, method).remote(*args), actor

    def finished(self, actor: _Actor) -> None:
        with self._lock:
            actor.busy = max(0, actor.busy - 1)

    def died(self, actor: _Actor) -> None:
        """Take ``actor`` out, and start another in its place while replacements last."""
        with self._lock:
            if actor not in self._actors:
                return
            self._actors.remove(actor)
            if self._replacements_left > 0:
                self._replacements_left -= 1
                self._actors.append(self._start())
                log.warning("a Ray worker died; started another in its place")

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor.handle)
        self._actors = []


class RayFiles:
    """Runs a batch's files on a Ray cluster (see the module's text)."""

    def __init__(self, options: RayOptions) -> None:
        ray = import_ray()
        self._ray = ray
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            init: dict[str, Any] = {"address": options.address, "namespace": NAMESPACE,
                                    "logging_level": logging.WARNING, "log_to_driver": True}
            if options.address is None:
                init["include_dashboard"] = False
            try:
                ray.init(**init)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise OptionsError(f"cannot reach the Ray cluster at {options.address}:"
                                   f" {exc}") from exc
        gpus = int(ray.cluster_resources().get("GPU", 0))
        # Without GPUs: one CPU actor per node by default, each with the node's CPUs.
        node_cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
        count = options.actors or gpus or max(1, len(node_cpus))
        cpus = options.actor_cpus
        if not gpus and cpus is None:
            per_node = -(-count // max(1, len(node_cpus)))  # actors per node, rounded up
            cpus = max(1.0, float(int(min(node_cpus or [1]) // per_node)))
        log.info("Ray: %d %s actor(s)%s", count, "GPU" if gpus else "CPU",
                 "" if gpus else f" of {cpus:g} CPU(s) each")
        try:
            self._pool = _ActorPool(ray, count, cpus, 1 if gpus else 0)
        except BaseException:
            if self._started_ray:
                ray.shutdown()
            raise
        self.concurrent_files = count
        self._cpus = None if gpus else cpus

    def engine_options(self, engine: EngineOptions) -> EngineOptions:
        if self._cpus is not None and engine.cpu == CpuOptions():
            # A CPU actor runs on its share of a node, not on all of the driver's cores.
            engine = replace(engine, cpu=CpuOptions(workers=1, threads=max(1, int(self._cpus))))
        return engine

    def run_file(self, job: FileJob) -> FileRan:
        started = time.perf_counter()
        tell = job.control.on_frames or (lambda n: None)
        if job.segments is None:
            # What crosses to the actor: the plan and plain options, not the frame counter.
            control = replace(job.control, progress=False, on_frames=None)
            (frames, _), retries = self._call(tell, "run_whole", job.run, job.plan, control)
            tell(frames)
            return FileRan(frames, time.perf_counter() - started, retries)
        retries = self._segments(job, tell)
        # The join is a remux (no model, no encoder at work): the driver does it with the
        # plan it made, at once, rather than queue it behind another file's segments.
        frames, join_s = job.join()
        return FileRan(frames, time.perf_counter() - started, retries, join_s=join_s)

    def _segments(self, job: FileJob, tell: Callable[[int], object]) -> int:
        """Every unfinished segment of ``job`` in flight at once; each recorded as it ends."""
        assert job.segments is not None
        folder = job.segments.folder
        pending: dict[Any, tuple[Segment, _Actor, int]] = {}

        def submit(segment: Segment, attempt: int) -> None:
            ref, actor = self._pool.submit("run_segment", job.run, job.plan, segment,
                                           str(folder / segment.file_name),
                                           job.control.queue_depth)
            pending[ref] = (segment, actor, attempt)

        for segment in job.todo():
            submit(segment, 1)
        retries = 0
        try:
            while pending:
                tell(0)  # raises Cancelled once the batch is stopped
                ready, _ = self._ray.wait(list(pending), num_returns=1, timeout=_WAIT_S)
                for ref in ready:
                    segment, actor, attempt = pending.pop(ref)
                    self._pool.finished(actor)
                    try:
                        result = self._ray.get(ref)
                    except self._ray.exceptions.RayActorError as exc:
                        self._lost(actor, segment, attempt, exc)
                        retries += 1
                        submit(segment, attempt + 1)
                        continue
                    except self._ray.exceptions.RayTaskError as exc:
                        raise _cause(exc) from None
                    job.segment_done(segment, result)
                    tell(result.frames)
        finally:
            # Stopped (or failed) with segments still running: the pool's close ends
            # their actors; what they finish is not recorded and is redone next time.
            for _, actor, _ in pending.values():
                self._pool.finished(actor)
        return retries

    def _call(self, tell: Callable[[int], object], method: str,
              *args: Any) -> tuple[Any, int]:
        """One call on an actor, retried on another when its actor dies: (result, retries)."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            ref, actor = self._pool.submit(method, *args)
            try:
                while not self._ray.wait([ref], timeout=_WAIT_S)[0]:
                    tell(0)
                return self._ray.get(ref), attempt - 1
            except self._ray.exceptions.RayActorError as exc:
                self._lost(actor, None, attempt, exc)
            except self._ray.exceptions.RayTaskError as exc:
                raise _cause(exc) from None
            finally:
                self._pool.finished(actor)
        raise AssertionError("unreachable")  # _lost raises on the last attempt

    def _lost(self, actor: _Actor, segment: Segment | None, attempt: int,
              exc: BaseException) -> None:
        self._pool.died(actor)
        what = f"segment {segment.index}" if segment is not None else "its run"
        if attempt >= MAX_ATTEMPTS:
            raise VidsrError(f"{what} lost its Ray worker {attempt} times; last:"
                             f" {str(exc).splitlines()[0]}")
        log.warning("a Ray worker died running %s; running it again on another", what)

    def close(self) -> None:
        self._pool.close()
        if self._started_ray:
            self._ray.shutdown()


def _cause(exc: Any) -> BaseException:
    """The exception an actor raised, as it was raised there (not Ray's wrapper)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc
