"""Where 3:2 pulldown put its woven frames, read from the fields that repeat.

Of every 5 video frames of 3:2 pulldown, one (``R``) shows again the first field of the
frame before it, and the one two frames later (``R + 2``) shows again the second field of
the frame before it. Between them, ``R`` and ``R + 1`` weave two film frames each: ``R``
is the previous film frame with one field of the next, and that next film frame is ``R``'s
second field with ``R + 1``'s first. Knowing ``R`` therefore gives every film frame
exactly: ``R - 1``, the weave, ``R + 2`` and ``R + 3``; ``R`` is dropped. That holds
whatever the codec did to the comb of ``R`` and ``R + 1`` (x264 codes them as progressive
pictures and quantises the comb away, where a comb detector then sees film frames).

The field changes are :mod:`vidsr.io.field_detect`'s measure. ``R`` is found

- from the frame itself: both of its repeats (the first field at ``R``, the second at
  ``R + 2``) change far less than the fields around them, on moving pictures; this
  follows an edit at once;
- from the cadence: 5 frames after the last ``R``, or where a vote over a window of
  cycles around the frame puts it, with one of the two repeats there, or with pictures
  too still to show either (still film tells nothing: the established phase stands).

Elsewhere (orphan fields at edits, video-rate titles, no cadence yet) a frame's role is
``unknown`` and the caller matches its fields another way.
"""

from __future__ import annotations

from collections import deque
from statistics import median
from typing import Literal

import av
import numpy as np

from vidsr.io.field_detect import CYCLE, MOTION, field_changes, measured_luma

FrameRole = Literal["film", "repeat", "woven", "unknown"]

# A field repeats where it changes at most this share of the fields around it (same parity).
REPEAT_SHARE = 0.6
# A frame is clearly R where its two shares (each at most 1) add up to this or less: one
# field clearly repeats, or both somewhat.
CLEAR = 1.6
# Fields around move when they change this many times the repeats' noise (codec noise).
MOTION_MARGIN = 1.25
# The phase stands while this share of the moving places of the window show a repeat...
CADENCE_SHARE = 1 / 3
# ... or fewer than this many places move.
VOTE_MOVING = 3
# The cycles before and after a frame whose repeats vote for its phase.
VOTE_CYCLES = 3
# Frames seen after a frame before its role is given: the vote's window and R + 2's repeat.
LOOKAHEAD = VOTE_CYCLES * CYCLE
# How many recent repeats the noise is the median of.
NOISE_MEMORY = 16


