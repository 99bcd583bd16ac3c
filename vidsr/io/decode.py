"""Decode a video stream into :class:`FrameBatch` es of planes.

Timestamps come from a model of the container (:mod:`vidsr.io.timestamps`):
presentation timestamps where the packets carry them, the packets' time slots
in ascending order where they carry only their place in the stream (AVI), a
count at the nominal rate where they carry nothing (raw elementary streams).
Every frame yielded has a timestamp, and timestamps only go forward.

Damage handling. The decoder runs with ``err_detect=explode`` so a damaged
frame fails instead of being silently concealed, and every packet's slot is
remembered until its frame comes out. Frames leave the decoder in
presentation order, so when a frame with pts ``p`` arrives, any remembered
pts below ``p`` belongs to a frame that was lost (FFmpeg drops damaged frames
quietly under frame threading). With ``on_error="fail"`` a lost frame raises
DecodeError; with ``"skip"`` it is replaced by the previous good frame
(the first good frame if nothing came before) carrying the lost frame's own
timestamp, in its place in presentation order; a frame the decoder gives back
after its slot was filled is dropped. A packet the demuxer reads only in part
(a cut file) or a video that ends well before its header's duration is a
truncated file: "fail" raises, "skip" warns and ends there.

Deinterlacing. Given a :class:`~vidsr.io.deinterlace.DeinterlacePlan`, every frame
(stand-ins included, each with its own timestamp) goes through bwdif, which is flushed
at the end: the batches then carry bwdif's progressive frames, timed in half the
stream's time base, and ``info`` describes them (``source_info`` keeps the stream's).
A plan for inverse telecine gives film frames instead (:mod:`vidsr.io.ivtc`), timed in
1/60 of the stream's time base; it reads the whole stream (no :class:`Window`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import av
import av.container
import numpy as np

from vidsr.errors import DecodeError, OptionsError, option
from vidsr.io.deinterlace import DeinterlacePlan, Deinterlacer, deinterlaced_info
from vidsr.io.frames import FrameBatch
from vidsr.io.ivtc import InverseTelecine
from vidsr.io.pixfmt import alpha_format, copy_frame_planes, source_format
from vidsr.io.probe import ALPHA_DECODERS, CARRIED_SIDE_DATA, describe, open_input
from vidsr.io.timestamps import LATE, Continuity, Timeline, TimestampMode, timestamp_mode
from vidsr.io.video_info import VideoInfo

if TYPE_CHECKING:
    from vidsr.io.script_source import ScriptSource

log = logging.getLogger("vidsr")

OnError = Literal["fail", "skip"]


@dataclass(frozen=True)
class Window:
    """The stretch of a stream one segment of a file decodes.

    The frames whose presentation times (the stream's time base) are in ``[start, end)``;
    None: from the stream's beginning, to its end. Decoding starts at the keyframe at
    ``seek`` (at or before ``start``; None: the beginning): starting one keyframe early
    gives the leading frames of an open GOP their references and bwdif its neighbours,
    so every frame yielded is the one a run through the whole file yields. What is
    decoded before ``start`` is context: its damage is neither reported nor replaced.

    ``context``: frames also yielded on each side of ``[start, end)`` (where the stream has
    them), the neighbours a model that sees a window of frames needs at the segment's
    ends (:meth:`Decoder.is_context` tells them apart); ``seek`` must then lie far enough
    back to decode them.
    """

    start: int | None = None
    end: int | None = None
    seek: int | None = None
    context: int = 0

    def before(self, stamp: int | None) -> bool:
        """Whether ``stamp`` (None: not known yet) is context, before the window."""
        return self.start is not None and (stamp is None or stamp < self.start)


class Decoder:
    """Iterate over a file's video stream as batches of planes.

    ``with Decoder(path, batch_size=8) as dec: for batch in dec: ...``.
    ``info`` describes the frames yielded (deinterlaced ones when ``deinterlace`` is
    given, see :meth:`deinterlace`); ``skipped`` counts frames replaced under
    ``on_error="skip"``. ``threads=0`` lets FFmpeg pick (frame + slice threads).
    ``window``: only one segment's frames (see :class:`Window`). ``video_stream``: the
    index of the stream to decode (default: :func:`~vidsr.io.probe.video_stream`'s pick).
    ``alpha``: the batches carry the frames' alpha planes too (see :meth:`keep_alpha`).
    """

    def __init__(self, path: str | Path, *, batch_size: int, on_error: OnError = "fail",
                 threads: int = 0, deinterlace: DeinterlacePlan | None = None,
                 window: Window | None = None, video_stream: int | None = None,
                 alpha: bool = False) -> None:
        if batch_size < 1:
            raise OptionsError(f"batch size must be at least 1, got {batch_size}")
        if on_error not in ("fail", "skip"):
            raise OptionsError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
        self.path = Path(path)
        self.batch_size = batch_size
        self.on_error: OnError = on_error
        self.skipped = 0
        self._deinterlace: DeinterlacePlan | None = None
        self._window = window or Window()
        self._alpha_format: str | None = None  # frames are converted to it, alpha kept
        self._other_sizes: set[tuple[int, int]] = set()  # sizes scaled to the stream's, said
        self._container = open_input(self.path)
        try:
            self.info: VideoInfo = describe(self._container, self.path, video_stream)
            self.source_info: VideoInfo = self.info  # the stream as stored
            self._stream = self._container.streams[self.info.stream_index]
            self.timestamps: TimestampMode = timestamp_mode(self._container)
            ctx = self._stream.codec_context
            ctx.thread_type = "AUTO"
            ctx.thread_count = threads
            ctx.options = {"err_detect": "explode"}
            self._codec: av.video.codeccontext.VideoCodecContext = ctx
            if alpha:
                self.keep_alpha()
        except BaseException:
            self._container.close()
            raise
        if deinterlace is not None:
            self.deinterlace(deinterlace)

    def keep_alpha(self) -> None:
        """Give each batch the frames' alpha planes (``FrameBatch.alpha``), for an output
        that keeps them (before iterating)."""
        info = self.source_info
        self._alpha_format = alpha_format(info.layout)
        assert info.alpha and self._alpha_format is not None, "the plan keeps no alpha"
        decoder = ALPHA_DECODERS.get(info.codec)
        if decoder is not None:
            # FFmpeg's own VP8/VP9 decoders ignore the alpha channel; libvpx decodes it.
            codec = av.CodecContext.create(decoder, "r")
            codec.thread_count = self._codec.thread_count
            self._codec = codec

    def deinterlace(self, plan: DeinterlacePlan) -> None:
        """Yield ``plan``'s progressive frames instead of the stream's (before iterating)."""
        if plan.method == "ivtc" and (self._window.start is not None
                                      or self._window.end is not None):
            # Cycles of 5 count from the stream's first frame: a stretch decoded alone
            # would drop other frames than the whole file does.
            raise OptionsError(f"{self.path}: inverse telecine reads the whole stream; it"
                               " cannot decode a stretch of it")
        self._deinterlace = plan
        self.info = deinterlaced_info(self.source_info, plan)

    @property
    def container(self) -> av.container.InputContainer:
        """The open input (its other streams, for an output planned from this decoder)."""
        return self._container

    @property
    def streams_source(self) -> Path:
        """The file the sinks copy the other streams from: the input itself."""
        return self.path

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file and the decoder; safe to call twice."""
        self._container.close()

    def __iter__(self) -> Iterator[FrameBatch]:
        return self._batches()

    # ------------------------------------------------------------ batching

    def _batches(self) -> Iterator[FrameBatch]:
        info = self.info
        layout = info.layout
        shapes = [layout.plane_shape(p, info.width, info.height)
                  for p in range(layout.plane_count)]
        if self._alpha_format is not None:
            shapes.append((info.height, info.width))  # the alpha plane, after the others
        planes: list[np.ndarray] = []
        pts: list[int] = []
        carriers: list[av.VideoFrame | None] = []
        first_index = 0

        def batch(count: int) -> FrameBatch:
            colour = [p[:count] for p in planes[:layout.plane_count]]
            alpha = planes[layout.plane_count][:count] if len(planes) > len(colour) else None
            return FrameBatch(colour, pts, info.time_base, first_index, layout,
                              _any(carriers), alpha)

        for frame, frame_pts in self._frames():
            if not pts:
                planes = [np.empty((self.batch_size, h, w), layout.dtype) for h, w in shapes]
                carriers = []
            copy_frame_planes(frame, layout, planes, len(pts))
            pts.append(frame_pts)
            carriers.append(_side_data_carrier(frame))
            if len(pts) == self.batch_size:
                yield batch(len(pts))
                first_index += len(pts)
                pts = []
        if pts:
            yield batch(len(pts))

    # ------------------------------------------------------------ frames

    def is_context(self, stamp: int) -> bool:
        """Whether the frame yielded at ``stamp`` is context beside the window (see
        :class:`Window`), not one of its own frames."""
        start, end = self._window_stamps()
        return (start is not None and stamp < start) or (end is not None and stamp >= end)

    def _window_stamps(self) -> tuple[int | None, int | None]:
        """The window's start and end in the yielded frames' time base."""
        window = self._window
        per_tick = 2 if self._deinterlace is not None else 1  # bwdif's half time base
        return (None if window.start is None else window.start * per_tick,
                None if window.end is None else window.end * per_tick)

    def _frames(self) -> Iterator[tuple[av.VideoFrame, int]]:
        """What the batches hold: the window's frames of :meth:`_all_frames`, and its
        context frames on either side."""
        window = self._window
        if window.start is None and window.end is None:
            yield from self._all_frames()
            return
        start, end = self._window_stamps()
        before: deque[tuple[av.VideoFrame, int]] = deque(maxlen=window.context or 1)
        after = 0
        for frame, stamp in self._all_frames():
            if end is not None and stamp >= end:
                if after == window.context:
                    return  # frames leave in presentation order: the window is complete
                after += 1
                yield frame, stamp
            elif start is not None and stamp < start:
                if window.context:
                    before.append((frame, stamp))
            else:
                while before:
                    yield before.popleft()
                yield frame, stamp

    def _all_frames(self) -> Iterator[tuple[av.VideoFrame, int]]:
        """The stream's frames, or bwdif's (or inverse telecine's) output from them."""
        if self._deinterlace is None:
            yield from self._stream_frames()
            return
        plan, time_base = self._deinterlace, self.source_info.time_base
        deinterlacer = (InverseTelecine(plan, time_base, self.source_info.frame_duration)
                        if plan.method == "ivtc" else Deinterlacer(plan, time_base))
        for frame, stamp in self._stream_frames():
            # A stand-in is a good frame handed again: it takes the lost frame's time.
            frame.pts = stamp
            for out in deinterlacer.push(frame):
                yield out, out.pts
        for out in deinterlacer.flush():
            yield out, out.pts

    def _stream_frames(self) -> Iterator[tuple[av.VideoFrame, int]]:
        """Yield (frame in the layout's format, timestamp) in presentation order, stand-ins
        for lost frames too."""
        info = self.source_info
        window = self._window
        timeline = Timeline(self.timestamps, info.frame_duration)
        waiting = 0  # lost before any good frame, without a slot: replaced by the first one
        last: av.VideoFrame | None = None
        packet_no = 0
        for packet in self._packets():
            key = None
            if packet.size:
                packet_no += 1
                if not packet.is_discard:
                    key = timeline.packet(packet)
                # else: a lead-in an edit list cuts (MP4 cut at a non-keyframe): decoded as a
                # reference, its frame dropped by FFmpeg; it has no slot in the output.
            try:
                frames = self._codec.decode(packet)
            except av.FFmpegError as exc:
                if window.before(packet.pts) and (timeline.last is None
                                                  or window.before(timeline.last)):
                    # Context before the window (an open GOP's leading frames, cut off
                    # from their references by the seek): not this segment's frames.
                    log.debug("%s: context packet #%d not decoded: %s", self.path,
                              packet_no, exc.strerror)
                    timeline.forget(key)
                    continue
                if self.on_error == "fail":
                    raise DecodeError(
                        f"{self.path}: cannot decode video packet #{packet_no}"
                        f"{_at(packet.pts, info)}: {exc.strerror}") from exc
                log.warning("%s: skipping undecodable video packet #%d%s: %s", self.path,
                            packet_no, _at(packet.pts, info), exc.strerror)
                # A pts stream finds the lost slot later, when a frame passes it; a frame
                # without one (or in a stream without presentation times) is replaced
                # before the next good frame.
                if key is None or timeline.mode != "pts":
                    waiting += 1
                frames = []
            for frame in frames:
                stand_ins = [timeline.handed(timeline.next_slot()) if timeline.mode == "pts"
                             else timeline.frame(None)[0] for _ in range(waiting)]
                waiting = 0
                retimed = timeline.retimed
                stamp, lost = timeline.frame(frame.pts)
                if timeline.retimed and not retimed:
                    log.warning("%s: video frames repeat a timestamp (first%s); each such"
                                " frame is retimed one frame (%.3f s) after the one before",
                                self.path, _at(frame.pts, info),
                                float(timeline.step * info.time_base))
                lost = [slot for slot in lost if not window.before(slot)]
                if stamp is LATE:
                    # Its slot was filled by a stand-in already: time never goes back.
                    log.warning("%s: dropping a late frame at pts %s (already replaced)",
                                self.path, frame.pts)
                    stamp = None
                self._check_lost(lost)
                frame = self._converted(frame)
                for missing in stand_ins + lost:
                    yield (last if last is not None else frame), missing
                    self.skipped += 1
                if stamp is not None:
                    yield frame, stamp
                    last = frame
        lost = [slot for slot in timeline.remaining() if not window.before(slot)]
        self._check_lost(lost)
        if last is not None:
            for missing in lost + [None] * waiting:
                slot = missing if missing is not None else timeline.next_slot()
                yield last, timeline.handed(slot)
                self.skipped += 1
        if window.end is None:
            self._check_complete(timeline.last, timeline.spacing)

    def _packets(self) -> Iterator[av.Packet]:
        """Demux the video stream; a read error ends the stream ("skip") or raises ("fail")."""
        if self._window.seek is not None:
            # Backward: the keyframe at or before it, never one after.
            self._container.seek(self._window.seek, stream=self._stream, backward=True)
        demuxer = self._container.demux(self._stream)
        continuity = Continuity(self._container)
        count = 0
        while True:
            try:
                packet = next(demuxer)
            except StopIteration:
                return
            except av.FFmpegError as exc:
                if self.on_error == "fail":
                    raise DecodeError(f"{self.path}: cannot read the video stream after packet "
                                      f"#{count}: {exc.strerror}") from exc
                log.warning("%s: stopping at unreadable data after packet #%d: %s",
                            self.path, count, exc.strerror)
                yield av.Packet()  # an empty packet flushes the decoder
                return
            count += 1
            restart = continuity.follow_on(packet)
            if restart is not None:
                log.warning("%s: the video's time restarts at packet #%d (%.3f s where %.3f s"
                            " was due: recordings joined into one file?); what follows is"
                            " moved to follow on", self.path, count, restart[1], restart[0])
            if packet.is_corrupt and continuity.active:
                # MPEG-TS flags a packet whose continuity counter skipped: lost transport
                # packets, or the join of two whole recordings. The decoder, which fails on
                # damaged data, judges.
                log.debug("%s: video packet #%d has a continuity gap", self.path, count)
            elif packet.is_corrupt:
                # The demuxer flags a packet it could not read whole: the data ends
                # mid-packet (a cut file) or the container says it is damaged.
                problem = (f"video packet #{count}{_at(packet.pts, self.source_info)} is cut"
                           " off or damaged")
                if self.on_error == "fail":
                    raise DecodeError(f"{self.path}: {problem} (file truncated?)")
                log.warning("%s: %s (file truncated?)", self.path, problem)
            yield packet

    def _check_lost(self, lost: list[int]) -> None:
        if lost and self.on_error == "fail":
            raise DecodeError(
                f"{self.path}: video frame{_at(lost[0], self.source_info)} could not be decoded"
                f" ({len(lost)} frame(s) lost; corrupt data? use {option('on_error', 'skip')}"
                " to replace damaged frames)")
        for pts in lost:
            log.warning("%s: replacing undecodable frame%s with the previous one",
                        self.path, _at(pts, self.source_info))

    def _check_complete(self, last_pts: int | None, spacing: int | None) -> None:
        """Catch a file whose video ends well before the duration its header states.

        Header frame counts are hints (AVI counts zero-size dropped-frame chunks) and are
        not checked; a cut file also shows as a damaged last packet (see ``_packets``).
        ``spacing``: the least time between two frames, in the stream's time base.
        """
        info = self.source_info
        if info.duration is None or last_pts is None or info.frame_time is None:
            return
        start = self._stream.start_time or 0
        # The last frame lasts one frame of the stream's rate. An AVI's rate is its slots'
        # (one written in 1/600 s slots with a frame every 24 says 600 fps): there a frame
        # lasts as long as frames are apart.
        frame = float(info.frame_time)
        if self.timestamps == "index" and spacing:
            frame = max(frame, float(spacing * info.time_base))
        # A header's duration is the stream's length (MP4) or the time it ends at (Matroska's
        # DURATION tag counts from the file's start, so a video that starts after its audio
        # ends later than it lasts): the video is complete if either reaches it.
        length = float((last_pts - start) * info.time_base) + frame
        end = max(length, float(last_pts * info.time_base) + frame)
        # Two frames of slack: container durations round, and VFR ends vary.
        if end >= info.duration - 2 * frame:
            return
        problem = f"ends at {end:.3f} s but its header says {info.duration:.3f} s"
        if self.on_error == "fail":
            raise DecodeError(f"{self.path}: video {problem} (file truncated?)")
        log.warning("%s: video %s (file truncated?)", self.path, problem)

    def _converted(self, frame: av.VideoFrame) -> av.VideoFrame:
        """``frame`` at the stream's size in the layout's pixel format (with an alpha plane
        after the others when alpha is kept)."""
        info = self.source_info
        layout = info.layout
        target = self._alpha_format or layout.pix_fmt
        if frame.width != info.width or frame.height != info.height:
            size = (frame.width, frame.height)
            if size not in self._other_sizes:  # once a size: a change lasts many frames
                self._other_sizes.add(size)
                log.warning("%s: frames from pts %s are %dx%d; each such frame is scaled to"
                            " the stream's %dx%d", self.path, frame.pts, *size, info.width,
                            info.height)
            return frame.reformat(width=info.width, height=info.height, format=target)
        source = source_format(frame.format.name)
        if (source.needs_convert or source.layout.pix_fmt != layout.pix_fmt
                or (self._alpha_format is not None and frame.format.name != target)):
            return frame.reformat(format=target)
        return frame


def open_media(path: str | Path, *, batch_size: int, on_error: OnError = "fail",
               threads: int = 0, video_stream: int | None = None) -> Decoder | ScriptSource:
    """The frames of ``path`` as batches: a :class:`Decoder` for a media file, a
    :class:`~vidsr.io.script_source.ScriptSource` for a VapourSynth script (``.vpy``)."""
    from vidsr.io.script_source import ScriptSource, is_script

    if is_script(path):
        return ScriptSource(path, batch_size=batch_size)
    return Decoder(path, batch_size=batch_size, on_error=on_error, threads=threads,
                   video_stream=video_stream)


@dataclass(frozen=True)
class InputProbe:
    """What a run is planned from: the video stream to upscale, and the input open for
    reading its other streams' headers (never for decoding)."""

    info: VideoInfo
    container: av.container.InputContainer


@contextmanager
def probe_media(path: str | Path, video_stream: int | None = None) -> Iterator[InputProbe]:
    """Probe ``path`` (a media file, or a VapourSynth script, which is run for it); the
    input is closed when the block ends."""
    from vidsr.io.script_source import ScriptSource, is_script

    if is_script(path):
        with ScriptSource(path, batch_size=1) as script:
            yield InputProbe(script.info, script.container)
        return
    path = Path(path)
    with open_input(path) as container:
        yield InputProbe(describe(container, path, video_stream), container)


def _side_data_carrier(frame: av.VideoFrame) -> av.VideoFrame | None:
    """A 16x16 copy of ``frame`` that keeps its side data for the encoder (closed
    captions), or None when it has none the encoder can carry."""
    if not any(kind in CARRIED_SIDE_DATA for kind in frame.side_data.keys()):
        return None
    return frame.reformat(width=16, height=16)


def _any(carriers: list[av.VideoFrame | None]) -> list[av.VideoFrame | None] | None:
    return carriers if any(c is not None for c in carriers) else None


def _at(pts: int | None, info: VideoInfo) -> str:
    if pts is None:
        return ""
    return f" at {float(pts * info.time_base):.3f} s (pts {pts})"
