"""The descriptor that travels with every network: what the engine asks instead of the module."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# "rgb": 3 channels, RGB, values in [0, 1].
# "y": 1 channel, BT.601 studio-swing luma as the papers train it (code / 255, so 16/255..235/255).
# "planes": works on each plane of the frame independently (parameter-free resizers).
InputSpace = Literal["rgb", "y", "planes"]


@dataclass(frozen=True)
class ArchSpec:
    """What a network needs from its caller.

    Every module takes input in [0, 1] (modules that were trained on 0..255,
    such as EDSR, scale inside) and returns the same range, unclamped.
    """

    arch: str  # registry name, e.g. "rrdb"
    scales: tuple[int, ...]  # scales this instance can produce
    input_space: InputSpace
    pre_upsampled: bool = False  # input must be bicubic-upscaled to the output size first
    size_multiple: int = 1  # input height and width are padded to a multiple of this
    receptive_radius: int | None = None  # input pixels of context an output pixel needs
    # Submodules that read the picture or write it (the first and last convolutions, a
    # skip branch, a mean shift): kept in fp32 under reduced precision, because bf16 would
    # hold the picture itself to 8 bits of mantissa, about a code value near white.
    picture_layers: tuple[str, ...] = ()
    # Frames the network sees for one output frame: 2r + 1, centred on the output frame, as
    # an (N, window, C, H, W) input. Frame-wise networks see 1 and take (N, C, H, W).
    window: int = 1
    # hyperparameters, for cards and round trips
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return 3 if self.input_space == "rgb" else 1
