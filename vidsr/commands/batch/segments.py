"""Long files in segments: a batch stopped or killed halfway through a file redoes only
the segment it was in.

A file is cut at keyframes into segments of about ``--segment-seconds``. Each segment is
decoded from the keyframe before its cut (:class:`~vidsr.io.decode.Window`), upscaled,
and encoded by the file's own output plan into a packet file
(:class:`~vidsr.io.encode.SegmentEncoder`), published whole under OUT_DIR's
``.vidsr-segments``. When all are done, one output is muxed from their packets with the
source's other streams, metadata and chapters (:meth:`~vidsr.io.encode.Encoder.mux_encoded`):
the video is not encoded again. A model that sees a window of frames gets each segment's
neighbours too: the segment decodes frames of context on both sides
(:func:`~vidsr.run.source_to_sink.open_source`), its seek placed far enough back. Frames,
timestamps, and every other stream are those of a run through the whole file; each segment
starts a new GOP, so a lossy codec's pictures differ from a one-piece encode by its own
noise (a lossless one's are identical).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidsr.engine.engine import Engine
from vidsr.io.decode import Window
from vidsr.io.encode import Encoder, SegmentEncoder
from vidsr.io.file_digest import file_digest
from vidsr.io.keyframes import KeyframeIndex
from vidsr.io.packet_file import read_packets
from vidsr.io.probe import open_input
from vidsr.io.safe_output import output_written
from vidsr.io.script_source import is_script
from vidsr.io.timestamps import timestamp_mode
from vidsr.plan.run_plan import RunPlan
from vidsr.run.source_to_sink import open_source, run_to_sink

log = logging.getLogger("vidsr")

DEFAULT_SEGMENT_SECONDS = 300.0
SEGMENTS_FOLDER = ".vidsr-segments"


@dataclass(frozen=True)
class Segment:
    """One segment of a file: its place and the stretch of the stream it decodes."""

    index: int
    window: Window

    @property
    def file_name(self) -> str:
        return f"{self.index:05d}.pkt"

    def to_json(self) -> list[int | None]:
        return [self.window.start, self.window.end, self.window.seek]

    @classmethod
    def from_json(cls, index: int, data: Sequence[int | None]) -> Segment:
        start, end, seek = data
        return cls(index, Window(start=start, end=end, seek=seek))


@dataclass(frozen=True)
class SegmentResult:
    """What one segment's run produced."""

    frames: int
    skipped: int
    size: int
    sha256: str
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        return {"frames": self.frames, "skipped": self.skipped, "size": self.size,
                "sha256": self.sha256, "seconds": round(self.wall_s, 3)}


@dataclass
class SegmentState:
    """A file's segments, where their packet files go, and those finished (by index)."""

    folder: Path
    seconds: float
    segments: list[Segment]
    done: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "cuts": [s.to_json() for s in self.segments],
                "done": dict(self.done)}


# Files that run at once share the segments folder, and whichever finishes last removes
# it: one file's removal of the empty folder must not land between another's making of
# that folder and of its own inside it (that file then failed with "No such file").
_SHARED_FOLDER = threading.Lock()


def make_segment_folder(folder: Path) -> None:
    """Create a file's segment folder (and the segments folder it sits in)."""
    with _SHARED_FOLDER:
        folder.mkdir(parents=True, exist_ok=True)


def remove_segments(folder: Path) -> None:
    """Delete a file's segment folder, and the segments folder once it is empty."""
    with _SHARED_FOLDER:
        shutil.rmtree(folder, ignore_errors=True)
        try:
            folder.parent.rmdir()
        except OSError:  # other files' segments are still there (or it never was)
            pass


def plan_segments(index: KeyframeIndex, seconds: float, context: int = 0) -> list[Segment]:
    """Cut at the first keyframe at least ``seconds`` after the previous cut, leaving no
    last segment shorter than a quarter of that; one segment when the file is short.
    ``context``: how far (in the stream's time base) before its start a segment must
    decode frames of context for a model that sees a window of frames."""
    keys = index.keyframes
    cuts: list[int] = []
    if keys and seconds > 0:
        previous = keys[0]
        for key in keys[1:]:
            left = index.seconds(index.last_pts - key) if index.last_pts is not None else 0.0
            if index.seconds(key - previous) >= seconds and left >= seconds / 4:
                cuts.append(key)
                previous = key
    bounds: list[int | None] = [None, *cuts, None]
    segments = []
    for i in range(len(bounds) - 1):
        start, end = bounds[i], bounds[i + 1]
        # Decoding starts one keyframe early: an open GOP's leading frames and bwdif's
        # neighbours then come out as in a run through the whole file.
        seek = None if start is None else max(
            (k for k in keys if k < start - context), default=keys[0])
        segments.append(Segment(i, Window(start=start, end=end, seek=seek)))
    return segments


def unsegmentable(plan: RunPlan) -> str | None:
    """Why this run cannot go in segments (it runs whole), or None."""
    assert plan.source is not None and plan.output is not None
    if is_script(plan.source.path):
        return "a VapourSynth script is read from its start"
    if plan.deinterlace is not None and plan.deinterlace.deinterlacer == "qtgmc":
        return "QTGMC reads the file through BestSource, which indexes all of it on opening"
    with open_input(plan.source.path) as container:  # its headers only
        if timestamp_mode(container) != "pts":
            return f"{container.format.name} keeps no presentation times to seek by"
    if plan.output.sink != "pyav":
        return "a system ffmpeg (--ffmpeg) writes the whole file itself"
    if plan.deinterlace is not None and plan.deinterlace.method == "ivtc":
        return ("inverse telecine counts its cycles of 5 frames from the stream's first, so a"
                " segment alone would drop other frames")
    return None


def run_segment(runner: Engine, plan: RunPlan, segment: Segment, path: Path, *, depth: int,
                on_write: Callable[[int], object] | None = None) -> SegmentResult:
    """Upscale ``segment`` of the plan's source with ``runner`` into the packet file
    ``path``, published only when complete; ``depth``: batches queued between stages."""
    assert plan.source is not None and plan.output is not None
    started = time.perf_counter()
    with output_written(path, overwrite=True) as tmp:
        with open_source(plan, span=segment.window) as decoder:
            with SegmentEncoder(tmp, plan.output) as sink:
                written, _ = run_to_sink(plan, runner, decoder, sink, depth=depth,
                                         on_write=on_write)
            skipped = decoder.skipped
    return SegmentResult(frames=written, skipped=skipped, size=path.stat().st_size,
                         sha256=file_digest(path), wall_s=time.perf_counter() - started)


def segment_intact(path: Path, done: Mapping[str, Any]) -> bool:
    """Whether a segment recorded as done is still there, byte for byte."""
    try:
        return path.stat().st_size == done.get("size") and file_digest(path) == done["sha256"]
    except (FileNotFoundError, KeyError):
        return False


def join_segments(plan: RunPlan, paths: Sequence[Path], overwrite: bool) -> int:
    """Mux the segments' packets, in order, with the source's other streams into the plan's
    output (written under a temporary name, published when complete); the frames written."""
    assert plan.source is not None and plan.output is not None
    dst = plan.output.path
    with output_written(dst, overwrite) as tmp:
        with Encoder(tmp, plan.output, plan.source.path) as encoder:
            for path in paths:
                encoder.mux_encoded(read_packets(path))
            frames = encoder.frames_written
    return frames
