"""A clip's LR frames, degraded frame by frame: the papers' bicubic, or an archival one.

``vidsr eval-video`` scores models on these frames; the benchmarks reuse them.

``bicubic``: every frame is ``vidsr eval``'s LR (:func:`vidsr.imaging.scoring.make_lr`),
so a clip's figures are those of its frames as images.

``archival``: what old footage went through, built from training's degradations
(:mod:`vidsr.train.degrade`): a Gaussian blur of the HR (the optics and the
tape), the antialiased bicubic downscale, white noise drawn afresh for every
frame (grain, sensor noise), 8-bit rounding, then an MPEG-2 or H.264 round trip
of the frames as a clip, so the inter-frame artefacts of a real codec (drifting
blocks, ringing that changes from frame to frame) are in it. Every random draw
comes from one generator seeded by ``seed``: the same clip and options give the
same LR, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from vidsr.errors import OptionsError
from vidsr.imaging.scoring import MAX_CODE, make_lr
from vidsr.train.config import VideoCodec
from vidsr.train.degrade import (
    add_gaussian_noise,
    downscale,
    gaussian_blur,
    mpeg2_quantiser,
    quantize,
    video_reencode,
)

Degradation = Literal["bicubic", "archival"]


@dataclass(frozen=True)
class ArchivalOptions:
    """The archival degradation's settings; the defaults are those the README's table used.

    ``blur_sigma`` in HR pixels; ``noise_sigma`` in 8-bit code values of the LR;
    ``crf`` is x264's CRF (MPEG-2 gets the qscale of similar quality);
    ``segment`` frames are re-encoded as one clip (a closed GOP run), which keeps the
    memory of a long clip bounded.
    """

    blur_sigma: float = 0.8
    noise_sigma: float = 2.0
    codec: VideoCodec = "mpeg2video"
    crf: int = 26
    seed: int = 0
    segment: int = 48

    def __post_init__(self) -> None:
        if self.blur_sigma < 0 or self.noise_sigma < 0:
            raise OptionsError("archival blur and noise must not be negative")
        if self.segment < 1:
            raise OptionsError(f"segment must be at least 1 frame, got {self.segment}")

    def describe(self) -> str:
        codec = (f"H.264 CRF {self.crf}" if self.codec == "h264" else
                 f"MPEG-2 quantiser {mpeg2_quantiser(self.crf)} (~CRF {self.crf})")
        return (f"archival (blur sigma {self.blur_sigma:g}, bicubic, noise sigma"
                f" {self.noise_sigma:g}, {codec}, seed {self.seed})")


def bicubic_lr(frames: Iterable[torch.Tensor], scale: int) -> Iterator[torch.Tensor]:
    """``vidsr eval``'s LR of every (3, H, W) uint8 frame (H and W multiples of ``scale``)."""
    for frame in frames:
        yield make_lr(frame, scale)


def archival_lr(frames: Iterable[torch.Tensor], scale: int,
                options: ArchivalOptions) -> Iterator[torch.Tensor]:
    """The archival LR of every (3, H, W) uint8 frame, as uint8, in order."""
    generator = torch.Generator().manual_seed(options.seed)
    pending: list[torch.Tensor] = []
    for frame in frames:
        x = frame.to(torch.float32)[None] / MAX_CODE
        if options.blur_sigma > 0:
            x = gaussian_blur(x, options.blur_sigma)
        y = downscale(x, scale, "bicubic")
        if options.noise_sigma > 0:
            y = add_gaussian_noise(y, options.noise_sigma, generator)
        pending.append(quantize(y)[0])
        if len(pending) == options.segment:
            yield from _reencoded(pending, options)
            pending = []
    if pending:
        yield from _reencoded(pending, options)


def _reencoded(frames: list[torch.Tensor], options: ArchivalOptions) -> Iterator[torch.Tensor]:
    clip = video_reencode(torch.stack(frames), options.codec, options.crf)
    for frame in clip:
        yield (frame * MAX_CODE).round().to(torch.uint8)


def degraded_lr(frames: Iterable[torch.Tensor], scale: int, degradation: Degradation,
                archival: ArchivalOptions | None = None) -> Iterator[torch.Tensor]:
    """The LR frames of ``degradation`` (see the module's docstring)."""
    if degradation == "bicubic":
        return bicubic_lr(frames, scale)
    if degradation == "archival":
        return archival_lr(frames, scale, archival or ArchivalOptions())
    raise OptionsError(f"unknown degradation {degradation!r}: use bicubic or archival")
