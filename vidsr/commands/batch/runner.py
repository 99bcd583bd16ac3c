"""Runs a batch: deals the files to workers, each file through the one-file transcoder,
and keeps the job file up to date so that a stopped batch continues where it was.

On CUDA there is one worker thread per GPU, each running whole files on its own device;
on the CPU the files run one at a time, in the calling thread, because the run plan already
spreads one file over every core (and Ctrl-C then lands in the file's own pipeline).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from vidsr.commands.batch.file_job import FileExecutor, FileJob, FileRan, FileRun, ModelCache
from vidsr.commands.batch.jobfile import (
    JobFile,
    WeightsDigests,
    fingerprint,
    output_matches,
    run_options,
)
from vidsr.commands.batch.report import BatchResult, FileOutcome
from vidsr.commands.batch.segments import (
    DEFAULT_SEGMENT_SECONDS,
    SEGMENTS_FOLDER,
    Segment,
    SegmentState,
    make_segment_folder,
    plan_segments,
    remove_segments,
    run_segment,
    segment_intact,
    unsegmentable,
)
from vidsr.commands.batch.sources import SourceFile, one_line, scan_sources
from vidsr.engine.engine import Engine
from vidsr.errors import Cancelled, OutputError
from vidsr.io.file_digest import file_digest
from vidsr.io.keyframes import scan_keyframes
from vidsr.options import upscale_arguments, with_overrides
from vidsr.plan.machine import this_machine
from vidsr.plan.run_plan import EngineOptions, RunPlan
from vidsr.run.pipeline import join_launched, start_all
from vidsr.run.source_to_sink import window_context
from vidsr.run.transcode import RunControl, announce, heard_by, plan_file, progress_bar, run_to_file

if TYPE_CHECKING:
    from vidsr.commands.batch.ray_engine import RayOptions

log = logging.getLogger("vidsr")


@dataclass(frozen=True)
class BatchOptions:
    """What the batch itself is asked: the outputs' container (extension), whether failed
    files are tried again, whether outputs the batch did not write may be replaced, the
    progress bars (None: only on a terminal), the devices files are dealt to, one
    worker thread each (None: :func:`worker_devices` of the command's options), the
    length of the segments long files are run in (0: whole files), and the Ray cluster
    that runs them (None: this process)."""

    container: str = "mkv"
    retry_failed: bool = False
    overwrite: bool = False
    progress: bool | None = None
    devices: tuple[str, ...] | None = None
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS
    ray: RayOptions | None = None


# A manifest line's overrides -> how that file runs (the command's options where empty).
Resolve = Callable[[Mapping[str, str]], FileRun]


def manifest_runs(values: Mapping[str, Any], *, quiet: bool = False,
                  ffmpeg: str | None = None) -> Resolve:
    """How each file runs: the option values of the command (:mod:`vidsr.options`), with a
    manifest line's cells read as the options of the same names (``scale`` as
    ``--scale``); ``quiet`` and ``ffmpeg`` are the command line's, for every file."""

    def file_run(overrides: Mapping[str, str]) -> FileRun:
        return FileRun(**upscale_arguments(with_overrides(values, overrides), quiet=quiet,
                                           ffmpeg=ffmpeg))

    return file_run


def run_batch(src: str | Path, out_dir: str | Path, resolve: Resolve,
              batch: BatchOptions | None = None) -> BatchResult:
    """Upscale every video of ``src`` (a folder, a manifest or one file) into ``out_dir``.

    A file that fails is recorded with its reason and the others go on. Ctrl-C (or a stop
    signal turned into KeyboardInterrupt) stops the files being run, records them as not
    done, and is raised again once the job file says so.
    """
    batch = batch or BatchOptions()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: is a file; give the folder the outputs go into")
    started = time.perf_counter()
    models = ModelCache()
    # The command's own model first: a wrong --model is one error, not a failure per file.
    models.get(resolve({}))
    files = scan_sources(Path(src), out_dir, batch.container.lstrip("."))
    # OUT_DIR is this batch's until job.close(): a second batch on it is refused here.
    job = JobFile.open(out_dir)
    executor: FileExecutor
    try:
        if batch.ray is not None:
            from vidsr.commands.batch.ray_engine import RayFiles

            executor = RayFiles(batch.ray)
            devices: list[str | None] = [None] * executor.concurrent_files
        else:
            executor = LocalFiles()
            devices = (list(batch.devices) if batch.devices
                       else worker_devices(resolve({}).engine))
        runner = _Runner(out_dir, job, resolve, batch, files, models, executor)
    except BaseException:
        job.close()
        raise
    try:
        runner.run(devices)
    except (Cancelled, KeyboardInterrupt):
        log.warning("batch stopped: %s records what is done; the same command continues"
                    " it (a file stopped halfway continues from its last finished segment)",
                    job.path)
        raise
    finally:
        runner.close()
        executor.close()
        job.close()
    return BatchResult(source=Path(src), out_dir=out_dir, job_file=job.path,
                       files=runner.outcomes_in_order(), wall_s=time.perf_counter() - started)


