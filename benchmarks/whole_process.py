"""vidsr against a plain serial loop, both timed as whole processes (start-up included).

    python benchmarks/whole_process.py CLIP --model WEIGHTS_OR_NAME --scale 4 \\
        [--frames 24] [--repeats 3] [--json out.json] [-- EXTRA VIDSR ARGS]

Cuts the first ``--frames`` frames of CLIP, then runs, alternately and
``--repeats`` times each: ``vidsr CUT OUT --model ... --scale ...`` with default
options (plus any extra arguments), and ``benchmarks/serial_loop.py`` with the
same weights. Prints the best wall time of each, their ratio, the plan vidsr
chose and the machine (CPU model, torch's CPU capability, native bf16 or not).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vidsr.commands.bench import make_bench_clip
from vidsr.plan.machine import this_machine

HERE = Path(__file__).resolve().parent


def timed_run(command: list[str], walls: list[float]) -> None:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    walls.append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--model", required=True)
    parser.add_argument("--scale", type=int, required=True)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args, extra = parser.parse_known_args()
    args.extra = [arg for arg in extra if arg != "--"]  # more vidsr arguments
    vidsr = [sys.executable, "-m", "vidsr"]
    with tempfile.TemporaryDirectory(prefix="vidsr-whole-") as tmp:
        work = Path(tmp)
        cut = make_bench_clip(args.clip, work / f"cut{args.clip.suffix}", frames=args.frames,
                              crop=None)
        model = ["--model", args.model, "--scale", str(args.scale)]
        ours = [*vidsr, str(cut), str(work / "vidsr.mp4"), *model, "--overwrite",
                "--no-progress", "-q", *args.extra]
        plain = [sys.executable, str(HERE / "serial_loop.py"), str(cut),
                 str(work / "serial.mp4"), *model]
        plan = subprocess.run([*ours, "--dry-run"], check=True, capture_output=True,
                              text=True).stdout
        walls: dict[str, list[float]] = {"vidsr": [], "serial": []}
        load = os.getloadavg()[0]
        for _ in range(args.repeats):
            timed_run(ours, walls["vidsr"])
            timed_run(plain, walls["serial"])
    best = {name: min(values) for name, values in walls.items()}
    report = {
        "machine": this_machine().describe_cpu(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "load_average_at_start": load,
        "clip": str(args.clip), "frames": args.frames, "model": args.model,
        "scale": args.scale, "vidsr_args": args.extra,
        "walls_s": walls, "best_s": best,
        "fps": {name: args.frames / s for name, s in best.items()},
        "speedup": best["serial"] / best["vidsr"],
        "plan": plan,
    }
    print(plan)
    print(f"machine  {report['machine']} (load {load:.1f} at start)"
          + (f", ONEDNN_MAX_CPU_ISA={report['onednn_max_cpu_isa']}"
             if report["onednn_max_cpu_isa"] else ""))
    for name in ("vidsr", "serial"):
        print(f"{name:<7}  best {best[name]:.2f} s ({report['fps'][name]:.2f} fps) of "
              + ", ".join(f"{w:.2f}" for w in walls[name]))
    print(f"speedup  {report['speedup']:.2f}x (whole processes, start-up included)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
