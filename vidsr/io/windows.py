"""Windows of frames for models that see ``2r + 1`` frames: the decode stage's ring and cuts.

:class:`WindowedSource` wraps a source of frame batches (the decoder, a VapourSynth
script, QTGMC) and yields batches of windows (:class:`~vidsr.io.frames.FrameWindows`):
each batch holds its output frames and the neighbours their windows need, each frame
once, so the engine converts a batch's frames once and lays the windows out from them.
It keeps a ring of the last decoded frames, no more than a batch and ``2r`` frames
beyond what the source's own batch holds, so memory stays flat whatever the clip's
length, and it reads its source once: every frame is decoded once.

A window never mixes two shots. At a scene cut, and at the clip's ends, it repeats
the nearest frame of its own shot. Cuts are found here, on the decoded planes
(:class:`CutDetector`), so every source gets the same detection; FFmpeg's ``scdet``
filter would need the decoder's frames pushed through a filter graph and sees nothing
of a VapourSynth script's or QTGMC's frames, which arrive as planes. Where a VapourSynth
script marked its cuts (``_SceneChangePrev``/``_SceneChangeNext``), its marks decide
(:func:`marked_cut`), for ``vidsr script.vpy`` and the ``vsvidsr`` filter alike.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidsr.io.frames import FrameBatch, FrameWindows, PlaneLayout

log = logging.getLogger("vidsr")

# The thumbnail a cut is judged on: the luma plane averaged in blocks to about this width.
THUMB_WIDTH = 64
# A cut changes the thumbnail by at least this mean absolute difference (a fraction of the
# code range), and by CUT_RATIO times the change just before it and just after it: a fast
# pan changes every frame a lot, and only a lone jump far above its neighbours is a cut.
CUT_MIN_CHANGE = 0.05
CUT_RATIO = 3.0
# VapourSynth's frame props that mark a cut: on the first frame of a shot, and on the last.
SCENE_CHANGE_PREV, SCENE_CHANGE_NEXT = "_SceneChangePrev", "_SceneChangeNext"
SCENE_CHANGE_PROPS = (SCENE_CHANGE_PREV, SCENE_CHANGE_NEXT)


class CutDetector:
    """Scene cuts from a downscaled luma difference, against the changes on either side.

    Cheap: one block average of the luma plane to a ~64-pixel-wide thumbnail and one
    difference per frame, on the host, as the frames are decoded. A frame is judged once
    the next one is decoded (:func:`is_cut`). The thresholds are set by reasoning, not tuned
    on a corpus of cuts: a false cut costs the frames beside it their neighbours (the window
    repeats the frame), a missed one mixes two shots for ``r`` frames.
    """

    def __init__(self) -> None:
        self._last: np.ndarray | None = None

    def change(self, luma: np.ndarray, layout: PlaneLayout) -> float:
        """How far the frame whose first plane is ``luma`` is from the one before (0 for
        the first): see :func:`thumbnail_change`."""
        thumb = thumbnail(luma, layout)
        last, self._last = self._last, thumb
        return 0.0 if last is None else thumbnail_change(last, thumb)


def is_cut(before: float, change: float, after: float) -> bool:
    """Whether a frame that differs by ``change`` from the one before starts a new shot,
    the frames on either side having changed by ``before`` and ``after``."""
    return change >= CUT_MIN_CHANGE and change >= CUT_RATIO * max(before, after)


def marked_cut(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool | None:
    """Whether a script marked a cut between two frames, from their props: ``_SceneChangePrev``
    on the later frame or ``_SceneChangeNext`` on the earlier, whichever of the two it set (0
    marks no cut there); None where it set neither, and the luma detector decides."""
    if SCENE_CHANGE_PREV not in after and SCENE_CHANGE_NEXT not in before:
        return None
    return bool(after.get(SCENE_CHANGE_PREV, 0)) or bool(before.get(SCENE_CHANGE_NEXT, 0))


def thumbnail(plane: np.ndarray, layout: PlaneLayout) -> np.ndarray:
    """What a cut is judged on: a frame's first plane averaged in square blocks to about
    :data:`THUMB_WIDTH` wide, float32 in [0, 1] (code values over the layout's range)."""
    step = max(1, plane.shape[1] // THUMB_WIDTH)
    h, w = plane.shape[0] // step * step, plane.shape[1] // step * step
    if h == 0:
        blocks = plane.astype(np.float32)
    else:
        blocks = plane[:h, :w].reshape(h // step, step, w // step, step).mean(
            axis=(1, 3), dtype=np.float32)
    return blocks if np.issubdtype(plane.dtype, np.floating) else blocks / layout.max_code


def thumbnail_change(before: np.ndarray, after: np.ndarray) -> float:
    """How far two frames' thumbnails are apart: their mean absolute difference."""
    return float(np.abs(after - before).mean())


def window_indices(centre: int, radius: int, shot_first: int, shot_last: int) -> list[int]:
    """The frames of ``centre``'s window, in display order: its ``radius`` neighbours on
    each side, each side stopping at its shot's first or last frame and repeating it."""
    return [min(max(centre + k, shot_first), shot_last) for k in range(-radius, radius + 1)]


@dataclass
class _Frame:
    """One decoded frame in the ring: views into its source batch."""

    planes: list[np.ndarray]
    pts: int
    side_data: Any
    alpha: np.ndarray | None
    shot_start: int  # stream index of its shot's first frame
    output: bool = True  # False: context beside a segment, only a neighbour of others


class WindowedSource:
    """Batches of ``batch_size`` windows of ``window`` frames from ``source``'s batches.

    Stands in for the source it wraps: ``info``, ``source_info``, ``streams_source``,
    ``skipped`` and ``close()`` are the source's. After a run, ``decoded`` is how many
    frames the source gave and ``cuts`` the stream indices of the frames that start a shot.
    ``is_context(pts)``: whether a frame the source gives is only context (a segment's
    neighbours, :class:`~vidsr.io.decode.Window`): in windows and cut detection, never
    an output frame.
    """

    def __init__(self, source: Any, window: int, batch_size: int,
                 is_context: Callable[[int], bool] | None = None) -> None:
        assert window >= 1 and window % 2 == 1, f"a window of {window} frames has no centre"
        self.source = source
        self.is_context = is_context
        self.radius = window // 2
        self.batch_size = batch_size
        self.decoded = 0
        self.cuts: list[int] = []

    @property
    def info(self) -> Any:
        return self.source.info

    @property
    def source_info(self) -> Any:
        return self.source.source_info

    @property
    def streams_source(self) -> Any:
        return self.source.streams_source

    @property
    def skipped(self) -> int:
        return self.source.skipped

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> WindowedSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[FrameBatch]:
        # A fresh name for this run's frames: the engine keeps converted frames by it.
        return windowed_batches(self._frames(self.source), self.radius, self.batch_size,
                                object())

    def _frames(self, batches: Iterable[FrameBatch]) -> Iterator[tuple[_Frame, FrameBatch]]:
        """Each decoded frame once, with its shot, counted; a frame leaves once the next is
        decoded, as its cut is judged against the change after it."""
        detector = CutDetector()
        shot_start, before = 0, 0.0
        before_marks: Mapping[str, int] = {}
        pending: tuple[_Frame, FrameBatch, float, Mapping[str, int]] | None = None

        def judged(after: float | None) -> tuple[_Frame, FrameBatch]:
            nonlocal shot_start, before, before_marks
            assert pending is not None
            frame, batch, change, marks = pending
            index = self.decoded - 1 if after is None else self.decoded - 2
            marked = marked_cut(before_marks, marks) if index > 0 else None
            if is_cut(before, change, after or 0.0) if marked is None else marked:
                shot_start = index
                self.cuts.append(index)
            before, before_marks = change, marks
            frame.shot_start = shot_start
            return frame, batch

        for batch in batches:
            for k in range(len(batch)):
                planes = [p[k] for p in batch.planes]
                change = detector.change(planes[0], batch.layout)
                side = batch.side_data[k] if batch.side_data is not None else None
                alpha = batch.alpha[k] if batch.alpha is not None else None
                marks = batch.scene_marks[k] if batch.scene_marks is not None else {}
                self.decoded += 1
                if pending is not None:
                    yield judged(change)
                output = self.is_context is None or not self.is_context(batch.pts[k])
                pending = (_Frame(planes, batch.pts[k], side, alpha, 0, output), batch, change,
                           marks)
        if pending is not None:
            yield judged(None)
        log.info("%s: %d scene cut(s) found%s", getattr(self.info, "path", "input"),
                 len(self.cuts), (" (before frames " + ", ".join(map(str, self.cuts[:20]))
                                  + (", ..." if len(self.cuts) > 20 else "") + ")")
                 if self.cuts else "")


def windowed_batches(frames: Iterator[tuple[_Frame, FrameBatch]], radius: int,
                     batch_size: int, stream: Hashable) -> Iterator[FrameBatch]:
    """Batches of windows from ``frames`` in display order: a batch leaves as soon as the
    ring holds ``radius`` frames past its last output frame (or the stream has ended).
    ``stream`` names the run in the batches' :class:`FrameWindows`."""
    ring: deque[_Frame] = deque()
    first = 0  # stream index of ring[0]
    next_out = 0  # stream index of the next output frame
    end_out: int | None = None  # past the last output frame, once context follows it
    model: FrameBatch | None = None
    for frame, batch in frames:
        ring.append(frame)
        model = batch
        last = first + len(ring) - 1
        if not frame.output and next_out == last:
            next_out += 1  # context before the outputs: a neighbour only
        elif not frame.output and end_out is None:
            end_out = last
        while True:
            count = min(batch_size, (end_out if end_out is not None else next_out + batch_size)
                        - next_out)
            if count <= 0 or next_out + count - 1 + radius > last:
                break
            yield _batch(ring, first, next_out, count, radius, last, False, model, stream)
            next_out += count
            # What the next windows may still need: ``radius`` frames before the next output.
            while first < next_out - radius:
                ring.popleft()
                first += 1
    last = first + len(ring) - 1
    end = end_out if end_out is not None else last + 1
    while model is not None and next_out < end:
        count = min(batch_size, end - next_out)
        yield _batch(ring, first, next_out, count, radius, last, True, model, stream)
        next_out += count


def _batch(ring: deque[_Frame], first: int, start: int, count: int, radius: int, last: int,
           ended: bool, model: FrameBatch, stream: Hashable) -> FrameBatch:
    """The batch of output frames ``start``..``start + count - 1`` with their windows.

    A window stops at its own shot's ends: before the shot's first frame it repeats that
    frame; past the shot's last (the frame before the next cut, or the clip's last once
    the stream has ended) it repeats that one.
    """
    def at(index: int) -> _Frame:
        return ring[index - first]

    rows = []
    for out in range(start, start + count):
        shot_start = at(out).shot_start
        shot_end = out
        while shot_end < min(out + radius, last) and at(shot_end + 1).shot_start == shot_start:
            shot_end += 1
        assert ended or shot_end == out + radius or shot_end < last, "window read too early"
        rows.append(window_indices(out, radius, shot_start, shot_end))
    index = np.array(rows, dtype=np.int64)
    low, high = int(index.min()), int(index.max())
    held = [at(i) for i in range(low, high + 1)]
    outputs = [at(i) for i in range(start, start + count)]
    planes = [np.stack([f.planes[p] for f in held]) for p in range(len(held[0].planes))]
    side = [f.side_data for f in outputs]
    alphas = [f.alpha for f in outputs]
    return FrameBatch(
        planes=planes, pts=[f.pts for f in outputs], time_base=model.time_base,
        first_index=start, layout=model.layout,
        side_data=side if any(s is not None for s in side) else None,
        alpha=np.stack(alphas) if alphas[0] is not None else None,
        windows=FrameWindows(index - low, np.arange(low, high + 1), stream),
    )
