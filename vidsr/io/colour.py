"""Colour metadata of a video stream, and YUV <-> RGB on torch tensors.

The metadata half resolves what a stream says (or does not say) about its
colour into a :class:`ColourSpec`; the torch half converts planes of code
values to RGB and back with that spec, on whatever device the tensors are.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vidsr.io.frames import FrameBatch, PlaneLayout

log = logging.getLogger("vidsr")

MAX_CODE_8BIT = 255.0


@dataclass(frozen=True)
class ColourSpec:
    """The four colour properties a stream carries, by FFmpeg's names.

    ``matrix``: "bt709", "bt470bg" (BT.601 625), "smpte170m" (BT.601 525),
    "bt2020nc", "smpte240m", "fcc" ... ; ``full_range``: False for limited
    (studio swing, 16-235) and True for full (0-255); ``primaries`` and
    ``transfer`` are only carried through, never used for conversion.
    ``tagged`` says whether the matrix came from the stream or was guessed.
    """

    matrix: str
    full_range: bool
    primaries: str
    transfer: str
    tagged: bool = True


@dataclass(frozen=True)
class HdrMetadata:
    """HDR10 static metadata: the mastering display (SMPTE ST 2086) and the content light
    level, in the units HEVC's SEI and x265 count in.

    ``display``: (Gx, Gy, Bx, By, Rx, Ry, WPx, WPy) chromaticities in 1/50000, then
    (max, min) luminance in 1/10000 cd/m2; ``light``: (MaxCLL, MaxFALL) in cd/m2.
    """

    display: tuple[int, ...] | None = None
    light: tuple[int, int] | None = None

    def x265_params(self) -> list[str]:
        """x265's ``master-display`` and ``max-cll`` parameters for this metadata."""
        params = []
        if self.display is not None:
            gx, gy, bx, by, rx, ry, wx, wy, high, low = self.display
            params.append(f"master-display=G({gx},{gy})B({bx},{by})R({rx},{ry})"
                          f"WP({wx},{wy})L({high},{low})")
        if self.light is not None:
            params.append(f"max-cll={self.light[0]},{self.light[1]}")
        return params

    def to_text(self) -> str:
        parts = []
        if self.display is not None:
            parts.append(f"mastering display {self.display[9] / 10000:g}-"
                         f"{self.display[8] / 10000:g} cd/m2")
        if self.light is not None:
            parts.append(f"MaxCLL {self.light[0]}, MaxFALL {self.light[1]} cd/m2")
        return ", ".join(parts)


def hdr_metadata(mastering: bytes | None, light: bytes | None) -> HdrMetadata | None:
    """HdrMetadata from FFmpeg's AVMasteringDisplayMetadata and AVContentLightMetadata
    (frame side data as bytes); None when neither says anything."""
    display = None
    if mastering is not None and len(mastering) >= 88:
        # 3 primaries (R, G, B) and the white point as (x, y) rationals, then min and max
        # luminance as rationals, then has_primaries and has_luminance.
        values = struct.unpack("<22i", mastering[:88])
        ratios = [values[i] / values[i + 1] if values[i + 1] else 0.0 for i in range(0, 20, 2)]
        (rx, ry, gx, gy, bx, by, wx, wy, low, high), has_primaries, has_luminance = (
            ratios, values[20], values[21])
        if has_primaries and has_luminance:
            chroma = [round(v * 50000) for v in (gx, gy, bx, by, rx, ry, wx, wy)]
            display = (*chroma, round(high * 10000), round(low * 10000))
    level = None
    if light is not None and len(light) >= 8:
        max_cll, max_fall = struct.unpack("<2I", light[:8])
        level = (max_cll, max_fall) if max_cll or max_fall else None
    if display is None and level is None:
        return None
    return HdrMetadata(display, level)


