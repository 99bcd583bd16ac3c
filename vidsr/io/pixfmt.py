"""FFmpeg pixel formats <-> :class:`PlaneLayout`, and copies between frames and planes.

Every pixel format maps to a planar layout: the planar formats map to
themselves; the rest (packed RGB, semi-planar YUV, palettes, odd
subsamplings) map to the nearest planar format, and frames are converted
with swscale before their planes are copied out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import av
import numpy as np

from vidsr.io.frames import PlaneLayout

# (log2_chroma_w, log2_chroma_h) -> planar YUV base name we keep as-is.
_YUV_BASES = {(1, 1): "yuv420p", (1, 0): "yuv422p", (0, 0): "yuv444p"}
_DEPTHS = (8, 10, 12, 16)


@dataclass(frozen=True)
class SourceFormat:
    """What a pixel format becomes: the planar ``layout`` and how to get there."""

    pix_fmt: str
    layout: PlaneLayout
    needs_convert: bool  # frames go through swscale to layout.pix_fmt
    jpeg_range: bool  # a yuvj* format: full range implied by the name


def _depth_class(bits: int) -> int:
    for depth in _DEPTHS:
        if bits <= depth:
            return depth
    return 16


def planar_name(family: str, depth: int, log2_w: int = 0, log2_h: int = 0) -> str:
    """The FFmpeg name of the planar format for a family, depth and subsampling."""
    suffix = "" if depth == 8 else f"{depth}le"
    if family == "gray":
        return "gray" + suffix
    if family == "rgb":
        return "gbrp" + suffix
    return _YUV_BASES[(log2_w, log2_h)] + suffix


def _subsampling(fmt: av.VideoFormat) -> tuple[int, int]:
    # VideoFormat exposes chroma sizes, not the log2 shifts; 64 divides evenly by all of them.
    return (
        round(math.log2(64 / fmt.chroma_width(64))),
        round(math.log2(64 / fmt.chroma_height(64))),
    )


def source_format(pix_fmt: str) -> SourceFormat:
    """Map an FFmpeg pixel format to the planar layout the decoder will yield."""
    fmt = av.VideoFormat(pix_fmt)
    name = fmt.name
    jpeg = name.startswith("yuvj")
    if jpeg:
        name = "yuv" + name[4:]
    colour_comps = [c for c in fmt.components if not c.is_alpha]
    depth = _depth_class(max(c.bits for c in fmt.components))
    if fmt.is_rgb or fmt.has_palette:
        family, log2_w, log2_h = "rgb", 0, 0
    elif len(colour_comps) == 1:
        family, log2_w, log2_h = "gray", 0, 0
    else:
        family = "yuv"
        log2_w, log2_h = _subsampling(fmt)
        if (log2_w, log2_h) not in _YUV_BASES:
            log2_w, log2_h = 0, 0
    target = planar_name(family, depth, log2_w, log2_h)
    layout = PlaneLayout(family, depth, log2_w, log2_h, pix_fmt=target)
    return SourceFormat(pix_fmt=fmt.name, layout=layout, needs_convert=target != name,
                        jpeg_range=jpeg)


def nearest_format(layout: PlaneLayout, candidates: list[str]) -> str:
    """The candidate pixel format closest to ``layout`` (exact match first).

    Closeness: same family, then another colour family before gray (which would
    lose the colour), then same subsampling, then depth (more bits beat fewer; a
    palette or a packing with fewer bits a sample, such as rgb555, counts as fewer),
    then planar over packed/semi-planar.
    """
    def cost(name: str) -> tuple[int, int, int, int]:
        src = source_format(name)
        cand = src.layout
        if cand.family == layout.family:
            family = 0
        else:
            family = 2 if cand.family == "gray" else 1
        sub = abs(cand.log2_chroma_w - layout.log2_chroma_w) + abs(
            cand.log2_chroma_h - layout.log2_chroma_h)
        bits = _sample_bits(av.VideoFormat(name))
        if bits >= layout.bit_depth:
            depth = bits - layout.bit_depth
        else:
            depth = 100 + layout.bit_depth - bits
        return family, sub, depth, int(src.needs_convert or src.jpeg_range)

    usable = [c for c in candidates if not av.VideoFormat(c).is_bayer]
    if not usable:
        raise ValueError("no usable pixel format among the candidates")
    return min(usable, key=cost)


def has_alpha(pix_fmt: str) -> bool:
    """Whether ``pix_fmt`` has an alpha (transparency) component."""
    return any(c.is_alpha for c in av.VideoFormat(pix_fmt).components)


def alpha_format(layout: PlaneLayout) -> str | None:
    """The planar format with ``layout``'s planes and an alpha plane after them (yuva420p
    for yuv420p, gbrap for gbrp); None where FFmpeg has none (gray, some depths)."""
    if layout.family == "gray":
        return None
    old, new = ("yuv", "yuva") if layout.family == "yuv" else ("gbrp", "gbrap")
    name = layout.pix_fmt.replace(old, new, 1)
    try:
        av.VideoFormat(name)
    except ValueError:
        return None
    return name


def with_alpha(frame: av.VideoFrame, alpha: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    """``frame`` in ``pix_fmt`` (its planes then an alpha plane) with ``alpha`` as that
    plane ((height, width), in the format's depth)."""
    out = frame.reformat(format=pix_fmt)
    plane = out.planes[len(out.planes) - 1]
    stride = plane.line_size // alpha.dtype.itemsize
    height, width = alpha.shape
    view = np.frombuffer(plane, dtype=alpha.dtype, count=height * stride).reshape(height, stride)
    view[:, :width] = alpha
    return out


def resized_alpha(alpha: np.ndarray, width: int, height: int, depth: int,
                  out_depth: int) -> np.ndarray:
    """An alpha plane of ``depth`` bits resized to ``width`` x ``height`` and scaled to
    ``out_depth`` bits. Bilinear: a sharper kernel rings at the edges of a mask (halos)."""
    fmt = "gray" if alpha.dtype == np.uint8 else "gray16le"
    frame = av.VideoFrame.from_ndarray(alpha, format=fmt)
    if (frame.width, frame.height) != (width, height):
        frame = frame.reformat(width=width, height=height, interpolation="BILINEAR")
    plane = frame.to_ndarray().astype(np.float64)
    peak = (1 << out_depth) - 1
    codes = np.clip(np.round(plane * peak / ((1 << depth) - 1)), 0, peak)
    return codes.astype(np.uint8 if out_depth <= 8 else np.dtype("<u2"))


def _sample_bits(fmt: av.VideoFormat) -> int:
    """The bits each colour sample of ``fmt`` keeps (0 for a palette of 256 colours)."""
    if fmt.has_palette:
        return 0
    return min(c.bits for c in fmt.components if not c.is_alpha)


def copy_frame_planes(frame: av.VideoFrame, layout: PlaneLayout, out: list[np.ndarray],
                      index: int) -> None:
    """Copy ``frame``'s planes (already in ``layout.pix_fmt``, or in its
    :func:`alpha_format` when ``out`` has one more array, for the alpha plane) into
    ``out[p][index]``."""
    dtype = np.dtype("<u2") if layout.bit_depth > 8 else np.dtype(np.uint8)
    for p in range(len(out)):  # the layout's planes, then the alpha plane where asked
        plane = frame.planes[p]
        h, w = out[p].shape[1:]
        stride = plane.line_size // dtype.itemsize
        # Rows carry alignment padding past the visible width; view, then crop.
        view = np.frombuffer(plane, dtype=dtype, count=h * stride).reshape(h, stride)
        out[p][index] = view[:, :w]


def planes_to_frame(planes: list[np.ndarray], layout: PlaneLayout,
                    carrier: av.VideoFrame | None = None) -> av.VideoFrame:
    """A new VideoFrame in ``layout.pix_fmt`` holding one frame's planes ((h, w) each).
    ``carrier``: a frame whose side data (closed captions) the new frame takes."""
    height, width = planes[0].shape
    if carrier is None:
        frame = av.VideoFrame(width, height, layout.pix_fmt)
    else:
        # PyAV cannot attach side data to a frame; swscale copies it with the frame's
        # other properties, so the new frame is made from the carrier, then overwritten.
        frame = carrier.reformat(width=width, height=height, format=layout.pix_fmt)
    dtype = np.dtype("<u2") if layout.bit_depth > 8 else np.dtype(np.uint8)
    for p in range(layout.plane_count):
        plane = frame.planes[p]
        h, w = layout.plane_shape(p, width, height)
        if planes[p].shape != (h, w):
            raise ValueError(f"plane {p} is {planes[p].shape}, expected {(h, w)}")
        stride = plane.line_size // dtype.itemsize
        view = np.frombuffer(plane, dtype=dtype, count=h * stride).reshape(h, stride)
        view[:, :w] = planes[p]
    return frame
