"""Where upscaled frames go: the one protocol every sink implements.

A sink is opened from the run's :class:`~vidsr.io.output_plan.OutputPlan` and takes
batches in the output layout whose pts count in the plan's time base; it takes
colour tags, aspect ratio and timing from the plan, never from the frames.
``close()`` finishes the file; ``abort()`` (or leaving its ``with`` block by an
exception) releases it unfinished, for the caller to delete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Self

from vidsr.io.frames import FrameBatch, PlaneLayout
from vidsr.io.output_plan import OutputPlan


class Sink(Protocol):
    """What the transcoder writes frames to."""

    layout: PlaneLayout

    def write(self, batch: FrameBatch) -> None:
        """Encode and mux one batch."""
        ...

    def close(self) -> None:
        """Flush and finish the file."""
        ...

    def abort(self) -> None:
        """Release everything without finishing the file."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type: object, *rest: object) -> None: ...


def open_sink(path: Path, plan: OutputPlan, source: Path) -> Sink:
    """The plan's sink, writing to ``path`` (a temporary name beside ``plan.path``)."""
    if plan.sink == "ffmpeg":
        from vidsr.io.ffmpeg_sink import FFmpegEncoder

        return FFmpegEncoder(path, plan, source)
    from vidsr.io.encode import Encoder

    return Encoder(path, plan, source)