# FFmpeg's enum values (AVColorSpace, AVColorPrimaries, AVColorTransferCharacteristic)
# by the names av_color_*_name() gives them; PyAV hands us the raw integers.
MATRIX_NAMES = {
    0: "gbr", 1: "bt709", 2: "unknown", 4: "fcc", 5: "bt470bg", 6: "smpte170m",
    7: "smpte240m", 8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 11: "smpte2085",
    12: "chroma-derived-nc", 13: "chroma-derived-c", 14: "ictcp",
}
PRIMARIES_NAMES = {
    1: "bt709", 2: "unknown", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
    8: "film", 9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213",
}
TRANSFER_NAMES = {
    1: "bt709", 2: "unknown", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
    8: "linear", 9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e",
    13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 17: "smpte428",
    18: "arib-std-b67",
}
RANGE_LIMITED, RANGE_FULL = 1, 2  # AVCOL_RANGE_MPEG, AVCOL_RANGE_JPEG

# (Kr, Kb) of each matrix we can convert with; Kg = 1 - Kr - Kb.
MATRIX_COEFFS: dict[str, tuple[float, float]] = {
    "bt709": (0.2126, 0.0722),
    "bt470bg": (0.299, 0.114),
    "smpte170m": (0.299, 0.114),
    "bt2020nc": (0.2627, 0.0593),
    "smpte240m": (0.212, 0.087),
    "fcc": (0.30, 0.11),
}

# When only the matrix is tagged, the primaries and transfer that go with it.
_COMPANIONS = {
    "bt709": ("bt709", "bt709"),
    "bt470bg": ("bt470bg", "smpte170m"),
    "smpte170m": ("smpte170m", "smpte170m"),
    "bt2020nc": ("bt2020", "bt709"),
    "smpte240m": ("smpte240m", "smpte240m"),
    "fcc": ("bt470m", "bt470m"),
    "gbr": ("bt709", "iec61966-2-1"),
}


def code_of(table: dict[int, str], name: str) -> int:
    """FFmpeg's integer for ``name`` in one of the tables above (2 = unspecified)."""
    for code, known in table.items():
        if known == name:
            return code
    return 2


@cache
def colour_codes(spec: ColourSpec) -> tuple[int, int, int, int]:
    """FFmpeg's integers for ``spec``: (matrix, range, primaries, transfer)."""
    return (code_of(MATRIX_NAMES, spec.matrix), RANGE_FULL if spec.full_range else RANGE_LIMITED,
            code_of(PRIMARIES_NAMES, spec.primaries), code_of(TRANSFER_NAMES, spec.transfer))


def tag_colour(target: Any, spec: ColourSpec) -> None:
    """Write ``spec`` on a codec context or a frame (both name the four fields alike)."""
    (target.colorspace, target.color_range, target.color_primaries,
     target.color_trc) = colour_codes(spec)


def guess_matrix(height: int, rate: Fraction | None) -> str:
    """The matrix players assume for an untagged stream of this size and rate."""
    if height >= 720:
        return "bt709"
    # 625-line systems run at 25/50 Hz; everything else SD is treated as 525-line.
    if rate is not None and round(float(rate)) in (25, 50):
        return "bt470bg"
    if rate is None and height in (288, 576):
        return "bt470bg"
    return "smpte170m"


def resolve_colour(
    *,
    matrix: int,
    color_range: int,
    primaries: int,
    transfer: int,
    family: str,
    height: int,
    rate: Fraction | None,
    jpeg_range: bool = False,
) -> ColourSpec:
    """Turn a stream's colour tags (FFmpeg integers) into a usable :class:`ColourSpec`.

    Untagged (or unconvertible) matrices fall back to what players assume:
    BT.601 for SD (625-line at 25/50 Hz, else 525-line) and BT.709 for HD.
    Range is limited unless tagged full, the format is yuvj*, or the planes are RGB.
    """
    if family == "rgb":
        # RGB planes need no matrix; their primaries/transfer still travel if tagged.
        prim = PRIMARIES_NAMES.get(primaries, "unknown")
        trc = TRANSFER_NAMES.get(transfer, "unknown")
        default_prim, default_trc = _COMPANIONS["gbr"]
        return ColourSpec(
            "gbr", True,
            prim if prim != "unknown" else default_prim,
            trc if trc != "unknown" else default_trc,
            tagged=True,
        )
    name = MATRIX_NAMES.get(matrix, "unknown")
    tagged = name in MATRIX_COEFFS
    if not tagged:
        if name not in ("unknown", "gbr"):
            log.warning("colour matrix %s is not supported; treating it as untagged", name)
        name = guess_matrix(height, rate)
    default_prim, default_trc = _COMPANIONS[name]
    prim = PRIMARIES_NAMES.get(primaries, "unknown")
    trc = TRANSFER_NAMES.get(transfer, "unknown")
    full = color_range == RANGE_FULL or (color_range != RANGE_LIMITED and jpeg_range)
    return ColourSpec(
        matrix=name,
        full_range=full,
        primaries=prim if prim != "unknown" else default_prim,
        transfer=trc if trc != "unknown" else default_trc,
        tagged=tagged,
    )


