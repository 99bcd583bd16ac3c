"""bwdif against QTGMC on real footage woven into fields.

    python benchmarks/deinterlacers.py [--clips DIR] [--count 6] [--frames 16]
        [--width 720] [--json out.json]

From each of ``--count`` clips of ``--clips`` (default: the shared training videos, which
have real motion) ``2 x --frames`` consecutive progressive frames are taken, scaled to
``--width`` (SD, as archives are; the height kept even), and woven: interlaced frame i has
its first field from progressive frame 2i and its second from 2i + 1, top field first for
every other clip and bottom field first for the rest. The woven frames are written
losslessly (FFV1, flagged with their field order) and deinterlaced by vidsr's own sources:
the decoder with a bwdif plan and the QTGMC source, at frame rate and at field rate.

Printed: PSNR (Y, 8-bit, no border crop) of the deinterlaced frames against the
progressive ones (frame rate: output n against frame 2n, whose field came first; field rate:
output k against frame k), for each clip and the mean, the woven frames' own PSNR against
frame 2i as a floor, and the seconds per output frame of each deinterlacer (decoding
included: both read the same file), with the machine named.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vidsr.io.decode import Decoder  # noqa: E402
from vidsr.io.deinterlace import DeinterlacePlan  # noqa: E402
from vidsr.io.qtgmc import QtgmcSource  # noqa: E402
from vidsr.plan.machine import this_machine  # noqa: E402

TRAIN_CLIPS = REPO.parent / "shared" / "data" / "videos" / "train"
FLAGS = {"tff": 2, "bff": 3}  # AVFieldOrder: tt, bb


def progressive_frames(path: Path, count: int, width: int) -> list[np.ndarray]:
    """The first ``count`` frames of ``path`` as yuv420p planes (Y, U, V), ``width`` wide."""
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        height = round(stream.height * width / stream.width / 4) * 4
        for frame in container.decode(stream):
            frames.append(frame.reformat(width=width, height=height,
                                         format="yuv420p").to_ndarray())
            if len(frames) == count:
                break
    return frames


def weave(first: np.ndarray, second: np.ndarray, order: str) -> np.ndarray:
    """One interlaced yuv420p frame (rows of Y, then U, then V as to_ndarray stacks them):
    every other row of each plane from ``first``, the rest from ``second``."""
    top, bottom = (first, second) if order == "tff" else (second, first)
    out = top.copy()
    out[1::2] = bottom[1::2]
    return out


def write_woven(path: Path, frames: list[np.ndarray], order: str) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.height, stream.width = frames[0].shape[0] * 2 // 3, frames[0].shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.field_order = FLAGS[order]
        for index, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(frame, format="yuv420p")
            picture.pts = index
            out.mux(stream.encode(picture))
        out.mux(stream.encode())


def luma_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / mse) if mse else 99.0


def deinterlaced(path: Path, plan: DeinterlacePlan) -> tuple[list[np.ndarray], float]:
    """The deinterlaced luma planes and the seconds they took."""
    started = time.perf_counter()
    if plan.deinterlacer == "qtgmc":
        source: Decoder | QtgmcSource = QtgmcSource(path, plan, batch_size=8)
    else:
        source = Decoder(path, batch_size=8, deinterlace=plan)
    with source:
        lumas = [y for batch in source for y in batch.planes[0]]
    return lumas, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=Path, default=TRAIN_CLIPS)
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--frames", type=int, default=16, help="interlaced frames per clip")
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    clips = sorted(p for p in args.clips.iterdir() if p.suffix in (".mp4", ".mkv", ".webm"))
    # Spread over the folder: different sources, not four cuts of one.
    step = max(1, len(clips) // args.count)
    chosen = clips[::step][:args.count]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for number, clip in enumerate(chosen):
            order = "tff" if number % 2 == 0 else "bff"
            progressive = progressive_frames(clip, 2 * args.frames, args.width)
            if len(progressive) < 2 * args.frames:
                print(f"skipping {clip.name}: fewer than {2 * args.frames} frames")
                continue
            height = progressive[0].shape[0] * 2 // 3
            lumas = [p[:height] for p in progressive]
            woven = [weave(progressive[2 * i], progressive[2 * i + 1], order)
                     for i in range(args.frames)]
            path = Path(folder) / f"{clip.stem}.mkv"
            write_woven(path, woven, order)
            row = {"clip": clip.name, "order": order, "size": f"{args.width}x{height}",
                   "woven": float(np.mean([luma_psnr(w[:height], lumas[2 * i])
                                           for i, w in enumerate(woven)]))}
            for name in ("bwdif", "qtgmc"):
                for rate in ("frame", "field"):
                    out, seconds = deinterlaced(path, DeinterlacePlan(order, rate, "benchmark",
                                                                      deinterlacer=name))
                    truth = lumas[::2] if rate == "frame" else lumas
                    assert len(out) == len(truth), (name, rate, len(out), len(truth))
                    scores = [luma_psnr(o, t) for o, t in zip(out, truth, strict=True)]
                    row[f"{name}_{rate}"] = float(np.mean(scores))
                    row[f"{name}_{rate}_s"] = seconds / len(out)
            rows.append(row)
            print(json.dumps(row), flush=True)
    machine = this_machine().describe_cpu()
    print(f"\nmachine: {machine}\n")
    print("| clip | order | size | woven | bwdif frame | QTGMC frame | bwdif field"
          " | QTGMC field |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['clip']} | {row['order']} | {row['size']} | {row['woven']:.2f}"
              f" | {row['bwdif_frame']:.2f} | {row['qtgmc_frame']:.2f}"
              f" | {row['bwdif_field']:.2f} | {row['qtgmc_field']:.2f} |")
    keys = ("woven", "bwdif_frame", "qtgmc_frame", "bwdif_field", "qtgmc_field")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    print("| **mean** | | | " + " | ".join(f"**{mean[k]:.2f}**" for k in keys) + " |")
    speed = {k: float(np.mean([r[f"{k}_s"] for r in rows]))
             for k in ("bwdif_frame", "qtgmc_frame", "bwdif_field", "qtgmc_field")}
    print("| s / output frame | | | | " + " | ".join(f"{v:.3f}" for v in speed.values()) + " |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows, "mean": mean,
                                         "seconds_per_frame": speed}, indent=1))


if __name__ == "__main__":
    main()
