"""Decode a video stream into :class:`FrameBatch` es of planes.

Damage handling. The decoder runs with ``err_detect=explode`` so a damaged
frame fails instead of being silently concealed, and every packet's pts is
remembered until a frame with that pts comes out. Frames leave the decoder in
presentation order, so when a frame with pts ``p`` arrives, any remembered
pts below ``p`` belongs to a frame that was lost (FFmpeg drops damaged frames
quietly under frame threading). With ``on_error="fail"`` a lost frame raises
DecodeError; with ``"skip"`` it is replaced by the previous good frame
(the first good frame if nothing came before) carrying the lost frame's own
pts, in its place in presentation order. When a failing packet had no pts
(raw elementary streams), its replacement gets the previous pts plus one
nominal frame. Frames that were never demuxed at all (a truncated file)
cannot be replaced: "fail" raises, "skip" warns and ends early.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import av
import av.container
import numpy as np

from vidsr.errors import DecodeError, OptionsError
from vidsr.io.frames import FrameBatch
from vidsr.io.pixfmt import copy_frame_planes, source_format
from vidsr.io.probe import VideoInfo, describe, open_input

log = logging.getLogger("vidsr")

OnError = Literal["fail", "skip"]


class Decoder:
    """Iterate over a file's first video stream as batches of planes.

    ``with Decoder(path, batch_size=8) as dec: for batch in dec: ...``.
    ``info`` describes the stream; ``skipped`` counts frames replaced under
    ``on_error="skip"``. ``threads=0`` lets FFmpeg pick (frame + slice threads).
    """

    def __init__(self, path: str | Path, *, batch_size: int, on_error: OnError = "fail",
                 threads: int = 0) -> None:
        if batch_size < 1:
            raise OptionsError(f"batch size must be at least 1, got {batch_size}")
        if on_error not in ("fail", "skip"):
            raise OptionsError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
        self.path = Path(path)
        self.batch_size = batch_size
        self.on_error: OnError = on_error
        self.skipped = 0
        self._container = open_input(self.path)
        try:
            self.info: VideoInfo = describe(self._container, self.path)
            self._stream = self._container.streams.video[0]
            ctx = self._stream.codec_context
            ctx.thread_type = "AUTO"
            ctx.thread_count = threads
            ctx.options = {"err_detect": "explode"}
        except BaseException:
            self._container.close()
            raise

    @property
    def container(self) -> av.container.InputContainer:
        """The open input, for the run plan to ask what its other streams are."""
        return self._container

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
        planes: list[np.ndarray] = []
        pts: list[int | None] = []
        first_index = 0
        for frame, frame_pts in self._frames():
            if not pts:
                planes = [np.empty((self.batch_size, h, w), layout.dtype) for h, w in shapes]
            copy_frame_planes(frame, layout, planes, len(pts))
            pts.append(frame_pts)
            if len(pts) == self.batch_size:
                yield FrameBatch(planes, pts, info.time_base, first_index, layout)
                first_index += len(pts)
                pts = []
        if pts:
            n = len(pts)
            yield FrameBatch([p[:n] for p in planes], pts, info.time_base, first_index, layout)

    # ------------------------------------------------------------ frames

    def _frames(self) -> Iterator[tuple[av.VideoFrame, int | None]]:
        """Yield (frame in the layout's format, pts) in presentation order, replacements too."""
        info = self.info
        step = info.frame_duration
        pending: list[int] = []  # pts of packets sent whose frame has not come out
        waiting: list[int | None] = []  # lost before any good frame: replaced by the first one
        last: av.VideoFrame | None = None
        last_pts: int | None = None
        packet_no = 0
        emitted = 0
        for packet in self._packets():
            if packet.size:
                packet_no += 1
                if packet.pts is not None:
                    heapq.heappush(pending, packet.pts)
            try:
                frames = self._stream.decode(packet)
            except av.FFmpegError as exc:
                if self.on_error == "fail":
                    raise DecodeError(
                        f"{self.path}: cannot decode video packet #{packet_no}"
                        f"{_at(packet.pts, info)}: {exc.strerror}") from exc
                log.warning("%s: skipping undecodable video packet #%d%s: %s", self.path,
                            packet_no, _at(packet.pts, info), exc.strerror)
                if packet.pts is None:
                    waiting.append(None)
                frames = []
            for frame in frames:
                frame_pts = frame.pts
                lost = _pop_below(pending, frame_pts)
                self._check_lost(lost)
                frame = self._converted(frame)
                for missing in waiting + lost:
                    missing_pts = missing if missing is not None else _next(last_pts, step)
                    yield (last if last is not None else frame), missing_pts
                    self.skipped += 1
                    emitted += 1
                    last_pts = missing_pts
                waiting = []
                if frame_pts is None:
                    # No timestamps at all (raw streams): count frames at the nominal rate.
                    frame_pts = _next(last_pts, step) if last_pts is not None else 0
                yield frame, frame_pts
                emitted += 1
                last, last_pts = frame, frame_pts
        lost = sorted(pending)
        self._check_lost(lost)
        if last is not None:
            for missing in waiting + lost:
                missing_pts = missing if missing is not None else _next(last_pts, step)
                yield last, missing_pts
                self.skipped += 1
                emitted += 1
                last_pts = missing_pts
        self._check_complete(emitted, last_pts)

    def _packets(self) -> Iterator[av.Packet]:
        """Demux the video stream; a read error ends the stream ("skip") or raises ("fail")."""
        demuxer = self._container.demux(self._stream)
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
            yield packet

    def _check_lost(self, lost: list[int]) -> None:
        if lost and self.on_error == "fail":
            raise DecodeError(
                f"{self.path}: video frame{_at(lost[0], self.info)} could not be decoded"
                f" ({len(lost)} frame(s) lost; corrupt data? use on_error='skip' to"
                " replace damaged frames)")
        for pts in lost:
            log.warning("%s: replacing undecodable frame%s with the previous one",
                        self.path, _at(pts, self.info))

    def _check_complete(self, emitted: int, last_pts: int | None) -> None:
        """Catch a file that ends before its header says it should (truncated)."""
        info = self.info
        problem = None
        if info.frame_count is not None and emitted < info.frame_count:
            problem = f"ends early: {emitted} of {info.frame_count} frames decoded"
        elif (info.duration is not None and last_pts is not None and info.average_rate
              and info.frame_count is None):
            start = self._stream.start_time or 0
            end = float((last_pts - start) * info.time_base) + float(1 / info.average_rate)
            # Two frames of slack: container durations round, and VFR ends vary.
            if end < info.duration - 2 / float(info.average_rate):
                problem = f"ends at {end:.3f} s but its header says {info.duration:.3f} s"
        if problem is None:
            return
        if self.on_error == "fail":
            raise DecodeError(f"{self.path}: video {problem} (file truncated?)")
        log.warning("%s: video %s (file truncated?)", self.path, problem)

    def _converted(self, frame: av.VideoFrame) -> av.VideoFrame:
        """``frame`` at the stream's size in the layout's pixel format."""
        info = self.info
        layout = info.layout
        if frame.width != info.width or frame.height != info.height:
            log.warning("%s: frame at pts %s is %dx%d, scaling it to the stream's %dx%d",
                        self.path, frame.pts, frame.width, frame.height, info.width, info.height)
            return frame.reformat(width=info.width, height=info.height, format=layout.pix_fmt)
        source = source_format(frame.format.name)
        if source.needs_convert or source.layout.pix_fmt != layout.pix_fmt:
            return frame.reformat(format=layout.pix_fmt)
        return frame


def _pop_below(pending: list[int], pts: int | None) -> list[int]:
    """Remove and return the remembered pts below ``pts``; drop ``pts`` itself."""
    if pts is None:
        return []
    lost = []
    while pending and pending[0] < pts:
        lost.append(heapq.heappop(pending))
    if pending and pending[0] == pts:
        heapq.heappop(pending)
    return lost


def _next(pts: int | None, step: int | None) -> int | None:
    if pts is None or step is None:
        return None
    return pts + step


def _at(pts: int | None, info: VideoInfo) -> str:
    if pts is None:
        return ""
    return f" at {float(pts * info.time_base):.3f} s (pts {pts})"
