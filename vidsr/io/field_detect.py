"""Is a video progressive, interlaced or telecined film, and which field comes first?
Measured on its pictures, whatever its flags say.

Each frame is split into its top field (even rows) and bottom field (odd rows). Three
pairings of opposite fields are compared, for every frame ``n`` and the next:

- ``own``: the two fields of frame ``n``;
- ``top first``: frame n's bottom field with frame n+1's top field (neighbours in time
  when the top field is shown first);
- ``bottom first``: frame n's top field with frame n+1's bottom field.

A pairing's mismatch is what one field's rows leave unexplained by the rows of the other
around them (the comb a weave of the two would show), averaged along each row over a few
pixels so that grain cancels and moving edges do not. In each block of the picture only
the excess over the best of the three pairings counts, so still areas and fine vertical
detail (which mismatch in every pairing alike) drop out.

- Progressive: a frame's own fields are one picture: ``own`` fits far better than either
  neighbour, and the neighbours fit alike (a frame apart, both).
- Interlaced: the own fields are half a frame apart, like the neighbours in the true field
  order, and the other neighbour pairing is a frame and a half apart: ``own`` and one
  neighbour fit, the other clearly does not. That one names the field order.
- Telecined film: a field repeats, the top one at one frame of every cycle of five and the
  bottom one at another (3:2 pulldown, 2:3, 2:3:3:2 ...). Same-parity fields of
  consecutive frames are compared for that cadence; the field order is read from the
  neighbour pairings as for interlaced video (fields matched across frames run in time
  in the right order only).

Where the measures do not agree well enough the verdict is ``unsure``: the caller keeps the
picture as it is and says which option forces a choice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np

from vidsr.io.probe import open_input, video_stream

log = logging.getLogger("vidsr")

FieldOrder = Literal["tff", "bff"]
FieldKind = Literal["progressive", "interlaced", "telecined", "unsure"]

RUN_FRAMES = 120  # consecutive frames measured at each place
LONG_RUNS = 4  # a file of this many runs or more is also measured from its middle
MAX_WIDTH = 640  # wider pictures are narrowed (rows kept: fields stay apart) to save time
ROW_AVERAGE = 8  # pixels along a row that a mismatch is averaged over (grain cancels)
BLOCK = (8, 16)  # field rows x pixels: where the best pairing is chosen
CYCLE = 5  # frames in one pulldown cycle (4 film frames in 5 video frames)

# Thresholds, tuned on the corpus of tests/field_corpus.py (benchmarks/field_detect.py):
MOTION = 0.05  # far neighbour's excess over the own fields' (8-bit levels) that counts
MOVING_SHARE = 0.1  # share of the frame pairs that must move for any verdict but "still"
PROGRESSIVE_FIT = 0.6  # the near neighbour fits about as badly as the far one: one picture
INTERLACED_FIT = 0.4  # the near neighbour fits about as well as the own fields: two times
PROGRESSIVE_BIAS = 0.15  # neither neighbour pairing better than this: no field order
ORDER_BIAS = 0.25  # one neighbour pairing fits this much better: the field order
TELECINE_BIAS = 0.15  # an order bias against the cadence's order that makes it unsure
REPEAT_DEPTH = 0.8  # a repeating field changes under this share of its cycle's median
CADENCE_SHARE = 0.6  # share of the moving cycles that change least at the same place
MIN_CYCLES = 3  # moving cycles needed to call a cadence


@dataclass(frozen=True)
class FieldVerdict:
    """What the pictures are; ``order`` is the field shown first (None when progressive or
    unsure); ``evidence`` says why, in one line for the run plan."""

    kind: FieldKind
    order: FieldOrder | None
    evidence: str
    film: bool = False  # a pulldown cadence was seen (an unsure verdict may still be film)


@dataclass(frozen=True)
class Cadence:
    """Where a field repeats within the cycle of five frames: ``phase`` (0-4, from the
    first measured frame) is where it changes least in ``repeating`` of ``moving`` cycles,
    by ``depth`` of the cycle's median change there (a coded repeat is not quite still)."""

    phase: int
    repeating: int
    moving: int
    depth: float = 1.0

    @property
    def found(self) -> bool:
        return (self.moving >= MIN_CYCLES and self.repeating >= CADENCE_SHARE * self.moving
                and self.depth <= REPEAT_DEPTH)


