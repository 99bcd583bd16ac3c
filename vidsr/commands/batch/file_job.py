"""One file of a batch, ready to run: how it runs (:class:`FileRun`), what the runner
resolved for it (:class:`FileJob`), where it runs (:class:`FileExecutor`: this process or a
Ray cluster) and what came of it (:class:`FileRan`).

Both executors import this module, and neither imports the other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vidsr.commands.batch.segments import Segment, SegmentResult, SegmentState, join_segments
from vidsr.commands.batch.sources import SourceFile
from vidsr.io.encode_options import EncodeOptions
from vidsr.models.zoo import SRModel, load_model
from vidsr.plan.run_plan import EngineOptions, RunPlan
from vidsr.run.transcode import RunControl, TranscodeOptions


@dataclass(frozen=True)
class FileRun:
    """How one file is upscaled: :func:`~vidsr.run.transcode.plan_file`'s arguments."""

    model: str | Path = "compact"
    scale: int | None = None
    weights: Path | None = None
    allow_unsafe_weights: bool = False
    strength: float | None = None
    engine: EngineOptions = EngineOptions()
    encode: EncodeOptions = EncodeOptions()
    options: TranscodeOptions = TranscodeOptions()


class ModelCache:
    """Each model is loaded once per batch (or per Ray worker); the engine copies the
    network to its device, so workers share it."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[object, ...], SRModel] = {}
        self._lock = threading.Lock()

    def get(self, run: FileRun) -> SRModel:
        key = (str(run.model), run.scale, str(run.weights), run.allow_unsafe_weights,
               run.strength)
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = load_model(run.model, scale=run.scale,
                                               weights=run.weights,
                                               allow_unsafe=run.allow_unsafe_weights,
                                               strength=run.strength)
            return self._loaded[key]


@dataclass
class FileJob:
    """One file ready to run, as the runner resolved it: what an executor needs.

    ``run`` carries the worker's device; ``control`` the batch's overwrite, progress and
    frame counter (which raises Cancelled once the batch is stopped); ``segments`` is None
    for a file run whole.
    """

    source: SourceFile
    run: FileRun
    plan: RunPlan
    model: SRModel
    control: RunControl
    fingerprint: str
    segments: SegmentState | None
    record: Callable[..., None]  # writes the file's job entry: record(state, **fields)

    def segment_done(self, segment: Segment, result: SegmentResult) -> None:
        """Keep a finished segment in the job file at once: a kill now does not lose it."""
        assert self.segments is not None
        self.segments.done[str(segment.index)] = result.to_json()
        self.record("running", segments=self.segments.to_json())

    def todo(self) -> list[Segment]:
        assert self.segments is not None
        return [s for s in self.segments.segments if str(s.index) not in self.segments.done]

    def segment_paths(self) -> list[Path]:
        assert self.segments is not None
        return [self.segments.folder / s.file_name for s in self.segments.segments]

    def join(self) -> tuple[int, float]:
        """Mux every segment into the output: (frames written, seconds it took)."""
        started = time.perf_counter()
        frames = join_segments(self.plan, self.segment_paths(), self.control.overwrite)
        return frames, time.perf_counter() - started


@dataclass(frozen=True)
class FileRan:
    """What an executor did with a file: frames written, its seconds, segments retried,
    and the seconds its segments' join took (None: run whole)."""

    frames: int
    wall_s: float
    retries: int = 0
    join_s: float | None = None


class FileExecutor(Protocol):
    """Where a batch's files run: this process (:class:`~vidsr.commands.batch.runner.LocalFiles`)
    or a Ray cluster (:class:`~vidsr.commands.batch.ray_engine.RayFiles`). Called from the runner's
    worker threads."""

    def engine_options(self, engine: EngineOptions) -> EngineOptions:
        """``engine`` as the files are planned for the machines that run them."""
        ...

    def run_file(self, job: FileJob) -> FileRan:
        """Write the job's output (whole, or its unfinished segments and then the join)."""
        ...

    def close(self) -> None: ...
