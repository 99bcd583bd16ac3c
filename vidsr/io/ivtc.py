"""Inverse telecine: the film frames of 3:2 pulldown video, at their own rate.

Film (23.976 frames a second) goes onto 29.97i video by spreading every 4 film frames
over 10 fields, the frames alternately 2 and 3 fields long: of every 5 video frames, 2
weave fields of two film frames together. Deinterlacing those gives 5 frames for 4, two
of them interpolated; putting the fields back together gives the 4 film frames exactly.

Field matching is led by the cadence (:mod:`vidsr.io.pulldown`): where the repeated
fields show where each cycle's woven pair sits, each film frame is built from the right
fields (the pair's middle film frame from the first woven frame's second field and the
second's first field) and the repeat is dropped directly. That holds on progressive H.264,
where x264 quantises the comb of the woven frames away and a comb detector sees film
frames in them. Where no cadence holds (video-rate titles, orphan fields at edits, no
repeat seen yet) the frames come from FFmpeg's ``fieldmatch`` (with ``combmatch=full``)
through a PyAV filter graph, which matches fields by their comb; a frame it cannot match
stays combed and is flagged interlaced, and ``bwdif`` with ``deint=interlaced``
deinterlaces exactly those. Both run on every frame, so either can serve any frame; the
cadence looks 3 cycles ahead.

Where the cadence did not place the repeats, dropping them is done here, not by FFmpeg's
``decimate``: ``decimate`` drops one frame of every 5 whatever happens, so at a cadence
break (an edit between two telecined pieces, a scene with an odd number of film frames)
it drops a film frame or keeps a repeat. Here, per cycle of 5 frames (counted from the
stream's first), each frame is measured against the one before it
(:func:`frame_difference`), and :class:`Cadence`
decides (:meth:`Cadence.drops`):

- a cycle with motion and one frame clearly like its predecessor: that frame is the
  repeat; its place in the cycle is the cadence's phase, and how much it differed is
  the repeats' noise (the codec's), learnt as the clip goes;
- at a break, two such frames, both within the repeats' noise, are both dropped when the
  next cycle confirms that the cadence moved (its least changed frame is where the new
  repeat was, and its frame at the old phase is no repeat); film that repeats a frame
  itself (animation on twos, a frame doubled in the transfer) loses only the pulldown's
  repeat and keeps its timing. A cycle whose every frame moves well beyond that noise
  keeps all five. Both need a noise learnt first; without that strong evidence one frame
  is dropped;
- a static cycle (no frame moves beyond the noise) tells nothing: the frame at the
  established phase is dropped, so the timing stays even.

Timestamps. A cycle of 5 input frames spans ``[p0, p5)`` (``p5``: the next cycle's first
frame, or one frame after the last); its ``k`` kept frames are shown at
``p0 + i * (p5 - p0) / k``, counted in 1/60 of the stream's time base, so the division
is exact for k = 1 to 6. A steady cadence from 30000/1001 then gives exactly 24000/1001,
each film frame at its own time; a break changes the spacing within its cycle only, and
no error builds up over a long file: audio stays in sync.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from statistics import median

import av
import av.filter
import numpy as np

from vidsr.io.deinterlace import (
    IVTC_CYCLE,
    IVTC_TICKS,
    DeinterlacePlan,
    filter_chain,
    pull_all,
)
from vidsr.io.pulldown import FrameRole, PulldownTracker, weave

log = logging.getLogger("vidsr")

# A repeat differs from its predecessor by at most this share of the cycle's typical
# (median) change between frames: codec noise against motion.
REPEAT_SHARE = 0.25
# A frame at the established phase changed this share of the typical or less: still the
# repeat, whatever the noise (motion in a repeat's codec noise).
PHASE_SHARE = 0.7
# A cycle moves when its typical change is this many times the repeats' noise; a break
# is believed only within (two repeats) or beyond (none) that margin.
MOTION_MARGIN = 3.0
# How many recent repeats the noise is the median of.
NOISE_MEMORY = 8
# The side of the squares a frame difference is measured in (smaller on tiny frames):
# motion shows in some square even when most of the picture stands still.
BLOCK = 32


def cycle_times(start: int, end: int, kept: int) -> list[int]:
    """The times of the ``kept`` frames of a cycle spanning ``[start, end)`` (the stream's
    ticks), in 1/60 of a tick: evenly spread from ``start``, exactly."""
    span = (end - start) * IVTC_TICKS
    assert span % kept == 0 if kept else True, "a cycle keeps 1 to 6 frames"
    return [start * IVTC_TICKS + i * span // kept for i in range(kept)]


def frame_difference(a: np.ndarray, b: np.ndarray, max_value: int = 255) -> float:
    """How much picture ``b`` changed into ``a``: the mean absolute difference, in 8-bit
    code values, of the square of the picture that changed most."""
    diff = np.abs(a.astype(np.int32) - b.astype(np.int32))
    height, width = diff.shape
    side = max(4, min(BLOCK, min(height, width) // 4))
    rows, cols = height // side, width // side
    blocks = diff[:rows * side, :cols * side].reshape(rows, side, cols, side)
    return float(blocks.mean(axis=(1, 3)).max()) * 255 / max_value


@dataclass
class Cadence:
    """What the cycles so far showed: where the repeat falls in a cycle and how much a
    repeat differs from its predecessor (codec noise)."""

    phase: int | None = None
    repeats: deque[float] = field(default_factory=lambda: deque(maxlen=NOISE_MEMORY))

    @property
    def noise(self) -> float | None:
        return median(self.repeats) if self.repeats else None

    def drops(self, changes: Sequence[float],
              following: Sequence[float] = ()) -> tuple[int, ...]:
        """Which frames of a cycle to drop, given how much each changed from the frame
        before it (``inf`` for the stream's first; a last cycle may be short), and the
        same for the cycle after it (empty at the end)."""
        count = len(changes)
        ranked = sorted(range(count), key=lambda i: changes[i])
        least = ranked[0]
        repeats = _clear_repeats(changes)
        typical = changes[ranked[count // 2]]
        # At the start, the next cycle's repeat tells the codec's noise.
        noise = self.noise if self.noise is not None else _repeat_change(following)
        if noise is not None and typical <= MOTION_MARGIN * noise:
            # Nothing moves: every frame looks like a repeat. Keep the established rhythm.
            if self.phase is None:
                return (least,)
            return (self.phase,) if self.phase < count else ()
        if noise is not None:
            within = sorted(i for i in repeats if changes[i] <= MOTION_MARGIN * noise)
            moved = [i for i in within if i != self.phase][-1:]
            if (len(within) == 2 and self.phase is not None
                    and self._confirmed(moved[0], following)):
                # The cadence moved back: a repeat from each side of the break.
                self.phase = moved[0]
                self.repeats.extend(changes[i] for i in within)
                return tuple(within)
            if (not repeats and changes[least] > MOTION_MARGIN * noise
                    and not self._phase_stands_out(changes, typical)):
                # Every frame is a new picture, the one at the phase too (fast motion raises
                # the codec's noise, so a repeat may lie beyond it): the cadence moved on.
                self.phase = None
                return ()
        if self.phase is not None and not self._moved(changes, least, noise):
            # A steady cadence: slow motion near the codec's noise can make another frame
            # look least changed; only a clear break moves the phase.
            if self.phase >= count:
                return ()
            dropped = self.phase
        elif self.phase is None and not repeats and following:
            # No clear repeat yet (heavy codec noise): the place least changed over this
            # cycle and the next is the likeliest phase; follow it from now on.
            dropped = min(range(count), key=lambda i: changes[i] + (
                following[i] if i < len(following) else changes[i]))
            self.phase = dropped
        else:
            dropped = least
        if dropped in repeats:
            self.phase = dropped
            self.repeats.append(changes[dropped])
        return (dropped,)

    def _phase_stands_out(self, changes: Sequence[float], typical: float) -> bool:
        """Whether the frame at the phase changed clearly less than the cycle's typical."""
        return (self.phase is not None and self.phase < len(changes)
                and changes[self.phase] <= PHASE_SHARE * typical)

    def _moved(self, changes: Sequence[float], least: int, noise: float | None) -> bool:
        """Whether the cycle shows the cadence moved: its least changed frame is a repeat
        within the noise, and the frame at the phase changed well beyond it."""
        assert self.phase is not None
        if least == self.phase:
            return False
        if noise is None:
            # Nothing learnt yet: only a clear repeat away from an unclear phase.
            repeats = _clear_repeats(changes)
            return least in repeats and self.phase not in repeats
        at_phase = changes[self.phase] if self.phase < len(changes) else float("inf")
        return (changes[least] <= MOTION_MARGIN * noise < at_phase
                and least in _clear_repeats(changes))

    def _confirmed(self, phase: int, following: Sequence[float]) -> bool:
        """Whether the next cycle's frame at ``phase`` changed least, and the one at the old
        phase is no repeat."""
        if len(following) <= phase:
            return False
        least = min(range(len(following)), key=lambda i: following[i])
        return least == phase and self.phase not in _clear_repeats(following)


def _repeat_change(changes: Sequence[float]) -> float | None:
    """How much a cycle's clear repeat changed (None: it has none)."""
    repeats = _clear_repeats(changes)
    return changes[repeats[0]] if repeats else None


def _clear_repeats(changes: Sequence[float]) -> list[int]:
    """The frames of a cycle that changed far less than its typical frame, least first."""
    if not changes:
        return []
    ranked = sorted(range(len(changes)), key=lambda i: changes[i])
    typical = changes[ranked[len(changes) // 2]]
    return [i for i in ranked if changes[i] <= REPEAT_SHARE * typical]


class InverseTelecine:
    """Film frames from telecined ones: ``push`` a decoded frame, get the film frames it
    completes; ``flush`` at the end of the stream.

    Output frames carry timestamps in ``time_base``, 1/60 of the input's (see the module's
    notes). ``frame_duration``: one input frame's length in the input's ticks, for the
    span of the last cycle (None: the last spacing seen).
    """

    def __init__(self, plan: DeinterlacePlan, time_base: Fraction,
                 frame_duration: int | None) -> None:
        assert plan.method == "ivtc", "not an inverse telecine plan"
        self.plan = plan
        self.time_base = time_base / IVTC_TICKS
        self.cadence = Cadence()
        self.pulldown = PulldownTracker(plan.order)
        self._in_time_base = time_base
        self._frame_duration = frame_duration
        self._graph: av.filter.Graph | None = None
        self._previous: np.ndarray | None = None
        self._bits = 8
        # Decoded frames waiting for their role, and the one before them.
        self._decoded: deque[tuple[av.VideoFrame, int]] = deque()
        self._last_decoded: av.VideoFrame | None = None
        # fieldmatch + bwdif's frame for each input time, for frames of unknown role.
        self._matched: dict[int, av.VideoFrame] = {}
        # Frames not yet given out: (frame, input time, change from the last, drop/keep/None:
        # the drop step decides).
        self._pending: list[tuple[av.VideoFrame, int, float, bool | None]] = []
        self._last_spacing: int | None = None
        self.dropped = 0

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        """Give the field matcher one frame (timestamp in the input's time base); the film
        frames of the cycles now complete."""
        if self._graph is None:
            order = self.plan.order
            self._graph = filter_chain(frame, self._in_time_base, [
                ("fieldmatch", f"order={order}:combmatch=full"),
                ("bwdif", f"mode=send_frame:parity={order}:deint=interlaced")])
            self._bits = frame.format.components[0].bits
        self._decoded.append((frame, self._stamp(frame)))
        self.pulldown.add(frame)
        self._graph.push(frame)
        self._take_matched()
        return self._placed(self.pulldown.roles())

    def flush(self) -> list[av.VideoFrame]:
        """The film frames still held at the end of the stream."""
        if self._graph is None:
            return []
        self._graph.push(None)
        self._take_matched()
        self._graph = None
        frames = self._placed(self.pulldown.roles(final=True))
        end = (self._pending[-1][1] + (self._frame_duration or self._last_spacing or 1)
               if self._pending else 0)
        while self._pending:
            cycle = self._pending[:IVTC_CYCLE]
            following = self._pending[IVTC_CYCLE:2 * IVTC_CYCLE]
            frames += self._cycle(cycle, following[0][1] if following else end, following)
            del self._pending[:IVTC_CYCLE]
        return frames

    def _stamp(self, frame: av.VideoFrame) -> int:
        assert frame.time_base is not None and frame.pts is not None
        return round(frame.pts * frame.time_base / self._in_time_base)

    def _take_matched(self) -> None:
        assert self._graph is not None
        for frame in pull_all(self._graph):
            self._matched[self._stamp(frame)] = frame

    def _placed(self, roles: list[FrameRole]) -> list[av.VideoFrame]:
        """The decoded frames given ``roles``, as film frames (or fieldmatch's where the
        role is unknown) into the drop step."""
        out: list[av.VideoFrame] = []
        for role in roles:
            frame, stamp = self._decoded.popleft()
            matched = self._matched.pop(stamp, None)
            before, self._last_decoded = self._last_decoded, frame
            decision: bool | None = role != "repeat"
            if role == "unknown":
                assert matched is not None, "fieldmatch gives a frame per frame"
                frame, decision = matched, None
            elif role == "woven":
                assert before is not None
                # The film frame is the repeat's second field with this frame's first.
                frame = (weave(frame, before) if self.plan.order == "tff"
                         else weave(before, frame))
            elif frame is before:
                # A stand-in for a lost frame (the same frame again): a frame of its own,
                # so that each takes its own time.
                frame = weave(frame, frame)
            out += self._queued(frame, stamp, decision)
        return out

    def _queued(self, frame: av.VideoFrame, stamp: int,
                decision: bool | None) -> list[av.VideoFrame]:
        picture = _first_plane(frame, self._bits)
        change = (float("inf") if self._previous is None else
                  frame_difference(picture, self._previous, (1 << self._bits) - 1))
        if decision is not False:
            self._previous = picture
        if self._pending:
            self._last_spacing = stamp - self._pending[-1][1]
        self._pending.append((frame, stamp, change, decision))
        if len(self._pending) > 2 * IVTC_CYCLE:
            # The cycle after this one is complete: it confirms a break.
            out = self._cycle(self._pending[:IVTC_CYCLE], self._pending[IVTC_CYCLE][1],
                              self._pending[IVTC_CYCLE:2 * IVTC_CYCLE])
            del self._pending[:IVTC_CYCLE]
            return out
        return []

    def _cycle(self, cycle: list[tuple[av.VideoFrame, int, float, bool | None]], end: int,
               following: list[tuple[av.VideoFrame, int, float, bool | None]],
               ) -> list[av.VideoFrame]:
        """The kept frames of one cycle, retimed over its span ``[first stamp, end)``."""
        decisions = [decision for *_, decision in cycle]
        if None not in decisions or False in decisions:
            # The cadence placed the repeats: drop exactly those.
            dropped = tuple(i for i, decision in enumerate(decisions) if decision is False)
            if len(dropped) == 1 and None not in decisions:
                self.cadence.phase = dropped[0]
        else:
            dropped = self.cadence.drops([change for _, _, change, _ in cycle],
                                         [change for _, _, change, _ in following])
        kept = [frame for i, (frame, *_) in enumerate(cycle) if i not in dropped]
        if len(dropped) != 1:
            log.debug("cadence break at pts %d: %d frame(s) of %d dropped", cycle[0][1],
                      len(dropped), len(cycle))
        self.dropped += len(dropped)
        for frame, time in zip(kept, cycle_times(cycle[0][1], end, len(kept)), strict=True):
            frame.pts = time
            frame.time_base = self.time_base
        return kept


def _first_plane(frame: av.VideoFrame, bits: int) -> np.ndarray:
    """The frame's first plane (luma, or green for RGB) as an array of its code values."""
    plane = frame.planes[0]
    dtype = np.dtype(np.uint16 if bits > 8 else np.uint8)
    row = plane.line_size // dtype.itemsize
    values = np.frombuffer(plane, dtype)[:plane.height * row]
    return values.reshape(plane.height, row)[:, :plane.width].copy()
