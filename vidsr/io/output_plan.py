"""What the output video will be, decided once before any frame is decoded.

:class:`OutputPlan` holds every property of the written stream that a sink
needs: size, planes, the pixel format handed to the encoder, colour tags,
aspect ratio, orientation, timecode, field order, timing, codec settings, the
container, and which of the source's other streams are copied. Both sinks (PyAV
and a system ffmpeg) read it and derive nothing themselves, so they write the
same stream metadata.

Resolving it opens the chosen encoder once on a scratch output of the chosen
container, so what cannot work (a codec the container cannot hold, an encoder
that refuses the frame rate, an unknown encoder option) is refused before any
work starts, not after.
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import av.container

from vidsr.errors import OptionsError
from vidsr.io.colour import ColourSpec, HdrMetadata, colour_for_layout
from vidsr.io.encode_options import (
    CAPTION_CODECS,
    HDR_CODECS,
    EncodeOptions,
    choose_output_layout,
    codec_options,
    encoder_formats,
    unknown_encoder_options,
)
from vidsr.io.ffmpeg_log import ffmpeg_reasons, reason
from vidsr.io.frames import PlaneLayout
from vidsr.io.passthrough import StreamCopy, plan_stream_copies
from vidsr.io.pixfmt import alpha_format, has_alpha, nearest_format, source_format
from vidsr.io.system_ffmpeg import check_encoder, encoder_pixel_formats, trial_encode
from vidsr.io.timestamps import first_restart, hidden_lead_in, keeps_lead_in, stream_start
from vidsr.io.video_info import VideoInfo

log = logging.getLogger("vidsr")

# The encoder each container gets when --codec is not given: what its players expect.
DEFAULT_CODECS = {
    "webm": "libvpx-vp9",
    "avi": "mpeg4",  # MPEG-4 Part 2, as Xvid/DivX players read it
    "mpeg": "mpeg2video",
    "vob": "mpeg2video",
    "dvd": "mpeg2video",
    "svcd": "mpeg2video",
    "mxf": "mpeg2video",
    "yuv4mpegpipe": "wrapped_avframe",  # y4m holds uncompressed pictures only
}
FALLBACK_CODEC = "libx264"
# Muxers that write still images, not a video file.
_IMAGE_MUXERS = frozenset({"image2", "apng", "gif", "webp"})
# The video codecs a muxer's files can carry, where FFmpeg's muxer lets any codec through:
# MPEG-TS writes one without a stream type as an opaque data stream that no reader decodes,
# and y4m takes raw pictures only.
_MUXER_VIDEO_CODECS = {
    "mpegts": frozenset({"mpeg1video", "mpeg2video", "mpeg4", "h264", "hevc", "vvc", "cavs",
                         "avs2", "avs3", "dirac", "vc1"}),
    "yuv4mpegpipe": frozenset({"rawvideo", "wrapped_avframe"}),
}
# Codecs that count in frames whatever the container: Theora's granule positions.
_FRAME_COUNTING_CODECS = frozenset({"theora"})
_AVFMT_NOTIMESTAMPS = 0x0080
_AVFMT_VARIABLE_FPS = 0x0400


@dataclass(frozen=True)
class OutputPlan:
    """The output stream and file, as both sinks write them."""

    path: Path  # the final name (the sink writes a temporary one beside it)
    container: str  # FFmpeg muxer, chosen from the extension
    width: int
    height: int
    layout: PlaneLayout  # the planes the engine produces
    codec_pix_fmt: str  # what the encoder is given (differs for packed/semi-planar formats)
    colour: ColourSpec  # tags written on the stream and on every frame
    sar: Fraction
    rate: Fraction  # the encoder's frame rate
    source_time_base: Fraction  # the decoded frames' pts count in this
    time_base: Fraction  # the encoder counts in this (the source's, or 1/rate where it insists)
    frame_duration: int  # one nominal frame in ``time_base`` units
    start_pts: int  # subtracted from every source pts, so the output starts where players expect
    start_s: float  # the same shift in seconds, for the copied streams
    display_matrix: tuple[int, ...] | None  # written on the stream: how players turn the picture
    turn: int  # degrees the sink turns the pixels clockwise before encoding (0, 90, 180, 270)
    mirror: bool  # the sink mirrors the pixels left to right (before turning them)
    timecode: str | None  # written as the video stream's timecode
    field_order: str  # written on the stream: the frames' own (progressive once deinterlaced)
    hdr: HdrMetadata | None  # HDR10 static metadata written into the bitstream
    captions: bool  # the frames' closed captions (ATSC A53) are written into the bitstream
    alpha_depth: int  # bits of the source's alpha planes, written in codec_pix_fmt; 0: none
    encode: EncodeOptions  # codec resolved (the container's default when none was asked)
    codec_options: tuple[tuple[str, str], ...]  # what the encoder is opened with
    sink: str  # "pyav" or "ffmpeg"
    ffmpeg: str | None  # the system ffmpeg's path for the "ffmpeg" sink
    streams: tuple[StreamCopy, ...]  # every other stream of the source: copied or not, and why

    @property
    def copied_indices(self) -> tuple[int, ...]:
        return tuple(s.stream.index for s in self.streams if s.copied)


def muxer_for(path: Path) -> str:
    """The FFmpeg muxer FFmpeg itself picks for ``path``'s extension; nothing is written."""
    class _Named(io.BytesIO):
        name = str(path.name)

    try:
        with av.open(_Named(), "w") as probe:
            muxer = probe.format.name
    except (av.FFmpegError, ValueError):
        raise OptionsError(f"{path}: no container format for the extension "
                           f"{path.suffix or '(none)'!r}; use e.g. .mkv, .mp4 or .mov") from None
    if muxer in _IMAGE_MUXERS:
        raise OptionsError(f"{path}: {path.suffix} is a still-image format, not a video"
                           " container; use e.g. .mkv, .mp4 or .mov")
    return muxer