def colour_for_layout(spec: ColourSpec, layout: PlaneLayout, height: int) -> ColourSpec:
    """The spec to write planes of ``layout`` with, starting from the source's ``spec``.

    Same family: the source's spec unchanged. RGB source into YUV output: a
    limited-range matrix for the output size (BT.709 at HD). YUV into RGB: gbr.
    """
    if layout.family == "rgb":
        return replace(spec, matrix="gbr", full_range=True)
    if spec.matrix == "gbr":
        matrix = guess_matrix(height, None)
        return replace(spec, matrix=matrix, full_range=False)
    return spec


# ---------------------------------------------------------------- torch side


def _range_params(spec: ColourSpec, depth: int) -> tuple[float, float, float, float]:
    """(y_offset, y_scale, c_offset, c_scale) mapping code values to Y in [0,1], C in ±0.5."""
    if spec.full_range:
        peak = float((1 << depth) - 1)
        return 0.0, peak, float(1 << (depth - 1)), peak
    s = float(1 << (depth - 8))
    return 16.0 * s, 219.0 * s, 128.0 * s, 224.0 * s


def _coeffs(spec: ColourSpec) -> tuple[float, float, float]:
    try:
        kr, kb = MATRIX_COEFFS[spec.matrix]
    except KeyError:
        raise ValueError(f"no YUV<->RGB coefficients for matrix {spec.matrix!r}") from None
    return kr, 1.0 - kr - kb, kb


def upsample_chroma(c: torch.Tensor, layout: PlaneLayout, height: int, width: int) -> torch.Tensor:
    """Chroma plane(s) (N,h,w) to luma size, bilinear with centre-sited samples.

    Centre siting (MPEG-1/JPEG) is used for every source; H.264's left siting
    differs by a quarter chroma sample horizontally, which is below what an SR
    model can see after its own resampling.
    """
    if c.shape[-2:] == (height, width):
        return c
    full_h = c.shape[-2] << layout.log2_chroma_h
    full_w = c.shape[-1] << layout.log2_chroma_w
    up = F.interpolate(c.unsqueeze(1), size=(full_h, full_w), mode="bilinear",
                       align_corners=False)
    # Odd sizes: FFmpeg rounded the chroma size up, so the last chroma column covers half.
    return up[:, 0, :height, :width]


def downsample_chroma(c: torch.Tensor, layout: PlaneLayout) -> torch.Tensor:
    """Full-size chroma (N,H,W) to the layout's subsampling by area average."""
    fy, fx = 1 << layout.log2_chroma_h, 1 << layout.log2_chroma_w
    if fy == 1 and fx == 1:
        return c
    h, w = c.shape[-2:]
    pad_h, pad_w = (-h) % fy, (-w) % fx
    x = c.unsqueeze(1)
    if pad_h or pad_w:
        # Replicate the edge so the rounded-up last chroma sample averages real pixels.
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return F.avg_pool2d(x, kernel_size=(fy, fx))[:, 0]


