"""How close a crisp model's picture is to its teacher's, against `archival`'s, on the archival
table's clips (degraded as ``vidsr eval-video --degrade archival`` degrades them), x4.

    python benchmarks/crisp_eval.py --crisp RUN_OR_WEIGHTS [--teacher WEIGHTS]
        [--frames 48] [--seed 1] [--codecs mpeg2,h264] [--clips DIR] [--json out.json]

For each clip (foreman and akiyo, which no model was trained on) and codec, the LR frames go
through the teacher (Real-ESRGAN x4plus, bf16 autocast), `archival` and the crisp model (fp32),
each output rounded to 8-bit RGB. Printed per row: PSNR on Y of `archival` and of the crisp
model with the teacher's frames as the reference (how close each comes to the teacher's
look), the crisp model's gain over `archival` there, and each model's flicker (eval-video's
figure against the true frames: the mean absolute change of the error from frame to frame).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from temporal_eval import SHARED_CLIPS, lr_and_hr, score, upscale, weights_of

CLIPS = ("foreman_cif.mp4", "akiyo_cif.mp4")
TEACHER = SHARED_CLIPS.parent / "weights" / "realesrgan" / "RealESRGAN_x4plus.pth"
SCALE = 4


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--crisp", type=Path, required=True, help="weights file or training run")
    p.add_argument("--teacher", type=Path, default=TEACHER)
    p.add_argument("--clips", type=Path, default=SHARED_CLIPS)
    p.add_argument("--codecs", default="mpeg2,h264")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    from vidsr.archs import load_arch_from_state_dict
    from vidsr.models.weights_file import read_state_dict
    from vidsr.models.zoo import load_model
    from vidsr.plan.machine import this_machine

    torch.set_num_threads(args.threads)
    teacher = load_model(str(args.teacher), scale=SCALE).module.eval()
    models = {"archival": load_model("archival", scale=SCALE).module.eval(),
              "crisp": load_arch_from_state_dict(read_state_dict(weights_of(args.crisp))).eval()}
    print(f"# {this_machine().describe_cpu()}; {args.frames} frames, x{SCALE}, seed {args.seed}")
    results = []
    for name in CLIPS:
        for codec in args.codecs.split(","):
            lr, hr = lr_and_hr(args.clips / name, SCALE, codec, args.frames, args.seed)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                taught = upscale(teacher, lr, batch=2)
            outputs = {model: upscale(module, lr) for model, module in models.items()}
            row = {model: {"psnr_vs_teacher": score(out, list(taught), SCALE)["psnr"],
                           "flicker": score(out, hr, SCALE)["flicker"]}
                   for model, out in outputs.items()}
            row["teacher"] = {"flicker": score(taught, hr, SCALE)["flicker"]}
            gain = row["crisp"]["psnr_vs_teacher"] - row["archival"]["psnr_vs_teacher"]
            results.append({"clip": name, "codec": codec, "models": row, "gain": gain})
            print(f"{name.split('_')[0]:8s} {codec:5s} vs teacher: archival"
                  f" {row['archival']['psnr_vs_teacher']:.2f} crisp"
                  f" {row['crisp']['psnr_vs_teacher']:.2f} ({gain:+.2f} dB) | flicker"
                  f" archival {row['archival']['flicker']:.3f} crisp"
                  f" {row['crisp']['flicker']:.3f} teacher {row['teacher']['flicker']:.3f}",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps({"frames": args.frames, "seed": args.seed,
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