def plan_output(
    source: VideoInfo, container: av.container.InputContainer, path: Path, *,
    width: int, height: int, encode: EncodeOptions, ffmpeg: str | None = None,
    autorotate: bool = False, sar: Fraction | None = None,
) -> OutputPlan:
    """Decide the output stream of an upscale of ``source`` (open as ``container``) into
    ``path`` at ``width`` x ``height``.

    ``ffmpeg``: the system ffmpeg that will encode (None: PyAV). ``autorotate``: turn the
    pixels upright instead of keeping the display matrix (always so for ffmpeg, whose
    raw-video input cannot carry a matrix). ``sar``: the pixel aspect of the delivered
    picture when it is not the source's (a fitted one, see :mod:`vidsr.io.fit`).
    """
    muxer = muxer_for(path)
    codec = encode.codec or DEFAULT_CODECS.get(muxer, FALLBACK_CODEC)
    encode = replace(encode, codec=codec)
    if ffmpeg is not None:
        written_codec = check_encoder(ffmpeg, codec)
        formats = list(encoder_pixel_formats(ffmpeg, codec))
    else:
        formats = encoder_formats(codec)
        written_codec = av.Codec(codec, "w").canonical_name
    check_container_holds(path, muxer, written_codec)
    layout = choose_output_layout(codec, source.layout, encode.pix_fmt, formats)
    codec_pix_fmt = encode.pix_fmt or (
        layout.pix_fmt if not formats or layout.pix_fmt in formats
        else nearest_format(layout, formats))
    alpha_depth = 0
    if source.alpha:
        with_alpha = _alpha_pix_fmt(layout, encode.pix_fmt, formats)
        if with_alpha is None:
            log.warning("%s: the source's alpha channel (transparency) will be lost: %s cannot"
                        " write it with %s; use e.g. --codec ffv1, png, qtrle, libvpx-vp9"
                        " (.webm) or prores_ks --pix-fmt yuva444p10le", path, codec,
                        encode.pix_fmt or layout.pix_fmt)
        else:
            codec_pix_fmt, alpha_depth = with_alpha, source.layout.bit_depth
    turn, mirror, matrix = 0, False, source.display_matrix
    sar = source.sar if sar is None else sar
    if matrix is not None and (autorotate or ffmpeg is not None):
        upright = upright_transform(matrix)
        if upright is None:
            raise OptionsError(f"{path}: the source's display matrix turns the picture by a"
                               " fraction of a right angle; only quarter turns can be applied"
                               " to the pixels (drop --autorotate and --ffmpeg to keep the"
                               " matrix)")
        mirror, turn = upright
        matrix = None
        if turn in (90, 270):
            width, height, sar = height, width, 1 / sar
            _check_turnable(layout, turn)
    check_frame_size(codec, layout, width, height)
    hdr = source.hdr
    if hdr is not None and codec not in HDR_CODECS:
        log.warning("%s: %s cannot store the source's HDR10 metadata (%s); the output will"
                    " not have it: use --codec libx265", path, codec, hdr.to_text())
        hdr = None
    captions = source.captions and _carries_captions(path, codec, ffmpeg)
    options = codec_options(encode, interlaced=source.interlaced, hdr=hdr, captions=captions)
    # The rate frames follow one another at, not their average: it sets how long each frame
    # lasts (the last one's duration is written), which a gap or a variable rate must not
    # stretch.
    rate = source.base_rate or source.average_rate or Fraction(25)
    if ffmpeg is None:
        unknown = unknown_encoder_options(codec, options)
        if unknown:
            raise OptionsError(f"{codec} has no option {', '.join(map(repr, unknown))}"
                               f" (see `ffmpeg -h encoder={codec}`)")
        time_base, rate = _encoder_timing(path, muxer, codec, width, height, codec_pix_fmt,
                                          source.time_base, rate, options,
                                          framed=counts_frames(muxer, written_codec))
        if sar != 1 and not stores_sample_aspect(muxer, codec, codec_pix_fmt,
                                                 tuple(options.items())):
            log.warning("%s: %s in %s, written by the bundled FFmpeg, cannot store the pixel"
                        " aspect ratio %s:%s, so players will show square pixels; use"
                        " --ffmpeg, or a codec that stores it (libx264, libx265)", path, codec,
                        muxer, sar.numerator, sar.denominator)
    else:
        # The container's codec list is the same in every FFmpeg: ask it with the bundled
        # encoder of the same codec, then let the system ffmpeg try the rest itself.
        time_base, rate = _ffmpeg_timing(path, muxer, written_codec, width, height,
                                         codec_pix_fmt, source.time_base, rate)
        trial_encode(ffmpeg, encoder=codec, muxer=muxer, width=width, height=height,
                     pix_fmt=codec_pix_fmt, rate=rate, options=tuple(options.items()))
        restart = first_restart(container)
        if restart is not None:
            # ffmpeg reads the source's other streams itself, and with -copyts (the video's
            # own times kept) it leaves them as they are.
            raise OptionsError(
                f"{source.path}: its time restarts at {restart[1]:.3f} s where"
                f" {restart[0]:.3f} s was due (recordings joined into one file?); --ffmpeg"
                " would copy its other streams out of place: drop --ffmpeg, and vidsr moves every"
                " part to follow on")
        hidden = None if keeps_lead_in(muxer) else hidden_lead_in(container,
                                                                  source.stream_index)
        if hidden is not None:
            # ffmpeg copies the packets an edit list hides, and the output has no edit list.
            raise OptionsError(
                f"{source.path}: stream #{hidden} starts before the edit list (an MP4 cut"
                f" with -c copy); --ffmpeg would copy what was cut off into the {path.suffix}"
                " file: drop --ffmpeg, or write .mp4 or .mov")
    video = container.streams[source.stream_index]
    start_pts = stream_start(container, video)
    if start_pts and video.time_base and video.time_base != source.time_base:
        # Deinterlaced frames count in half the stream's time base: the same instant.
        start_pts = round(start_pts * video.time_base / source.time_base)
    if source.interlaced:
        log.warning("%s: the video is interlaced (%s field first); its fields are upscaled"
                    " together and will be mixed: deinterlace it first for a clean result",
                    source.path, "top" if source.field_order in ("tt", "tb") else "bottom")
    return OutputPlan(
        path=path,
        container=muxer,
        width=width,
        height=height,
        layout=layout,
        codec_pix_fmt=codec_pix_fmt,
        # Written on the stream, guessed or not: the output is always tagged.
        colour=replace(colour_for_layout(source.colour, layout, height), tagged=True),
        sar=sar,
        rate=rate,
        source_time_base=source.time_base,
        time_base=time_base,
        frame_duration=max(1, round(1 / (rate * time_base))),
        start_pts=start_pts,
        start_s=float(start_pts * source.time_base),
        display_matrix=matrix,
        turn=turn,
        mirror=mirror,
        timecode=source.timecode,
        field_order=source.field_order,
        hdr=hdr,
        captions=captions,
        alpha_depth=alpha_depth,
        encode=encode,
        codec_options=tuple(options.items()),
        sink="pyav" if ffmpeg is None else "ffmpeg",
        ffmpeg=ffmpeg,
        streams=plan_stream_copies(container, source.stream_index, muxer),
    )


