"""`vidsr batch --engine ray` on a local Ray cluster with 1, 2 and 4 CPU actors: frames/s.

    python benchmarks/ray_scaling.py [--actors 1,2,4] [--files 4] [--frames 48]
        [--size 256x192] [--model compact] [--scale 2] [--json out.json]

The same job each time: ``--files`` generated clips (25 fps, a keyframe every 6 frames)
cut into segments of 0.4 s, upscaled in fp32 by actors of one CPU each on a Ray started
here with as many logical CPUs as the largest actor count. Printed per run: wall time,
frames/s (all frames over the batch's wall time, actor start-up included), the speed-up
over one actor, and the joins' seconds (the part that runs once per file, after its
segments). The local engine's run of the same job is the baseline. The machine is named.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from clipgen import make_clip  # noqa: E402

from vidsr.commands.batch import BatchOptions, FileRun, run_batch  # noqa: E402
from vidsr.commands.batch.jobfile import JobFile  # noqa: E402
from vidsr.commands.batch.ray_engine import RayOptions  # noqa: E402
from vidsr.plan.machine import this_machine  # noqa: E402
from vidsr.plan.run_plan import EngineOptions  # noqa: E402


def _job(root: Path, files: int, frames: int, width: int, height: int) -> Path:
    src = root / "src"
    src.mkdir()
    for i in range(files):
        make_clip(src / f"clip{i}.mkv", width=width, height=height, frames=frames,
                  content="moving", gop=6)
    return src


def _run(src: Path, out: Path, run: FileRun, ray: RayOptions | None) -> dict:
    started = time.perf_counter()
    result = run_batch(src, out, lambda _: run,
                       BatchOptions(progress=False, segment_seconds=0.4, ray=ray))
    wall = time.perf_counter() - started
    assert result.ok, [f.reason for f in result.files if f.outcome == "failed"]
    entries = JobFile.open(out)
    joins = [entries.get(f.source).get("join_seconds", 0.0) for f in result.files]
    return {"wall_s": round(wall, 2), "frames": result.frames,
            "fps": round(result.frames / wall, 3), "join_s": round(sum(joins), 3),
            "segments": sum(f.segments for f in result.files)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--actors", default="1,2,4")
    p.add_argument("--files", type=int, default=4)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--size", default="256x192")
    p.add_argument("--model", default="compact")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    import ray

    counts = [int(n) for n in args.actors.split(",")]
    width, height = (int(v) for v in args.size.split("x"))
    machine = this_machine()
    print(f"machine: {machine.describe_cpu()}")
    run = FileRun(model=args.model, scale=args.scale,
                  engine=EngineOptions(precision="fp32", cpu_workers=1, cpu_threads=1))
    root = Path(tempfile.mkdtemp(prefix="vrs", dir="/tmp"))
    rows = []
    try:
        src = _job(root, args.files, args.frames, width, height)
        local = _run(src, root / "local", run, None)
        print(f"local engine, 1 thread: {local['fps']:.2f} frames/s"
              f" ({local['frames']} frames, {local['segments']} segments,"
              f" joins {local['join_s']:.2f} s)")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=max(counts), include_dashboard=False, logging_level="ERROR",
                 _temp_dir=str(root / "ray"))
        try:
            for n in counts:
                row = _run(src, root / f"ray{n}", run, RayOptions(actors=n, actor_cpus=1))
                row["actors"] = n
                rows.append(row)
                speedup = row["fps"] / rows[0]["fps"]
                print(f"ray, {n} actor(s) of 1 CPU: {row['fps']:.2f} frames/s, wall"
                      f" {row['wall_s']:.1f} s, x{speedup:.2f} over 1 actor, joins"
                      f" {row['join_s']:.2f} s")
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine.describe_cpu(), "local": local,
                                         "ray": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