class PulldownTracker:
    """The role of each frame of telecined video: ``add`` frames in order, take ``roles``
    as they become known (a few cycles later), ``roles(final=True)`` at the end."""

    def __init__(self, order: Literal["tff", "bff"]) -> None:
        self._first_row = 0 if order == "tff" else 1
        # Per frame: how much its first and its second field changed from the frame before.
        self._first: list[float] = []
        self._second: list[float] = []
        self._start = 0  # the frame index of the lists' first entries
        self._previous: np.ndarray | None = None
        self._decided = 0  # the next frame to give a role
        self._last_repeat: int | None = None
        self._noise: deque[float] = deque(maxlen=NOISE_MEMORY)

    def add(self, frame: av.VideoFrame) -> None:
        luma = measured_luma(frame)
        if self._previous is None or self._previous.shape != luma.shape:
            changes = (float("inf"), float("inf"))
        else:
            changes = field_changes(self._previous, luma)
        self._previous = luma
        self._first.append(changes[self._first_row])
        self._second.append(changes[1 - self._first_row])

    def roles(self, final: bool = False) -> list[FrameRole]:
        """The roles of the frames now known, in order, from the first not yet given."""
        end = self._start + len(self._first)
        roles: list[FrameRole] = []
        while self._decided < end and (final or self._decided + LOOKAHEAD < end):
            roles.append(self._role(self._decided, end))
            self._decided += 1
        # Keep what the vote looks back on.
        drop = max(0, self._decided - LOOKAHEAD - CYCLE - self._start)
        if drop:
            del self._first[:drop], self._second[:drop]
            self._start += drop
        return roles

    def _role(self, index: int, end: int) -> FrameRole:
        last = self._last_repeat
        following = next((i for i in range(index + 1, index + CYCLE + 1)
                          if self._clear(i, end)), None)
        ahead = None if following is None else following - index
        if last is not None and index == last + 1 and ahead != 1:
            if ahead != 2:
                return "woven"
            # An edit after the last repeat: its second field is an orphan, and this frame
            # is whole, as the next cadence begins.
            return "film"
        if index + 1 < end and self._is_repeat(index, end, ahead) or (
                ahead == CYCLE and (last is None or index - last > 2
                                    and self._edit_at(index, end))):
            # (A repeat, or the place of one a cycle before the next clear one: the stream
            # or an edit began at a woven pair, its first field an orphan.)
            self._last_repeat = index
            return "repeat"
        if (ahead == 4 and self._edit_at(index, end)
                and self._share(self._second, index + 1, end) <= REPEAT_SHARE):
            # The second of a woven pair just after an edit: its first field is an orphan,
            # its second the next frame shows again, whole.
            return "repeat"
        if last is not None and index - last in (2, 3, 4) or ahead in (1, 2, 3):
            # Between a woven pair and the next repeat, every frame is whole.
            return "film"
        if ahead == 4 and index > 0:
            return "woven"
        return "unknown"

    def _is_repeat(self, index: int, end: int, ahead: int | None) -> bool:
        """Whether ``index`` is ``R``. ``ahead``: how far on the next clear ``R`` is."""
        if self._clear(index, end):
            for changes, at in ((self._first, index), (self._second, index + 2)):
                if self._share(changes, at, end) <= REPEAT_SHARE:
                    self._noise.append(changes[at - self._start])
            return True
        in_phase = (self._last_repeat is not None
                    and (index - self._last_repeat) % CYCLE == 0)
        if ahead is not None and ahead < CYCLE:
            # A clear repeat less than a cycle on: the cadence moved there. Two frames on, an
            # edit after this frame's repeated first field may have moved it (its second
            # field an orphan, the next frame whole).
            return (ahead == 2 and in_phase
                    and self._share(self._first, index, end) <= REPEAT_SHARE)
        return in_phase and self._cadence_holds(index, end) and not self._lost(index, end)

    def _cadence_holds(self, index: int, end: int) -> bool:
        """Whether the cycles around ``index`` still show repeats at its place where their
        pictures move (still ones tell nothing): the vote that keeps the phase, or loses it
        on video-rate pictures."""
        moving = shown = 0
        for place in range(index - VOTE_CYCLES * CYCLE, index + VOTE_CYCLES * CYCLE + 1,
                           CYCLE):
            if not self._moving(place, end):
                continue  # nothing moves there (or not measured)
            moving += 1
            shown += self._score(place, end) <= CLEAR  # type: ignore[operator]
        return moving < VOTE_MOVING or CADENCE_SHARE * moving <= shown

    def _edit_at(self, index: int, end: int) -> bool:
        """Whether the pictures change more into ``index`` than into the next frame."""
        if index + 1 >= end:
            return False
        into = [max(self._first[i - self._start], self._second[i - self._start])
                for i in (index, index + 1)]
        return into[0] >= into[1]

    def _lost(self, index: int, end: int) -> bool:
        """Whether the pictures move at this place and the next cycle's without a repeat
        at either (video-rate pictures): the cadence is lost here."""
        return all(self._moving(place, end) and self._score(place, end) > CLEAR  # type: ignore[operator]
                   for place in (index, index + CYCLE))

    def _clear(self, index: int, end: int) -> bool:
        """Whether ``index`` looks clearly like ``R``, more than any frame within a cycle."""
        score = self._score(index, end)
        if score is None or score > CLEAR:
            return False
        others = (self._score(i, end) for i in range(index - CYCLE + 1, index + CYCLE)
                  if i != index)
        return all(other is None or other > score for other in others)

    def _score(self, index: int, end: int) -> float | None:
        """How unlike ``R`` frame ``index`` is, 0 to 2: its first field's change and the
        second field's two frames on, each as a share of the same field's changes around
        it (1 at most, and 1 where those do not move: a still picture tells nothing).
        None: not measured."""
        if index < self._start or index + 2 >= end:
            return None
        return (self._share(self._first, index, end)
                + self._share(self._second, index + 2, end))

    def _moving(self, index: int, end: int) -> bool:
        """Whether the fields that would repeat at ``index`` as ``R`` are measured and
        move around it (else a repeat cannot show there)."""
        if index < self._start or index + 2 >= end:
            return False
        return any(median(around) >= self._motion() for around in (
            self._around(self._first, index, end), self._around(self._second, index + 2, end))
            if around)

    def _share(self, changes: list[float], index: int, end: int) -> float:
        around = self._around(changes, index, end)
        typical = median(around) if around else 0.0
        if typical < self._motion():
            return 1.0
        return min(1.0, changes[index - self._start] / typical)

    def _around(self, changes: list[float], index: int, end: int) -> list[float]:
        """The finite changes of the two frames either side of ``index``."""
        return [changes[i - self._start] for i in range(index - 2, index + 3)
                if i != index and self._start <= i < end
                and changes[i - self._start] != float("inf")]

    def _motion(self) -> float:
        """The change that tells moving fields from repeats' noise."""
        return max(MOTION, MOTION_MARGIN * median(self._noise)) if self._noise else MOTION


def weave(top: av.VideoFrame, bottom: av.VideoFrame) -> av.VideoFrame:
    """A new frame of ``top``'s top field and ``bottom``'s bottom field (every plane's even
    and odd rows, as pulldown split them), tagged as ``top`` is."""
    out = av.VideoFrame(top.width, top.height, top.format.name)
    for target, upper, lower in zip(out.planes, top.planes, bottom.planes, strict=True):
        rows = _rows(target, target.line_size)
        width = min(target.line_size, upper.line_size, lower.line_size)
        rows[0::2, :width] = _rows(upper, upper.line_size)[0::2, :width]
        rows[1::2, :width] = _rows(lower, lower.line_size)[1::2, :width]
    out.colorspace, out.color_range = top.colorspace, top.color_range
    out.color_primaries, out.color_trc = top.color_primaries, top.color_trc
    return out


def _rows(plane: av.video.plane.VideoPlane, line_size: int) -> np.ndarray:
    return np.frombuffer(plane, np.uint8)[:plane.height * line_size].reshape(plane.height,
                                                                            line_size)
