"""``vsvidsr.upscale``: vidsr's models as a VapourSynth filter.

One more front end over vidsr's run plan and engine, not a second engine: the
keyword arguments become :class:`~vidsr.plan.run_plan.EngineOptions`, :func:`resolve_plan`
decides device, precision, executor, batch and tiles, and an
:class:`~vidsr.engine.engine.Engine` runs the batches through the plan's executor
(CPU workers, or CUDA slots with pinned buffers) on its replicas, which own
padding, tiles, the fp32 redo and the out-of-memory fallback.

Two ways through the engine, by format:

- integer YUV and GRAY (luma and plane-wise models) go through
  :meth:`Engine.submit`, the transcoder's own path: Y through the network,
  chroma resized with vidsr's bicubic, code values rounded as the encoder
  gets them; so ``vidsr clip.vpy`` and a script with vsvidsr give the same
  frames;
- float RGB and GRAY (``RGBS``/``RGBH``/``GRAYS``/``GRAYH``) go through
  :meth:`Engine.submit_floats`: the network on the planes as they are,
  unclamped; half-precision planes travel as half precision to the device and
  back.

A model that sees a window of frames asks the clip for each frame's neighbours and
keeps its windows within a shot (:mod:`vsvidsr.windows`); the engine gets batches of
windows, each frame once, as the transcoder's are.

VapourSynth requests frames from many threads; :class:`~vsvidsr.gather.Gatherer`
collects them into batches. Each request runs in its own per-frame
``std.ModifyFrame`` (one instance serves its requests one at a time), inside a
``std.FrameEval``, so the requests of all threads reach the gatherer at once.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import vapoursynth as vs

from vidsr.engine.engine import Engine
from vidsr.engine.model_space import float_layout
from vidsr.errors import InputError, OptionsError, VidsrError
from vidsr.executors import PendingBatch
from vidsr.executors.openvino import faster_plan
from vidsr.io.frames import FrameBatch, FrameWindows, PlaneLayout
from vidsr.io.script_source import colour_of, frame_planes, layout_of, write_planes
from vidsr.models.zoo import SRModel, load_model
from vidsr.options import defaults, preset_values
from vidsr.plan.precision import Precision
from vidsr.plan.run_plan import (
    CpuOptions,
    CudaOptions,
    EngineOptions,
    RunPlan,
    Runtime,
    resolve_plan,
)
from vidsr.run_presets import load_preset
from vsvidsr.gather import Gatherer, Request
from vsvidsr.windows import neighbour_clips, window_of

log = logging.getLogger("vidsr")

# How a format goes through the engine (see the module docstring).
Route = Literal["codes", "float"]


def upscale(
    clip: vs.VideoNode,
    model: str | Path | SRModel | None = None,
    scale: int | None = None,
    weights: str | Path | None = None,
    strength: float | None = None,
    device: str | None = None,
    precision: Precision | None = None,
    runtime: Runtime | None = None,
    batch_size: int | None = None,
    num_streams: int | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
    preset: str | Path | None = None,
    plan: RunPlan | None = None,
) -> vs.VideoNode:
    """Upscale ``clip`` ``scale`` times with a vidsr model; the same models, weights files
    and run plan as the ``vidsr`` command.

    - ``clip``: RGBS or RGBH for RGB models; GRAYS, GRAYH or integer GRAY/YUV for luma
      models (Y through the network, chroma resized with vidsr's bicubic) and for the
      plane-wise references (``nearest``, ``bicubic``). Other formats raise ``vs.Error``
      naming the ``core.resize`` call that converts them.
    - ``model``: a name from ``vidsr models`` or a weights file (default ``compact``).
    - ``scale``: the factor (default: the model's largest).
    - ``weights``: a weights file for the named model's architecture.
    - ``strength``: for a model with a strength knob (``crisp``), as ``vidsr --strength``:
      0 its PSNR-trained partner's picture, 1 its own (default), between: the two blended.
    - ``device``: ``auto`` (default), ``cpu``, ``cuda``, ``cuda:N``, ``cuda:0,cuda:1``.
    - ``precision``: ``auto`` (default), ``fp32``, ``fp16``, ``bf16``, as ``vidsr --precision``.
    - ``runtime``: what runs the network, as ``vidsr --runtime``: ``torch``, ``openvino`` (on
      the CPU) or ``auto``; by default the run plan's (:class:`~vidsr.plan.run_plan.EngineOptions`).
    - ``batch_size``: frames per batch (default: 1 on a CPU, 4 on CUDA).
    - ``num_streams``: batches in flight: CUDA slots per device, or CPU workers.
    - ``tile``, ``tile_overlap``: tile size in pixels (default whole frames, tiles only when
      memory runs out) and each tile's context (default: the model's receptive radius).
    - ``preset``: a run preset (``vidsr presets``, or a TOML file) whose model and engine
      options are the defaults of the arguments above; its encoding, deinterlacing and
      resizing options are the script's to do and are left out (logged).
    - ``plan``: a run plan made elsewhere for ``model`` (``vidsr IN OUT --dry-run --json``
      read back with :meth:`~vidsr.plan.run_plan.RunPlan.from_json`): the filter runs its engine
      part (devices, precision, executor, batch, tiles) instead of planning its own from
      the arguments above.

    The result has the same length, frame rate, frame durations and frame properties
    (matrix, primaries, transfer, range, aspect ratio, field order, scene changes, your
    own); the frames come back in order, each exactly once.
    """
    if not isinstance(clip, vs.VideoNode):
        raise vs.Error(f"vsvidsr.upscale: clip must be a video clip, not {type(clip).__name__}")
    try:
        if preset is not None:
            given = _preset_values(preset)
            model = model if model is not None else given["model"]
            scale = scale if scale is not None else given["scale"]
            weights = weights if weights is not None else given["weights"]
            strength = strength if strength is not None else given["strength"]
            device = device if device is not None else given["device"]
            precision = precision if precision is not None else given["precision"]
            batch_size = batch_size if batch_size is not None else given["batch_size"]
            tile = tile if tile is not None else given["tile"]
            tile_overlap = tile_overlap if tile_overlap is not None else given["tile_overlap"]
        model = model if model is not None else "compact"
        sr = model if isinstance(model, SRModel) else load_model(model, scale=scale,
                                                                 weights=weights,
                                                                 strength=strength)
        route = _route(clip, sr)
        if plan is None:
            options = EngineOptions(
                device=device or "auto", precision=precision or "auto",
                runtime=runtime or EngineOptions.runtime, batch_size=batch_size,
                tile=tile or 0, tile_overlap=tile_overlap,
                cuda=CudaOptions(in_flight=num_streams or CudaOptions.in_flight),
                cpu=CpuOptions(workers=num_streams))
            # Overlapped: in a script the source filter, the other filters and the encoder
            # at the end of vspipe's pipe share the cores with the network, as decoding and
            # encoding do in a vidsr run; on a CPU that plans workers of few threads, which
            # ran 3.3x faster (median) than one batch on both cores of a busy 2-core
            # machine (benchmarks/RESULTS.md).
            plan = resolve_plan(sr, options, overlapped=True, choose_runtime=faster_plan)
        elif (plan.model.name, plan.model.scale) != (sr.name, sr.scale):
            raise OptionsError(f"the plan runs {plan.model.name} x{plan.model.scale}, not"
                               f" {sr.name} x{sr.scale}")
        engine = Engine(sr, plan)
        engine.prepare(clip.width, clip.height)
    except VidsrError as exc:
        raise vs.Error(f"vsvidsr.upscale: {_one_line(exc)}") from None
    log.debug("vsvidsr: %s", plan.to_text().replace("\n", "; "))
    batches = _Batches(engine, route, _layout(clip.format, route))
    gatherer = Gatherer(batches.submit, batch_size=plan.batch_size,
                        in_flight=engine.in_flight, threads=vs.core.num_threads,
                        last_index=clip.num_frames - 1, on_close=engine.close)
    radius = plan.window // 2
    frames = _Frames(gatherer, batches.layout, route, radius, clip.num_frames - 1)
    # The filter lives as long as VapourSynth holds its callbacks; then the engine goes.
    weakref.finalize(frames, gatherer.close)
    core = vs.core
    scale = sr.scale
    blank = core.std.BlankClip(clip, width=clip.width * scale, height=clip.height * scale,
                               keep=True)

    # A window model's request reads its neighbours (and the frames its cuts are judged
    # on) from clips of the source moved by a frame or more each.
    sources = neighbour_clips(clip, radius) if radius else [clip]

    def per_frame(n: int) -> vs.VideoNode:
        # A new ModifyFrame per request: one instance runs its callbacks one at a time.
        return core.std.ModifyFrame(blank, clips=[*sources, blank], selector=frames.frame)

    return core.std.FrameEval(blank, per_frame, clip_src=[clip, blank])


# -- formats ---------------------------------------------------------------------------------

_FLOAT_FORMATS = {"RGBS", "RGBH", "GRAYS", "GRAYH"}


def _route(clip: vs.VideoNode, sr: SRModel) -> Route:
    """Which way ``clip`` goes through the engine; vs.Error for a format the model
    cannot take, naming the conversion."""
    fmt = clip.format
    if fmt is None or not clip.width or not clip.height:
        raise InputError("the clip changes format or size from frame to frame; vsvidsr"
                           " needs one (add core.resize.Bicubic(clip, width=..., height=...,"
                           " format=...))")
    space = sr.spec.input_space
    name = fmt.name
    family = fmt.color_family.name
    if space == "rgb":
        if name in ("RGBS", "RGBH"):
            return "float"
        hint = ("core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s='709')"
                " (with the clip's own matrix)" if family == "YUV"
                else "core.resize.Point(clip, format=vs.RGBS)")
        raise InputError(f"model {sr.name} works on RGB and takes RGBS or RGBH, not {name};"
                           f" convert with {hint}")
    if name.upper() in _FLOAT_FORMATS and (family == "GRAY" or space == "planes"):
        return "float"
    if layout_of(fmt) is not None and family in ("YUV", "GRAY"):
        return "codes"
    what = "luma" if space == "y" else "each plane"
    if family == "RGB":
        hint = "core.resize.Bicubic(clip, format=vs.YUV444P16, matrix_s='709')"
    elif family == "GRAY":
        hint = "core.resize.Point(clip, format=vs.GRAYS)"
    else:
        hint = "core.resize.Point(clip, format=vs.YUV444P16)"
    raise InputError(f"model {sr.name} works on {what} and takes GRAYS, GRAYH or 8, 10, 12"
                       f" or 16-bit GRAY or YUV, not {name}; convert with {hint}")


def _layout(fmt: vs.VideoFormat, route: Route) -> PlaneLayout:
    if route == "codes":
        layout = layout_of(fmt)
        assert layout is not None
        return layout
    return float_layout("rgb" if fmt.color_family == vs.RGB else "gray", fmt.bits_per_sample)


# -- the engine side: batches ------------------------------------------------------------------


@dataclass
class _Batches:
    """Turns a gathered batch into a FrameBatch and runs it on the engine (in the
    gatherer's dispatcher thread)."""

    engine: Engine
    route: Route
    layout: PlaneLayout
    # Names this clip's frames among the engine's converted frames (window models).
    stream: object = field(default_factory=object)

    def submit(self, batch: list[Request]) -> _Handle:
        first = batch[0].item
        if isinstance(first, _Window):
            frames = self._windows(batch)
        else:
            planes = [np.stack([req.item[p] for req in batch]) for p in range(len(first))]
            frames = FrameBatch(planes, [req.index for req in batch], Fraction(1),
                                min(req.index for req in batch), self.layout)
        if self.route == "codes":
            pending = self.engine.submit(frames, batch[0].key, self.layout)
        else:
            pending = self.engine.submit_floats(frames)
        return _Handle(pending, len(batch))

    def _windows(self, batch: list[Request]) -> FrameBatch:
        """A batch of windows: each frame they need once, and which each window sees."""
        held: dict[int, list[np.ndarray]] = {}
        for req in batch:
            for index, planes in zip(req.item.indices, req.item.planes, strict=True):
                held.setdefault(index, planes)
        order = sorted(held)
        place = {index: k for k, index in enumerate(order)}
        rows = np.array([[place[i] for i in req.item.indices] for req in batch], np.int64)
        planes = [np.stack([held[i][p] for i in order]) for p in range(len(held[order[0]]))]
        return FrameBatch(planes, [req.index for req in batch], Fraction(1),
                          min(req.index for req in batch), self.layout,
                          windows=FrameWindows(rows, np.array(order), self.stream))


@dataclass(frozen=True)
class _Window:
    """A window model's request: the clip's frame index and planes of each of its
    window's frames, in display order."""

    indices: list[int]
    planes: list[list[np.ndarray]]


class _Handle:
    """A submitted batch; ``result()`` gives each frame's planes. Output that is no picture
    (NaN, Inf, far out of range) raises from the replica, which has already redone a
    reduced-precision batch in fp32, naming the batch's frames."""

    def __init__(self, pending: PendingBatch, count: int) -> None:
        self.ready = pending.ready
        self._pending = pending
        self._count = count

    def result(self) -> Sequence[Any]:
        planes = self._pending.result().planes
        return [[p[i] for p in planes] for i in range(self._count)]


# -- the VapourSynth side: one frame -------------------------------------------------------------


class _Frames:
    """What each VapourSynth request runs: planes out of the source frame, through the
    gatherer, into a copy of the blank output frame with the source's properties."""

    def __init__(self, gatherer: Gatherer, layout: PlaneLayout, route: Route, radius: int,
                 last: int) -> None:
        self._gatherer = gatherer
        self._layout = layout
        self._route = route
        self._radius = radius
        self._last = last

    def frame(self, n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        blank = f[-1]
        source = f[(len(f) - 1) // 2]  # the output frame's own: the centre of the sources
        key = None
        if self._route == "codes":
            key = colour_of(source.props, self._layout, source.height)
        try:
            if self._radius:
                item: Any = _Window(*window_of(n, f[:-1], self._radius, self._last,
                                               self._layout))
            else:
                item = frame_planes(source, self._layout)
            result = self._gatherer.request(n, item, key)
        except vs.Error:
            raise
        except BaseException as exc:
            raise vs.Error(f"vsvidsr: frame {n}: {_one_line(exc)}") from None
        if isinstance(result, BaseException):
            raise vs.Error(f"vsvidsr: {_one_line(result)}")
        # A new frame, not a copy of the blank one: a copy's planes are copied again when
        # written (1.5 ms a 1408x1152 RGBS frame, all of it overwritten here).
        out = vs.core.create_video_frame(blank.format, blank.width, blank.height)
        write_planes(out, result, self._layout)
        # Every property of the source frame: durations, colour, aspect ratio (the same
        # for an upscale by one factor in both directions), field order, scene changes and
        # the user's own.
        out.props.update(source.props)
        return out


# The preset keys a filter takes; the others (encoder, deinterlacing, resizing) belong to
# the rest of the script.
_FILTER_KEYS = frozenset({"model", "scale", "weights", "strength", "device", "precision",
                          "batch-size", "tile", "tile-overlap"})


def _preset_values(preset: str | Path) -> dict[str, Any]:
    """A preset's filter options, each read as `vidsr` reads it (:mod:`vidsr.options`)."""
    found = load_preset(preset)
    kept = {k: v for k, v in found.options.items() if k.replace("_", "-") in _FILTER_KEYS}
    left = sorted(set(found.options) - set(kept))
    if left:
        log.info("vsvidsr: preset %s: %s left to the script", found.name, ", ".join(left))
    # Each value is checked there, naming the file and the key.
    given = {**defaults(), **preset_values(replace(found, options=kept))}
    return {"model": given["model"], "scale": given["scale"], "weights": given["weights"],
            "strength": given["strength"], "device": given["device"],
            "precision": given["precision"], "batch_size": given["batch_size"],
            "tile": given["tile"] or None, "tile_overlap": given["tile_overlap"]}


def _one_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, VidsrError) else text
