"""How the video stream is encoded: the options a user gives (:class:`EncodeOptions`) and
what they mean for each encoder (pixel formats, codec options, quality ranges).

These are decisions, made once while the output is planned (:mod:`vidsr.io.output_plan`); the
:class:`~vidsr.io.encode.Encoder` that writes the frames only reads their outcome.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import av

from vidsr.errors import OptionsError
from vidsr.io.colour import HdrMetadata
from vidsr.io.frames import PlaneLayout
from vidsr.io.pixfmt import nearest_format, source_format

log = logging.getLogger("vidsr")

# x264-style preset names on the speed scales of encoders that number their presets.
_PRESET_ORDER = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                 "slower", "veryslow", "placebo")
_SVTAV1_PRESETS = dict(zip(_PRESET_ORDER, (12, 11, 10, 9, 8, 6, 5, 4, 2, 0), strict=True))
_VP9_CPU_USED = dict(zip(_PRESET_ORDER, (8, 7, 6, 5, 4, 3, 2, 1, 0, 0), strict=True))
_NVENC_PRESETS = dict(zip(_PRESET_ORDER, (1, 1, 2, 3, 4, 5, 6, 7, 7, 7), strict=True))


@dataclass(frozen=True)
class EncodeOptions:
    """How the video stream is encoded. ``encoder_opts`` go to the codec as-is.
    ``codec`` None: the container's usual one (the output plan picks it)."""

    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    encoder_opts: tuple[tuple[str, str], ...] = ()
    threads: int = 0
    quiet: bool = False  # keep encoders that print to stderr themselves (x265) to errors


def encoder_formats(codec: str) -> list[str]:
    try:
        found = av.Codec(codec, "w")
    except (ValueError, av.FFmpegError) as exc:  # UnknownCodecError is a ValueError
        raise OptionsError(f"unknown video encoder {codec!r} (not in this FFmpeg build)") from exc
    if found.type != "video":
        raise OptionsError(f"{codec!r} is an encoder for {found.type} streams, not video ones")
    return [f.name for f in (found.video_formats or [])]


def choose_output_layout(codec: str, source_layout: PlaneLayout,
                         pix_fmt: str | None = None,
                         formats: list[str] | None = None) -> PlaneLayout:
    """The planar layout the engine should produce for ``codec``.

    By default the source's family, subsampling and depth (10-bit stays
    10-bit); when the encoder cannot take that, the nearest format it can, with
    a warning. An explicit ``pix_fmt`` the encoder cannot take is an OptionsError.
    ``formats``: the encoder's pixel formats where they come from elsewhere (a
    system ffmpeg); by default the bundled FFmpeg's.
    """
    formats = encoder_formats(codec) if formats is None else formats
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


def codec_options(options: EncodeOptions, *, interlaced: bool = False,
                  hdr: HdrMetadata | None = None, captions: bool = False) -> dict[str, str]:
    """FFmpeg codec options for ``options``: quality and speed mapped per encoder.

    ``interlaced``: the source's fields stay marked as fields in the bitstream (by the
    encoders that can code them), so no reader takes the output for progressive.
    ``hdr``: HDR10 static metadata written into the bitstream (x265 only, see
    :data:`HDR_CODECS`). ``captions``: the frames' closed captions are written (see
    :data:`CAPTION_CODECS`).
    """
    codec, crf, preset = options.codec, options.crf, options.preset
    if crf is not None:
        check_crf(codec, crf)
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
    elif codec in _QSCALE_CODECS:
        # Constant quantiser, as `-q:v N`: their default is a low fixed bitrate.
        opts.update(constant_quantiser(crf if crf is not None else _DEFAULT_QSCALE))
    else:
        if crf is not None or preset is not None:
            log.debug("%s has no crf/preset; ignoring them (use --encoder-opt)", codec)
    if codec == "libvpx-vp9":
        # Its defaults are a low fixed bitrate at its slowest speed (2 s a 720p frame).
        if crf is None:
            opts.update(crf=str(_DEFAULT_VP9_CRF), b="0")
        if preset is None:
            opts.update({"cpu-used": str(_DEFAULT_VP9_CPU_USED), "row-mt": "1"})
    if interlaced and codec in _FIELD_CODECS:
        flags = [f for f in opts.get("flags", "").split("+") if f]
        opts["flags"] = "+" + "+".join([*flags, "ildct", "ilme"])
    if captions and codec in CAPTION_CODECS:
        opts["a53cc"] = "1"  # x265's is off by default
    asked = dict(options.encoder_opts)
    if codec == "libx265":
        params = ["log-level=error"] if options.quiet else []  # x265 prints its banner itself
        params += hdr.x265_params() if hdr is not None else []
        if params:
            # Merged with the user's own x265-params, which come last and so win.
            given = asked.pop("x265-params", "")
            opts["x265-params"] = ":".join([*params, *([given] if given else [])])
    opts.update(asked)
    return opts


