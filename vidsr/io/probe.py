"""What a video file holds: size, planes, colour, timing, and its other streams."""

from __future__ import annotations

import logging
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.container
from av.sidedata.sidedata import Type as SideDataType

from vidsr.errors import InputError
from vidsr.io.colour import hdr_metadata, resolve_colour
from vidsr.io.input_file import check_input_path
from vidsr.io.pixfmt import SourceFormat, has_alpha, source_format
from vidsr.io.video_info import StreamSummary, VideoInfo, codec_name

log = logging.getLogger("vidsr")

_TEXT_FORMATS = {"tty"}


def open_input(path: Path) -> av.container.InputContainer:
    """Open ``path`` for demuxing, with vidsr's messages for the ways that fails."""
    check_input_path(path)
    try:
        # As a file: URL, FFmpeg never takes a local name such as ``http:clip.mp4`` for a
        # URL; it reads the rest verbatim (no %-decoding), and messages name ``path``.
        return av.open(f"file:{path.absolute()}", mode="r")
    except av.FFmpegError as exc:
        raise InputError(f"{path}: not a video file FFmpeg can read ({exc.strerror})") from exc


def is_attached_picture(stream: av.stream.Stream) -> bool:
    """Whether ``stream`` is a picture attached to the file (cover art), not a video."""
    return stream.type == "video" and bool(
        stream.disposition & av.stream.Disposition.attached_pic)


def video_stream(container: av.container.InputContainer, path: Path,
                 choice: int | None = None) -> av.video.stream.VideoStream:
    """The video stream vidsr upscales: stream ``choice`` (its index in the file, as
    messages write it: ``#1``) when given, else the one marked default, else the
    largest; the first of equals. Cover art (an attached picture) is never the video.
    """
    if choice is not None:
        if not 0 <= choice < len(container.streams):
            raise InputError(f"{path}: has no stream #{choice} (it has"
                             f" {len(container.streams)}, from #0)")
        stream = container.streams[choice]
        if stream.type != "video" or is_attached_picture(stream):
            kind = "cover art, not a video" if stream.type == "video" else "not video"
            raise InputError(f"{path}: stream {StreamSummary.of(stream)} is {kind}; choose"
                             " another --video-stream")
        return stream
    videos = [s for s in container.streams.video if not is_attached_picture(s)]
    if not videos:
        if container.streams.video:
            raise InputError(f"{path}: has no video stream (only cover art)")
        found = ", ".join(f"{s.type} {codec_name(s)}" for s in container.streams)
        raise InputError(f"{path}: has no video stream (found: {found or 'no streams'})")
    default = [s for s in videos if s.disposition & av.stream.Disposition.default]
    # max() keeps the first of equals: files list their main stream first.
    return max(default or videos, key=lambda s: (s.codec_context.width or 0)
               * (s.codec_context.height or 0))


def describe(container: av.container.InputContainer, path: Path,
             choice: int | None = None) -> VideoInfo:
    """Build the VideoInfo of an open container's video stream (see :func:`video_stream`;
    ``choice``: a stream index the user chose)."""
    if container.format.name in _TEXT_FORMATS:
        # FFmpeg renders any text file as ANSI art "video"; nobody means to upscale that.
        raise InputError(f"{path}: not a video file FFmpeg can read (it is text)")
    summaries = tuple(StreamSummary.of(s) for s in container.streams)
    stream = video_stream(container, path, choice)
    ctx = stream.codec_context
    if ctx.format is None or not ctx.width or not ctx.height:
        raise InputError(f"{path}: video stream #{stream.index} has no size or pixel format")
    fmt: SourceFormat = source_format(ctx.format.name)
    if fmt.needs_convert:
        log.debug("%s: %s frames will be converted to %s", path, fmt.pix_fmt, fmt.layout.pix_fmt)
    rate = nominal_rate(stream.average_rate, stream.guessed_rate)
    colour = resolve_colour(
        matrix=ctx.colorspace,
        color_range=ctx.color_range,
        primaries=ctx.color_primaries,
        transfer=ctx.color_trc,
        family=fmt.layout.family,
        height=ctx.height,
        rate=rate,
        jpeg_range=fmt.jpeg_range,
    )
    sar = stream.sample_aspect_ratio or ctx.sample_aspect_ratio
    matrix = ctx.coded_side_data.get("display_matrix")
    timecodes = [s.metadata.get("timecode") for s in (stream, *container.streams)]
    return VideoInfo(
        path=path,
        width=ctx.width,
        height=ctx.height,
        pix_fmt=fmt.pix_fmt,
        layout=fmt.layout,
        colour=colour,
        sar=Fraction(sar) if sar else Fraction(1),
        time_base=Fraction(stream.time_base),
        average_rate=rate,
        frame_count=stream.frames or None,
        duration=_duration(container, stream),
        codec=ctx.name,
        stream_index=stream.index,
        container_format=container.format.name,
        other_streams=tuple(s for s in summaries if s.index != stream.index),
        display_matrix=_upright_or(struct.unpack("<9i", matrix) if matrix else None),
        timecode=next((t for t in timecodes if t), None),
        field_order=_FIELD_ORDERS.get(ctx.field_order, "unknown"),
        base_rate=Fraction(stream.guessed_rate) if stream.guessed_rate else None,
        alpha=has_alpha(fmt.pix_fmt) or (ctx.name in ALPHA_DECODERS
                                          and stream.metadata.get("alpha_mode") == "1"),
        **_first_frame_side_data(path, stream.index, colour.transfer, ctx.name),
    )


