"""What a window of neighbouring frames can add on the archival table's clips: how much of
each degraded LR clip is the same in every frame of a window, and how much of `archival`'s
error lies there.

    python benchmarks/window_redundancy.py [--frames 48] [--seed 1] [--radius 2]
        [--clips DIR] [--json out.json]

For foreman and akiyo, MPEG-2 and H.264, x2 and x4 (degraded as ``vidsr eval-video
--degrade archival`` degrades them, seed 1 as the table), per LR pixel of each frame whose
window of ``2 * radius + 1`` frames lies inside the clip:

- ``same as next``: the share of pixels equal (all three channels) in the next frame;
- ``same in window``: the share equal in every frame of the window: there a window model's
  first layer sees one frame five times over;
- ``same in reach``: the share whose whole receptive field (``archival``'s, 12 LR pixels a
  side) is the same in every frame of the window: there no window model of that reach can
  differ from a frame-wise model of the same picture;
- ``archival's error in window`` and ``... in reach``: the share of ``archival``'s squared
  error on Y (against the true frames) on the HR pixels of each of those two.

The codec's skipped blocks copy the previous frame's picture, errors included, so a still
background gives its neighbours nothing to add.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from temporal_eval import SHARED_CLIPS, lr_and_hr, upscale

from vidsr.imaging.scoring import luma_of_uint8
from vidsr.models.zoo import load_model

CLIPS = ("foreman_cif.mp4", "akiyo_cif.mp4")


def redundancy(lr: torch.Tensor, hr: list[torch.Tensor], sr: torch.Tensor, radius: int,
               reach: int, scale: int) -> dict[str, float]:
    """The four shares of the module docstring for (T, 3, h, w) uint8 LR frames."""
    same_next = (lr[1:] == lr[:-1]).all(dim=1).float().mean().item()
    centres = range(radius, len(lr) - radius)
    in_window, in_reach = [], []
    error_window = error_reach = error_all = 0.0
    for t in centres:
        window = lr[t - radius:t + radius + 1]
        same = (window == lr[t]).all(dim=1).all(dim=0).float()  # (h, w)
        in_window.append(same.mean().item())
        # Same over the whole receptive field: the minimum over a (2 reach + 1) square.
        field = -F.max_pool2d(-same[None, None], 2 * reach + 1, stride=1, padding=reach)[0, 0]
        in_reach.append(field.mean().item())
        error = (luma_of_uint8(sr[t]) - luma_of_uint8(hr[t])).square()
        error_window += (error * _on_hr(same, scale)).sum().item()
        error_reach += (error * _on_hr(field, scale)).sum().item()
        error_all += error.sum().item()
    return {"same as next": same_next, "same in window": sum(in_window) / len(in_window),
            "same in reach": sum(in_reach) / len(in_reach),
            "archival's error in window": error_window / error_all,
            "archival's error in reach": error_reach / error_all}


def _on_hr(mask: torch.Tensor, scale: int) -> torch.Tensor:
    return mask.repeat_interleave(scale, 0).repeat_interleave(scale, 1).double()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=Path, default=SHARED_CLIPS)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--radius", type=int, default=2)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = {}
    print("clip, codec, scale: same as next / same in window / same in reach / archival's"
          " error in window / in reach")
    for scale in (4, 2):
        archival = load_model("archival", scale=scale).module.float().eval()
        reach = archival.spec.receptive_radius
        for name in CLIPS:
            for codec in ("mpeg2", "h264"):
                lr, hr = lr_and_hr(args.clips / name, scale, codec, args.frames, args.seed)
                sr = upscale(archival, lr)
                row = redundancy(lr, hr, sr, args.radius, reach, scale)
                key = f"{Path(name).stem.split('_')[0]} {codec} x{scale}"
                rows[key] = row
                print(f"{key}: " + " / ".join(f"{v:.3f}" for v in row.values()), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"frames": args.frames, "seed": args.seed,
                                         "radius": args.radius, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
