"""What travels between the decoder, the engine and the encoder.

Frames move as batches of raw planes (numpy, one array per plane, the batch
on the first axis), so the engine can copy each plane to the device in one
transfer and do colour conversion there.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import av

PlaneFamily = Literal["yuv", "gray", "rgb"]


@dataclass(frozen=True)
class PlaneLayout:
    """How a frame's pixels are laid out in planes.

    ``rgb`` planes are stored in FFmpeg's gbrp order (G, B, R).
    """

    family: PlaneFamily
    bit_depth: int  # 8, 10, 12 or 16; samples are uint8 when 8, else uint16
    log2_chroma_w: int = 0
    log2_chroma_h: int = 0
    pix_fmt: str = "yuv420p"  # the FFmpeg pixel format these planes are

    @property
    def plane_count(self) -> int:
        return 1 if self.family == "gray" else 3

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.bit_depth <= 8 else np.uint16)

    @property
    def max_code(self) -> int:
        return (1 << self.bit_depth) - 1

    def plane_shape(self, index: int, width: int, height: int) -> tuple[int, int]:
        """(height, width) of plane ``index`` for a frame of ``width`` x ``height``."""
        if self.family != "yuv" or index == 0:
            return height, width
        # FFmpeg rounds chroma sizes up (AV_CEIL_RSHIFT) so odd sizes keep their last column.
        return (-(-height >> self.log2_chroma_h), -(-width >> self.log2_chroma_w))


@dataclass(frozen=True)
class FrameWindows:
    """Which of a batch's frames each output frame is made from (models that see a window).

    The batch's planes then hold every frame its windows need, each once: the output
    frames' own and up to ``2r`` neighbours. ``index[k]`` lists, in display order, the
    planes' frames output frame ``k`` sees, its own at the centre; ``frames`` is the
    stream index (from 0) of each frame the planes hold, in the run ``stream`` names.
    """

    index: np.ndarray  # (N, 2r + 1) ints, into the planes' first axis
    frames: np.ndarray  # (M,) ints, M >= N
    # Which run of the source the frames come from: with ``frames``, a frame's name for
    # the engine's converted frames (vidsr.engine.converted_frames).
    stream: Hashable = None

    @property
    def size(self) -> int:
        """Frames in each window: 2r + 1."""
        return int(self.index.shape[1])

    @property
    def centres(self) -> np.ndarray:
        """(N,) the planes' frame of each output frame."""
        return self.index[:, self.size // 2]


@dataclass
class FrameBatch:
    """A run of consecutive frames as planes.

    ``planes[i]`` has shape (N, h_i, w_i); ``pts[k]`` is frame k's timestamp in
    ``time_base`` units (the decoder gives every frame one). ``side_data``: for each
    frame, a tiny frame carrying the source frame's side data (closed captions) for the
    encoder, or None; None for the whole batch when no frame has any. ``alpha``: the
    source frames' alpha planes (N, h, w) at the source's size and depth, where the
    output keeps them. ``windows``: for a model that sees several frames, which of the
    planes' frames each output frame is made from (see :class:`FrameWindows`; the planes
    then hold more frames than ``pts``); None for frame-wise models, one frame per output.
    ``scene_marks``: for each frame, the scene-change props a VapourSynth script set on it
    (``_SceneChangePrev``/``_SceneChangeNext``, see :func:`vidsr.io.windows.marked_cut`);
    None where the source has no such marks.
    """

    planes: list[np.ndarray]
    pts: list[int]
    time_base: Fraction
    first_index: int
    layout: PlaneLayout
    side_data: list[av.VideoFrame | None] | None = None
    alpha: np.ndarray | None = None
    windows: FrameWindows | None = None
    scene_marks: list[dict[str, int]] | None = None

    def __len__(self) -> int:
        return len(self.pts)

    @property
    def height(self) -> int:
        return int(self.planes[0].shape[1])

    @property
    def width(self) -> int:
        return int(self.planes[0].shape[2])
