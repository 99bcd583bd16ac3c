"""Interlaced sources: which field comes first, and bwdif to make progressive frames.

An SR network trained on progressive pictures turns the comb of two woven fields
into sharp stripes, so interlaced archive footage is deinterlaced before it is
upscaled. ``auto`` reads the stream's flag and what
:func:`~vidsr.io.field_detect.detect_fields` measures on the pictures (see
:func:`plan_deinterlace`). Deinterlacing is FFmpeg's ``bwdif`` through a PyAV filter
graph: one frame per frame, or one per field (the frame rate doubles and each field gets
its exact time: the graph halves the time base, so no timestamp is rounded).

Film on video (3:2 pulldown) is not deinterlaced but put back together: a plan whose
``method`` is ``"ivtc"`` is carried out by :mod:`vidsr.io.ivtc`.
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
from vidsr.io.field_detect import CYCLE as PULLDOWN_CYCLE
from vidsr.io.field_detect import FieldOrder, FieldVerdict, detect_fields
from vidsr.io.video_info import VideoInfo

log = logging.getLogger("vidsr")

DeinterlaceMode = Literal["auto", "on", "off", "ivtc"]
DeinterlacerName = Literal["bwdif", "qtgmc"]
DEINTERLACERS: tuple[DeinterlacerName, ...] = ("bwdif", "qtgmc")
FieldOrderChoice = Literal["auto", "tff", "bff"]
# The plugins QTGMC runs on (VapourSynth namespace -> the PyPI package of the qtgmc extra):
# the source filter, motion search and compensation, the bobber, expressions, resizing
# and the repair/removegrain kernels.
QTGMC_PLUGINS = {"bs": "vapoursynth-bestsource", "mv": "vapoursynth-mvtools",
                 "mvu": "vapoursynth-mvutensils", "znedi3": "vapoursynth-znedi3",
                 "akarin": "vapoursynth-akarin", "resize2": "vapoursynth-resize2",
                 "zsmooth": "vapoursynth-zsmooth"}
FieldRate = Literal["frame", "field"]

# The stream flags FFmpeg reads (probe's field_order). "tb" and "bt" are documented as
# coded in one order and shown in the other, but FFmpeg's own tools write "tb" for
# top-field-first pictures (an x264 +ildct encode of top-field-first frames is flagged "tb"),
# so in the files people have the first letter is the field shown first; the pictures have
# the last word on those two (see plan_deinterlace).
# Film on NTSC video: the rates a telecined stream has, nominally (a flagged-progressive
# stream at another rate is not measured: pulldown cannot be in it).
PULLDOWN_RATES = (Fraction(30000, 1001), Fraction(30))
PULLDOWN_TOLERANCE = 0.01
FLAGGED_ORDER: dict[str, FieldOrder] = {"tt": "tff", "tb": "tff", "bb": "bff", "bt": "bff"}
SWAPPED_FLAGS = frozenset({"tb", "bt"})
# A pixel is combed when it stands out from both vertical neighbours, in the same
# direction, by more than this share of the code range.
COMB_STEP = 0.05
# Inverse telecine keeps 4 frames of every 5 in a steady 3:2 cadence (30000/1001 to
# 24000/1001), and times them in 1/60 of the stream's time base: the k frames kept from a
# cycle split its span exactly for any k from 1 to 6 (see vidsr.io.ivtc).
IVTC_CYCLE, IVTC_KEPT, IVTC_TICKS = PULLDOWN_CYCLE, PULLDOWN_CYCLE - 1, 60


@dataclass(frozen=True)
class DeinterlacePlan:
    """How a run deinterlaces: the field order, one frame per frame or per field, and why."""

    order: FieldOrder
    rate: FieldRate
    reason: str
    method: Literal["deinterlace", "ivtc"] = "deinterlace"
    deinterlacer: DeinterlacerName = "bwdif"

    def to_text(self) -> str:
        if self.method == "ivtc":
            return (f"inverse telecine, {self.order}: fields matched into film frames (bwdif"
                    f" on frames left combed), the repeated frame of each cycle of"
                    f" {IVTC_CYCLE} dropped ({self.reason})")
        rate = "a frame per field (double rate)" if self.rate == "field" else "a frame per frame"
        name = "QTGMC (VapourSynth)" if self.deinterlacer == "qtgmc" else "bwdif"
        return f"{name}, {self.order}, {rate} ({self.reason})"


def check_choices(mode: str, order: str, rate: str, deinterlacer: str = "bwdif") -> None:
    """Refuse a deinterlacing choice that does not exist (from Python: the CLI checks too)."""
    if deinterlacer not in DEINTERLACERS:
        raise OptionsError(f"--deinterlacer must be bwdif or qtgmc, got {deinterlacer!r}")
    if mode not in ("auto", "on", "off", "ivtc"):
        raise OptionsError(f"--deinterlace must be auto, on, off or ivtc, got {mode!r}")
    if order not in ("auto", "tff", "bff"):
        raise OptionsError(f"--field-order must be auto, tff or bff, got {order!r}")
    if rate not in ("frame", "field"):
        raise OptionsError(f"--deinterlace-rate must be frame or field, got {rate!r}")


def plan_deinterlace(info: VideoInfo, mode: DeinterlaceMode, order: FieldOrderChoice,
                     rate: FieldRate, deinterlacer: DeinterlacerName = "bwdif",
                     ) -> DeinterlacePlan | None:
    """Decide whether and how a source is deinterlaced; None keeps its frames as they are.

    ``auto`` measures the pictures (:func:`~vidsr.io.field_detect.detect_fields`) and
    weighs the stream's flag: progressive pictures are kept, interlaced ones deinterlaced
    in the measured order, telecined film put back together (inverse telecine). A stream
    flagged progressive is changed only when the pictures show a pulldown cadence; where
    the measure is unsure, a stream flagged interlaced follows its flag and an unflagged
    one is kept, with one warning naming the option that forces it. ``on`` deinterlaces
    whatever the flag says (a source wrongly flagged progressive); ``ivtc`` puts film
    frames back together from 3:2 pulldown, with the field order found as for ``on``;
    ``order`` other than ``auto`` overrides the flag and the measurement. ``deinterlacer``:
    bwdif (FFmpeg's, always there) or qtgmc (the ``qtgmc`` extra's, checked here when a
    source is to be deinterlaced, so a progressive file never needs it); inverse telecine
    deinterlaces its few frames left combed with bwdif.
    """
    check_choices(mode, order, rate, deinterlacer)
    if mode == "off":
        return None
    if mode == "ivtc" and rate == "field":
        raise OptionsError(f"{info.path}: --deinterlace ivtc gives one frame per film frame;"
                           " --deinterlace-rate field does not apply to it")
    plan = _auto_plan(info, rate) if mode == "auto" else _forced_plan(info, mode, order, rate)
    if plan is None:
        return None
    if order != "auto" and order != plan.order:
        plan = replace(plan, order=order, reason=f"asked; {plan.reason}")
    if plan.method == "ivtc":
        # Frames fieldmatch leaves combed are few and alone: bwdif deinterlaces them.
        return plan
    return replace(plan, deinterlacer=available(deinterlacer, info))


def _auto_plan(info: VideoInfo, rate: FieldRate) -> DeinterlacePlan | None:
    if info.field_order == "progressive" and not _pulldown_rate(info):
        # Flagged progressive, and no 3:2 pulldown makes this rate: nothing to measure for.
        return None
    verdict = _measured(info)
    flagged = FLAGGED_ORDER.get(info.field_order)
    flag = (f"the stream is flagged {info.field_order}" if info.field_order != "unknown"
            else "no field order flag")
    if verdict.kind == "telecined":
        assert verdict.order is not None
        if rate == "field":  # film frames cannot come at field rate: a frame per field
            return DeinterlacePlan(verdict.order, rate, f"{flag}; {verdict.evidence};"
                                   " --deinterlace-rate field: deinterlaced, not matched")
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


def _pulldown_rate(info: VideoInfo) -> bool:
    """Whether the stream's rate is one 3:2 pulldown makes (film on 29.97 or 30 fps video)."""
    nominal = info.average_rate or info.base_rate
    return nominal is not None and any(abs(nominal / r - 1) < PULLDOWN_TOLERANCE
                                       for r in PULLDOWN_RATES)


