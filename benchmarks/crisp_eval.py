"""How close crisp models' pictures are to their teacher's, against `archival`'s, on the archival
table's clips (degraded as ``vidsr eval-video --degrade archival`` degrades them), x4 or x2.

    python benchmarks/crisp_eval.py --model crisp=RUN_OR_WEIGHTS [--model gan=...] [--scale 4]
        [--teacher WEIGHTS] [--frames 48] [--seed 1] [--codecs mpeg2,h264] [--clips DIR]
        [--json out.json]

For each clip (foreman and akiyo, which no model was trained on) and codec, the LR frames go
through the teacher (Real-ESRGAN x4plus, bf16 autocast; at x2 its x4 output downscaled by 2
with vidsr's bicubic, as the x2 crisp model was taught), `archival` and each model given
(fp32), each output rounded to 8-bit RGB. The teacher's frames are cached under
~/.cache/vidsr/crisp_eval (they cost seconds a frame). Printed per row and model:

- PSNR on Y with the teacher's frames as the reference: how close it comes to the teacher's
  look (and the gain over `archival` there);
- detail: the mean absolute Laplacian of its Y against the teacher's (1.0: as much fine
  detail as the teacher draws; PSNR-trained models stay well under);
- flicker: eval-video's figure against the true frames (the mean absolute change of the
  error from frame to frame), for the teacher too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from temporal_eval import SHARED_CLIPS, lr_and_hr, score, upscale, weights_of

CLIPS = ("foreman_cif.mp4", "akiyo_cif.mp4")
TEACHER = SHARED_CLIPS.parent / "weights" / "realesrgan" / "RealESRGAN_x4plus.pth"
TEACHER_CACHE = Path.home() / ".cache" / "vidsr" / "crisp_eval"


def labelled(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {text!r}")
    return label, Path(path)


def teacher_frames(teacher: Path, lr: torch.Tensor, scale: int, key: str) -> torch.Tensor:
    """The teacher's frames for ``lr`` at ``scale`` (uint8 RGB), cached by ``key``."""
    from vidsr.imaging.resize import imresize
    from vidsr.models.zoo import load_model

    stat = teacher.stat()
    digest = hashlib.sha256(f"{key}|{teacher}|{stat.st_size}|{stat.st_mtime_ns}|{scale}"
                            .encode()).hexdigest()[:16]
    path = TEACHER_CACHE / f"teacher-{digest}.npy"
    if path.is_file():
        return torch.from_numpy(np.load(path))
    module = load_model(str(teacher), scale=4).module.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        taught = upscale(module, lr, batch=2)
    if scale != 4:
        taught = (imresize(taught.float() / 255, scale=scale / 4).clamp(0, 1) * 255).round()
        taught = taught.to(torch.uint8)
    TEACHER_CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npy")
    np.save(partial, taught.numpy())
    partial.replace(path)
    return taught


def detail(frames: torch.Tensor) -> float:
    """Mean absolute Laplacian of the frames' Y (BT.601, 0..255)."""
    from vidsr.imaging.scoring import luma_of_uint8

    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
    total = 0.0
    for frame in frames:
        y = luma_of_uint8(frame).view(1, 1, *frame.shape[-2:]).float()
        total += torch.nn.functional.conv2d(y, kernel).abs().mean().item()
    return total / len(frames)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=labelled, action="append", required=True,
                   metavar="LABEL=PATH", help="a crisp model: weights file or training run")
    p.add_argument("--scale", type=int, choices=(2, 4), default=4)
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
    scale = args.scale
    models = {"archival": load_model("archival", scale=scale).module.eval()}
    for label, path in args.model:
        models[label] = load_arch_from_state_dict(read_state_dict(weights_of(path))).eval()
    print(f"# {this_machine().describe_cpu()}; {args.frames} frames, x{scale}, seed {args.seed}")
    results = []
    for name in CLIPS:
        for codec in args.codecs.split(","):
            lr, hr = lr_and_hr(args.clips / name, scale, codec, args.frames, args.seed)
            taught = teacher_frames(args.teacher, lr, scale,
                                    f"{name}|{codec}|{args.frames}|{args.seed}")
            teacher_detail = detail(taught)
            row = {"teacher": {"flicker": score(taught, hr, scale)["flicker"],
                               "detail": teacher_detail}}
            for model, module in models.items():
                out = upscale(module, lr)
                row[model] = {"psnr_vs_teacher": score(out, list(taught), scale)["psnr"],
                              "psnr_vs_truth": score(out, hr, scale)["psnr"],
                              "flicker": score(out, hr, scale)["flicker"],
                              "detail": detail(out) / teacher_detail}
            base = row["archival"]["psnr_vs_teacher"]
            results.append({"clip": name, "codec": codec, "models": row})
            cells = " | ".join(
                f"{m} {r['psnr_vs_teacher']:.2f}"
                + (f" ({r['psnr_vs_teacher'] - base:+.2f})" if m != "archival" else "")
                + f" detail {r['detail']:.2f} flicker {r['flicker']:.3f}"
                for m, r in row.items() if m != "teacher")
            print(f"{name.split('_')[0]:8s} {codec:5s} vs teacher: {cells} | teacher flicker"
                  f" {row['teacher']['flicker']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"frames": args.frames, "seed": args.seed,
                                         "scale": scale, "machine": this_machine().describe_cpu(),
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
