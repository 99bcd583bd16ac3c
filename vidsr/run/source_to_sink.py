"""Running a plan: open the input as the plan says, then source -> engine -> sink.

Every run of a video goes through these functions, whatever started it: ``vidsr``
(one file), a batch's segments and whole files (here or on a Ray worker), ``vidsr
bench`` and ``vidsr eval-video`` write to a sink (:func:`run_to_sink`); ``vidsr compare``
keeps its frames in memory (:func:`run_frames`, which the sink's run is made of). Nothing
here decides anything: the plan (:func:`~vidsr.plan.run_plan.resolve_video_plan`) already has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from vidsr.engine.engine import Engine
from vidsr.io.colour import ColourSpec
from vidsr.io.decode import Decoder, Window
from vidsr.io.frames import FrameBatch, PlaneLayout
from vidsr.io.qtgmc import QtgmcSource
from vidsr.io.script_source import ScriptSource, is_script
from vidsr.io.sink import Sink
from vidsr.io.windows import WindowedSource
from vidsr.plan.run_plan import RunPlan
from vidsr.run.pipeline import StageTiming, run_pipeline

# What open_source opens: frames, or windows of them for a model that sees several.
Source = Decoder | ScriptSource | QtgmcSource | WindowedSource


def open_source(plan: RunPlan, *, span: Window | None = None) -> Source:
    """The plan's input, open for decoding as the plan says: its stream, batch size,
    decoder threads, deinterlacing, alpha and damage handling, and for a model that sees
    several frames (``plan.window``) batches of windows (:class:`WindowedSource`).

    ``span``: only one stretch of the stream (a segment's, or the frames ``vidsr compare``
    shows). For windows the decoder also gives ``r + 1`` frames of context on each side
    of it: ``r`` for the windows at its ends and one more to judge a cut at their edges
    as a whole run does, so a segment's frames are a whole run's (the span's ``seek`` must
    lie far enough back: :func:`window_context` frames). A plan without an output (frames kept in
    memory) decodes no alpha.
    """
    if plan.window == 1:
        return _open_frames(plan, span)
    if span is not None:
        span = replace(span, context=window_context(plan.window))
    frames = _open_frames(plan, span)
    is_context = (frames.is_context if span is not None
                  and isinstance(frames, Decoder | QtgmcSource) else None)
    return WindowedSource(frames, plan.window, plan.batch_size, is_context)


def window_context(window: int) -> int:
    """Frames of context a stretch of the stream needs on each side for windows of
    ``window`` frames: the windows' radius, and one to judge a cut at their edges."""
    return window // 2 + 1 if window > 1 else 0


def _open_frames(plan: RunPlan, span: Window | None) -> Decoder | ScriptSource | QtgmcSource:
    """The plan's input as batches of frames."""
    assert plan.source is not None, "not a video's plan"
    source = plan.source
    alpha = plan.output is not None and bool(plan.output.alpha_depth)
    if is_script(source.path):
        # The script deinterlaces and selects itself, and is read from its start.
        assert span is None and plan.deinterlace is None and not alpha
        return ScriptSource(source.path, batch_size=plan.batch_size)
    if plan.deinterlace is not None and plan.deinterlace.deinterlacer == "qtgmc":
        assert not alpha, "the plan refuses alpha with QTGMC"
        return QtgmcSource(source.path, plan.deinterlace, batch_size=plan.batch_size,
                           video_stream=source.stream_index, window=span)
    return Decoder(source.path, batch_size=plan.batch_size, on_error=plan.on_error,
                   threads=plan.decoder_threads, deinterlace=plan.deinterlace, window=span,
                   video_stream=source.stream_index, alpha=alpha)


def run_to_sink(
    plan: RunPlan, engine: Engine, source: Source, sink: Sink, *,
    depth: int = 3, on_write: Callable[[int], object] | None = None,
) -> tuple[int, StageTiming]:
    """Decode -> upscale -> write, overlapped in the pipeline's stages; the frames written
    and each stage's busy time. ``engine`` runs ``plan``'s model; ``on_write`` hears how
    many frames each batch added."""
    assert plan.source is not None and plan.output is not None, "not a video's plan"
    written = 0

    def write(batch: FrameBatch) -> None:
        nonlocal written
        sink.write(batch)
        written += len(batch)
        if on_write is not None:
            on_write(len(batch))

    timing = run_frames(engine, source, plan.source.colour, plan.output.layout, write,
                        depth=depth)
    return written, timing


def run_frames(
    engine: Engine, source: Iterable[FrameBatch], colour: ColourSpec, layout: PlaneLayout,
    write: Callable[[FrameBatch], object], *, depth: int = 3,
) -> StageTiming:
    """Frames of ``colour`` -> upscaled into ``layout`` -> ``write``, overlapped in the
    pipeline's stages; each stage's busy time. The path of every run: :func:`run_to_sink`
    writes to a sink, ``vidsr compare`` keeps the frames."""
    infer = engine.infer_stage(colour, layout)
    return run_pipeline(source, [("infer", infer)], write, depth=depth)
