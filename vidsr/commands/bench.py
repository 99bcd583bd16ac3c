"""``vidsr bench``: how fast a model runs over a clip, and where the time goes.

The bench resolves the same run plan ``vidsr IN OUT`` would with the same
arguments, prints it first, and runs exactly it. One run measures, on the same
clip and model:

- each stage alone: decode the clip; the engine over the decoded batches held
  in memory (the model-only rate: same batches, no I/O); encode its outputs;
- the overlapped pipeline (decode -> infer -> encode, bounded queues): wall
  time, fps and each stage's busy time; overlap efficiency = wall / slowest
  stage alone (1.0 is perfect overlap);
- the CPU floor: when the stages share the CPU's cores, the pipeline cannot
  finish before the CPU time of all stages alone, spread over every core, has
  been spent. The floor is that or the slowest stage alone, whichever is
  longer, and wall / floor says how close the pipeline comes to what the
  machine allows (on 2 cores the first is usually the larger);
- plain serial loops, one frame at a time in one thread (decode, infer,
  encode, as Real-ESRGAN's ``inference_realesrgan_video.py`` does): once as
  that script runs on a CPU (fp32, NCHW, default threads) and once with the
  engine's own precision and memory format, so the gain of overlapping alone
  is visible too.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from vidsr.engine.engine import Engine
from vidsr.errors import OptionsError
from vidsr.executors import PendingBatch
from vidsr.io.decode import Decoder, probe_media
from vidsr.io.encode_options import EncodeOptions
from vidsr.io.frames import FrameBatch
from vidsr.io.output_plan import plan_output
from vidsr.io.sink import Sink, open_sink
from vidsr.io.windows import WindowedSource
from vidsr.models.zoo import SRModel, card_network, load_model, model_cards
from vidsr.plan.run_plan import EngineOptions, RunPlan, SyncPlan, resolve_plan
from vidsr.run.pipeline import StageTiming
from vidsr.run.source_to_sink import open_source, run_to_sink
from vidsr.run.transcode import TranscodeOptions, resolve_file_plan

log = logging.getLogger("vidsr")


@dataclass(frozen=True)
class BenchOptions:
    """What to benchmark. ``frames`` keeps the first N frames; ``crop`` cuts a centred
    ``crop`` x ``crop`` square, for models too slow for whole frames. ``random_init``
    builds the model's architecture with random weights (speed does not depend on them).
    ``container``: the extension the outputs are written with (the plan's container)."""

    model: str = "espcn"
    scale: int | None = None
    weights: Path | None = None
    random_init: bool = False
    allow_unsafe: bool = False
    strength: float | None = None
    frames: int | None = None
    crop: int | None = None
    container: str = "mkv"
    queue_depth: int = 3
    serial: bool = True
    repeats: int = 1  # each measurement is the best of this many runs
    # What `vidsr` does to the picture besides the model (deinterlacing, resizing, turning,
    # damaged frames), so that the figures are of the run it would do.
    run: TranscodeOptions = field(default_factory=TranscodeOptions)


@dataclass
class MachineInfo:
    cpu: str  # model, cores, torch's CPU capability and whether bf16 is native
    cores: int
    torch: str
    devices: list[str]
    load_average: float  # 1-minute load when the run started: other work on the machine


@dataclass
class BenchReport:
    """Every figure of one benchmark run; ``to_text()`` for people, ``to_json()`` for tools."""

    plan: dict[str, Any]  # the run plan measured, as vidsr IN OUT --dry-run --json prints it
    plan_text: str
    machine: MachineInfo
    clip: str
    frames: int
    size: str  # input WxH -> output WxH
    model: str
    random_init: bool
    parameters: int
    precision: str
    alone_s: dict[str, float]  # decode, infer, encode: each stage run by itself
    cpu_s: dict[str, float]  # CPU time (all threads) of each stage run by itself
    busy_s: dict[str, float]  # the same stages' busy time inside the pipeline
    wall_s: float
    fps: float
    overlap_efficiency: float
    model_only_fps: float
    serial_fps: float | None  # Real-ESRGAN-style loop: fp32, NCHW, batch 1
    serial_same_settings_fps: float | None  # batch 1, the plan's precision and format
    notes: list[str] = field(default_factory=list)
    # Frames the pipeline's decoder gave (a window model's neighbours are not decoded again).
    decoded_frames: int | None = None

    @property
    def speedup_vs_serial(self) -> float | None:
        return self.fps / self.serial_fps if self.serial_fps else None

    @property
    def speedup_vs_serial_same_settings(self) -> float | None:
        if not self.serial_same_settings_fps:
            return None
        return self.fps / self.serial_same_settings_fps

    @property
    def cpu_floor_s(self) -> float:
        """The shortest wall time this machine allows: the slowest stage alone, or
        all stages' CPU time spread over every core."""
        return max(max(self.alone_s.values()), sum(self.cpu_s.values()) / self.machine.cores)

    @property
    def efficiency_vs_floor(self) -> float:
        return self.wall_s / self.cpu_floor_s if self.cpu_floor_s else 0.0

    @property
    def pipeline_vs_model_only(self) -> float:
        return self.fps / self.model_only_fps if self.model_only_fps else 0.0

    def to_json(self) -> str:
        data = asdict(self)
        del data["plan_text"]
        data["speedup_vs_serial"] = self.speedup_vs_serial
        data["speedup_vs_serial_same_settings"] = self.speedup_vs_serial_same_settings
        data["pipeline_vs_model_only"] = self.pipeline_vs_model_only
        data["cpu_floor_s"] = self.cpu_floor_s
        data["efficiency_vs_floor"] = self.efficiency_vs_floor
        return json.dumps(data, indent=2)

    def to_text(self) -> str:
        m = self.machine
        init = " (random weights)" if self.random_init else ""
        lines = [
            "plan (what `vidsr IN OUT` runs with these arguments; measured below):",
            *("  " + line for line in self.plan_text.splitlines()),
            f"machine    {m.cpu}, torch {m.torch}, on {', '.join(m.devices)}"
            f" (load {m.load_average:.1f} at start)",
            f"clip       {self.clip}: {self.frames} frames, {self.size}",
            *([f"decoded    {self.decoded_frames} frames in the pipeline for {self.frames}"
               " output frames"] if self.decoded_frames is not None else []),
            f"model      {self.model}{init}, {self.parameters / 1e6:.2f}M parameters,"
            f" {self.precision}",
            "stage      alone s   CPU s alone   busy in pipeline s",
        ]
        for stage in ("decode", "infer", "encode"):
            lines.append(f"  {stage:<8} {self.alone_s[stage]:8.2f}   {self.cpu_s[stage]:11.2f}"
                         f"   {self.busy_s[stage]:8.2f}")
        lines += [
            f"pipeline   {self.wall_s:.2f} s wall, {self.fps:.2f} fps",
            f"overlap    efficiency {self.overlap_efficiency:.3f} (wall / slowest stage alone)",
            f"CPU floor  {self.cpu_floor_s:.2f} s (stages' CPU time over {m.cores} cores, or the"
            f" slowest stage alone); wall / floor {self.efficiency_vs_floor:.3f}",
            f"model only {self.model_only_fps:.2f} fps; pipeline at"
            f" {self.pipeline_vs_model_only:.2f}x of it",
        ]
        if self.serial_fps:
            lines.append(f"serial     {self.serial_fps:.2f} fps (fp32 NCHW, batch 1, as"
                         f" Real-ESRGAN's script); pipeline {self.speedup_vs_serial:.2f}x")
        if self.serial_same_settings_fps:
            lines.append(f"serial     {self.serial_same_settings_fps:.2f} fps (batch 1, same"
                         f" precision); pipeline {self.speedup_vs_serial_same_settings:.2f}x")
        lines += [f"note       {note}" for note in self.notes]
        return "\n".join(lines)


def machine_info(plan: RunPlan) -> MachineInfo:
    """The machine the figures were taken on, as the plan saw it."""
    m = plan.machine
    names = []
    for device in plan.devices:
        if device == "cpu":
            names.append("CPU")
        else:
            index = int(device.split(":")[1]) if ":" in device else 0
            names.append(m.cuda_devices[index])
    return MachineInfo(cpu=m.describe_cpu(), cores=m.cores, torch=torch.__version__,
                       devices=names, load_average=os.getloadavg()[0])


def bench_model(options: BenchOptions) -> SRModel:
    """The model to time: loaded as usual, or its card's architecture with random weights."""
    if not options.random_init:
        return load_model(options.model, scale=options.scale, weights=options.weights,
                          allow_unsafe=options.allow_unsafe, strength=options.strength)
    card = model_cards().get(options.model)
    if card is None:
        raise OptionsError(f"--random-init needs a model name from `vidsr models`, "
                           f"got {options.model!r}")
    scale = options.scale or max(card.scales)
    if card.parameter_free:
        return load_model(options.model, scale=scale)
    module = card_network(card, scale, device="cpu").eval().requires_grad_(False)
    return replace(SRModel.from_module(module, scale), name=card.name, card=card)


def make_bench_clip(src: Path, dst: Path, *, frames: int | None, crop: int | None) -> Path:
    """Write the first ``frames`` frames of ``src``, centre-cropped to ``crop`` square, to ``dst``.

    Cropping happens on the decoded planes, so the clip keeps the source's pixel
    format and colour; it is encoded at high quality so decoding it is like decoding
    the source.
    """
    with Decoder(src, batch_size=1) as decoder:
        info = decoder.info
        layout = info.layout
        side_w = min(crop or info.width, info.width)
        side_h = min(crop or info.height, info.height)
        # Even offsets and sizes keep chroma planes aligned with luma.
        side_w, side_h = side_w - side_w % 2, side_h - side_h % 2
        left, top = (info.width - side_w) // 4 * 2, (info.height - side_h) // 4 * 2
        output = plan_output(info, decoder.container, dst, width=side_w, height=side_h,
                             encode=EncodeOptions(codec="libx264", crf=10,
                                                  pix_fmt=layout.pix_fmt))
        written = 0
        with open_sink(dst, output, src) as sink:
            for batch in decoder:
                planes = []
                for p, plane in enumerate(batch.planes):
                    chroma = layout.family == "yuv" and p > 0
                    oy = top >> layout.log2_chroma_h if chroma else top
                    ox = left >> layout.log2_chroma_w if chroma else left
                    ph, pw = layout.plane_shape(p, side_w, side_h)
                    planes.append(plane[:, oy : oy + ph, ox : ox + pw].copy())
                sink.write(replace(batch, planes=planes, layout=output.layout))
                written += 1
                if frames is not None and written >= frames:
                    break
    return dst


def run_bench(
    clip: str | Path,
    options: BenchOptions | None = None,
    engine: EngineOptions | None = None,
    encode: EncodeOptions | None = None,
) -> BenchReport:
    """Benchmark ``options.model`` over ``clip`` with the plan ``vidsr`` would resolve from
    ``engine`` and ``encode``; see the module text."""
    options = options or BenchOptions()
    clip = Path(clip)
    model = bench_model(options)
    with tempfile.TemporaryDirectory(prefix="vidsr-bench-") as tmp:
        work = Path(tmp)
        source = clip
        if options.frames is not None or options.crop is not None:
            source = make_bench_clip(clip, work / f"clip{clip.suffix or '.mkv'}",
                                     frames=options.frames, crop=options.crop)
        with probe_media(source, options.run.video_stream) as probe:
            plan = resolve_file_plan(model, engine or EngineOptions(), probe,
                                     work / f"pipeline.{options.container}", encode,
                                     options.run)
        return _measure(clip, plan, model, work, options)


def _measure(clip: Path, plan: RunPlan, model: SRModel, work: Path,
             options: BenchOptions) -> BenchReport:
    assert plan.source is not None and plan.output is not None
    info, output = plan.source, plan.output
    source = info.path
    repeats = options.repeats

    def sink_to(name: str, run: RunPlan = plan) -> Sink:
        assert run.output is not None
        return open_sink(work / f"{name}.{options.container}", run.output, source)

    with ExitStack() as engines:  # every engine's executor ends with the run
        runner = engines.enter_context(Engine(model, plan))

        def decode_all() -> list[FrameBatch]:
            with open_source(plan) as decoder:
                return list(decoder)

        alone: dict[str, float] = {}
        cpu: dict[str, float] = {}
        alone["decode"], cpu["decode"], batches = _best_of(repeats, decode_all)
        frames = sum(len(b) for b in batches)
        if not frames:
            raise OptionsError(f"{source}: no frames to benchmark")

        # Warm-up outside every timing: first calls build kernels (oneDNN, cuDNN, compile).
        runner.upscale_batch(batches[0], info.colour, output.layout)
        alone["infer"], cpu["infer"], outputs = _best_of(
            repeats, lambda: _infer_all(runner, batches, plan))

        def encode_all() -> None:
            with sink_to("alone") as sink:
                for batch in outputs:
                    sink.write(batch)

        alone["encode"], cpu["encode"], _ = _best_of(repeats, encode_all)
        # Held only for the stages alone: the pipeline below must run in flat memory.
        outputs.clear()
        batches.clear()

        def pipeline() -> tuple[StageTiming, int]:
            with open_source(plan) as decoder, sink_to("pipeline") as sink:
                written, timing = run_to_sink(plan, runner, decoder, sink,
                                              depth=options.queue_depth)
            assert written == frames, f"pipeline wrote {written} frames of {frames}"
            # A frame-wise source's batches are its frames, each decoded once.
            decoded = decoder.decoded if isinstance(decoder, WindowedSource) else written
            return timing, decoded

        # Timed like the stages alone, opening and closing included: closing flushes
        # the frames the encoder held back, which is real encoding work.
        wall, _, (timing, decoded) = _best_of(repeats, pipeline)

        serial = same = None
        if options.serial:
            same = frames / _time_serial(plan, model, "serial_same", engines, sink_to, options,
                                         precision=plan.precision.name,
                                         channels_last=plan.channels_last)
            serial = frames / _time_serial(plan, model, "serial", engines, sink_to, options,
                                           precision="fp32", channels_last=False)

    busy = {"decode": timing.busy_s.get("source", 0.0),
            "infer": timing.busy_s.get("infer", 0.0),
            "encode": timing.busy_s.get("sink", 0.0)}
    notes = []
    if options.random_init:
        notes.append("random weights: speed only, the pictures are meaningless")
    if source != clip:
        notes.append(f"clip cut from {clip.name}: first {frames} frames"
                     + (f", centre {info.width}x{info.height}" if options.crop else ""))
    return BenchReport(
        plan=plan.to_dict(), plan_text=plan.to_text(), machine=machine_info(plan),
        clip=str(clip), frames=frames,
        size=f"{info.width}x{info.height} -> {output.width}x{output.height}",
        model=f"{model.name} x{model.scale}", random_init=options.random_init,
        parameters=model.parameter_count, precision=plan.precision.name,
        alone_s=alone, cpu_s=cpu, busy_s=busy, wall_s=wall, fps=frames / wall,
        overlap_efficiency=wall / max(alone.values()),
        model_only_fps=frames / alone["infer"],
        serial_fps=serial, serial_same_settings_fps=same, notes=notes,
        decoded_frames=decoded,
    )


def _time_serial(plan: RunPlan, model: SRModel, name: str, engines: ExitStack,
                 sink_to: Callable[..., Sink], options: BenchOptions, *, precision: str,
                 channels_last: bool) -> float:
    """Seconds of a serial loop: one frame at a time in one thread with every core (as a
    plain script runs), the codecs left to pick their own threads."""
    assert plan.source is not None and plan.output is not None
    serial_options = EngineOptions(
        device=plan.devices[0], precision=precision,  # type: ignore[arg-type]
        channels_last=channels_last, batch_size=1)
    serial_plan = resolve_plan(model, serial_options, machine=plan.machine)
    if not isinstance(serial_plan.executor, SyncPlan):  # CUDA plans its slots
        serial_plan = replace(serial_plan, executor=SyncPlan(0))
    serial_plan = replace(serial_plan, source=plan.source, fit=plan.fit,
                          deinterlace=plan.deinterlace, on_error=plan.on_error,
                          output=replace(plan.output, encode=replace(plan.output.encode,
                                                                      threads=0)))
    runner = engines.enter_context(Engine(model, serial_plan))
    colour, layout = plan.source.colour, plan.output.layout
    opened = partial(open_source, serial_plan)
    with opened() as decoder:
        runner.upscale_batch(next(iter(decoder)), colour, layout)  # warm-up

    def loop() -> None:
        with opened() as decoder, sink_to(name, serial_plan) as sink:
            for batch in decoder:
                sink.write(runner.upscale_batch(batch, colour, layout))

    seconds, _, _ = _best_of(options.repeats, loop)
    return seconds


def _infer_all(runner: Engine, batches: list[FrameBatch], plan: RunPlan) -> list[FrameBatch]:
    """The engine alone over in-memory batches, as the pipeline drives it (in flight, in order)."""
    assert plan.source is not None and plan.output is not None
    colour, layout = plan.source.colour, plan.output.layout
    pending: deque[PendingBatch] = deque()
    out = []
    for batch in batches:
        if len(pending) >= runner.in_flight:
            out.append(pending.popleft().result())
        pending.append(runner.submit(batch, colour, layout))
    out.extend(p.result() for p in pending)
    return out


def _in_worker_thread[T](work: Callable[[], T]) -> T:
    """Run ``work`` in a fresh thread and return its result or raise its error.

    Every measurement gets a fresh thread, as the pipeline's infer stage does:
    torch's OpenMP team differs from thread to thread (on a loaded machine a
    small parallel op in a long-lived thread was measured at 20 ms against
    0.1 ms in a fresh one), and that would skew the comparison of the stages
    alone, the pipeline and the serial loop.
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller below
            failure.append(exc)

    worker = threading.Thread(target=target, name="bench-measure")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return outcome[0]


def _best_of[T](repeats: int, work: Callable[[], T]) -> tuple[float, float, T]:
    """The shortest of ``repeats`` timed runs of ``work``: its wall seconds, the CPU
    seconds the process spent meanwhile (all threads: torch's, the codecs'), and its result.

    The shortest, not the mean: on a shared machine, other work only ever adds time.
    """
    best: tuple[float, float, T] | None = None
    for _ in range(max(1, repeats)):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = _in_worker_thread(work)
        seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        if best is None or seconds < best[0]:
            best = (seconds, cpu, result)
    assert best is not None
    return best


def runtime_comparison(reports: list[BenchReport]) -> str:
    """Several runtimes' reports on one clip side by side, the first as the baseline."""
    def runtime_of(report: BenchReport) -> str:
        return f"{report.plan['runtime']['name']} {report.precision}"

    base = reports[0]
    lines = [f"runtimes   on {base.clip} ({base.frames} frames, {base.size}),"
             f" against {runtime_of(base)}",
             "  runtime            model only fps        pipeline fps"]
    for report in reports:
        lines.append(f"  {runtime_of(report):<18} {report.model_only_fps:7.2f} ("
                     f"{report.model_only_fps / base.model_only_fps:4.2f}x)"
                     f"      {report.fps:7.2f} ({report.fps / base.fps:4.2f}x)")
    return "\n".join(lines)