def _alpha_pix_fmt(layout: PlaneLayout, asked: str | None, formats: list[str]) -> str | None:
    """The encoder's pixel format that holds ``layout``'s planes and an alpha plane (the
    one asked for, if it has alpha); None when it has none."""
    planar = alpha_format(layout)
    if asked is not None or planar is None:
        return asked if asked is not None and has_alpha(asked) and planar else None
    if not formats:  # a system encoder that lists nothing: the planar one or nothing
        return None
    fits = [f for f in formats if has_alpha(f) and source_format(f).layout == layout]
    return planar if planar in fits else (fits[0] if fits else None)


def _carries_captions(path: Path, codec: str, ffmpeg: str | None) -> bool:
    """Whether the output can carry the source's closed captions; a warning when not."""
    if ffmpeg is not None:
        problem = "--ffmpeg's raw-video input cannot carry them"
    elif codec not in CAPTION_CODECS:
        problem = f"{codec} cannot store them"
    else:
        return True
    log.warning("%s: the source's closed captions (ATSC A53) will be lost: %s; use --codec"
                " libx264 or libx265, without --ffmpeg", path, problem)
    return False


# How a display matrix is undone in pixels: the signs of its rotation part (m0, m1, m3, m4)
# -> (mirror left to right first, then turn this many degrees clockwise). The eight ways a
# picture can be turned and mirrored, each checked against ffmpeg's own autorotation.
_UPRIGHT = {
    (1, 0, 0, 1): (False, 0), (-1, 0, 0, 1): (True, 0),
    (1, 0, 0, -1): (True, 180), (-1, 0, 0, -1): (False, 180),
    (0, -1, 1, 0): (False, 270), (0, 1, -1, 0): (False, 90),
    (0, -1, -1, 0): (True, 90), (0, 1, 1, 0): (True, 270),
}


