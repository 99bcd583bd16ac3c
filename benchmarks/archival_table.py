"""The archival comparison: bicubic, `compact`, `archival` and `realesr-animevideov3` on
clips degraded as old footage is (``vidsr eval-video --degrade archival``).

    python benchmarks/archival_table.py [--frames 48] [--seed 1] [--json out.json]
        [--clips DIR] [--models bicubic,compact,archival]

Every clip of ``--clips`` (default: the shared test videos, foreman and akiyo, which no
model was trained on) is degraded at x2 and x4 with MPEG-2 and with H.264 (blur sigma 0.8,
the antialiased bicubic, noise sigma 2, a CRF-26-like round trip, seeded), and each model
upscales it through the transcoder in fp32; realesr-animevideov3 is x4 only. Printed: one
markdown table of mean PSNR / SSIM on Y per clip, codec and scale, the machine named.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_CLIPS = REPO.parent / "shared" / "data" / "videos"
CLIPS = ("foreman_cif.mp4", "akiyo_cif.mp4")


def evaluate(clip: Path, scale: int, codec: str, models: list[str], frames: int,
             seed: int, plots: Path) -> dict[str, dict]:
    """eval-video's JSON for ``models`` on ``clip`` degraded with ``codec``: model -> row."""
    out = subprocess.run(
        [sys.executable, "-m", "vidsr", "eval-video", str(clip), "--models", ",".join(models),
         "--scale", str(scale), "--degrade", "archival", "--archival-codec", codec,
         "--seed", str(seed), "--frames", str(frames), "--precision", "fp32", "--json",
         "--overwrite", "--plot", str(plots / f"{clip.stem}_x{scale}_{codec}.png")],
        capture_output=True, text=True, check=True).stdout
    return {row["model"]: row for row in json.loads(out)["models"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=Path, default=SHARED_CLIPS)
    p.add_argument("--models", default="bicubic,compact,archival")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    from vidsr.plan.machine import this_machine

    base = args.models.split(",")
    print(f"machine: {this_machine().describe_cpu()}")
    results = []
    with tempfile.TemporaryDirectory() as plots:
        for name in CLIPS:
            for scale in (2, 4):
                models = base + (["realesr-animevideov3"] if scale == 4 else [])
                for codec in ("mpeg2", "h264"):
                    rows = evaluate(args.clips / name, scale, codec, models, args.frames,
                                    args.seed, Path(plots))
                    results.append({"clip": name, "scale": scale, "codec": codec,
                                    "models": {m: {"psnr": r["mean"]["psnr"],
                                                   "ssim": r["mean"]["ssim"],
                                                   "fps": r["fps"]}
                                               for m, r in rows.items()}})
                    print(f"  {name} x{scale} {codec}: " + ", ".join(
                        f"{m} {r['mean']['psnr']:.2f}" for m, r in rows.items()), flush=True)
    names = base + ["realesr-animevideov3"]
    print("\n| clip | scale | codec | " + " | ".join(f"`{m}`" for m in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for r in results:
        cells = [f"{r['models'][m]['psnr']:.2f} / {r['models'][m]['ssim']:.4f}"
                 if m in r["models"] else "-" for m in names]
        print(f"| {r['clip'].split('_')[0]} | x{r['scale']} | {r['codec']} | "
              + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"machine": this_machine().describe_cpu(),
                                         "frames": args.frames, "seed": args.seed,
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