def _measured(info: VideoInfo) -> FieldVerdict:
    """What the pictures of ``info`` 's stream show, logged beside its flag."""
    verdict = detect_fields(info.path, info.stream_index)
    log.info("%s: flagged %s; %s: %s", info.path, info.field_order, verdict.kind,
             verdict.evidence)
    return verdict


def _forcing_option(verdict: FieldVerdict) -> str:
    if verdict.film:
        return "--deinterlace ivtc matches the film frames"
    return "--deinterlace on deinterlaces it"


def _forced_plan(info: VideoInfo, mode: DeinterlaceMode, order: FieldOrderChoice,
                 rate: FieldRate) -> DeinterlacePlan:
    """``on`` or ``ivtc``: the field order from the flag, else from the pictures, else
    ``order``."""
    method: Literal["deinterlace", "ivtc"] = "ivtc" if mode == "ivtc" else "deinterlace"
    flagged = FLAGGED_ORDER.get(info.field_order)
    if flagged is not None and info.field_order not in SWAPPED_FLAGS:
        return DeinterlacePlan(flagged, rate, f"the stream is flagged {info.field_order}",
                               method=method)
    verdict = _measured(info)
    if flagged is not None:  # tb, bt: FFmpeg's own writers flag them either way
        return DeinterlacePlan(verdict.order or flagged, rate,
                               f"the stream is flagged {info.field_order}; {verdict.evidence}",
                               method=method)
    if verdict.order is not None:
        return DeinterlacePlan(verdict.order, rate, verdict.evidence, method=method)
    if order == "auto":
        raise OptionsError(f"{info.path}: --deinterlace {mode}, but the stream has no field"
                           f" order and {verdict.evidence}; give --field-order tff or bff")
    return DeinterlacePlan(order, rate, "asked", method=method)