def upright_transform(matrix: tuple[int, ...]) -> tuple[bool, int] | None:
    """(mirror first, then turn clockwise by degrees) that shows ``matrix``'s picture
    upright; None for a turn that is not a quarter turn."""
    def sign(value: int) -> int:
        return (value > 0) - (value < 0)

    return _UPRIGHT.get((sign(matrix[0]), sign(matrix[1]), sign(matrix[3]), sign(matrix[4])))


def _check_turnable(layout: PlaneLayout, turn: int) -> None:
    if layout.log2_chroma_w != layout.log2_chroma_h:
        raise OptionsError(
            f"turning {layout.pix_fmt} pictures by {turn} degrees would swap its chroma"
            " subsampling; add --pix-fmt yuv420p or yuv444p")


def counts_frames(muxer: str, codec: str) -> bool:
    """Whether a ``codec`` stream in a ``muxer`` file counts in frames, so that its time base
    must be one tick a frame: where the muxer keeps no timestamps (raw .h264, MXF: the
    bitstream's VUI or the edit rate is all the timing a reader gets), where FFmpeg does not
    mark it for variable frame rates (AVI's slots, the rate in a y4m or Ogg header: ffmpeg
    itself writes these at a constant rate), and for codecs that count frames themselves."""
    flags = av.ContainerFormat(muxer, "w").flags
    return (bool(flags & _AVFMT_NOTIMESTAMPS) or not flags & _AVFMT_VARIABLE_FPS
            or codec in _FRAME_COUNTING_CODECS)