def worker_devices(engine: EngineOptions) -> list[str | None]:
    """One worker per CUDA device the run may use (each told its device); one worker that
    keeps the user's device otherwise."""
    if engine.device == "auto":
        gpus = len(this_machine().cuda_devices)
        return [f"cuda:{i}" for i in range(gpus)] if gpus > 1 else [None]
    names = [name.strip() for name in engine.device.split(",")]
    if len(names) > 1 and all(name.startswith("cuda") for name in names):
        return list(names)
    return [None]


class _Runner:
    """The state of one batch while it runs: the queue of files, the models loaded so far,
    the outcomes, the bars."""

    def __init__(self, out_dir: Path, job: JobFile, resolve: Resolve, batch: BatchOptions,
                 files: Sequence[SourceFile], models: ModelCache,
                 executor: FileExecutor) -> None:
        self.out_dir, self.job, self.resolve, self.batch = out_dir, job, resolve, batch
        self.executor = executor
        self.files = list(files)
        self.stop = threading.Event()
        self.digests = WeightsDigests()
        self.models = models
        self._lock = threading.Lock()
        # By the row's identity: a file listed on two lines is two rows with one key.
        self._outcomes: dict[int, FileOutcome] = {}
        videos = [f for f in self.files if f.verdict == "video"]
        self.bar = tqdm(total=sum(f.frames or 0 for f in videos), unit="frame", desc="batch",
                        disable=not _progress_enabled(batch.progress), dynamic_ncols=True,
                        position=0)
        self._finished_files = 0
        self._video_files = len(videos)
        self._show_files()

    # -- dealing ---------------------------------------------------------------------------

    def run(self, devices: list[str | None]) -> None:
        pending: queue.SimpleQueue[SourceFile] = queue.SimpleQueue()
        for f in self.files:
            pending.put(f)
        if len(devices) == 1:
            self._work(pending, devices[0])
            return
        threads = [threading.Thread(target=self._work, args=(pending, device),
                                    name=f"vidsr-batch-{device}", daemon=True)
                   for device in devices]
        launched: list[threading.Thread] = []
        try:
            start_all(threads, launched)
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.2)  # short waits, so Ctrl-C lands here promptly
        except KeyboardInterrupt:
            self.stop.set()  # each worker's frame counter raises Cancelled in its run
            join_launched(launched, timeout=None)
            raise
        if self.stop.is_set():
            raise KeyboardInterrupt

    def _work(self, pending: queue.SimpleQueue[SourceFile], device: str | None) -> None:
        while not self.stop.is_set():
            try:
                f = pending.get_nowait()
            except queue.Empty:
                return
            try:
                outcome = self._one(f, device)
            except (Cancelled, KeyboardInterrupt):
                self.stop.set()
                if device is None:  # the calling thread: the interrupt is the caller's
                    raise
                return
            self._finish(f, outcome)

    # -- one file --------------------------------------------------------------------------

    def _one(self, f: SourceFile, device: str | None) -> FileOutcome:
        if f.verdict == "skip":
            return FileOutcome.skipped(f, f.reason)
        if f.verdict == "conflict":  # the job entry is the other row's to keep
            return FileOutcome.failed(f, f.reason)
        rel = str(f.output)
        # A failed entry keeps the manifest line's overrides it failed with: a line changed
        # since is another job, not blocked by the old one's failure.
        failed = partial(self.job.record, f.key, "failed", output=rel,
                         overrides=dict(f.overrides))
        if f.verdict == "fail":
            failed(reason=f.reason)
            return FileOutcome.failed(f, f.reason)
        entry = self.job.get(f.key)
        if (entry is not None and entry["state"] == "failed" and not self.batch.retry_failed
                and entry.get("overrides", {}) == f.overrides):
            return FileOutcome.failed(
                f, f"{entry.get('reason', 'failed')} (failed before; --retry-failed tries"
                   " it again)")
        dst = self.out_dir / f.output
        ours = entry is not None and entry.get("output") == rel and not entry.get("refused")
        if dst.exists() and not ours and not self.batch.overwrite:
            reason = (f"{dst}: already exists and this batch did not write it (--overwrite"
                      " replaces it)")
            failed(reason=reason, refused=True)
            return FileOutcome.failed(f, reason)
        try:
            return self._upscale(f, dst, entry, device, overwrite=ours or self.batch.overwrite)
        except (Cancelled, KeyboardInterrupt):
            kept = self.job.get(f.key) or {}
            segments = kept.get("segments")
            if segments and segments.get("done"):
                self.job.record(f.key, "pending", output=rel,
                                fingerprint=kept.get("fingerprint"), segments=segments,
                                reason="stopped while running; its finished segments are kept")
            else:
                self.job.record(f.key, "pending", output=rel,
                                reason="stopped while running; it is redone from its start")
            raise
        except Exception as exc:  # noqa: BLE001 - one bad file must not end the batch
            log.debug("%s failed", f.path, exc_info=True)
            reason = one_line(exc, f.path)
            failed(reason=reason)
            return FileOutcome.failed(f, reason)

    def _upscale(self, f: SourceFile, dst: Path, entry: Mapping[str, object] | None,
                 device: str | None, *, overwrite: bool) -> FileOutcome:
        run = self.resolve(f.overrides)
        engine = run.engine if device is None else replace(run.engine, device=device)
        engine = self.executor.engine_options(engine)
        control = RunControl(overwrite=overwrite, progress=self.batch.progress,
                             on_frames=self._on_frames)
        dst.parent.mkdir(parents=True, exist_ok=True)
        model, plan = plan_file(f.path, dst, model=self.models.get(run), engine=engine,
                                encode=run.encode, options=run.options, control=control)
        resolved = run_options(plan, model, run.options.on_error, self.digests)
        digest = fingerprint(resolved)
        if entry is not None and entry.get("state") == "done":
            changed = ("its options changed" if entry.get("fingerprint") != digest
                       else output_matches(dst, entry))
            if changed is None:
                return FileOutcome.skipped(f, "already done; output unchanged", entry=entry)
            log.info("%s: redone: %s", f.path, changed)
        record = _Record(self.job, f.key, output=str(f.output), fingerprint=digest,
                         options=resolved)
        segments = self._segments(f, plan, entry, digest)
        reused = len(segments.done) if segments is not None else 0
        if segments is not None:
            make_segment_folder(segments.folder)
        record("running", **({"segments": segments.to_json()} if segments else {}))
        ran = self.executor.run_file(FileJob(
            source=f, run=replace(run, engine=engine), plan=plan, model=model,
            control=control, fingerprint=digest, segments=segments, record=record))
        size, sha256 = dst.stat().st_size, file_digest(dst)
        video_s = f.seconds or 0.0
        record.fields.pop("segments", None)
        record("done", size=size, sha256=sha256, frames=ran.frames,
               seconds=round(ran.wall_s, 3), video_seconds=video_s, retries=ran.retries,
               **({} if ran.join_s is None else {"join_seconds": round(ran.join_s, 3)}))
        if segments is not None:
            remove_segments(segments.folder)
        return FileOutcome.done(f, frames=ran.frames, wall_s=ran.wall_s, size=size,
                                sha256=sha256, fingerprint=digest,
                                segments=len(segments.segments) if segments else 0,
                                segments_reused=reused, retries=ran.retries)

    # -- one file in segments ---------------------------------------------------------------

    def _segment_folder(self, f: SourceFile) -> Path:
        name = hashlib.sha256(f.key.encode()).hexdigest()[:16]
        return self.out_dir / SEGMENTS_FOLDER / name

    def _segments(self, f: SourceFile, plan: RunPlan, entry: Mapping[str, Any] | None,
                  digest: str) -> SegmentState | None:
        """The segments ``f`` runs in, with those an earlier run finished; None to run it
        whole (short, or a run that cannot seek)."""
        seconds = self.batch.segment_seconds
        folder = self._segment_folder(f)
        kept = (entry or {}).get("segments")
        if (kept and entry is not None and entry.get("state") != "done"
                and entry.get("fingerprint") == digest and kept.get("seconds") == seconds):
            segments = [Segment.from_json(i, w) for i, w in enumerate(kept["cuts"])]
            done = {k: v for k, v in kept.get("done", {}).items()
                    if segment_intact(folder / segments[int(k)].file_name, v)}
            if len(done) < len(kept.get("done", {})):
                log.warning("%s: %d finished segment(s) missing or changed; redoing them",
                            f.path, len(kept["done"]) - len(done))
            return SegmentState(folder, seconds, segments, done)
        remove_segments(folder)  # another run's, of other options: never mixed in
        if seconds <= 0 or (f.seconds or 0.0) < 1.25 * seconds:
            return None
        why = unsegmentable(plan)
        if why is not None:
            log.info("%s: run whole, not in segments: %s", f.path, why)
            return None
        assert plan.source is not None
        index = scan_keyframes(f.path, plan.source.stream_index)
        if index.unseekable is not None:
            log.info("%s: run whole, not in segments: %s", f.path, index.unseekable)
            return None
        # A window model's segment decodes frames of context before its start.
        duration = plan.source.frame_duration or 1
        segments = plan_segments(index, seconds, window_context(plan.window) * duration)
        if len(segments) < 2:
            return None
        return SegmentState(folder, seconds, segments, {})

    # -- progress and outcomes -------------------------------------------------------------

    def _on_frames(self, frames: int) -> None:
        if self.stop.is_set():
            raise Cancelled("interrupted")
        with self._lock:
            self.bar.update(frames)

    def _finish(self, f: SourceFile, outcome: FileOutcome) -> None:
        with self._lock:
            self._outcomes[id(f)] = outcome
            if f.verdict == "video":
                self._finished_files += 1
                if outcome.outcome != "done":
                    # Skipped and failed files take their frames off the total, so the ETA
                    # counts the frames really run.
                    self.bar.total = max(self.bar.n, (self.bar.total or 0) - (f.frames or 0))
                elif f.frames and outcome.frames != f.frames:
                    self.bar.total = (self.bar.total or 0) + outcome.frames - f.frames
            self._show_files()
        if outcome.outcome == "failed":
            log.warning("%s: failed: %s", f.path, outcome.reason)

    def _show_files(self) -> None:
        self.bar.set_postfix_str(f"files {self._finished_files}/{self._video_files}",
                                 refresh=True)

    def outcomes_in_order(self) -> list[FileOutcome]:
        return [self._outcomes[id(f)] for f in self.files if id(f) in self._outcomes]

    def close(self) -> None:
        self.bar.close()


