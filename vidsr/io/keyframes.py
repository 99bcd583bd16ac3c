"""Where a video stream can be cut: its keyframes' presentation times, read by demuxing
(no frame is decoded)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from vidsr.errors import DecodeError
from vidsr.io.probe import open_input, video_stream


@dataclass(frozen=True)
class KeyframeIndex:
    """The keyframes of a file's video stream, in its time base, ascending."""

    time_base: Fraction
    keyframes: tuple[int, ...]
    last_pts: int | None  # the latest presentation time of any packet

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
        try:
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                if packet.is_keyframe and not packet.is_corrupt:
                    keys.add(packet.pts)
                last = packet.pts if last is None else max(last, packet.pts)
        except av.FFmpegError as exc:
            raise DecodeError(f"{path}: cannot read the video stream to find its keyframes:"
                              f" {exc.strerror}") from exc
        return KeyframeIndex(Fraction(stream.time_base), tuple(sorted(keys)), last)