def available(deinterlacer: DeinterlacerName, info: VideoInfo) -> DeinterlacerName:
    """``deinterlacer``, once it is known to run here on ``info`` 's video."""
    if deinterlacer == "qtgmc":
        missing = qtgmc_missing()
        if missing is not None:
            raise OptionsError(f"--deinterlacer qtgmc needs {missing}: pip install"
                               " 'vidsr[qtgmc]'")
        if info.alpha:
            raise OptionsError(f"{info.path}: QTGMC would drop the pictures' alpha channel;"
                               " deinterlace it with --deinterlacer bwdif")
    return deinterlacer


def qtgmc_missing() -> str | None:
    """What of the ``qtgmc`` extra this Python lacks (named for a message), or None."""
    try:
        import vapoursynth as vs
    except ImportError:
        return "VapourSynth"
    try:
        import vsdeinterlace  # noqa: F401 - vsjetpack's QTempGaussMC
    except ImportError:
        return "vsjetpack"
    absent = [name for name in QTGMC_PLUGINS if not hasattr(vs.core, name)]
    if absent:
        return "the VapourSynth plugin(s) " + ", ".join(QTGMC_PLUGINS[name] for name in absent)
    return None


def deinterlaced_info(info: VideoInfo, plan: DeinterlacePlan) -> VideoInfo:
    """``info`` as the plan's output: progressive. The :class:`Deinterlacer` 's timestamps
    are in half the time base, at field rate twice the frames at twice the rate (the same
    duration); inverse telecine's in 1/60 of it, 4 frames for every 5 at 4/5 of the rate
    (the frame count is then an estimate: a cadence break keeps more or fewer)."""
    if plan.method == "ivtc":
        per_frame, time_base = Fraction(IVTC_KEPT, IVTC_CYCLE), info.time_base / IVTC_TICKS
    else:
        per_frame, time_base = Fraction(2 if plan.rate == "field" else 1), info.time_base / 2
    return replace(
        info, time_base=time_base, field_order="progressive",
        average_rate=info.average_rate * per_frame if info.average_rate else None,
        base_rate=info.base_rate * per_frame if info.base_rate else None,
        frame_count=(round(info.frame_count * per_frame) if info.frame_count is not None
                     else None))


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
        return pull_all(self._graph)

    def flush(self) -> list[av.VideoFrame]:
        """The frames bwdif still holds at the end of the stream."""
        if self._graph is None:
            return []
        self._graph.push(None)
        frames = pull_all(self._graph)
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
    return filter_chain(template, time_base, [(name, args)])


def filter_chain(template: av.VideoFrame, time_base: Fraction,
                 filters: list[tuple[str, str]]) -> av.filter.Graph:
    """A configured graph taking frames like ``template`` (timestamps in ``time_base``)
    through ``filters`` (FFmpeg name, arguments) one after the other."""
    graph = av.filter.Graph()
    node = graph.add_buffer(width=template.width, height=template.height,
                            format=template.format.name, time_base=time_base)
    for name, args in filters:
        following = graph.add(name, args)
        node.link_to(following)
        node = following
    node.link_to(graph.add("buffersink"))
    graph.configure()
    return graph


def pull_all(graph: av.filter.Graph) -> list[av.VideoFrame]:
    """Every frame ``graph`` can give now."""
    frames = []
    while True:
        try:
            frames.append(graph.pull())
        except (av.BlockingIOError, av.EOFError):
            return frames