@dataclass(frozen=True)
class FieldMeasures:
    """The measured numbers of one file, over the frame pairs where fields move.

    ``fit``: the median of where the near neighbour pairing's mismatch lies between the
    own fields' (0: two fields of one time) and the far neighbour's (1: a frame apart, as
    in progressive video). ``bias``: the mean of (bottom first - top first) / (both): +1
    when top-first pairings always fit better, -1 when bottom-first ones do.
    """

    pairs: int
    moving: int
    fit: float
    bias: float
    top_repeats: Cadence
    bottom_repeats: Cadence

    @property
    def still(self) -> bool:
        return self.moving < max(MIN_CYCLES, MOVING_SHARE * self.pairs)

    @property
    def order(self) -> FieldOrder:
        # In the true order the near neighbour is the next field in time: the better fit.
        return "tff" if self.bias >= 0 else "bff"

    @property
    def telecined(self) -> bool:
        return (self.top_repeats.found and self.bottom_repeats.found
                and self.top_repeats.phase != self.bottom_repeats.phase)

    @property
    def cadence_order(self) -> FieldOrder:
        """The field order of a pulldown: a film frame held for three fields starts on the
        first field, so with the top field first the top field repeats and one or two frames
        later the bottom one (23, 32, 2332); with the bottom field first the other way."""
        after = (self.bottom_repeats.phase - self.top_repeats.phase) % CYCLE
        return "tff" if after in (1, 2) else "bff"


def detect_fields(path: str | Path, stream_index: int | None = None) -> FieldVerdict:
    """Measure ``path``'s video (stream ``stream_index``, default the one vidsr upscales)
    and say whether it is progressive, interlaced or telecined, and its field order."""
    return judge(measure_fields(path, stream_index))


def judge(measures: FieldMeasures) -> FieldVerdict:
    """The verdict on measured numbers (see the module's docstring)."""
    m = measures
    head = f"measured {m.pairs} frame pairs, {m.moving} moving"
    fit = f"near neighbour fit {m.fit:.2f}"
    order = (f"{'top' if m.order == 'tff' else 'bottom'} field first"
             f" (order bias {m.bias:+.2f})")
    if m.pairs == 0:
        return FieldVerdict("unsure", None, "no two consecutive frames could be measured")
    if m.telecined:
        top, bottom = m.top_repeats, m.bottom_repeats
        cadence = (f"a top field repeats at frame {top.phase} of each 5"
                   f" ({top.repeating} of {top.moving} cycles), a bottom field at frame"
                   f" {bottom.phase} ({bottom.repeating} of {bottom.moving})")
        order = (f"{'top' if m.cadence_order == 'tff' else 'bottom'} field first"
                 f" (order bias {m.bias:+.2f})")
        if m.order == m.cadence_order or abs(m.bias) < TELECINE_BIAS:
            return FieldVerdict("telecined", m.cadence_order, f"{head}: {cadence}; {order}",
                                film=True)
        return FieldVerdict("unsure", None, f"{head}: {cadence}, but the fields match across"
                                            f" frames in the other order ({m.bias:+.2f})",
                            film=True)
    if m.still:
        return FieldVerdict("progressive", None, f"{head}: nothing moves between fields")
    if m.fit >= PROGRESSIVE_FIT and abs(m.bias) < PROGRESSIVE_BIAS:
        return FieldVerdict("progressive", None,
                            f"{head}: {fit}, order bias {m.bias:+.2f} (one picture)")
    if m.fit <= INTERLACED_FIT and abs(m.bias) >= ORDER_BIAS:
        return FieldVerdict("interlaced", m.order, f"{head}: {fit} (two times); {order}")
    return FieldVerdict("unsure", None, f"{head}: {fit}, order bias {m.bias:+.2f}:"
                                        " neither one picture nor two times")


def measure_fields(path: str | Path, stream_index: int | None = None) -> FieldMeasures:
    """The field measures of ``path``'s video, from its first frames and, in a long file,
    from its middle too."""
    path = Path(path)
    pairs: list[np.ndarray] = []  # per run: (frame pairs, 5) rows of the five measures
    with open_input(path) as container:
        stream = video_stream(container, path, stream_index)
        for start in _run_starts(container, stream):
            rows = _measure_run(container, stream, start, path)
            if len(rows):
                pairs.append(rows)
    if not pairs:
        empty = Cadence(0, 0, 0)
        return FieldMeasures(0, 0, 0.0, 0.0, empty, empty)
    every = np.concatenate(pairs)
    own, top_first, bottom_first = every[:, 0], every[:, 1], every[:, 2]
    near, far = np.minimum(top_first, bottom_first), np.maximum(top_first, bottom_first)
    # Each pair counts once, however much it moves: a cut would outweigh the rest.
    moving = far - own >= MOTION
    fit = np.clip((near - own)[moving] / (far - own)[moving], -1, 1)
    bias = ((bottom_first - top_first) / np.maximum(top_first + bottom_first, 1e-9))[moving]
    # Each run keeps its own cycle phase; the first run's numbers name the phase.
    tops = [cadence_of(rows[:, 3]) for rows in pairs]
    bottoms = [cadence_of(rows[:, 4]) for rows in pairs]
    return FieldMeasures(len(every), int(moving.sum()),
                         float(np.median(fit)) if moving.any() else 0.0,
                         float(bias.mean()) if moving.any() else 0.0,
                         _merged(tops), _merged(bottoms))


def _run_starts(container: av.container.InputContainer, stream: av.VideoStream) -> list[int | None]:
    """Where runs begin: the first frame (None: no seek), and the middle of a long file
    (a timestamp in the stream's time base)."""
    starts: list[int | None] = [None]
    rate = stream.average_rate or stream.base_rate
    duration = (stream.duration if stream.duration is not None and stream.time_base else None)
    if duration is None and container.duration is not None and stream.time_base:
        duration = int(container.duration / av.time_base / stream.time_base)
    if rate and duration and stream.time_base:
        frames = float(duration * stream.time_base * rate)
        if frames >= LONG_RUNS * RUN_FRAMES:
            starts.append((stream.start_time or 0) + duration // 2)
    return starts


def _measure_run(container: av.container.InputContainer, stream: av.VideoStream,
                 start: int | None, path: Path) -> np.ndarray:
    rows: list[tuple[float, ...]] = []
    previous: np.ndarray | None = None
    try:
        if start is not None:
            container.seek(start, stream=stream)
        for count, frame in enumerate(container.decode(stream)):
            if count >= RUN_FRAMES:
                break
            luma = measured_luma(frame)
            if previous is not None and previous.shape == luma.shape:
                rows.append(_pair_measures(previous, luma))
            previous = luma
    except (av.FFmpegError, ValueError) as exc:
        # A damaged packet or a failed seek: the pairs measured so far decide; the
        # decoder deals with the damage itself when the run reads it.
        log.debug("%s: fields measured up to a frame it could not take: %s", path, exc)
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def measured_luma(frame: av.VideoFrame) -> np.ndarray:
    """The frame's luma as the field measures take it: floats, an even number of rows,
    narrowed to MAX_WIDTH."""
    width = min(frame.width, MAX_WIDTH)
    gray = frame.reformat(width=width, height=frame.height, format="gray")
    luma = gray.to_ndarray().astype(np.float32)
    return luma[: luma.shape[0] // 2 * 2]


def _pair_measures(frame: np.ndarray, following: np.ndarray) -> tuple[float, ...]:
    """own, top first, bottom first (excess over the best pairing of each block), then the
    change of the top field and of the bottom field from ``frame`` to ``following``."""
    top, bottom = frame[0::2], frame[1::2]
    next_top, next_bottom = following[0::2], following[1::2]
    own = _mismatch(top, bottom)
    top_first = _mismatch(next_top, bottom)
    bottom_first = _mismatch(top, next_bottom)
    best = np.minimum(np.minimum(own, top_first), bottom_first)
    return (float((own - best).mean()), float((top_first - best).mean()),
            float((bottom_first - best).mean()), *field_changes(frame, following))


def field_changes(frame: np.ndarray, following: np.ndarray) -> tuple[float, float]:
    """How much the top field and the bottom field change from ``frame`` to ``following``
    (both from :func:`measured_luma`): a repeated field changes by the codec's noise only."""
    return (_most_changed(_blocks(np.abs(_row_average(following[0::2] - frame[0::2])))),
            _most_changed(_blocks(np.abs(_row_average(following[1::2] - frame[1::2])))))


def _most_changed(blocks: np.ndarray) -> float:
    """The mean of the blocks that change most: a small moving object among still ones
    still shows whether its field repeated."""
    values = np.sort(blocks.reshape(-1))
    return float(values[-max(1, len(values) // 5):].mean())


def _mismatch(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Per block: how far each field's rows are from the mean of the other field's rows
    above and below them (both ways round)."""
    bottom_left = bottom[:-1] - (top[:-1] + top[1:]) / 2
    top_left = top[1:] - (bottom[:-1] + bottom[1:]) / 2
    return _blocks(np.abs(_row_average(bottom_left)) + np.abs(_row_average(top_left))) / 2


def _row_average(values: np.ndarray) -> np.ndarray:
    """A running mean of ROW_AVERAGE pixels along each row (signed: grain cancels)."""
    sums = np.cumsum(values, axis=1, dtype=np.float64)
    sums = np.concatenate([np.zeros((values.shape[0], 1)), sums], axis=1)
    return ((sums[:, ROW_AVERAGE:] - sums[:, :-ROW_AVERAGE]) / ROW_AVERAGE).astype(np.float32)


def _blocks(values: np.ndarray) -> np.ndarray:
    rows, columns = BLOCK
    height = values.shape[0] // rows * rows
    width = values.shape[1] // columns * columns
    if height == 0 or width == 0:
        return values.reshape(1, -1).mean(axis=1, keepdims=True)
    return values[:height, :width].reshape(height // rows, rows, width // columns,
                                           columns).mean(axis=(1, 3))


def cadence_of(changes: np.ndarray) -> Cadence:
    """Where in each cycle of five a field changes least: the phase most cycles agree on."""
    votes = np.zeros(CYCLE, dtype=int)
    depths: list[list[float]] = [[] for _ in range(CYCLE)]
    moving = 0
    for start in range(0, len(changes) - CYCLE + 1, CYCLE):
        cycle = changes[start:start + CYCLE]
        median = float(np.median(cycle))
        if median < MOTION:
            continue
        moving += 1
        lowest = int(np.argmin(cycle))
        votes[lowest] += 1
        depths[lowest].append(float(cycle[lowest]) / median)
    phase = int(np.argmax(votes))
    depth = float(np.mean(depths[phase])) if depths[phase] else 1.0
    return Cadence(phase, int(votes[phase]), moving, depth)


def _merged(cadences: list[Cadence]) -> Cadence:
    """The runs' cadences as one: each run counts its cycles at its own phase."""
    repeating = sum(c.repeating for c in cadences)
    depth = (sum(c.depth * c.repeating for c in cadences) / repeating if repeating else 1.0)
    return Cadence(cadences[0].phase, repeating, sum(c.moving for c in cadences), depth)
