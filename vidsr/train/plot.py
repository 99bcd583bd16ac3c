"""A PNG of training progress (loss, validation PSNR): two line charts
(:mod:`vidsr.imaging.plot`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from vidsr.imaging.plot import FRAME_COLOUR, Axes, draw_line, line_colour
from vidsr.io.atomic_write import atomic_write

WIDTH, PANEL_HEIGHT, MARGIN = 720, 260, 56


def _series(records: Sequence[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(float(r["step"]), float(r[key])) for r in records
            if key in r and math.isfinite(float(r[key]))]


def _draw_panel(draw: ImageDraw.ImageDraw, top: int, title: str,
                lines: dict[str, list[tuple[float, float]]], log_y: bool) -> None:
    left, right = MARGIN, WIDTH - 16
    bottom = top + PANEL_HEIGHT - 36
    draw.rectangle((left, top + 20, right, bottom), outline=FRAME_COLOUR)
    draw.text((left, top + 4), title, fill="black")
    points = [p for pts in lines.values() for p in pts]
    if not points:
        draw.text((left + 10, top + 40), "no data yet", fill="#888888")
        return

    def fy(v: float) -> float:
        return math.log10(max(v, 1e-12)) if log_y else v

    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(fy(p[1]) for p in points), max(fy(p[1]) for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-3)
    axes = Axes(left, top + 20, right, bottom, x0, x1, y0, y1)

    for v in (y0, y1):
        shown = 10 ** v if log_y else v
        draw.text((4, axes.point(x0, fy(shown))[1] - 6), f"{shown:.4g}", fill="black")
    draw.text((left, bottom + 4), f"{x0:.0f}", fill="black")
    draw.text((right - 60, bottom + 4), f"step {x1:.0f}", fill="black")
    for i, (name, pts) in enumerate(lines.items()):
        colour = line_colour(i)
        draw_line(draw, [axes.point(x, fy(y)) for x, y in pts], colour, dot=2, dot_at_end=True)
        draw.text((left + 8 + 150 * i, top + 24), f"{name}: {pts[-1][1]:.4g}", fill=colour)


def write_progress_plot(records: Sequence[dict[str, Any]], path: Path) -> Path:
    """Loss (log scale) and validation PSNR against step, as a PNG."""
    loss_keys = sorted({k for r in records for k in r if k.startswith("loss")})
    psnr_keys = sorted({k for r in records for k in r if k.startswith("val_psnr")})
    image = Image.new("RGB", (WIDTH, 2 * PANEL_HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    _draw_panel(draw, 0, "training loss (log scale)",
                {k: _series(records, k) for k in loss_keys}, log_y=True)
    _draw_panel(draw, PANEL_HEIGHT, "validation PSNR, Y (dB)",
                {k: _series(records, k) for k in psnr_keys}, log_y=False)
    with atomic_write(path) as tmp:
        image.save(tmp, format="PNG")
    return path
