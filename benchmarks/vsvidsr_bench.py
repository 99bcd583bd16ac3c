"""vsvidsr through vspipe, against ``vidsr`` and against one-frame-at-a-time evaluation.

    python benchmarks/vsvidsr_bench.py CLIP --model espcn --scale 2 [--frames 48]
        [--repeats 3] [--threads 2] [--json out.json]

All three read the same frames, the first ``--frames`` of CLIP through bestsource,
and run the same model with the same run plan:

- ``vsvidsr``: ``vspipe -c y4m`` of a script ending in ``vsvidsr.upscale``, the
  output thrown away; frames/s as vspipe reports it (rendering only);
- ``one-at-a-time``: the same script with a plain ``std.ModifyFrame`` that runs
  each frame through the same engine as it is asked for (one frame at a time,
  as a filter without batching or concurrency does);
- ``vidsr``: ``vidsr script.vpy out.nut --codec rawvideo`` on the script without
  the upscale; frames/s from its summary (upscaling and writing raw frames).

A luma model on the clip's YUV takes the same path in all three. With an RGB
model the scripts convert to RGBS and back (``core.resize``), as a user's would.
The runs alternate, ``--repeats`` times each; the medians are compared.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from vidsr.models.zoo import load_model
from vidsr.plan.machine import this_machine

BIN = Path(sys.executable).parent

_HEAD = """import vapoursynth as vs
core = vs.core
core.num_threads = {threads}
clip = core.bs.VideoSource({clip!r}, cachemode=0)[:{frames}]
"""
_TO_RGB = "clip = core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s='709')\n"
_FROM_RGB = "clip = core.resize.Bicubic(clip, format=vs.YUV420P8, matrix_s='709')\n"
_VSVIDSR = """import vsvidsr
clip = vsvidsr.upscale(clip, {model!r}, scale={scale})
"""
# The same engine and plan, asked for one frame at a time: ModifyFrame runs its
# callbacks one after another.
_ONE_AT_A_TIME = """from fractions import Fraction
import numpy as np
from vidsr.engine.engine import Engine
from vidsr.io.frames import FrameBatch
from vidsr.io.script_source import colour_of, frame_planes, layout_of, write_planes
from vidsr.models.zoo import load_model
from vidsr.plan.run_plan import resolve_plan
model = load_model({model!r}, scale={scale})
engine = Engine(model, resolve_plan(model))
blank = core.std.BlankClip(clip, width=clip.width * {scale}, height=clip.height * {scale})
rgb = clip.format.name == "RGBS"
def one(n, f):
    src, out = f[0], f[1].copy()
    if rgb:
        import torch
        x = torch.from_numpy(np.stack([np.asarray(src[p]) for p in range(3)])[None])
        y = engine.run_network(x)[0].numpy()
        for p in range(3):
            np.asarray(out[p])[...] = y[p]
    else:
        layout = layout_of(src.format)
        planes = [p[None] for p in frame_planes(src, layout)]
        done = engine.upscale_batch(FrameBatch(planes, [n], Fraction(1), n, layout),
                                    colour_of(src.props, layout, src.height), layout)
        write_planes(out, [p[0] for p in done.planes], layout)
    out.props.update(src.props)
    return out
clip = core.std.ModifyFrame(blank, [clip, blank], one)
"""


def script(kind: str, args: argparse.Namespace, rgb: bool) -> str:
    text = _HEAD.format(threads=args.threads, clip=str(args.clip), frames=args.frames)
    if kind == "source":
        return text + "clip.set_output()\n"
    body = _VSVIDSR if kind == "vsvidsr" else _ONE_AT_A_TIME
    text += (_TO_RGB if rgb else "") + body.format(model=args.model, scale=args.scale)
    return text + (_FROM_RGB if rgb else "") + "clip.set_output()\n"


def vspipe_fps(path: Path) -> float:
    run = subprocess.run([str(BIN / "vspipe"), "-c", "y4m", str(path), "-"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    match = re.search(r"Output (\d+) frames in ([\d.]+) seconds \(([\d.]+) fps\)", run.stderr)
    assert match, run.stderr
    return float(match.group(3))


def vidsr_fps(path: Path, out: Path, args: argparse.Namespace) -> float:
    run = subprocess.run([str(BIN / "vidsr"), str(path), str(out), "--model", args.model,
                          "--scale", str(args.scale), "--codec", "rawvideo", "--overwrite",
                          "--no-progress"], capture_output=True, text=True, check=True)
    match = re.search(r"\(([\d.]+) fps\)", run.stdout + run.stderr)
    assert match, run.stdout + run.stderr
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--model", default="espcn")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="core.num_threads")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rgb = load_model(args.model, scale=args.scale).spec.input_space == "rgb"
    fps: dict[str, list[float]] = {"vsvidsr": [], "one-at-a-time": [], "vidsr": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = {}
        for kind in ("vsvidsr", "one-at-a-time", "source"):
            paths[kind] = folder / f"{kind}.vpy"
            paths[kind].write_text(script(kind, args, rgb))
        for _ in range(args.repeats):
            fps["vsvidsr"].append(vspipe_fps(paths["vsvidsr"]))
            fps["one-at-a-time"].append(vspipe_fps(paths["one-at-a-time"]))
            fps["vidsr"].append(vidsr_fps(paths["source"], folder / "out.nut", args))
    median = {kind: statistics.median(values) for kind, values in fps.items()}
    machine = this_machine()
    report = {
        "machine": machine.describe_cpu(), "clip": str(args.clip), "model": args.model,
        "scale": args.scale, "frames": args.frames, "core_threads": args.threads, "fps": fps,
        "median_fps": median,
        "vsvidsr_vs_vidsr": median["vsvidsr"] / median["vidsr"],
        "vsvidsr_vs_one_at_a_time": median["vsvidsr"] / median["one-at-a-time"],
    }
    print(f"{machine.describe_cpu()}; {args.model} x{args.scale}, {args.frames} frames of"
          f" {args.clip.name}, core.num_threads={args.threads}, {args.repeats} runs each")
    for kind, values in fps.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {kind:<14} median {median[kind]:6.2f} fps  ({runs})")
    print(f"  vsvidsr / vidsr {report['vsvidsr_vs_vidsr']:.2f}x,"
          f" vsvidsr / one-at-a-time {report['vsvidsr_vs_one_at_a_time']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