def check_container_holds(path: Path, muxer: str, codec: str) -> None:
    """Refuse a ``codec`` (the codec written, e.g. h264) that a ``muxer`` file would hold
    unreadably, where FFmpeg's muxer does not refuse it itself (see ``_MUXER_VIDEO_CODECS``);
    the muxers' own codec lists are asked when the encoder is opened (:func:`_open_refusal`)."""
    holds = _MUXER_VIDEO_CODECS.get(muxer)
    if holds is not None and codec not in holds:
        raise ContainerRefusal(f"{path}: {muxer} files cannot hold {codec} video (it holds"
                               f" {', '.join(sorted(holds))}); choose another --codec or"
                               " output extension")


def _encoder_timing(
    path: Path, muxer: str, codec: str, width: int, height: int, pix_fmt: str,
    time_base: Fraction, rate: Fraction, options: dict[str, str], *, framed: bool,
) -> tuple[Fraction, Fraction]:
    """The time base and frame rate ``codec`` opens with in ``muxer``: the source's time base
    where it takes it (every pts kept exactly), else one frame per tick at the nearest rate
    the codec can store (MPEG-1/2, H.263, DV count in frames). ``framed``: the output counts
    in frames (:func:`counts_frames`), so only one tick a frame is tried."""
    if not framed and _open_refusal(path, muxer, codec, width, height, pix_fmt, time_base,
                                    rate, options) is None:
        return time_base, rate
    rates = av.Codec(codec, "w").frame_rates
    framed_rate = min(rates, key=lambda r: abs(r - rate)) if rates else rate
    refusal = _open_refusal(path, muxer, codec, width, height, pix_fmt, 1 / framed_rate,
                            framed_rate, options)
    if refusal is None:
        if framed_rate != rate:
            log.warning("%s: %s cannot store %.3f fps; writing %.3f fps", path, codec,
                        float(rate), float(framed_rate))
        return 1 / framed_rate, framed_rate
    if refusal.by_muxer:
        raise ContainerRefusal(f"{path}: {muxer} files cannot take {codec} video:"
                               f" {refusal.reason}; choose another --codec or output"
                               " extension")
    raise OptionsError(f"{path}: cannot encode {width}x{height} {pix_fmt} with {codec} in"
                       f" {muxer}: {refusal.reason}")


def _ffmpeg_timing(path: Path, muxer: str, codec: str, width: int, height: int, pix_fmt: str,
                   time_base: Fraction, rate: Fraction) -> tuple[Fraction, Fraction]:
    """What :func:`_encoder_timing` finds for the bundled encoder of ``codec``, if there is
    one (for the container check and the time base); else the source's time base, or one
    tick a frame at the source's rate where the output counts in frames."""
    framed = counts_frames(muxer, codec)
    unasked = (1 / rate, rate) if framed else (time_base, rate)
    try:
        bundled = av.Codec(codec, "w").name
    except (ValueError, av.FFmpegError):
        return unasked
    formats = encoder_formats(bundled)
    if formats and pix_fmt not in formats:
        pix_fmt = nearest_format(source_format(pix_fmt).layout, formats)
    try:
        return _encoder_timing(path, muxer, bundled, width, height, pix_fmt, time_base,
                               rate, {}, framed=framed)
    except ContainerRefusal:
        raise
    except OptionsError:  # the system encoder may well open where the bundled one does not
        return unasked


