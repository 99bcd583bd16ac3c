"""Line charts drawn with Pillow, for the PNGs vidsr writes (training progress, PSNR per
frame). matplotlib is not a dependency of vidsr; a few lines need only ImageDraw."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import ImageDraw

# One colour per line, in order; the frame and tick marks in grey.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
FRAME_COLOUR = "#888888"
LINE_WIDTH = 2


def line_colour(index: int) -> str:
    """The colour of the ``index``-th line of a chart."""
    return PALETTE[index % len(PALETTE)]


@dataclass(frozen=True)
class Axes:
    """A plotting area in pixels and the data values at its edges."""

    left: float
    top: float
    right: float
    bottom: float
    x0: float
    x1: float
    y0: float
    y1: float

    def point(self, x: float, y: float) -> tuple[float, float]:
        """Where the data point (``x``, ``y``) falls, in pixels (y grows downwards)."""
        return (self.left + (x - self.x0) / (self.x1 - self.x0) * (self.right - self.left),
                self.bottom - (y - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top))


def draw_line(draw: ImageDraw.ImageDraw, points: Sequence[tuple[float, float]], colour: str,
              *, dot: int, dot_at_end: bool) -> None:
    """A line through ``points`` (pixels), with a dot of radius ``dot`` at its last point when
    ``dot_at_end``, and always for a single point, which no line would show."""
    if len(points) > 1:
        draw.line(list(points), fill=colour, width=LINE_WIDTH)
    if points and (dot_at_end or len(points) == 1):
        x, y = points[-1]
        draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=colour)