# Encoders that vidsr can hand HDR10 static metadata (mastering display, content light).
HDR_CODECS = frozenset({"libx265"})
# Encoders that write the closed captions (ATSC A53) a frame carries into the bitstream.
CAPTION_CODECS = frozenset({"libx264", "libx265", "mpeg2video", "h264_nvenc", "hevc_nvenc"})


# Encoders without crf whose quality is a quantiser (1 best .. 31), and what it defaults to.
_QSCALE_CODECS = frozenset({"mpeg4", "mpeg2video", "mpeg1video", "msmpeg4", "msmpeg4v2",
                            "h263", "h263p", "flv", "mjpeg"})
_DEFAULT_QSCALE = 3
_FF_QP2LAMBDA = 118
_DEFAULT_VP9_CRF = 31
_DEFAULT_VP9_CPU_USED = 4
# Encoders that code interlaced pictures as fields when asked with +ildct.
_FIELD_CODECS = frozenset({"libx264", "mpeg2video", "mpeg4", "mpeg1video"})


# The --crf each encoder takes, best to worst (the MPEG quantiser for _QSCALE_CODECS); they
# clamp a value outside it without a word.
_CRF_RANGES = {"libx264": (0, 51), "libx264rgb": (0, 51), "libx265": (0, 51),
               "libsvtav1": (1, 63), "libvpx-vp9": (0, 63),
               **dict.fromkeys(_QSCALE_CODECS, (1, 31))}


def check_crf(codec: str | None, crf: int) -> None:
    """Refuse a ``crf`` outside what ``codec`` takes (see ``_CRF_RANGES``)."""
    best, worst = _CRF_RANGES.get(codec or "", (crf, crf))
    if not best <= crf <= worst:
        raise OptionsError(f"--crf {crf} is out of range for {codec}: it takes {best} (best)"
                           f" to {worst}")


def constant_quantiser(q: int) -> dict[str, str]:
    """Codec options that code every frame at quantiser ``q`` (1 best .. 31), as ``-q:v q``.

    ``+qscale`` with ``global_quality`` alone is not enough through PyAV: the MPEG
    encoders take the quantiser from each frame's ``quality``, which the ffmpeg tool sets
    and PyAV leaves at 0, so every ``q`` came out at the best one; pinning qmin and qmax
    holds the quantiser at ``q``.
    """
    q = min(max(q, 1), 31)
    return {"flags": "+qscale", "global_quality": str(q * _FF_QP2LAMBDA),
            "qmin": str(q), "qmax": str(q)}


def unknown_encoder_options(codec: str, options: dict[str, str]) -> list[str]:
    """The keys of ``options`` that ``codec`` (bundled FFmpeg) would silently ignore."""
    known = av.CodecContext.create(codec, "w").supported_options
    names = {o.name for o in (*known.generic, *known.private)}
    return [key for key in options if key not in names]


def _numbered_preset(codec: str, preset: str, names: dict[str, int]) -> int:
    if preset.isdigit():
        return int(preset)
    try:
        return names[preset]
    except KeyError:
        raise OptionsError(f"{codec}: unknown preset {preset!r}; use a number or one of "
                           f"{', '.join(_PRESET_ORDER)}") from None