# VP8 and VP9 keep alpha in a side channel (WebM's alpha_mode) that only libvpx decodes.
ALPHA_DECODERS = {"vp8": "libvpx", "vp9": "libvpx-vp9"}


# Transfers of HDR video: only their streams are searched for HDR10 static metadata.
_HDR_TRANSFERS = frozenset({"smpte2084", "arib-std-b67"})
# Codecs whose frames may carry closed captions (ATSC A53, as SEI or user data).
_CAPTION_CODECS = frozenset({"h264", "hevc", "mpeg2video", "mpeg1video"})
# Frame side data an encoder can be handed with the frame (see decode.py's carriers).
CARRIED_SIDE_DATA = frozenset({SideDataType.A53_CC})


def _first_frame_side_data(path: Path, index: int, transfer: str,
                           codec: str) -> dict[str, Any]:
    """VideoInfo's ``hdr`` and ``captions``, from the first frame of stream ``index``.

    Encoders write both as SEI, which only the decoder reads out; the file is opened
    again so that the caller's container is left where it is, and only for streams that
    can have them.
    """
    if transfer not in _HDR_TRANSFERS and codec not in _CAPTION_CODECS:
        return {}
    with open_input(path) as container:
        try:
            frame = next(container.decode(container.streams[index]), None)
        except av.FFmpegError:
            return {}  # damage: the decoder meets it again, and reports it
    if frame is None:
        return {}
    found = {kind: bytes(data) for kind, data in frame.side_data.items()}
    hdr = hdr_metadata(found.get(SideDataType.MASTERING_DISPLAY_METADATA),
                       found.get(SideDataType.CONTENT_LIGHT_LEVEL))
    return {"hdr": hdr if transfer in _HDR_TRANSFERS else None,
            "captions": SideDataType.A53_CC in found}


# FFmpeg's AVFieldOrder by value.
_FIELD_ORDERS = {1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}
_IDENTITY = (1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30)


# How far a stream's average rate may sit from its base rate and still be that rate: a short
# clip's average counts its last frame's time slot as FFmpeg guesses it (48 frames at 24 fps
# average 23.51 in an MP4 whose last sample is long), which would otherwise be written out.
RATE_TOLERANCE = Fraction(3, 100)


def nominal_rate(average: Fraction | None, base: Fraction | None) -> Fraction | None:
    """The stream's frame rate: its base rate (FFmpeg's r_frame_rate, an exact ratio such as
    24 or 30000/1001) when the average agrees with it, else the average (variable rate).

    An average above the base rate is no rate at all: frames cannot follow closer than the
    base rate allows. FFmpeg reports 1/time base there (60000 for raw DV, 1000 for Matroska
    files without a frame count); the base rate it is."""
    if average and base and Fraction(average) / Fraction(base) - 1 >= -RATE_TOLERANCE:
        return Fraction(base)
    rate = average or base
    return Fraction(rate) if rate else None


def _upright_or(matrix: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """None for a missing or identity display matrix, else the matrix."""
    return None if matrix is None or tuple(matrix) == _IDENTITY else tuple(matrix)


def probe(path: str | Path, choice: int | None = None) -> VideoInfo:
    """Describe the video stream of ``path`` (see :func:`video_stream`); InputError if there
    is none. A VapourSynth script (``.vpy``) is described by its video output."""
    from vidsr.io.script_source import is_script, probe_script

    path = Path(path)
    if is_script(path):
        return probe_script(path)
    with open_input(path) as container:
        return describe(container, path, choice)


def _duration(container: av.container.InputContainer, stream: av.video.VideoStream) -> float | None:
    """The video stream's own duration where the file states it, else the container's.

    Matroska keeps a stream's duration in a DURATION tag; FFmpeg gives its video
    stream the segment's duration, which is the longest stream's, so audio that
    outlasts the video would make a complete file look truncated. The tag wins.
    """
    tagged = _matroska_duration(stream.metadata.get("DURATION"))
    if tagged is not None:
        return tagged
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _matroska_duration(tag: str | None) -> float | None:
    """Seconds from Matroska's ``HH:MM:SS.fraction`` tag; None when absent or malformed."""
    if not tag:
        return None
    try:
        hours, minutes, seconds = tag.strip().split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None
