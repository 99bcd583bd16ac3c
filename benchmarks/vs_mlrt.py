"""vsvidsr against vs-mlrt's OpenVINO plugin (``core.ov.Model``): one network, one clip, vspipe.

    python benchmarks/vs_mlrt.py [CLIP] [--models compact:4 realesr-animevideov3:4]
        [--frames 48] [--repeats 3] [--runtime auto] [--threads N] [--json out.json]

Installs nothing: where ``vapoursynth-mlrt-ov`` is not installed (no ``core.ov``) it says so
and stops. For each model it exports vidsr's network to ONNX (as ``vidsr export`` does) and
runs four scripts on the same first ``--frames`` of CLIP (default: foreman CIF from the shared
data), each bestsource -> RGBS -> the network -> YUV420P8, the output thrown away
(``vspipe -c y4m SCRIPT -``), alternating, ``--repeats`` rounds:

- ``vsvidsr``: ``vsvidsr.upscale(clip, MODEL, scale=S, runtime=RUNTIME)``, the run plan's
  precision (``auto``) and threads;
- ``vs-mlrt``: ``core.ov.Model(clip, network_path=ONNX, config=...)`` with as many streams
  as vsvidsr's plan runs workers, OpenVINO's default precision (bf16 on a CPU with AVX-512
  BF16 or AMX, f32 elsewhere);
- the same two in fp32 (``precision="fp32"``; ``INFERENCE_PRECISION_HINT=f32``).

fps as vspipe reports it (rendering only: the script's set-up is not in it). Each round
runs the four back to back, so a ratio is taken within a round; the medians of the fps and
of the per-round ratios are printed with the spread, and the CPU is named. vsvidsr's
processes get OpenVINO's Python library preloaded: vs-mlrt's plugin brings its own build,
which VapourSynth loads before the script and the Python module refuses
(:func:`vidsr.plan.machine.openvino_unusable`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from vidsr.commands.export import export_model
from vidsr.executors.openvino import faster_plan
from vidsr.models.zoo import load_model
from vidsr.plan.machine import openvino_available, openvino_library, this_machine
from vidsr.plan.run_plan import EngineOptions, resolve_plan

BIN = Path(sys.executable).parent
TIMEOUT_S = 600  # a clip of a few dozen frames takes seconds; more is a hang
CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "foreman_cif.mp4"

_HEAD = """import vapoursynth as vs
core = vs.core
core.num_threads = {threads}
clip = core.bs.VideoSource({clip!r}, cachemode=0)[:{frames}]
clip = core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s='170m')
"""
_TAIL = """clip = core.resize.Bicubic(clip, format=vs.YUV420P8, matrix_s='170m')
clip.set_output()
"""
_VSVIDSR = "import vsvidsr\nclip = vsvidsr.upscale(clip, {model!r}, scale={scale}, {args})\n"
_VS_MLRT = "clip = core.ov.Model(clip, network_path={onnx!r}, config=lambda: {config!r})\n"


def vspipe_fps(script: Path, preload: Path | None) -> float:
    """vspipe's own fps for rendering ``script``."""
    env = dict(os.environ)
    if preload is not None:
        env["LD_PRELOAD"] = str(preload)
    try:
        run = subprocess.run([str(BIN / "vspipe"), "-c", "y4m", str(script), "-"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{script.name} did not finish in {TIMEOUT_S} s") from None
    match = re.search(r"Output \d+ frames in [\d.]+ seconds \(([\d.]+) fps\)", run.stderr)
    if run.returncode != 0 or not match:
        raise SystemExit(f"{script.name} failed:\n{run.stderr[-2000:]}")
    return float(match.group(1))


def scripts(name: str, scale: int, onnx: Path, streams: int, args: argparse.Namespace,
            folder: Path) -> dict[str, Path]:
    """The four scripts of one model, by the name of the run."""
    head = _HEAD.format(threads=args.threads, clip=str(args.clip), frames=args.frames)
    vsvidsr = {"default": f"runtime={args.runtime!r}",
               "fp32": f"runtime={args.runtime!r}, precision='fp32'"}
    vs_mlrt = {"default": {"NUM_STREAMS": str(streams)},
               "fp32": {"NUM_STREAMS": str(streams), "INFERENCE_PRECISION_HINT": "f32"}}
    bodies = {}
    for precision in ("default", "fp32"):
        bodies[f"vsvidsr {precision}"] = _VSVIDSR.format(model=name, scale=scale,
                                                         args=vsvidsr[precision])
        bodies[f"vs-mlrt {precision}"] = _VS_MLRT.format(onnx=str(onnx),
                                                         config=vs_mlrt[precision])
    paths = {}
    for run, body in bodies.items():
        paths[run] = folder / f"{name}-x{scale}-{run.replace(' ', '-')}.vpy"
        paths[run].write_text(head + body + _TAIL)
    return paths


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path, nargs="?", default=CLIP)
    parser.add_argument("--models", nargs="+", default=["compact:4", "realesr-animevideov3:4"],
                        metavar="MODEL:SCALE")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runtime", default="auto", choices=["auto", "openvino", "torch"],
                        help="vsvidsr's runtime= (default auto: the plan's measured choice)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="core.num_threads (default: the CPU count)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if openvino_available():
        # Before a core exists: a core loads vs-mlrt's own build of OpenVINO's library, which
        # OpenVINO's Python module then refuses, and this process plans vsvidsr's runs.
        import openvino  # noqa: F401
    import vapoursynth as vs

    if not hasattr(vs.core, "ov"):
        raise SystemExit("vs-mlrt's OpenVINO plugin is not installed (core.ov is missing):"
                         " pip install vapoursynth-mlrt-ov; this script installs nothing")
    machine = this_machine()
    preload = openvino_library()
    report: dict[str, object] = {"machine": machine.describe_cpu(), "clip": str(args.clip),
                                 "frames": args.frames, "core_threads": args.threads,
                                 "load_before": os.getloadavg()[0], "models": {}}
    print(f"{machine.describe_cpu()}; {args.frames} frames of {args.clip.name},"
          f" core.num_threads={args.threads}, {args.repeats} alternating rounds;"
          f" 1-minute load {os.getloadavg()[0]:.1f} before")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for entry in args.models:
            name, scale = entry.split(":")[0], int(entry.split(":")[1])
            model = load_model(name, scale=scale)
            if model.spec.input_space != "rgb":
                raise SystemExit(f"{name}: this comparison runs RGB models (vs-mlrt's RGBS path)")
            plan = resolve_plan(model, EngineOptions(device="cpu", runtime=args.runtime),
                                overlapped=True, choose_runtime=faster_plan)
            streams = getattr(plan.executor, "workers", 1)
            onnx = folder / f"{name}-x{scale}.onnx"
            export_model(model, onnx)
            paths = scripts(name, scale, onnx, streams, args, folder)
            fps: dict[str, list[float]] = {run: [] for run in paths}
            # A first round unrecorded: compiled-model caches, bestsource's index.
            for round_ in range(args.repeats + 1):
                for run, path in paths.items():
                    value = vspipe_fps(path, preload if run.startswith("vsvidsr") else None)
                    if round_:
                        fps[run].append(value)
            ratios = {p: [a / b for a, b in zip(fps[f"vsvidsr {p}"], fps[f"vs-mlrt {p}"],
                                                strict=True)]
                      for p in ("default", "fp32")}
            print(f"{name} x{scale}: vsvidsr plan {plan.runtime.name}, {plan.precision.name},"
                  f" {plan.executor.describe()}; vs-mlrt {streams} stream(s)")
            for run, values in fps.items():
                print(f"  {run:<16} median {statistics.median(values):6.2f} fps"
                      f"  ({', '.join(f'{v:.2f}' for v in values)})")
            for precision, values in ratios.items():
                print(f"  vsvidsr / vs-mlrt, {precision}: median {statistics.median(values):.2f}x"
                      f" (rounds {spread(values)})")
            report["models"][entry] = {  # type: ignore[index]
                "plan": plan.to_dict()["runtime"] | {"precision": plan.precision.name},
                "vs_mlrt_streams": streams, "fps": fps,
                "ratios": ratios}
    report["load_after"] = os.getloadavg()[0]
    print(f"1-minute load {report['load_after']:.1f} after")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
