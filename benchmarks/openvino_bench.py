"""OpenVINO against torch on this CPU: the network alone, vidsr bench, and int8's Set5 cost.

    python benchmarks/openvino_bench.py network [MODEL:SCALE ...]   # forward only, one CIF frame
    python benchmarks/openvino_bench.py bench CLIP [MODEL:SCALE ...]  # vidsr bench per runtime
    python benchmarks/openvino_bench.py loss SET5 CALIBRATION [MODEL:SCALE ...]  # cards' int8
    python benchmarks/openvino_bench.py bf16-loss SET5 [MODEL:SCALE ...]  # cards' openvino-bf16

``network`` times the forward on a 352x288 frame with every core: torch NCHW and
channels_last in fp32, OpenVINO f32, then torch bf16 (autocast) against OpenVINO bf16 and
OpenVINO int8 (calibrated on the CALIBRATION folder, default ../shared/data/train/T91).
``bench`` runs ``vidsr bench`` (model-only and whole pipeline, the run plan's threads)
for torch fp32, OpenVINO fp32, torch bf16, OpenVINO bf16 and OpenVINO int8 on the same
clip. Each measurement is repeated, the runtimes interleaved, and the median kept: other
work on a shared machine only ever adds time, and interleaving spreads it evenly.

(Not ``openvino.py``: run as a script, that name would shadow the openvino package.)

``loss`` prints each card's ``precision_loss`` int8 entry: Set5 PSNR (vidsr eval's
protocol) of OpenVINO int8 against torch fp32, calibrated on images that are not Set5.
``bf16-loss`` prints the ``openvino-bf16`` entry: OpenVINO's bf16, which casts the whole
network (torch's autocast keeps the picture layers in fp32), against torch fp32; ``auto``
runs OpenVINO in bf16 only where it is at most 0.02 dB (vidsr/plan/precision.py).
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from vidsr.commands.bench import BenchOptions, run_bench
from vidsr.engine.model_space import ModelSpace
from vidsr.executors.openvino import OpenVinoNetwork
from vidsr.executors.replica import Replica
from vidsr.imaging.scoring import evaluate_folder
from vidsr.io.decode import Decoder
from vidsr.models.zoo import SRModel, load_model
from vidsr.plan.machine import this_machine
from vidsr.plan.run_plan import EngineOptions, OpenVinoOptions, resolve_plan

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FRAME_CLIP = SHARED / "videos" / "foreman_cif.mp4"
CALIBRATION = SHARED / "train" / "T91"
# int8 whatever its measured loss: the loss is what these figures measure.
INT8_FORCED = OpenVinoOptions(force_int8=True, calibration=CALIBRATION)
DEFAULT_MODELS = ["compact:4", "realesr-animevideov3:4"]
REPEATS = 5
BENCH_FRAMES = 16  # the first frames of the clip: a CPU upscales a CIF clip x4 at ~2 fps


def _models(args: list[str]) -> list[tuple[str, int]]:
    return [(a.split(":")[0], int(a.split(":")[1])) for a in (args or DEFAULT_MODELS)]


def _interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, the runs taking turns."""
    for run in runs.values():
        run()  # warm-up: kernels, compiled shapes
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _network_runs(model: SRModel, threads: int, bf16: bool) -> dict[str, Callable[[], object]]:
    """Each runtime and precision's forward on the first frame of the CIF clip."""
    scale = model.scale
    space = ModelSpace.of(model.spec, scale)
    with Decoder(FRAME_CLIP, batch_size=1) as decoder:
        frame = space.picture_of(next(iter(decoder)), decoder.info.colour)
    x = space.network_input(frame)
    nchw = copy.deepcopy(model.module)
    channels_last = copy.deepcopy(model.module).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def torch_run(module: torch.nn.Module, inputs: torch.Tensor,
                  dtype: torch.dtype | None = None) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.float32,
                                                        enabled=dtype is not None):
                return module(inputs)
        return run

    def openvino_run(precision: str) -> Callable[[], object]:
        plan = resolve_plan(model, EngineOptions(device="cpu", precision=precision,  # type: ignore[arg-type]
                                             runtime="openvino", openvino=INT8_FORCED))
        replica = Replica(copy.deepcopy(model.module), model.spec, scale, torch.device("cpu"),
                          plan)
        forward = OpenVinoNetwork(replica, precision, 1, threads,
                                  CALIBRATION if precision == "int8" else None)
        return lambda: forward(x, False, [])

    runs = {"torch NCHW fp32": torch_run(nchw, x),
            "torch channels_last fp32": torch_run(channels_last, x_cl),
            "openvino fp32": openvino_run("fp32")}
    if bf16:
        runs["torch channels_last bf16"] = torch_run(channels_last, x_cl, torch.bfloat16)
        runs["openvino bf16"] = openvino_run("bf16")
    runs["openvino int8"] = openvino_run("int8")
    return runs