def planes_to_rgb(
    y: torch.Tensor,
    u: torch.Tensor | None,
    v: torch.Tensor | None,
    spec: ColourSpec,
    layout: PlaneLayout,
) -> torch.Tensor:
    """Code-value planes (float, (N,h,w)) to RGB (N,3,H,W) in [0,1], not clamped.

    For ``yuv`` layouts ``y, u, v`` are Y, Cb, Cr; for ``rgb`` layouts they are
    the G, B, R planes in gbrp order; for ``gray`` only ``y`` is used and
    replicated to three channels.
    """
    depth = layout.bit_depth
    if layout.family == "rgb":
        assert u is not None and v is not None
        return torch.stack((v, y, u), dim=1) / float((1 << depth) - 1)
    y_off, y_scale, c_off, c_scale = _range_params(spec, depth)
    luma = (y - y_off) / y_scale
    if layout.family == "gray":
        return luma.unsqueeze(1).expand(-1, 3, -1, -1)
    assert u is not None and v is not None
    height, width = y.shape[-2:]
    cb = (upsample_chroma(u, layout, height, width) - c_off) / c_scale
    cr = (upsample_chroma(v, layout, height, width) - c_off) / c_scale
    kr, kg, kb = _coeffs(spec)
    r = luma + 2.0 * (1.0 - kr) * cr
    b = luma + 2.0 * (1.0 - kb) * cb
    g = (luma - kr * r - kb * b) / kg
    return torch.stack((r, g, b), dim=1)


def round_half_up(values: torch.Tensor) -> torch.Tensor:
    """Round to whole codes in 0..255 as MATLAB's uint8 conversion does (halves go up)."""
    return torch.floor(values + 0.5).clamp(0, MAX_CODE_8BIT)


def batch_rgb(batch: FrameBatch, colour: ColourSpec) -> torch.Tensor:
    """A batch of decoded planes as (N, 3, H, W) uint8 RGB, converted with the stream's own
    matrix and range (the same conversion the engine makes), rounded as MATLAB does."""
    planes = [torch.from_numpy(p.astype(np.float32)) for p in batch.planes]
    y, u, v = (planes + [None, None])[:3]
    rgb = planes_to_rgb(y, u, v, colour, batch.layout).to(torch.float64)
    return round_half_up(rgb * MAX_CODE_8BIT).to(torch.uint8)


def rgb_to_planes(rgb: torch.Tensor, spec: ColourSpec, layout: PlaneLayout) -> list[torch.Tensor]:
    """The inverse of :func:`planes_to_rgb`: (N,3,H,W) RGB to float code-value planes.

    Chroma is area-averaged down to the layout's subsampling. Values are not
    rounded or clamped; the caller rounds and clamps to 0..max_code.
    """
    depth = layout.bit_depth
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    if layout.family == "rgb":
        peak = float((1 << depth) - 1)
        return [g * peak, b * peak, r * peak]
    y_off, y_scale, c_off, c_scale = _range_params(spec, depth)
    kr, kg, kb = _coeffs(spec)
    luma = kr * r + kg * g + kb * b
    y = luma * y_scale + y_off
    if layout.family == "gray":
        return [y]
    cb = (b - luma) / (2.0 * (1.0 - kb))
    cr = (r - luma) / (2.0 * (1.0 - kr))
    u = downsample_chroma(cb, layout) * c_scale + c_off
    v = downsample_chroma(cr, layout) * c_scale + c_off
    return [y, u, v]


def luma_to_model(y: torch.Tensor, spec: ColourSpec, layout: PlaneLayout) -> torch.Tensor:
    """Y code values to the "BT.601 studio-swing luma / 255" that luma-trained models expect.

    Models trained on MATLAB's rgb2ycbcr Y see 16..235 divided by 255. A
    limited-range source already is that (scaled by its bit depth); a
    full-range one is squeezed into studio swing first. The source's own
    matrix is kept: Y is handed over as coded, not recomputed with BT.601.
    """
    if layout.family == "rgb":
        raise ValueError("luma models need a YUV or gray source, not RGB planes")
    depth = layout.bit_depth
    if spec.full_range:
        return (16.0 + 219.0 * y / float((1 << depth) - 1)) / 255.0
    return y / float((1 << (depth - 8)) * 255)


def model_to_luma(y: torch.Tensor, spec: ColourSpec, layout: PlaneLayout) -> torch.Tensor:
    """The inverse of :func:`luma_to_model`: model output back to Y code values (float)."""
    if layout.family == "rgb":
        raise ValueError("luma models need a YUV or gray source, not RGB planes")
    depth = layout.bit_depth
    if spec.full_range:
        return (y * 255.0 - 16.0) / 219.0 * float((1 << depth) - 1)
    return y * float((1 << (depth - 8)) * 255)
