"""What the output video will be, decided once before any frame is decoded.

:class:`OutputPlan` holds every property of the written stream that a sink
needs: size, planes, the pixel format handed to the encoder, colour tags,
aspect ratio, timing, codec settings, the container, and which of the source's
other streams are copied. Both sinks (PyAV and a system ffmpeg) read it and
derive nothing themselves, so they write the same stream metadata.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import av.container

from vidsr.errors import OptionsError
from vidsr.io.colour import ColourSpec, colour_for_layout
from vidsr.io.encode import EncodeOptions, choose_output_layout, codec_options, encoder_formats
from vidsr.io.frames import PlaneLayout
from vidsr.io.passthrough import StreamCopy, plan_stream_copies
from vidsr.io.pixfmt import nearest_format
from vidsr.io.probe import VideoInfo

log = logging.getLogger("vidsr")


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
    rate: Fraction  # nominal frame rate (the encoder's framerate field)
    time_base: Fraction  # every pts the sink writes counts in this
    frame_duration: int  # one nominal frame in ``time_base`` units
    start_pts: int  # subtracted from every source pts, so the output starts where players expect
    encode: EncodeOptions
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
            return probe.format.name
    except (av.FFmpegError, ValueError):
        raise OptionsError(f"{path}: no container format for the extension "
                           f"{path.suffix or '(none)'!r}; use e.g. .mkv, .mp4 or .mov") from None


def plan_output(
    source: VideoInfo, container: av.container.InputContainer, path: Path, *,
    width: int, height: int, encode: EncodeOptions, ffmpeg: str | None = None,
) -> OutputPlan:
    """Decide the output stream of an upscale of ``source`` (open as ``container``) into
    ``path`` at ``width`` x ``height``."""
    muxer = muxer_for(path)
    layout = choose_output_layout(encode.codec, source.layout, encode.pix_fmt)
    formats = encoder_formats(encode.codec)
    codec_pix_fmt = encode.pix_fmt or (
        layout.pix_fmt if not formats or layout.pix_fmt in formats
        else nearest_format(layout, formats))
    check_frame_size(encode.codec, layout, width, height)
    rate = source.average_rate or Fraction(25)
    return OutputPlan(
        path=path,
        container=muxer,
        width=width,
        height=height,
        layout=layout,
        codec_pix_fmt=codec_pix_fmt,
        # Written on the stream, guessed or not: the output is always tagged.
        colour=replace(colour_for_layout(source.colour, layout, height), tagged=True),
        sar=source.sar,
        rate=rate,
        # Frames keep their source pts, so the output counts in the source's time base.
        time_base=source.time_base,
        frame_duration=source.frame_duration or max(1, round(1 / (rate * source.time_base))),
        start_pts=0,
        encode=encode,
        codec_options=tuple(codec_options(encode).items()),
        sink="pyav" if ffmpeg is None else "ffmpeg",
        ffmpeg=ffmpeg,
        streams=plan_stream_copies(container, source.stream_index, muxer),
    )


# Encoders that need whole chroma samples: odd sizes are refused in subsampled formats.
_EVEN_SIZE_CODECS = ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "h264_nvenc", "hevc_nvenc",
                     "av1_nvenc", "prores_ks")


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