def network(names: list[str]) -> None:
    """The forward alone on a CIF frame, every core, each runtime and precision."""
    machine = this_machine()
    threads = machine.cores
    torch.set_num_threads(threads)
    print(f"# {machine.describe_cpu()}; {threads} threads; 352x288 frame; median of {REPEATS}")
    for name, scale in _models(names):
        runs = _network_runs(load_model(name, scale=scale), threads, machine.native_bf16)
        seconds = _interleaved(runs, REPEATS)
        base = seconds["torch channels_last fp32"]
        print(f"{name} x{scale}:")
        for run_name, value in seconds.items():
            print(f"  {run_name:<26} {value * 1000:7.0f} ms  {base / value:5.2f}x of torch"
                  " channels_last fp32", flush=True)


def bench(clip: Path, names: list[str]) -> None:
    """vidsr bench per runtime on one clip: model-only and pipeline fps, interleaved."""
    machine = this_machine()
    print(f"# {machine.describe_cpu()}; {clip.name}, first {BENCH_FRAMES} frames; median of"
          f" {REPEATS // 2 + 1} interleaved vidsr bench runs")
    configs = [("torch", "fp32"), ("openvino", "fp32")]
    if machine.native_bf16:
        configs += [("torch", "bf16"), ("openvino", "bf16")]
    configs.append(("openvino", "int8"))
    for name, scale in _models(names):
        options = BenchOptions(model=name, scale=scale, serial=False, frames=BENCH_FRAMES)
        figures: dict[tuple[str, str], dict[str, list[float]]] = {
            c: {"model": [], "pipeline": []} for c in configs}
        for _ in range(REPEATS // 2 + 1):
            for runtime, precision in configs:
                report = run_bench(clip, options, EngineOptions(
                    runtime=runtime, precision=precision,  # type: ignore[arg-type]
                    openvino=INT8_FORCED))
                figures[(runtime, precision)]["model"].append(report.model_only_fps)
                figures[(runtime, precision)]["pipeline"].append(report.fps)
        medians = {c: {k: statistics.median(v) for k, v in f.items()} for c, f in figures.items()}
        base = medians[("torch", "fp32")]
        print(f"{name} x{scale}: {report.size}, {report.frames} frames;"
              f" plan: {report.plan['executor']['kind']}")
        for (runtime, precision), m in medians.items():
            print(f"  {runtime:<8} {precision:<5} model only {m['model']:6.2f} fps"
                  f" ({m['model'] / base['model']:4.2f}x)  pipeline {m['pipeline']:6.2f} fps"
                  f" ({m['pipeline'] / base['pipeline']:4.2f}x)", flush=True)


def loss(set5: Path, calibration: Path, names: list[str]) -> None:
    """int8's Set5 cost per model, as cards.toml's precision_loss entries."""
    print(f"# {this_machine().describe_cpu()}; OpenVINO int8 calibrated on {calibration.name}")
    for name, scale in _models(names):
        model = load_model(name, scale=scale)
        fp32 = evaluate_folder(model, set5, scale, precision="fp32").mean_psnr
        int8 = evaluate_folder(model, set5, scale, precision="int8", runtime="openvino",
                               calibration=calibration).mean_psnr
        print(f"{name} x{scale}: fp32 {fp32:.3f} dB, int8 {int8:.3f} dB;"
              f" int8 = {{ {scale} = {fp32 - int8:.3f} }}", flush=True)


def bf16_loss(set5: Path, names: list[str]) -> None:
    """OpenVINO bf16's Set5 cost per model, as cards.toml's precision_loss entries."""
    print(f"# {this_machine().describe_cpu()}; OpenVINO bf16 against torch fp32")
    for name, scale in _models(names):
        model = load_model(name, scale=scale)
        fp32 = evaluate_folder(model, set5, scale, precision="fp32").mean_psnr
        bf16 = evaluate_folder(model, set5, scale, precision="bf16",
                               runtime="openvino").mean_psnr
        print(f"{name} x{scale}: fp32 {fp32:.3f} dB, OpenVINO bf16 {bf16:.3f} dB;"
              f" openvino-bf16 = {{ {scale} = {fp32 - bf16:.3f} }}", flush=True)


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if mode == "network":
        network(rest)
    elif mode == "bench":
        bench(Path(rest[0]), rest[1:])
    elif mode == "loss":
        loss(Path(rest[0]), Path(rest[1]), rest[2:])
    elif mode == "bf16-loss":
        bf16_loss(Path(rest[0]), rest[1:])
    else:
        raise SystemExit(__doc__)