class LocalFiles:
    """Runs each file in the calling worker thread: whole, or its segments one after
    another on one engine, then joined."""

    def engine_options(self, engine: EngineOptions) -> EngineOptions:
        return engine  # planned for this machine, which runs them

    def run_file(self, job: FileJob) -> FileRan:
        if job.segments is None:
            result = run_to_file(job.plan, job.model, job.control)
            return FileRan(result.frames, result.wall_s)
        plan, control, state = job.plan, job.control, job.segments
        assert plan.source is not None
        started = time.perf_counter()
        announce(plan)
        if state.done:
            log.info("%s: resuming at segment %d of %d", job.source.path,
                     len(state.done) + 1, len(state.segments))
        before = sum(int(d["frames"]) for d in state.done.values())
        with Engine(job.model, plan) as runner, progress_bar(plan.source, control.progress,
                                                               initial=before) as bar:
            for segment in job.todo():
                result = run_segment(runner, plan, segment, state.folder / segment.file_name,
                                     depth=control.queue_depth,
                                     on_write=heard_by(bar.update, control.on_frames))
                job.segment_done(segment, result)
        frames, join_s = job.join()
        return FileRan(frames, time.perf_counter() - started, join_s=join_s)

    def close(self) -> None:
        pass


class _Record:
    """Writes one file's job entry: the same fields each time, plus the state's own."""

    def __init__(self, job: JobFile, key: str, **fields: Any) -> None:
        self.job, self.key, self.fields = job, key, fields

    def __call__(self, state: str, **fields: Any) -> None:
        self.fields.update(fields)
        self.job.record(self.key, state, **self.fields)  # type: ignore[arg-type]


def _progress_enabled(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress
