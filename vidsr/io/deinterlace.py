"""Interlaced sources: which field comes first, and bwdif to make progressive frames.

An SR network trained on progressive pictures turns the comb of two woven fields
into sharp stripes, so interlaced archive footage is deinterlaced before it is
upscaled, and telecined film is planned for inverse telecine. ``auto`` reads the
stream's flag and what :func:`~vidsr.io.field_detect.detect_fields` measures on the
pictures (see :func:`plan_deinterlace`). Deinterlacing is FFmpeg's ``bwdif`` through
a PyAV filter graph: one frame per frame, or one per field (the frame rate doubles and
each field gets its exact time: the graph halves the time base, so no timestamp is
rounded).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Literal

import av
import av.filter
import numpy as np

from vidsr.errors import OptionsError
from vidsr.io.field_detect import FieldOrder, FieldVerdict, detect_fields
from vidsr.io.video_info import VideoInfo

log = logging.getLogger("vidsr")

DeinterlaceMode = Literal["auto", "on", "off"]
FieldOrderChoice = Literal["auto", "tff", "bff"]
FieldRate = Literal["frame", "field"]

# The stream flags FFmpeg reads (probe's field_order). "tb" and "bt" are documented as
# coded in one order and shown in the other, but FFmpeg's own tools write "tb" for
# top-field-first pictures (an x264 +ildct encode of top-field-first frames is flagged "tb"),
# so in the files people have the first letter is the field shown first; idet has the last
# word on those two (see plan_deinterlace).
FLAGGED_ORDER: dict[str, FieldOrder] = {"tt": "tff", "tb": "tff", "bb": "bff", "bt": "bff"}
# A pixel is combed when it stands out from both vertical neighbours, in the same
# direction, by more than this share of the code range.
COMB_STEP = 0.05


@dataclass(frozen=True)
class DeinterlacePlan:
    """How a run deinterlaces: the field order, one frame per frame or per field, and why;
    ``method`` ivtc: telecined film, its fields matched back into film frames."""

    order: FieldOrder
    rate: FieldRate
    reason: str
    method: Literal["deinterlace", "ivtc"] = "deinterlace"

    def to_text(self) -> str:
        if self.method == "ivtc":
            return f"inverse telecine, {self.order} ({self.reason})"
        rate = "a frame per field (double rate)" if self.rate == "field" else "a frame per frame"
        return f"bwdif, {self.order}, {rate} ({self.reason})"


def check_choices(mode: str, order: str, rate: str) -> None:
    """Refuse a deinterlacing choice that does not exist (from Python: the CLI checks too)."""
    if mode not in ("auto", "on", "off"):
        raise OptionsError(f"--deinterlace must be auto, on or off, got {mode!r}")
    if order not in ("auto", "tff", "bff"):
        raise OptionsError(f"--field-order must be auto, tff or bff, got {order!r}")
    if rate not in ("frame", "field"):
        raise OptionsError(f"--deinterlace-rate must be frame or field, got {rate!r}")


def plan_deinterlace(info: VideoInfo, mode: DeinterlaceMode, order: FieldOrderChoice,
                     rate: FieldRate) -> DeinterlacePlan | None:
    """Decide whether and how a source is deinterlaced; None keeps its frames as they are.

    ``auto`` measures the pictures (:func:`~vidsr.io.field_detect.detect_fields`) and
    weighs the stream's flag: progressive pictures are kept, interlaced ones deinterlaced
    in the measured order, telecined film planned for inverse telecine. A stream flagged
    progressive is changed only when the pictures show a pulldown cadence; where the
    measure is unsure, a stream flagged interlaced follows its flag and an unflagged one is
    kept, with one warning naming the option that forces it. ``on`` deinterlaces whatever
    the flag says (a source wrongly flagged progressive); ``order`` other than ``auto``
    overrides the flag and the measurement.
    """
    check_choices(mode, order, rate)
    if mode == "off":
        return None
    plan = (_auto_plan(info, rate) if mode == "auto" else _forced_plan(info, order, rate))
    if plan is not None and order != "auto" and order != plan.order:
        plan = replace(plan, order=order, reason=f"asked; {plan.reason}")
    return plan


def _auto_plan(info: VideoInfo, rate: FieldRate) -> DeinterlacePlan | None:
    verdict = detect_fields(info.path, info.stream_index)
    log.info("%s: flagged %s; %s: %s", info.path, info.field_order, verdict.kind,
             verdict.evidence)
    flagged = FLAGGED_ORDER.get(info.field_order)
    flag = (f"the stream is flagged {info.field_order}" if info.field_order != "unknown"
            else "no field order flag")
    if verdict.kind == "telecined":
        assert verdict.order is not None
        return DeinterlacePlan(verdict.order, rate, f"{flag}; {verdict.evidence}",
                               method="ivtc")
    if info.field_order == "progressive":
        if verdict.kind == "interlaced":
            # The flag wins over a measure that could be wrong; say what the pictures show.
            log.warning("%s: flagged progressive, but %s: kept as it is (--deinterlace on"
                        " deinterlaces it)", info.path, verdict.evidence)
        return None
    if verdict.kind == "interlaced":
        assert verdict.order is not None
        return DeinterlacePlan(verdict.order, rate, f"{flag}; {verdict.evidence}")
    if verdict.kind == "progressive":
        if flagged is not None:
            log.warning("%s: flagged %s, but %s: kept as it is (--deinterlace on"
                        " deinterlaces it)", info.path, info.field_order, verdict.evidence)
        return None
    if flagged is not None:  # unsure: the flag decides
        return DeinterlacePlan(flagged, rate, f"{flag}; {verdict.evidence}")
    log.warning("%s: %s; kept as it is (%s)", info.path, verdict.evidence,
                _forcing_option(verdict))
    return None


def _forcing_option(verdict: FieldVerdict) -> str:
    if verdict.film:
        return "--deinterlace ivtc matches the film frames"
    return "--deinterlace on deinterlaces it"


def _forced_plan(info: VideoInfo, order: FieldOrderChoice,
                 rate: FieldRate) -> DeinterlacePlan:
    flagged = FLAGGED_ORDER.get(info.field_order)
    if flagged is not None and info.field_order not in ("tb", "bt"):
        return DeinterlacePlan(flagged, rate, f"the stream is flagged {info.field_order}")
    verdict = detect_fields(info.path, info.stream_index)
    if flagged is not None:  # tb, bt: FFmpeg's own writers flag them either way
        return DeinterlacePlan(verdict.order or flagged, rate,
                               f"the stream is flagged {info.field_order}; {verdict.evidence}")
    if verdict.order is not None:
        return DeinterlacePlan(verdict.order, rate, verdict.evidence)
    if order == "auto":
        raise OptionsError(f"{info.path}: --deinterlace on, but the stream has no field order"
                           f" and {verdict.evidence}; give --field-order tff or bff")
    return DeinterlacePlan(order, rate, "asked")


def deinterlaced_info(info: VideoInfo, plan: DeinterlacePlan) -> VideoInfo:
    """``info`` as the :class:`Deinterlacer` 's output: progressive, timestamps in half the
    time base, at field rate twice the frames at twice the rate (the same duration)."""
    per_frame = 2 if plan.rate == "field" else 1
    return replace(
        info, time_base=info.time_base / 2, field_order="progressive",
        average_rate=info.average_rate * per_frame if info.average_rate else None,
        base_rate=info.base_rate * per_frame if info.base_rate else None,
        frame_count=info.frame_count * per_frame if info.frame_count is not None else None)


class Deinterlacer:
    """bwdif over decoded frames: ``push`` a frame, get the progressive frames it completes.

    Output frames carry timestamps in ``time_base``, half the input's: a field is
    half a frame's duration, so both rates stay exact.
    """

    def __init__(self, plan: DeinterlacePlan, time_base: Fraction) -> None:
        self.plan = plan
        self.time_base = time_base / 2
        self._in_time_base = time_base
        self._graph: av.filter.Graph | None = None

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        """Give bwdif one frame; the frames it can now output (none at first: it looks ahead)."""
        if self._graph is None:
            mode = "send_field" if self.plan.rate == "field" else "send_frame"
            self._graph = _graph(frame, self._in_time_base, "bwdif",
                                 f"mode={mode}:parity={self.plan.order}:deint=all")
        self._graph.push(frame)
        return _pull_all(self._graph)

    def flush(self) -> list[av.VideoFrame]:
        """The frames bwdif still holds at the end of the stream."""
        if self._graph is None:
            return []
        self._graph.push(None)
        frames = _pull_all(self._graph)
        self._graph = None
        return frames


def comb_score(luma: np.ndarray, max_value: float = 255.0) -> float:
    """The share of pixels that are combed: above or below both vertical neighbours.

    A woven frame of moving content scores high; progressive pictures score near 0
    (only thin horizontal lines count).
    """
    values = np.asarray(luma, dtype=np.float64)
    above, middle, below = values[:-2], values[1:-1], values[2:]
    step = (COMB_STEP * max_value) ** 2
    return float(np.mean((middle - above) * (middle - below) > step))


def _graph(template: av.VideoFrame, time_base: Fraction, name: str,
           args: str) -> av.filter.Graph:
    graph = av.filter.Graph()
    source = graph.add_buffer(width=template.width, height=template.height,
                              format=template.format.name, time_base=time_base)
    node = graph.add(name, args)
    sink = graph.add("buffersink")
    source.link_to(node)
    node.link_to(sink)
    graph.configure()
    return graph


def _pull_all(graph: av.filter.Graph) -> list[av.VideoFrame]:
    frames = []
    while True:
        try:
            frames.append(graph.pull())
        except (av.BlockingIOError, av.EOFError):
            return frames