class ContainerRefusal(OptionsError):
    """The container cannot hold the codec at all."""


@dataclass(frozen=True)
class _Refusal:
    reason: str  # FFmpeg's words
    by_muxer: bool  # the encoder opened; the container refused the stream in its header


def _open_refusal(path: Path, muxer: str, codec: str, width: int, height: int, pix_fmt: str,
                  time_base: Fraction, rate: Fraction, options: dict[str, str]) -> _Refusal | None:
    """Why ``codec`` will not open for these frames in ``path``, a ``muxer`` file, or None."""
    with ffmpeg_reasons():
        scratch = av.open(io.BytesIO(), "w", format=muxer)
        try:
            try:
                stream = scratch.add_stream(codec, rate=rate)
            except ValueError as exc:  # the muxer's codec list (avformat_query_codec)
                raise ContainerRefusal(f"{path}: {muxer} files cannot hold {codec} video"
                                       f" ({exc}); choose another --codec or output"
                                       " extension") from exc
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            stream.codec_context.time_base = time_base
            stream.time_base = time_base
            stream.codec_context.options = dict(options)
            try:
                stream.codec_context.open()
            except av.FFmpegError as exc:
                return _Refusal(reason(exc), by_muxer=False)
            try:
                scratch.start_encoding()
            except av.FFmpegError as exc:
                return _Refusal(reason(exc), by_muxer=True)
        finally:
            _discard(scratch)
    return None


def _discard(scratch: av.container.OutputContainer) -> None:
    """Close a scratch output. No frame was written to it: what the muxer says of an empty
    file (MXF refuses to end one) is no reason to refuse the output."""
    try:
        scratch.close()
    except av.FFmpegError as exc:
        log.debug("closing a scratch %s output: %s", scratch.format.name, exc)


@functools.cache
def stores_sample_aspect(muxer: str, codec: str, pix_fmt: str,
                         options: tuple[tuple[str, str], ...]) -> bool:
    """Whether a ``codec`` stream that PyAV writes into a ``muxer`` file keeps its SAR.

    x264 and x265 store it in the bitstream; VP9, AV1 and FFV1 have nowhere to put it but
    the container, and PyAV cannot set the stream field Matroska's muxer reads. Found by
    writing one small frame and reading it back (milliseconds), only for non-square pixels.
    """
    sar = Fraction(16, 11)
    buffer = io.BytesIO()
    try:
        with av.open(buffer, "w", format=muxer) as scratch:
            stream = scratch.add_stream(codec, rate=25)
            stream.width, stream.height, stream.pix_fmt = 64, 64, pix_fmt
            stream.codec_context.sample_aspect_ratio = sar
            stream.codec_context.options = dict(options)
            frame = av.VideoFrame(64, 64, pix_fmt)
            frame.pts = 0
            scratch.mux(stream.encode(frame))
            scratch.mux(stream.encode())
        buffer.seek(0)
        with av.open(buffer, "r", format=muxer) as written:
            stream = written.streams.video[0]
            next(written.decode(stream), None)
            return sar in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio)
    except (av.FFmpegError, ValueError):  # cannot tell: say nothing rather than guess
        return True


# Encoders that need whole chroma samples: odd sizes are refused in subsampled formats.
_EVEN_SIZE_CODECS = ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "h264_nvenc", "hevc_nvenc",
                     "av1_nvenc", "prores_ks", "mpeg2video", "mpeg4")


def check_frame_size(codec: str, layout: PlaneLayout, width: int, height: int) -> None:
    """Refuse, before any work, a frame size the encoder cannot take in this layout."""
    odd_w = layout.log2_chroma_w and width % 2
    odd_h = layout.log2_chroma_h and height % 2
    if codec in _EVEN_SIZE_CODECS and (odd_w or odd_h):
        raise OptionsError(
            f"{codec} cannot encode {width}x{height} in {layout.pix_fmt}: chroma subsampling"
            " needs an even width and height; choose another --scale, --pix-fmt yuv444p,"
            " or --codec ffv1"
        )
