"""The picture a run delivers: ``scale`` times the source, or fitted to a height and to
square pixels.

Anamorphic SD (720x576 shown at 4:3 or 16:9) upscaled 2x is 1440x1152 pixels that
players must still stretch. ``square`` resizes it so each pixel is square at the same
display aspect, and ``height`` to a target height (1080 for HD players), in one
antialiased bicubic resize after the model (the engine's, on the device): the network
always sees the source's own pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from vidsr.errors import OptionsError

# Even sizes: 4:2:0 and 4:2:2 encoders refuse odd ones.
_STEP = 2


@dataclass(frozen=True)
class Fit:
    """The delivered picture: ``width`` x ``height`` pixels of aspect ``sar``, and why."""

    width: int
    height: int
    sar: Fraction
    reason: str

    def to_text(self) -> str:
        return f"{self.width}x{self.height}, SAR {self.sar.numerator}:{self.sar.denominator}" \
               f" ({self.reason})"


def plan_fit(width: int, height: int, sar: Fraction, scale: int, *,
             target_height: int | None = None, square: bool = False) -> Fit | None:
    """The fitted picture for a ``width`` x ``height`` source of pixel aspect ``sar``
    upscaled ``scale`` times; None when the upscale is delivered as it is."""
    if target_height is not None and target_height < _STEP:
        raise OptionsError(f"--height must be at least {_STEP}, got {target_height}")
    if target_height is None and (not square or sar == 1):
        return None
    out_w, out_h = width * scale, height * scale
    display = Fraction(out_w, out_h) * sar  # the display aspect, kept whatever happens
    new_h = _even(target_height) if target_height is not None else out_h
    if square:
        new_w = _even(new_h * display)
        reason = "square pixels" + (f" at height {new_h}" if target_height else "")
    else:
        new_w = _even(out_w * Fraction(new_h, out_h))
        reason = f"height {new_h}"
    # Square is square: the width's rounding to even bends the display aspect a hair instead.
    new_sar = Fraction(1) if square else (display * new_h / new_w).limit_denominator(1000)
    if (new_w, new_h) == (out_w, out_h):
        return None
    return Fit(new_w, new_h, new_sar, reason)


def _even(value: Fraction | int) -> int:
    return max(_STEP, round(Fraction(value) / _STEP) * _STEP)
