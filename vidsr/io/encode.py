"""Encode frame batches and mux them, with the source's other streams copied alongside."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import av.container

from vidsr.errors import EncodeError, OptionsError, OutputError
from vidsr.io.colour import (
    MATRIX_NAMES,
    PRIMARIES_NAMES,
    RANGE_FULL,
    RANGE_LIMITED,
    TRANSFER_NAMES,
    ColourSpec,
    code_of,
    colour_for_layout,
)
from vidsr.io.frames import FrameBatch, PlaneLayout
from vidsr.io.passthrough import PassThrough
from vidsr.io.pixfmt import nearest_format, planes_to_frame, source_format
from vidsr.io.probe import VideoInfo

log = logging.getLogger("vidsr")

# x264-style preset names on the speed scales of encoders that number their presets.
_PRESET_ORDER = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                 "slower", "veryslow", "placebo")
_SVTAV1_PRESETS = dict(zip(_PRESET_ORDER, (12, 11, 10, 9, 8, 6, 5, 4, 2, 0), strict=True))
_VP9_CPU_USED = dict(zip(_PRESET_ORDER, (8, 7, 6, 5, 4, 3, 2, 1, 0, 0), strict=True))
_NVENC_PRESETS = dict(zip(_PRESET_ORDER, (1, 1, 2, 3, 4, 5, 6, 7, 7, 7), strict=True))


@dataclass(frozen=True)
class EncodeOptions:
    """How the video stream is encoded. ``encoder_opts`` go to the codec as-is."""

    codec: str = "libx264"
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    encoder_opts: tuple[tuple[str, str], ...] = ()
    threads: int = 0


def _encoder_formats(codec: str) -> list[str]:
    try:
        found = av.Codec(codec, "w")
    except (ValueError, av.FFmpegError) as exc:  # UnknownCodecError is a ValueError
        raise OptionsError(f"unknown video encoder {codec!r} (not in this FFmpeg build)") from exc
    if found.type != "video":
        raise OptionsError(f"{codec!r} is a {found.type} encoder, not a video one")
    return [f.name for f in (found.video_formats or [])]


def choose_output_layout(codec: str, source_layout: PlaneLayout,
                         pix_fmt: str | None = None) -> PlaneLayout:
    """The planar layout the engine should produce for ``codec``.

    By default the source's family, subsampling and depth (10-bit stays
    10-bit); when the encoder cannot take that, the nearest format it can, with
    a warning. An explicit ``pix_fmt`` the encoder cannot take is an OptionsError.
    """
    formats = _encoder_formats(codec)
    if pix_fmt is not None:
        if formats and pix_fmt not in formats:
            raise OptionsError(
                f"{codec} cannot encode pixel format {pix_fmt}; it takes: {', '.join(formats)}")
        try:
            return source_format(pix_fmt).layout
        except ValueError as exc:
            raise OptionsError(f"unknown pixel format {pix_fmt!r}") from exc
    if not formats or source_layout.pix_fmt in formats:
        return source_layout
    chosen = source_format(nearest_format(source_layout, formats)).layout
    if chosen != source_layout:
        log.warning("%s cannot encode %s; writing %s instead", codec, source_layout.pix_fmt,
                    chosen.pix_fmt)
    return chosen


def codec_options(options: EncodeOptions) -> dict[str, str]:
    """FFmpeg codec options for ``options``: quality and speed mapped per encoder."""
    codec, crf, preset = options.codec, options.crf, options.preset
    opts: dict[str, str] = {}
    if codec in ("libx264", "libx264rgb", "libx265"):
        if crf is not None:
            opts["crf"] = str(crf)
        if preset is not None:
            opts["preset"] = preset
    elif codec == "libsvtav1":
        if crf is not None:
            opts["crf"] = str(crf)
        if preset is not None:
            opts["preset"] = str(_numbered_preset(codec, preset, _SVTAV1_PRESETS))
    elif codec == "libvpx-vp9":
        if crf is not None:
            # Without b=0 libvpx treats crf as a cap on a default bitrate, not constant quality.
            opts["crf"] = str(crf)
            opts["b"] = "0"
        if preset is not None:
            opts["cpu-used"] = str(_numbered_preset(codec, preset, _VP9_CPU_USED))
    elif codec.endswith("_nvenc"):
        if crf is not None:
            opts["rc"] = "vbr"
            opts["cq"] = str(crf)
        if preset is not None:
            level = preset[1:] if preset.startswith("p") else preset
            opts["preset"] = f"p{_numbered_preset(codec, level, _NVENC_PRESETS)}"
    else:
        if crf is not None or preset is not None:
            log.debug("%s has no crf/preset; ignoring them (use --encoder-opt)", codec)
    opts.update(dict(options.encoder_opts))
    return opts


def _numbered_preset(codec: str, preset: str, names: dict[str, int]) -> int:
    if preset.isdigit():
        return int(preset)
    try:
        return names[preset]
    except KeyError:
        raise OptionsError(f"{codec}: unknown preset {preset!r}; use a number or one of "
                           f"{', '.join(_PRESET_ORDER)}") from None


class Encoder:
    """Write upscaled frames to ``path``, copying the source's other streams.

    Use as a context manager: leaving the block normally flushes and finishes
    the file; leaving it with an exception closes without finishing (the
    caller deletes the partial file). Every frame keeps its source pts.
    """

    def __init__(self, path: str | Path, source: VideoInfo, *, width: int, height: int,
                 layout: PlaneLayout, options: EncodeOptions,
                 container_format: str | None = None) -> None:
        self.path = Path(path)
        self.source = source
        self.layout = layout
        self.options = options
        self.colour: ColourSpec = colour_for_layout(source.colour, layout, height)
        self.frames_written = 0
        self._last_pts: int | None = None
        formats = _encoder_formats(options.codec)
        self._codec_pix_fmt = (options.pix_fmt or (
            layout.pix_fmt if not formats or layout.pix_fmt in formats
            else nearest_format(layout, formats)))
        try:
            self._output = av.open(str(self.path), mode="w", format=container_format)
        except (av.FFmpegError, ValueError) as exc:
            raise OutputError(f"{self.path}: cannot create the output file: {exc}") from exc
        self._passthrough: PassThrough | None = None
        self._closed = False
        try:
            self._stream = self._add_video(width, height)
            self._passthrough = PassThrough(source.path, self._output, source.stream_index)
            self._output.start_encoding()
        except BaseException as exc:
            self._abort()
            if isinstance(exc, av.FFmpegError):
                raise EncodeError(f"{self.path}: cannot start {options.codec}: "
                                  f"{exc.strerror}") from exc
            raise

    def _add_video(self, width: int, height: int) -> av.video.stream.VideoStream:
        source, options = self.source, self.options
        rate = source.average_rate or Fraction(25)
        stream = self._output.add_stream(options.codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = self._codec_pix_fmt
        ctx = stream.codec_context
        # Frames carry source pts, so the encoder counts in the source's time base.
        ctx.time_base = source.time_base
        stream.time_base = source.time_base
        ctx.framerate = rate
        ctx.sample_aspect_ratio = source.sar
        ctx.colorspace = code_of(MATRIX_NAMES, self.colour.matrix)
        ctx.color_primaries = code_of(PRIMARIES_NAMES, self.colour.primaries)
        ctx.color_trc = code_of(TRANSFER_NAMES, self.colour.transfer)
        ctx.color_range = RANGE_FULL if self.colour.full_range else RANGE_LIMITED
        ctx.thread_count = options.threads
        ctx.options = codec_options(options)
        log.debug("%s: encoding %dx%d %s with %s %s", self.path, width, height,
                  self._codec_pix_fmt, options.codec, ctx.options)
        return stream

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()

    def write(self, batch: FrameBatch) -> None:
        """Encode one batch (output layout and size; pts in the source time base)."""
        if batch.layout.pix_fmt != self.layout.pix_fmt:
            raise EncodeError(f"{self.path}: got {batch.layout.pix_fmt} planes, "
                              f"expected {self.layout.pix_fmt}")
        step = self.source.frame_duration
        for k in range(len(batch)):
            frame = planes_to_frame([p[k] for p in batch.planes], self.layout)
            pts = batch.pts[k]
            if pts is None:
                pts = 0 if self._last_pts is None else self._last_pts + (step or 1)
            frame.pts = pts
            frame.time_base = self.source.time_base
            if step is not None:
                frame.duration = step
            self._tag(frame)
            if self._codec_pix_fmt != self.layout.pix_fmt:
                frame = frame.reformat(format=self._codec_pix_fmt)
            self._mux_video(self._encode(frame))
            self._last_pts = pts
            self.frames_written += 1

    def _tag(self, frame: av.VideoFrame) -> None:
        ctx = self._stream.codec_context
        frame.colorspace = ctx.colorspace
        frame.color_range = ctx.color_range
        frame.color_primaries = ctx.color_primaries
        frame.color_trc = ctx.color_trc

    def _encode(self, frame: av.VideoFrame | None) -> list[av.Packet]:
        try:
            return self._stream.encode(frame)
        except av.FFmpegError as exc:
            raise EncodeError(f"{self.path}: {self.options.codec} failed at frame "
                              f"{self.frames_written}: {exc.strerror}") from exc

    def _mux_video(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            if self._passthrough is not None and packet.dts is not None:
                self._passthrough.mux_until(self._output, float(packet.dts * packet.time_base))
            try:
                self._output.mux(packet)
            except av.FFmpegError as exc:
                raise EncodeError(f"{self.path}: cannot write video packet: "
                                  f"{exc.strerror}") from exc

    def close(self) -> None:
        """Flush the encoder, copy the remaining pass-through packets, finish the file."""
        if self._closed:
            return
        try:
            self._mux_video(self._encode(None))
            if self._passthrough is not None:
                self._passthrough.finish(self._output)
            self._output.close()
        except av.FFmpegError as exc:
            self._abort()
            raise EncodeError(f"{self.path}: cannot finish the file: {exc.strerror}") from exc
        except BaseException:
            self._abort()
            raise
        self._closed = True
        if self._passthrough is not None:
            self._passthrough.close()

    def _abort(self) -> None:
        """Release everything without finishing the file (it will be deleted)."""
        if self._closed:
            return
        self._closed = True
        if self._passthrough is not None:
            self._passthrough.close()
        try:
            self._output.close()
        except av.FFmpegError as exc:
            # Already failing: the first error is the one the caller sees.
            log.debug("%s: closing the abandoned output: %s", self.path, exc)
