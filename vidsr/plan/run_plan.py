"""RunPlan: every decision about a run, made once, printable (``vidsr IN OUT --dry-run``).

A plan is resolved from four things: what the user asked (:class:`EngineOptions`,
the encoder options), the model's descriptor, the input's probe, and the
machine. It fixes the devices, the precision (and why), the executor with its
own options, the batch size, the tiles and their overlap, and, for a video,
the whole output stream (:class:`~vidsr.io.output_plan.OutputPlan`). transcode,
bench, eval, training's validation and both sinks read the plan; none of them
decides any of this again. A video's plan is complete before its input is opened for
decoding (:func:`resolve_video_plan`), and it goes to JSON and back without loss
(:meth:`RunPlan.to_json`, :meth:`RunPlan.from_json`), so a Ray worker runs the plan
the driver made.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Literal

from vidsr.archs.spec import ArchSpec
from vidsr.errors import OptionsError
from vidsr.io.decode import InputProbe, OnError
from vidsr.io.deinterlace import (
    DeinterlaceMode,
    DeinterlacePlan,
    DeinterlacerName,
    FieldOrderChoice,
    FieldRate,
    check_choices,
    deinterlaced_info,
    plan_deinterlace,
)
from vidsr.io.encode_options import EncodeOptions
from vidsr.io.fit import Fit, plan_fit
from vidsr.io.output_plan import OutputPlan, plan_output, upright_transform
from vidsr.io.video_info import VideoInfo
from vidsr.models.zoo import SRModel
from vidsr.plain_data import from_plain, plain_data
from vidsr.plan.devices import resolve_devices
from vidsr.plan.machine import Machine, openvino_unusable, this_machine
from vidsr.plan.precision import UNMEASURED, Precision, PrecisionChoice, choose_precision

# torch, or OpenVINO on the CPU (executors/openvino.py); auto measures which is faster once.
Runtime = Literal["auto", "torch", "openvino"]

# Tiles smaller than this spend more on their overlap than on their core.
MIN_TILE = 16
# Overlap for networks whose receptive radius is larger. Real-ESRGAN's x4plus RRDB (radius
# 349) tiled at 64 px on a real frame differs from the whole frame by at most 0.82 code
# values with this overlap, and by 4.8 with 48 (benchmarks/RESULTS.md).
OVERLAP_CAP = 64


@dataclass(frozen=True)
class CpuOptions:
    """What the user asked of a run on the CPU, torch's or OpenVINO's: ``workers`` batches
    at once, each on ``threads`` threads. None leaves each to the plan, which splits the
    cores (:func:`plan_cpu_threads`)."""

    workers: int | None = None
    threads: int | None = None


@dataclass(frozen=True)
class CudaOptions:
    """What the user asked of a run on CUDA: ``in_flight`` batches per device, each on its
    own stream."""

    in_flight: int = 2


@dataclass(frozen=True)
class OpenVinoOptions:
    """What the user asked of OpenVINO's int8: ``force_int8`` runs it whatever its measured
    loss; ``calibration`` is the clip or image folder it is calibrated on (None: the run's
    own clip)."""

    force_int8: bool = False
    calibration: Path | None = None


@dataclass(frozen=True)
class EngineOptions:
    """What the user asked of the engine. ``None`` (and ``auto``) leave it to the plan.

    ``device``: auto, cpu, cuda, cuda:N, or a list of CUDA devices (``cuda:0,cuda:1``)
    that take batches in turn. ``tile`` 0 runs whole frames (tiles only if memory runs
    out, down to ``min_tile``); ``tile_overlap`` defaults to the model's receptive radius.
    The executor itself follows from the device; a caller who wants another (one batch
    at a time, or the CUDA slots' code on the CPU's stand-in streams) replaces the plan's
    own, which is public data: ``replace(plan, executor=SyncPlan(0))``. ``strict``
    refuses what would only be warned about (bf16 on a CPU without native bf16).
    ``runtime``: torch, openvino (CPU only) or auto (OpenVINO where it is installed and
    measured faster for the model).

    Each backend's own options are apart, as each applies only where its backend runs:
    ``cpu`` (:class:`CpuOptions`), ``cuda`` (:class:`CudaOptions`) and ``openvino``
    (:class:`OpenVinoOptions`).
    """

    device: str = "auto"
    precision: Precision = "auto"
    batch_size: int | None = None
    channels_last: bool = True
    tile: int = 0
    tile_overlap: int | None = None
    min_tile: int = 32
    compile: bool = False
    strict: bool = False
    runtime: Runtime = "torch"
    cpu: CpuOptions = CpuOptions()
    cuda: CudaOptions = CudaOptions()
    openvino: OpenVinoOptions = OpenVinoOptions()


@dataclass(frozen=True)
class SyncPlan:
    """Each batch runs to the end in the thread that submits it."""

    threads: int  # torch intra-op threads on a CPU; 0 leaves the setting alone (CUDA)
    kind: ClassVar[str] = "sync"

    def describe(self) -> str:
        return f"sync, {self.threads} torch thread(s)" if self.threads else "sync"


@dataclass(frozen=True)
class CpuWorkersPlan:
    """``workers`` batches run at once on the CPU, each in its own thread with
    ``threads`` torch threads."""

    workers: int
    threads: int
    kind: ClassVar[str] = "cpu-workers"

    def describe(self) -> str:
        return f"cpu-workers, {self.workers} worker(s) x {self.threads} torch thread(s)"


@dataclass(frozen=True)
class CudaSlotsPlan:
    """``in_flight`` batches per device, each in a slot with its own stream and pinned
    buffers. ``cudnn_benchmark``: cuDNN times its algorithms once per frame size."""

    in_flight: int
    cudnn_benchmark: bool = True
    kind: ClassVar[str] = "cuda-slots"

    def describe(self) -> str:
        return f"cuda-slots, {self.in_flight} batch(es) in flight per device"


@dataclass(frozen=True)
class OpenVinoPlan:
    """The network runs on OpenVINO on the CPU: ``workers`` batches at once (OpenVINO
    streams), each on ``threads`` threads, in ``precision`` (fp32, bf16 or int8).
    ``calibration``: the clip or image folder int8 is calibrated on."""

    workers: int
    threads: int
    precision: str
    calibration: str | None = None
    kind: ClassVar[str] = "openvino"

    def describe(self) -> str:
        text = (f"openvino, {self.workers} stream(s) x {self.threads} thread(s),"
                f" {self.precision}")
        return text + (f", calibrated on {self.calibration}" if self.calibration else "")


ExecutorPlan = SyncPlan | CpuWorkersPlan | CudaSlotsPlan | OpenVinoPlan


@dataclass(frozen=True)
class RuntimeChoice:
    """What runs the network (torch or openvino) and why."""

    name: str
    reason: str


TORCH_RUNTIME = RuntimeChoice("torch", "the default")


@dataclass(frozen=True)
class CpuThreads:
    """How a CPU-only overlapped run shares the cores: ``workers`` batches of
    ``torch`` threads each, and the codecs' threads."""

    torch: int
    decoder: int
    encoder: int
    workers: int = 1


