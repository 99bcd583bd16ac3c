"""Where a video stream can be cut: its keyframes' presentation times, read by demuxing
(no frame is decoded)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from vidsr.errors import DecodeError
from vidsr.io.probe import open_input, video_stream
from vidsr.io.timestamps import Continuity

# How far back in decode order a repeated pts is looked for: further than any decoder
# reorders frames (B-frames), so a frame's own pts seen again is a repeat.
_REORDER_SPAN = 32


@dataclass(frozen=True)
class KeyframeIndex:
    """The keyframes of a file's video stream, in its time base, ascending."""

    time_base: Fraction
    keyframes: tuple[int, ...]
    last_pts: int | None  # the latest presentation time of any packet
    # Why a time names no one place in the stream, which cutting by time needs; None: it does.
    unseekable: str | None = None

    def seconds(self, pts: int) -> float:
        return float(pts * self.time_base)


def scan_keyframes(path: Path, stream_index: int | None = None) -> KeyframeIndex:
    """Read every video packet's header of ``path`` (stream ``stream_index``, default the
    one vidsr upscales): seconds for an hour of video, as the demuxer reads the whole file
    but decodes nothing."""
    with open_input(Path(path)) as container:
        stream = video_stream(container, Path(path), stream_index)
        keys: set[int] = set()
        last: int | None = None
        continuity = Continuity(container)
        recent: deque[int] = deque(maxlen=_REORDER_SPAN)
        unseekable = None
        try:
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                if unseekable is None and continuity.follow_on(packet) is not None:
                    unseekable = "its time restarts (recordings joined into one file)"
                if unseekable is None and packet.size and packet.pts in recent:
                    unseekable = "its video frames repeat a time (they are retimed in order)"
                recent.append(packet.pts)
                if packet.is_keyframe and not packet.is_corrupt:
                    keys.add(packet.pts)
                last = packet.pts if last is None else max(last, packet.pts)
        except av.FFmpegError as exc:
            raise DecodeError(f"{path}: cannot read the video stream to find its keyframes:"
                              f" {exc.strerror}") from exc
        return KeyframeIndex(Fraction(stream.time_base), tuple(sorted(keys)), last,
                             unseekable)
