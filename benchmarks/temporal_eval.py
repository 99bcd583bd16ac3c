"""A quick score of a temporal model against frame-wise `compact` and `archival` on the
archival table's clips, degraded as ``vidsr eval-video --degrade archival`` degrades them.

    python benchmarks/temporal_eval.py --x4 RUN_OR_WEIGHTS [--x2 RUN_OR_WEIGHTS]
        [--frames 48] [--seed 1] [--codecs mpeg2,h264] [--clips DIR] [--json out.json]

``RUN_OR_WEIGHTS`` is a weights file or a training run directory (its newest checkpoint's
EMA weights). Each clip (foreman and akiyo, which no model was trained on) is degraded with
eval-video's archival degradation; the models run in fp32 on the LR frames here, not through
the transcoder (which does not feed windows of frames yet): the temporal model gets the
window around each frame, the clip's first and last frames repeated past its ends. Outputs
are rounded to 8-bit RGB and scored as eval-video scores them: mean PSNR / SSIM on Y and the
flicker figure (mean absolute change of the error from frame to frame, lower is steadier).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_CLIPS = REPO.parent / "shared" / "data" / "videos"
CLIPS = ("foreman_cif.mp4", "akiyo_cif.mp4")
CODECS = {"mpeg2": "mpeg2video", "h264": "h264"}


def weights_of(run_or_weights: Path) -> Path:
    """A weights file, or the EMA weights of a training run's newest checkpoint."""
    from vidsr.train.checkpoints import latest_checkpoint

    if run_or_weights.is_file():
        return run_or_weights
    checkpoint = latest_checkpoint(run_or_weights / "checkpoints")
    if checkpoint is None:
        raise SystemExit(f"{run_or_weights}: no checkpoint yet")
    return checkpoint / "params_ema.safetensors"


def windows_of(frames: torch.Tensor, index: int, window: int) -> torch.Tensor:
    """(T, C, h, w): the frames around ``index``, the clip's end frames repeated past its ends."""
    radius = window // 2
    picks = [min(max(index + d, 0), len(frames) - 1) for d in range(-radius, radius + 1)]
    return frames[picks]


@torch.no_grad()
def upscale(module: torch.nn.Module, lr: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """Every frame of ``lr`` (F, 3, h, w) uint8 upscaled by ``module``, as uint8 RGB."""
    window = module.spec.window
    frames = lr.float() / 255
    out = []
    for start in range(0, len(frames), batch):
        indices = range(start, min(start + batch, len(frames)))
        if window > 1:
            x = torch.stack([windows_of(frames, i, window) for i in indices])
        else:
            x = frames[start:indices.stop]
        out.append((module(x).clamp(0, 1) * 255).round().to(torch.uint8))
    return torch.cat(out)


def score(sr: torch.Tensor, hr: list[torch.Tensor], scale: int) -> dict[str, float]:
    """eval-video's figures: mean PSNR and SSIM on Y, and the flicker of the error."""
    from vidsr.imaging.scoring import luma_of_uint8, score_luma

    psnrs, ssims, changes = [], [], []
    previous = None
    for sr_frame, hr_frame in zip(sr, hr, strict=True):
        sr_y, hr_y = luma_of_uint8(sr_frame), luma_of_uint8(hr_frame)
        value_psnr, value_ssim = score_luma(sr_y, hr_y, scale)
        psnrs.append(value_psnr)
        ssims.append(value_ssim)
        error = (sr_y - hr_y)[scale:-scale, scale:-scale]
        if previous is not None:
            changes.append(float((error - previous).abs().mean()))
        previous = error
    return {"psnr": statistics.fmean(psnrs), "ssim": statistics.fmean(ssims),
            "flicker": statistics.fmean(changes)}


def lr_and_hr(clip: Path, scale: int, codec: str, frames: int,
              seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The first ``frames`` of ``clip`` degraded as eval-video's archival degradation does
    (uint8 LR frames), and the true frames, cropped to a multiple of ``scale``."""
    from vidsr.commands.eval_video import frames_rgb
    from vidsr.imaging.scoring import mod_crop
    from vidsr.train.degrade_clip import ArchivalOptions, degraded_lr

    hr = [mod_crop(frame, scale) for frame in frames_rgb(clip, frames)]
    options = ArchivalOptions(seed=seed, codec=CODECS[codec])
    return torch.stack(list(degraded_lr(iter(hr), scale, "archival", options))), hr


def evaluate(clip: Path, scale: int, codec: str, models: dict[str, torch.nn.Module],
             frames: int, seed: int) -> dict[str, dict[str, float]]:
    lr, hr = lr_and_hr(clip, scale, codec, frames, seed)
    return {name: score(upscale(module, lr), hr, scale) for name, module in models.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--x4", type=Path, help="temporal x4: weights file or training run")
    p.add_argument("--x2", type=Path, help="temporal x2: weights file or training run")
    p.add_argument("--clips", type=Path, default=SHARED_CLIPS)
    p.add_argument("--codecs", default="mpeg2,h264")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    from vidsr.archs import load_arch_from_state_dict
    from vidsr.models.weights_file import read_state_dict
    from vidsr.models.zoo import load_model

    torch.set_num_threads(args.threads)
    results = []
    for scale, run in ((2, args.x2), (4, args.x4)):
        if run is None:
            continue
        models = {name: load_model(name, scale=scale).module for name in ("compact", "archival")}
        models["temporal"] = load_arch_from_state_dict(read_state_dict(weights_of(run)))
        for name in CLIPS:
            for codec in args.codecs.split(","):
                rows = evaluate(args.clips / name, scale, codec, models, args.frames, args.seed)
                results.append({"clip": name, "scale": scale, "codec": codec, "models": rows})
                gain = {base: rows["temporal"]["psnr"] - rows[base]["psnr"]
                        for base in ("compact", "archival")}
                print(f"{name.split('_')[0]:8s} x{scale} {codec:5s} " + "  ".join(
                    f"{m} {r['psnr']:.2f}/{r['flicker']:.3f}" for m, r in rows.items())
                    + f"  | temporal-compact {gain['compact']:+.2f}"
                    f" temporal-archival {gain['archival']:+.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"frames": args.frames, "seed": args.seed,
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