def plan_cpu_threads(cores: int) -> CpuThreads:
    """A thread split for a CPU-only run with decode, infer and encode overlapped.

    The network gets all but one core when there are more than two: decoding
    and encoding need about one core between them at the sizes CPU models run
    at. With two cores or fewer the network keeps both and the codec threads
    share them.

    The network's cores are used by several batches at once (``workers``), each
    with few intra-op threads, rather than by one batch with many: an intra-op
    team waits at every layer for its slowest thread, so one thread preempted
    by the encoder stalls them all, while independent batches just slow down by
    the time the encoder takes. Measured on 2 cores (espcn x2, foreman, bf16):
    two workers of one thread run the pipeline at 33.6 fps against 27.1 for one
    batch on two threads (benchmarks/RESULTS.md). Up to four network cores get
    a worker each; beyond that two workers share them, which keeps the frames
    held in memory at two batches.

    With two cores the encoder still gets two threads: x264 holds up to 40 frames for
    its lookahead and encodes them when the input ends, after the network is done, so
    a clip's last frames are encoded with the cores otherwise idle (24 frames at
    1408x1152: 1.3 s on two threads against 2.0 s on one, 2-core AMD EPYC). While the
    network runs, the two share the cores as one would (espcn x2 over 300 CIF frames:
    26.8 against 25.5-26.6 fps).
    """
    network = cores if cores <= 2 else cores - 1
    codec = 1 if cores <= 2 else max(1, min(4, cores // 4))
    encoder = cores if cores <= 2 else codec
    workers = network if network <= 4 else 2
    return CpuThreads(torch=max(1, network // workers), decoder=codec, encoder=encoder,
                      workers=workers)


@dataclass(frozen=True)
class ModelPlan:
    """The model as the run sees it (its descriptor, not its weights)."""

    name: str
    scale: int
    parameters: int
    spec: ArchSpec


@dataclass(frozen=True)
class TilePlan:
    """``size`` 0: whole frames, and tiles only when memory runs out (down to
    ``min_tile``). ``overlap``: context around each tile, in network input pixels."""

    size: int
    overlap: int
    min_tile: int
    reason: str  # where the overlap comes from


@dataclass(frozen=True)
class RunPlan:
    """Every decision about one run."""

    machine: Machine
    model: ModelPlan
    devices: tuple[str, ...]
    precision: PrecisionChoice
    channels_last: bool
    compile: bool
    executor: ExecutorPlan
    batch_size: int
    tile: TilePlan
    decoder_threads: int  # 0: FFmpeg picks
    source: VideoInfo | None = None
    output: OutputPlan | None = None
    runtime: RuntimeChoice = TORCH_RUNTIME
    # bwdif or inverse telecine before the model; the output is then progressive (see
    # io/deinterlace.py, io/ivtc.py)
    deinterlace: DeinterlacePlan | None = None
    # The engine's resize after the model to a height and/or square pixels (io/fit.py);
    # None delivers scale x the frames.
    fit: Fit | None = None
    on_error: OnError = "fail"  # a damaged frame: "fail", or "skip" (replaced by the last)
    # Frames the model sees for each output frame: 2r + 1 centred on it (the model's
    # ArchSpec.window); 1 for frame-wise models. The decode stage makes windows of it
    # (io/windows.py), stopping at scene cuts and the clip's ends.
    window: int = 1

    @property
    def on_cpu(self) -> bool:
        return self.devices[0] == "cpu"

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain JSON-ready data (:meth:`from_dict` reads it back)."""
        data = plain_data(self)
        data["executor"] = {"kind": self.executor.kind, **data["executor"]}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunPlan:
        """The plan :meth:`to_dict` wrote, equal to it."""
        plan = from_plain(cls, data)
        assert isinstance(plan, cls)
        return plan

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunPlan:
        """The plan :meth:`to_json` wrote (``vidsr IN OUT --dry-run --json``), equal to it."""
        return cls.from_dict(json.loads(text))

    def to_text(self) -> str:
        """The plan as a table for people."""
        m, model, spec, tile = self.machine, self.model, self.model.spec, self.tile
        radius = "unknown" if spec.receptive_radius is None else str(spec.receptive_radius)
        rows = [
            ("machine", m.describe_cpu()
             + (f"; CUDA: {', '.join(m.cuda_devices)}" if m.cuda_devices else "")),
            ("model", f"{model.name} x{model.scale} ({spec.arch}, {spec.input_space} input"
                      f"{', pre-upsampled' if spec.pre_upsampled else ''},"
                      f" {model.parameters / 1e6:.2f}M parameters, receptive radius {radius})"),
            ("devices", ", ".join(self.devices)),
            ("runtime", f"{self.runtime.name}: {self.runtime.reason}"),
            ("precision", f"{self.precision.name}: {self.precision.reason}"),
            ("memory", ("channels_last" if self.channels_last else "NCHW")
             + (", torch.compile" if self.compile else "")),
            ("executor", self.executor.describe()),
            ("batch", f"{self.batch_size} frame(s)"
                      + (f" (windows of {self.window})" if self.window > 1 else "")),
            ("window", _window_text(self.window)),
            ("tiles", (f"{tile.size} px" if tile.size else
                       f"whole frames (tiles down to {tile.min_tile} px if memory runs out)")
             + f", overlap {tile.overlap} px: {tile.reason}"),
        ]
        if self.source is not None:
            s = self.source
            count = s.frame_count or s.frame_count_estimate
            rows.append(("source", f"{s.path}: {s.width}x{s.height} {s.pix_fmt}"
                                   f" {_colour_text(s.colour)}, {s.codec} in"
                                   f" {s.container_format}, {_rate_text(s.average_rate)},"
                                   f" {count if count is not None else '?'} frames"))
            rows.append(("decoder", f"{self.decoder_threads or 'auto'} thread(s)"))
        if self.deinterlace is not None:
            rows.append(("deinterlace", f"{self.deinterlace.to_text()}; before the model,"
                                        " the output is progressive"))
        if self.fit is not None:
            rows.append(("resize", f"{self.fit.to_text()}; antialiased bicubic after the"
                                   " model"))
        if self.output is not None:
            o = self.output
            options = " ".join(f"{k}={v}" for k, v in o.codec_options)
            via = f"ffmpeg ({o.ffmpeg})" if o.sink == "ffmpeg" else "PyAV"
            rows += [
                ("output", f"{o.path}: {o.width}x{o.height} {o.layout.pix_fmt}"
                           + (f" (encoder takes {o.codec_pix_fmt})"
                              if o.codec_pix_fmt != o.layout.pix_fmt else "")
                           + f" {_colour_text(o.colour)}, SAR {o.sar.numerator}:"
                             f"{o.sar.denominator}, {_rate_text(o.rate)}, time base"
                             f" {o.time_base}"),
                ("encoder", f"{o.encode.codec}{' ' + options if options else ''},"
                            f" {o.encode.threads or 'auto'} thread(s); {o.container} via {via}"),
            ]
            if o.display_matrix is not None:
                upright = upright_transform(o.display_matrix)
                rows.append(("display", "display matrix kept" + (
                    f" (players turn the picture {_turn_text(*upright)} to show it)"
                    if upright else "")))
            if o.turn or o.mirror:
                rows.append(("display", f"pixels turned upright: {_turn_text(o.mirror, o.turn)}"))
            if o.timecode:
                rows.append(("timecode", o.timecode))
            if o.alpha_depth:
                rows.append(("alpha", f"kept: resized bilinear beside the model, written in"
                                      f" {o.codec_pix_fmt}"))
            if o.captions:
                rows.append(("captions", f"closed captions (ATSC A53) written by"
                                         f" {o.encode.codec}"))
            if o.hdr is not None:
                rows.append(("hdr", f"{o.hdr.to_text()}; written by {o.encode.codec}"))
            if o.field_order not in ("progressive", "unknown"):
                rows.append(("fields", f"{o.field_order} (interlaced: the fields are upscaled"
                                       " together)"))
            if o.start_pts:
                rows.append(("start", f"timestamps shifted back {o.start_s:.3f} s to start at"
                                      " the first frame"))
            rows += [("stream", str(copy)) for copy in o.streams]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _window_text(window: int) -> str:
    if window == 1:
        return "1 frame: frame-wise"
    return (f"{window} frames centred on the output frame (radius {window // 2}); at a scene"
            " cut (found on decoded luma) or the clip's ends it repeats its shot's nearest"
            " frame")


def _turn_text(mirror: bool, turn: int) -> str:
    return ("mirrored, then " if mirror else "") + f"{turn} degrees clockwise"


def _colour_text(colour: Any) -> str:
    rng = "full" if colour.full_range else "limited"
    return f"{colour.matrix}/{rng}/{colour.primaries}/{colour.transfer}"


def _rate_text(rate: Fraction | None) -> str:
    return f"{float(rate):.3f} fps" if rate else "unknown rate"


# -- resolving a plan -----------------------------------------------------------------------

# ``--runtime auto``: of the plans that run the model on torch and on OpenVINO, the one to
# run (:func:`vidsr.executors.openvino.faster_plan` times them). The caller hands it in, so
# the plan never imports an executor.
RuntimeChooser = Callable[[SRModel, "RunPlan", "RunPlan"], "RunPlan"]


def resolve_plan(
    model: SRModel, options: EngineOptions | None = None, *, machine: Machine | None = None,
    overlapped: bool = False, measuring: bool = False,
    choose_runtime: RuntimeChooser | None = None,
) -> RunPlan:
    """The plan to run ``model`` on frames or tensors: devices, precision, executor, batch,
    tiles (a video's plan comes from :func:`resolve_video_plan`).

    ``overlapped``: something else shares the CPU with the network (the VapourSynth
    filter's source filter and encoder). Otherwise (``vidsr eval``, training's validation)
    every core goes to the network. ``measuring`` allows fp16 on the CPU, slow as it is,
    so its cost can be measured. ``choose_runtime``: see :data:`RuntimeChooser`.
    """
    plan, _ = _engine_plan(model, options or EngineOptions(), machine or this_machine(),
                           overlapped=overlapped, measuring=measuring,
                           choose_runtime=choose_runtime)
    return plan


def resolve_video_plan(
    model: SRModel, options: EngineOptions, probe: InputProbe, *, output: Path,
    encode: EncodeOptions, ffmpeg: str | None = None, autorotate: bool = False,
    deinterlace: DeinterlaceMode = "off", field_order: FieldOrderChoice = "auto",
    deinterlace_rate: FieldRate = "frame", deinterlacer: DeinterlacerName = "bwdif",
    height: int | None = None, square_pixels: bool = False, on_error: OnError = "fail",
    machine: Machine | None = None,
    choose_runtime: RuntimeChooser | None = None,
) -> RunPlan:
    """The whole plan to upscale the probed input into ``output``, made before anything
    opens the input for decoding: the engine's part (as :func:`resolve_plan`, with
    decoding and encoding sharing the CPU), the deinterlacing, the decoder's and the
    encoder's threads, and the output stream with its codec settings and copied streams.

    ``autorotate`` turns the pixels upright instead of keeping the display matrix.
    ``height`` and ``square_pixels`` fit the upscaled picture to a height and to square
    pixels at the same display aspect (:func:`~vidsr.io.fit.plan_fit`). ``deinterlace``
    (auto, on, off, ivtc), ``field_order``, ``deinterlace_rate`` and ``deinterlacer``: see
    :func:`~vidsr.io.deinterlace.plan_deinterlace`; a VapourSynth script is deinterlaced
    in the script, never here. ``on_error``: what the decoder does with a damaged frame
    (QTGMC's source, BestSource, cannot replace one: ``skip`` with QTGMC is refused).
    """
    from vidsr.io.script_source import is_script, refuse_deinterlace

    source = probe.info
    if is_script(source.path):
        check_choices(deinterlace, field_order, deinterlace_rate, deinterlacer)
        refuse_deinterlace(source.path, deinterlace)
        fields = None
    else:
        fields = plan_deinterlace(source, deinterlace, field_order, deinterlace_rate,
                                  deinterlacer)
    if fields is not None and fields.deinterlacer == "qtgmc" and on_error == "skip":
        raise OptionsError(f"{source.path}: --on-error skip replaces damaged frames as the"
                           " decoder meets them; QTGMC reads the file through BestSource,"
                           " which cannot: use --deinterlacer bwdif or --on-error fail")
    plan, codec_threads = _engine_plan(model, options, machine or this_machine(),
                                       overlapped=True, measuring=False,
                                       choose_runtime=choose_runtime)
    frames = deinterlaced_info(source, fields) if fields is not None else source
    scale = plan.model.scale
    fit = plan_fit(frames.width, frames.height, frames.sar, scale, target_height=height,
                   square=square_pixels)
    width, height, sar = ((fit.width, fit.height, fit.sar) if fit is not None else
                          (frames.width * scale, frames.height * scale, frames.sar))
    out = plan_output(frames, probe.container, output, width=width, height=height, sar=sar,
                      encode=replace(encode, threads=encode.threads or codec_threads.encoder),
                      ffmpeg=ffmpeg, autorotate=autorotate)
    executor = plan.executor
    if (isinstance(executor, OpenVinoPlan) and executor.precision == "int8"
            and executor.calibration is None):
        executor = replace(executor, calibration=str(source.path))  # the clip's own frames
    return replace(plan, source=source, output=out, executor=executor, deinterlace=fields,
                   fit=fit, on_error=on_error)


def refusal(plan: RunPlan, machine: Machine) -> str | None:
    """Why ``machine`` (this process's) cannot run ``plan`` made elsewhere, or None.

    Only what makes the run impossible counts (a missing device or runtime); threads and
    batch sizes planned for another machine merely run slower.
    """
    for device in plan.devices:
        kind, _, index = device.partition(":")
        if kind == "cuda" and int(index or 0) >= len(machine.cuda_devices):
            return (f"the plan runs on {device}, and this machine has"
                    f" {len(machine.cuda_devices)} CUDA device(s)")
    if plan.runtime.name == "openvino":
        return openvino_unusable()
    return None


@dataclass(frozen=True)
class _CodecThreads:
    """The decoder's and the encoder's threads; 0 leaves them to FFmpeg."""

    decoder: int = 0
    encoder: int = 0


def _engine_plan(model: SRModel, options: EngineOptions, machine: Machine, *, overlapped: bool,
                 measuring: bool, choose_runtime: RuntimeChooser | None
                 ) -> tuple[RunPlan, _CodecThreads]:
    """The engine's part of a plan, and the codecs' threads beside it."""
    _check_counts(options)
    devices = _devices(options)
    # Split once: the executor's threads and the codecs' come from the same split.
    split = plan_cpu_threads(machine.cores) if overlapped and devices[0] == "cpu" else None
    codec = _CodecThreads(encoder=split.encoder if split is not None else 0)
    runtime = _runtime(model, options, devices)
    if runtime is not None:
        plan = _plan_on(runtime, model, options, machine, devices, split=split,
                        measuring=measuring)
    else:
        # auto: the plan each runtime would run, precision included, and the faster one.
        if choose_runtime is None:
            raise OptionsError("--runtime auto is not available here; use --runtime torch"
                               " or openvino")
        on_torch, on_openvino = (
            _plan_on(RuntimeChoice(name, "auto"), model, options, machine, devices,
                     split=split, measuring=measuring)
            for name in ("torch", "openvino"))
        plan = choose_runtime(model, on_torch, on_openvino)
    return plan, replace(codec, decoder=plan.decoder_threads)


def _plan_on(runtime: RuntimeChoice, model: SRModel, options: EngineOptions, machine: Machine,
             devices: tuple[str, ...], *, split: CpuThreads | None,
             measuring: bool) -> RunPlan:
    """The plan to run ``model`` on ``runtime``."""
    device_type = devices[0].split(":")[0]
    measured = (model.measured_loss() if options.precision in ("auto", "int8")
                else UNMEASURED)
    precision = choose_precision(options.precision, device_type, machine, measured,
                                 strict=options.strict, measuring=measuring,
                                 runtime=runtime.name,
                                 force_int8=options.openvino.force_int8)
    executor, decoder_threads = _executor(options, devices, machine, split)
    if runtime.name == "openvino":
        executor = _openvino_executor(executor, precision.name, options)
    spec = model.spec
    return RunPlan(
        machine=machine,
        model=ModelPlan(model.name, model.scale, model.parameter_count, spec),
        devices=devices,
        precision=precision,
        channels_last=options.channels_last,
        compile=options.compile,
        executor=executor,
        # A CPU runs one frame at a time fastest: the working set stays in cache
        # (benchmarks/RESULTS.md); GPUs want larger batches.
        batch_size=options.batch_size or (1 if device_type == "cpu" else 4),
        tile=_tiles(spec.receptive_radius, options),
        decoder_threads=decoder_threads,
        runtime=runtime,
        window=spec.window,
    )


def _runtime(model: SRModel, options: EngineOptions,
             devices: tuple[str, ...]) -> RuntimeChoice | None:
    """torch or openvino, and why; None where ``auto`` is to time the two. OpenVINO runs
    on the CPU, a network with weights."""
    asked = options.runtime
    if asked == "auto" and options.precision == "int8":
        asked = "openvino"  # only OpenVINO quantises
    if asked == "torch":
        return TORCH_RUNTIME
    if asked not in ("openvino", "auto"):
        raise OptionsError(f"unknown runtime {asked!r} (use torch, openvino or auto)")
    problem = None
    if devices[0] != "cpu":
        problem = f"OpenVINO runs on the CPU here, not {devices[0]}"
    elif model.parameter_count == 0:
        problem = f"{model.name} is an exact resizer with no network to compile"
    else:
        problem = openvino_unusable()
    if asked == "openvino":
        if problem:
            raise OptionsError(f"--runtime openvino: {problem}")
        return RuntimeChoice("openvino", "asked for")
    if problem:
        return RuntimeChoice("torch", f"auto: {problem}")
    return None


def _openvino_executor(torch_plan: ExecutorPlan, precision: str,
                       options: EngineOptions) -> OpenVinoPlan:
    """The OpenVINO executor with the cores the torch executor would have had."""
    match torch_plan:
        case CpuWorkersPlan(workers=workers, threads=threads):
            pass
        case SyncPlan(threads=threads):
            workers = 1
        case _:
            raise AssertionError(f"OpenVINO planned beside {torch_plan!r}")
    asked = options.openvino.calibration
    calibration = str(asked) if asked is not None else None
    return OpenVinoPlan(workers, threads, precision,
                        calibration if precision == "int8" else None)


def _check_counts(options: EngineOptions) -> None:
    for name, value in (("batch size", options.batch_size),
                        ("CPU workers", options.cpu.workers),
                        ("CPU threads", options.cpu.threads),
                        ("in-flight batches", options.cuda.in_flight)):
        if value is not None and value < 1:
            raise OptionsError(f"{name} must be at least 1, got {value}")


def _devices(options: EngineOptions) -> tuple[str, ...]:
    devices = tuple(str(d) for d in resolve_devices(options.device))
    types = {d.split(":")[0] for d in devices}
    if len(types) > 1:
        raise OptionsError(f"device list {options.device!r} mixes CPU and CUDA; use one kind")
    if len(devices) > 1 and devices[0] == "cpu":
        raise OptionsError(f"device list {options.device!r}: several devices need CUDA")
    return devices


def _executor(options: EngineOptions, devices: tuple[str, ...], machine: Machine,
              split: CpuThreads | None) -> tuple[ExecutorPlan, int]:
    """The executor and the decoder's threads; ``split``: how a CPU run that decodes and
    encodes beside the network shares the cores (None: nothing else runs)."""
    if devices[0] != "cpu":
        return CudaSlotsPlan(options.cuda.in_flight), 0
    if split is None:
        # Nothing else to feed: every core goes to the network.
        threads = options.cpu.threads or machine.cores
        workers = options.cpu.workers or 1
        if workers > 1:
            return CpuWorkersPlan(workers, threads), 0
        return SyncPlan(threads), 0
    workers = options.cpu.workers or split.workers
    threads = options.cpu.threads or split.torch
    if workers > 1:
        return CpuWorkersPlan(workers, threads), split.decoder
    return SyncPlan(threads), split.decoder


def _tiles(radius: int | None, options: EngineOptions) -> TilePlan:
    tile, overlap = options.tile, options.tile_overlap
    if tile < 0 or (overlap is not None and overlap < 0):
        raise OptionsError("tile and tile overlap must not be negative")
    if 0 < tile < MIN_TILE:
        raise OptionsError(f"--tile {tile} is too small: tiles below {MIN_TILE} px spend more"
                           f" on their overlap than on their pixels (use 0 for whole frames)")
    if options.min_tile < MIN_TILE:
        raise OptionsError(f"the smallest tile must be at least {MIN_TILE} px")
    if overlap is not None:
        reason = "asked for"
        if radius is not None and overlap < radius:
            reason += (f"; below the model's receptive radius ({radius} px), so tile seams may"
                       " show")
    elif radius is None:
        overlap, reason = 16, "the model's receptive radius is unknown"
    elif radius <= OVERLAP_CAP:
        overlap, reason = radius, "the model's receptive radius"
    else:
        overlap, reason = OVERLAP_CAP, (
            f"the model's receptive radius ({radius} px) capped at {OVERLAP_CAP}: context"
            " farther away changes a pixel by less than a code value")
    return TilePlan(tile, overlap, options.min_tile, reason)

