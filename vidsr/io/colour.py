"""Colour metadata of a video stream, and YUV <-> RGB on torch tensors."""

from __future__ import annotations

from dataclasses import dataclass


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
