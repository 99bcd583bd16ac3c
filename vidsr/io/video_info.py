"""What a source's video is (:class:`VideoInfo`) and how its other streams are named, whatever
described it: a media file's probe (:mod:`vidsr.io.probe`) or a VapourSynth script
(:mod:`vidsr.io.script_source`)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from vidsr.io.colour import ColourSpec, HdrMetadata
from vidsr.io.frames import PlaneLayout


@dataclass(frozen=True)
class StreamSummary:
    """One stream of a file, as named in messages (``#2 (subtitle, subrip)``)."""

    index: int
    type: str
    codec: str

    @classmethod
    def of(cls, stream: av.stream.Stream) -> StreamSummary:
        return cls(stream.index, stream.type, codec_name(stream))

    def __str__(self) -> str:
        return f"#{self.index} ({self.type}, {self.codec})"


@dataclass(frozen=True)
class VideoInfo:
    """The video stream of a file that is upscaled, resolved for decoding and encoding.

    ``layout`` is what the decoder yields (after any conversion from
    ``pix_fmt``); ``colour`` is resolved (guessed where untagged, see
    ``colour.tagged``); ``time_base`` is the stream's, which every pts the
    decoder yields is in.
    """

    path: Path
    width: int
    height: int
    pix_fmt: str
    layout: PlaneLayout
    colour: ColourSpec
    sar: Fraction
    time_base: Fraction
    average_rate: Fraction | None  # the nominal rate (see nominal_rate): shown, counts frames
    frame_count: int | None
    duration: float | None
    codec: str
    stream_index: int
    container_format: str
    other_streams: tuple[StreamSummary, ...]
    # FFmpeg's display matrix (9 ints, 16.16 and 2.30 fixed point) when the picture is
    # meant to be shown rotated or mirrored (phone clips); None when upright.
    display_matrix: tuple[int, ...] | None = None
    timecode: str | None = None  # SMPTE timecode of the first frame, e.g. "01:00:00:00"
    field_order: str = "unknown"  # progressive, tt, bb, tb, bt or unknown
    # The rate frames follow one another at (FFmpeg's guess from the timestamps), which one
    # frame lasts; unlike the average, not stretched by a gap nor set to 1/time base.
    base_rate: Fraction | None = None
    hdr: HdrMetadata | None = None  # HDR10 static metadata of a PQ or HLG stream
    captions: bool = False  # the first frame carries closed captions (ATSC A53)
    alpha: bool = False  # the pictures have an alpha channel (transparency)

    @property
    def interlaced(self) -> bool:
        return self.field_order in ("tt", "bb", "tb", "bt")


    @property
    def frame_count_estimate(self) -> int | None:
        """nb_frames when the file has it, else duration x rate (for a progress ETA)."""
        if self.frame_count is not None:
            return self.frame_count
        if self.duration is not None and self.average_rate:
            return round(self.duration * self.average_rate)
        return None

    @property
    def frame_time(self) -> Fraction | None:
        """How long one frame lasts, in seconds, when the rate is known."""
        rate = self.base_rate or self.average_rate
        return 1 / rate if rate else None

    @property
    def frame_duration(self) -> int | None:
        """One frame's duration (:attr:`frame_time`) in ``time_base`` units."""
        if self.frame_time is None:
            return None
        return max(1, round(self.frame_time / self.time_base))


def codec_name(stream: av.stream.Stream) -> str:
    """The codec of ``stream`` as FFmpeg names it."""
    ctx = stream.codec_context
    if ctx is not None:
        return ctx.name
    # Data and attachment streams have no codec context; the descriptor name still exists.
    return getattr(stream, "name", None) or "data"
