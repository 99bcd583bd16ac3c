"""``upscale_video``: wires the decoder, the engine and the encoder for one file.

The output file is written atomically (:mod:`vidsr.io.safe_output`): nothing
is ever half-written under its final name.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vidsr.engine.engine import Engine
from vidsr.errors import InputError
from vidsr.executors.openvino import faster_plan
from vidsr.io.decode import InputProbe, probe_media
from vidsr.io.deinterlace import DeinterlaceMode, DeinterlacerName, FieldOrderChoice, FieldRate
from vidsr.io.encode_options import EncodeOptions
from vidsr.io.ffmpeg_sink import find_ffmpeg
from vidsr.io.safe_output import check_paths, output_written
from vidsr.io.sink import open_sink
from vidsr.io.video_info import VideoInfo
from vidsr.io.windows import WindowedSource
from vidsr.models.zoo import SRModel, load_model
from vidsr.plan.run_plan import EngineOptions, RunPlan, resolve_video_plan
from vidsr.run.pipeline import StageTiming
from vidsr.run.source_to_sink import open_source, run_to_sink

log = logging.getLogger("vidsr")

@dataclass(frozen=True)
class TranscodeOptions:
    """What shapes one upscaling run's output besides the model, the engine and the encoder.

    The same values give the same file, so a batch's fingerprint and a preset may hold
    them; how the run goes (overwriting, progress) is :class:`RunControl`'s.
    """

    on_error: str = "fail"  # "fail" or "skip" undecodable frames
    ffmpeg: str | None = None  # a system ffmpeg to encode with (name or path), or None for PyAV
    autorotate: bool = False  # turn rotated pictures upright instead of keeping the matrix
    # Interlaced sources (io/deinterlace.py): auto deinterlaces what is flagged or measured
    # interlaced, ivtc puts film frames back together from 3:2 pulldown (io/ivtc.py);
    # field_order auto, tff or bff; deinterlace_rate frame or field (double rate).
    deinterlace: DeinterlaceMode = "auto"
    field_order: FieldOrderChoice = "auto"
    deinterlace_rate: FieldRate = "frame"
    deinterlacer: DeinterlacerName = "bwdif"  # bwdif, or qtgmc (the qtgmc extra)
    # The delivered picture (io/fit.py): a target height, and square pixels from the SAR.
    height: int | None = None
    square_pixels: bool = False
    video_stream: int | None = None  # the input's stream to upscale (None: io/probe.py picks)


@dataclass(frozen=True)
class RunControl:
    """How an upscaling run goes, never a frame of its output: the command line (or the
    batch running the file) alone sets it, so no fingerprint or preset holds it."""

    overwrite: bool = False
    progress: bool | None = None  # None: only when stderr is a terminal
    queue_depth: int = 3  # batches queued between the stages
    # Hears how many frames each batch wrote (vidsr batch's whole-batch bar); whatever it
    # raises stops the run as a failed stage does, so it also carries a stop request.
    on_frames: Callable[[int], object] | None = None


@dataclass
class TranscodeResult:
    """What a run produced, for the summary line and for callers."""

    output: Path
    frames: int
    skipped: int
    wall_s: float
    size_bytes: int
    width: int
    height: int
    timing: StageTiming = field(default_factory=StageTiming)
    plan: RunPlan | None = None  # the plan that ran
    # A window model's run: the frames that start a shot (io/windows.py); None frame-wise.
    cuts: list[int] | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> str:
        mib = self.size_bytes / (1 << 20)
        text = (
            f"{self.output}: {self.frames} frames at {self.width}x{self.height}"
            f" in {self.wall_s:.1f} s ({self.fps:.2f} fps), {mib:.1f} MiB"
        )
        if self.skipped:
            text += f"; {self.skipped} undecodable frames replaced by their predecessor"
        if self.cuts is not None:
            text += f"; {len(self.cuts)} scene cut(s) found"
        return text


def progress_bar(info: VideoInfo, enabled: bool | None, initial: int = 0) -> tqdm:
    """The bar of one file's frames (``initial`` of them done before)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    total = info.frame_count or info.frame_count_estimate
    return tqdm(
        total=total, initial=initial, unit="frame", disable=not enabled, dynamic_ncols=True,
        desc=info.path.name, leave=False,
    )


def upscale_video(src: str | Path, dst: str | Path, **options: Any) -> TranscodeResult:
    """Upscale the video ``src`` into ``dst``: the main job of vidsr.

    Audio, subtitles, chapters and metadata are carried over; every frame keeps
    its timestamp; colour tags and the sample aspect ratio survive. ``options``
    are :func:`plan_file`'s, whose ``control`` also says how the run goes. Every decision
    is made first, in the run plan (:func:`plan_upscale` returns it without running).
    """
    model, plan = plan_file(src, dst, **options)
    return run_to_file(plan, model, options.get("control") or RunControl())


