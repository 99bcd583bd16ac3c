"""QTGMC as the deinterlacer: a file's video through VapourSynth, in this process.

``--deinterlacer qtgmc`` (the ``qtgmc`` extra: vsjetpack's ``QTempGaussMC`` and the plugin
wheels it runs on) replaces bwdif. :class:`QtgmcSource` yields the same
:class:`~vidsr.io.frames.FrameBatch` stream as :class:`~vidsr.io.decode.Decoder` with a
bwdif plan, so the engine and the sinks do not know which deinterlacer ran:

- the video stream is read by BestSource (frame-exact, every frame decoded), its field
  order set from the plan; QTGMC makes a frame per field, and at frame rate every other
  one is kept (the one of each frame's first field, as bwdif's ``send_frame``);
- timestamps are the container's, read from its packets by the decoder's own
  :class:`~vidsr.io.timestamps.Timeline`, and counted as bwdif counts them: in half the
  stream's time base, a frame's first field at twice its pts, its second half way to the
  next frame (the last one's a frame spacing on). A variable-rate source keeps its times;
- the other streams (audio, subtitles) are copied from the input file itself.

A :class:`~vidsr.io.decode.Window` (the frame ``vidsr compare`` shows) yields only the
output frames whose times fall in it, the same frames a run through the whole file yields
there: VapourSynth renders a frame on request from its temporal neighbours, so the frames
before the window are never rendered (BestSource still indexes the whole file).

Damaged frames cannot be replaced as the decoder replaces them (``--on-error skip``): the
plan refuses that pairing. A batch runs a QTGMC plan whole (BestSource indexes the whole
file each time it opens it, so it is not cut into segments).

vapoursynth is imported only when a QTGMC source is opened: the core never needs it.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from vidsr.errors import DecodeError, OptionsError
from vidsr.io.decode import Window
from vidsr.io.deinterlace import DeinterlacePlan, deinterlaced_info, qtgmc_missing
from vidsr.io.frames import FrameBatch, PlaneLayout
from vidsr.io.probe import describe, open_input
from vidsr.io.script_source import layout_of, node_batches, render_frames
from vidsr.io.timestamps import Continuity, Timeline, timestamp_mode
from vidsr.io.video_info import VideoInfo

if TYPE_CHECKING:
    import vapoursynth as vs

log = logging.getLogger("vidsr")

# QTempGaussMC's defaults (vsjetpack 1.5.0: the classic "Slower" preset) smooth and sharpen
# the picture, which costs fidelity to the fields it was given. The settings archivists run
# for fidelity are the ones here: source matching (QTGMC's SourceMatch=3: the result is
# corrected towards the source fields, twice refined) and lossless mode 2 (the source's own
# field lines put back after the final smooth). On woven real footage they beat both the
# defaults and bwdif in PSNR, at about twice the defaults' time (benchmarks/deinterlacers.py,
# the README's table).
SOURCE_MATCH, LOSSLESS = "TWICE_REFINED", "POSTSMOOTH"


def frame_times(path: Path, info: VideoInfo) -> list[int]:
    """The presentation times of the stream's frames in order (``info.time_base``), read
    from the packets as the decoder reads them, without decoding."""
    with open_input(path) as container:
        stream = container.streams[info.stream_index]
        timeline = Timeline(timestamp_mode(container), info.frame_duration)
        continuity = Continuity(container)
        count = 0
        for packet in container.demux(stream):
            continuity.follow_on(packet)
            if packet.size and not packet.is_discard:
                timeline.packet(packet)
                count += 1
    return [timeline.frame(None)[0] for _ in range(count)]  # type: ignore[misc]


def field_times(times: list[int], rate: str, step: int | None) -> list[int]:
    """The output frames' times in half the stream's time base, as bwdif counts them:
    at frame rate each frame's first field (twice its time); at field rate also its
    second field, half way to the next frame (the last frame's next is one spacing on)."""
    doubled = [2 * t for t in times]
    if rate == "frame":
        return doubled
    out: list[int] = []
    for index, time in enumerate(times):
        if index + 1 < len(times):
            following = times[index + 1]
        elif index > 0:
            following = 2 * time - times[index - 1]
        else:
            following = time + (step or 1)
        out += [2 * time, time + following]
    return out


def in_window(stamps: list[int], window: Window) -> range:
    """The indices of ``stamps`` (half the stream's time base, in order) that fall in
    ``window`` (the stream's time base)."""
    start = 0 if window.start is None else bisect_left(stamps, 2 * window.start)
    end = len(stamps) if window.end is None else bisect_left(stamps, 2 * window.end)
    return range(start, max(start, end))


def qtgmc_clip(path: Path, info: VideoInfo, plan: DeinterlacePlan) -> vs.VideoNode:
    """QTGMC's progressive frames of ``info`` 's stream in ``path``: one per field at field
    rate, one per frame (its first field's) at frame rate; in ``info.layout``."""
    import vapoursynth as vs
    from vsdeinterlace import QTempGaussMC

    core = vs.core
    try:
        # cachemode 0: no index file is left behind; the source is indexed on opening.
        clip = core.bs.VideoSource(str(path), track=info.stream_index, cachemode=0)
    except vs.Error as exc:
        raise DecodeError(f"{path}: BestSource cannot read the video: {exc}") from None
    clip = _in_layout(clip, info.layout)
    tff = plan.order == "tff"
    clip = core.std.SetFieldBased(clip, 2 if tff else 1)
    qtgmc = QTempGaussMC(source_match_mode=QTempGaussMC.SourceMatchMode[SOURCE_MATCH],
                         lossless_mode=QTempGaussMC.LosslessMode[LOSSLESS])
    bobbed = qtgmc.deinterlace(clip, tff=tff)
    # QTGMC always makes a frame per field; the frame of each first field, unblurred, is
    # what its FPSDivisor=2 gives without the shutter blur.
    return bobbed if plan.rate == "field" else bobbed[::2]


def _in_layout(clip: vs.VideoNode, layout: PlaneLayout) -> vs.VideoNode:
    """``clip`` in the planes the probe gave ``layout`` (BestSource gives the decoder's
    own format, which may be one vidsr converts: 4:1:1 DV, semi-planar)."""
    import vapoursynth as vs

    fmt = clip.format
    own = layout_of(fmt) if fmt is not None else None
    if own is not None and own.pix_fmt == layout.pix_fmt:
        return clip
    family = {"yuv": vs.YUV, "rgb": vs.RGB, "gray": vs.GRAY}[layout.family]
    target = vs.core.query_video_format(family, vs.INTEGER, layout.bit_depth,
                                        layout.log2_chroma_w, layout.log2_chroma_h)
    return vs.core.resize.Point(clip, format=target.id)


class QtgmcSource:
    """A file's video deinterlaced by QTGMC, as batches of planes in the shape of
    :class:`~vidsr.io.decode.Decoder`: ``info`` (the progressive frames yielded),
    ``source_info`` (the stream as stored), ``streams_source`` (the input itself: the sinks
    copy its other streams), ``skipped`` (always 0), iteration, ``close()``.
    ``window``: only the frames whose times fall in it, and its ``context`` frames on each
    side, which :meth:`is_context` names (see :class:`~vidsr.io.decode.Window`;
    its ``seek`` is not needed: QTGMC's neighbours are rendered on request)."""

    def __init__(self, path: str | Path, plan: DeinterlacePlan, *, batch_size: int,
                 video_stream: int | None = None, window: Window | None = None,
                 prefetch: int = 0) -> None:
        if batch_size < 1:
            raise OptionsError(f"batch size must be at least 1, got {batch_size}")
        missing = qtgmc_missing()
        if missing is not None:  # the plan checked; a plan from elsewhere may not have
            raise OptionsError(f"--deinterlacer qtgmc needs {missing}: pip install"
                               " 'vidsr[qtgmc]'")
        self.path = Path(path)
        self.batch_size = batch_size
        self.skipped = 0
        self.plan = plan
        self.window = window or Window()
        with open_input(self.path) as container:
            self.source_info: VideoInfo = describe(container, self.path, video_stream)
        self.info: VideoInfo = deinterlaced_info(self.source_info, plan)
        self._prefetch = prefetch
        self._clip: vs.VideoNode | None = None

    @property
    def streams_source(self) -> Path:
        """The file the sinks copy the other streams from: the input itself."""
        return self.path

    def is_context(self, stamp: int) -> bool:
        """Whether the frame yielded at ``stamp`` (half the stream's time base) is context
        beside the window, not one of its own frames."""
        window = self.window
        return ((window.start is not None and stamp < 2 * window.start)
                or (window.end is not None and stamp >= 2 * window.end))

    def __enter__(self) -> QtgmcSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Let go of the VapourSynth graph (its source file); safe to call twice."""
        self._clip = None

    def __iter__(self) -> Iterator[FrameBatch]:
        return node_batches(self._timed_frames(), self.info, self.batch_size)

    def _timed_frames(self) -> Iterator[tuple[vs.VideoFrame, int]]:
        source = self.source_info
        times = frame_times(self.path, source)
        self._clip = qtgmc_clip(self.path, source, self.plan)
        stamps = field_times(times, self.plan.rate, source.frame_duration)
        if len(stamps) != self._clip.num_frames:
            raise DecodeError(
                f"{self.path}: BestSource decodes {self._clip.num_frames // 2} frames where"
                f" the container holds {len(times)} (damaged or cut?); deinterlace it with"
                " --deinterlacer bwdif")
        if any(b <= a for a, b in zip(stamps, stamps[1:], strict=False)):
            raise DecodeError(f"{self.path}: the video's timestamps do not go forward;"
                              " deinterlace it with --deinterlacer bwdif, which retimes them")
        wanted = in_window(stamps, self.window)
        if not wanted:
            return
        # The window's context (frames beside it that a window model's windows need).
        context = self.window.context
        wanted = range(max(0, wanted.start - context), min(len(stamps), wanted.stop + context))
        # Slicing the node asks only for these frames (and what QTGMC needs around them).
        frames = render_frames(self._clip[wanted.start:wanted.stop], self.path,
                               prefetch=self._prefetch, failing="QTGMC")
        yield from zip(frames, stamps[wanted.start:wanted.stop], strict=True)