def plan_upscale(src: str | Path, dst: str | Path, **options: Any) -> RunPlan:
    """The plan :func:`upscale_video` would run with the same arguments; writes nothing
    (``vidsr IN OUT --dry-run``)."""
    _, plan = plan_file(src, dst, **options)
    return plan


def plan_file(
    src: str | Path,
    dst: str | Path,
    *,
    model: str | Path | SRModel = "compact",
    scale: int | None = None,
    weights: str | Path | None = None,
    allow_unsafe_weights: bool = False,
    strength: float | None = None,
    engine: EngineOptions | None = None,
    encode: EncodeOptions | None = None,
    options: TranscodeOptions | None = None,
    control: RunControl | None = None,
) -> tuple[SRModel, RunPlan]:
    """Check the paths, load the model, probe the input and resolve the whole plan; the
    input is not opened for decoding (:func:`~vidsr.run.source_to_sink.open_source`
    opens it as the plan says).

    ``model``: a name from ``vidsr models``, a weights file, or a loaded ``SRModel``;
    ``strength``: the blend of a model with a strength knob (see ``load_model``);
    ``engine``, ``encode`` and ``options``: what the user asked of the engine, the
    encoder and the output; ``control``: how the run goes (an output that exists is
    refused here, before any work, unless it may be overwritten).
    """
    src, dst = Path(src), Path(dst)
    options = options or TranscodeOptions()
    check_paths(src, dst, (control or RunControl()).overwrite)
    if isinstance(model, SRModel):
        sr_model = model
    else:
        sr_model = load_model(model, scale=scale, weights=weights,
                              allow_unsafe=allow_unsafe_weights, strength=strength)
    # A VapourSynth script (.vpy) is probed by running it.
    with probe_media(src, options.video_stream) as probe:
        plan = resolve_file_plan(sr_model, engine or EngineOptions(), probe, dst, encode,
                                 options)
    return sr_model, plan


def resolve_file_plan(model: SRModel, engine: EngineOptions, probe: InputProbe, dst: Path,
                      encode: EncodeOptions | None, options: TranscodeOptions) -> RunPlan:
    """The plan to upscale the probed file into ``dst`` with the run's options (what
    `vidsr` and `vidsr bench` both run)."""
    ffmpeg = find_ffmpeg(options.ffmpeg) if options.ffmpeg is not None else None
    return resolve_video_plan(
        model, engine, probe, output=dst, encode=encode or EncodeOptions(), ffmpeg=ffmpeg,
        autorotate=options.autorotate, deinterlace=options.deinterlace,
        field_order=options.field_order, deinterlace_rate=options.deinterlace_rate,
        deinterlacer=options.deinterlacer, height=options.height,
        square_pixels=options.square_pixels,
        on_error=options.on_error, choose_runtime=faster_plan)


def run_to_file(plan: RunPlan, model: SRModel, control: RunControl) -> TranscodeResult:
    """Run ``plan``: its source -> the engine -> its sink, into a temporary file published
    under ``plan.output.path`` when complete."""
    assert plan.source is not None and plan.output is not None
    output = plan.output
    announce(plan)
    dst = output.path
    started = time.perf_counter()
    with output_written(dst, control.overwrite) as tmp, ExitStack() as stack:
        source = stack.enter_context(open_source(plan))
        # Nothing may fail between building the engine and the `with` that closes it
        # (its executor's threads and the process's torch threads).
        runner = stack.enter_context(Engine(model, plan))
        sink = stack.enter_context(open_sink(tmp, output, source.streams_source))
        # The decoder's frames: twice the source's at field rate.
        bar = stack.enter_context(progress_bar(source.info, control.progress))
        written, timing = run_to_sink(plan, runner, source, sink, depth=control.queue_depth,
                                      on_write=heard_by(bar.update, control.on_frames))
        if not written:
            # Inside the stack: the sink is abandoned, not finished into a file with
            # no video (MP4) or one no reader opens (Matroska).
            raise InputError(f"{plan.source.path}: has no frames; nothing written")
        skipped = source.skipped
        cuts = source.cuts if isinstance(source, WindowedSource) else None
    return TranscodeResult(
        output=dst, frames=written, skipped=skipped, wall_s=time.perf_counter() - started,
        size_bytes=dst.stat().st_size, width=output.width, height=output.height, timing=timing,
        plan=plan, cuts=cuts,
    )


def announce(plan: RunPlan) -> None:
    """Say what the run will do: the plan, and each stream the output will not have."""
    assert plan.source is not None and plan.output is not None
    for copy in plan.output.streams:
        if not copy.copied and not copy.carried:
            log.warning("%s: dropping stream %s: %s", plan.source.path, copy.stream,
                        copy.reason)
    log.info("%s", plan.to_text())


def heard_by(*listeners: Callable[[int], object] | None) -> Callable[[int], None]:
    """One frame counter that tells each of ``listeners`` (None ones left out)."""
    present = [listener for listener in listeners if listener is not None]

    def tell(frames: int) -> None:
        for listener in present:
            listener(frames)

    return tell
