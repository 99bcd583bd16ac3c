"""A plain serial upscaling loop, the baseline vidsr's pipeline is measured against.

What a straightforward script does (Real-ESRGAN's ``inference_realesrgan_video.py``
on a CPU): decode one frame, convert it to RGB, run the network in fp32 with
the NCHW memory format and torch's default threads, convert back, encode,
repeat. Nothing overlaps.

    python benchmarks/serial_loop.py IN OUT --model WEIGHTS_OR_NAME --scale N
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np
import torch

from vidsr.models.zoo import load_model


def serial_upscale(src: Path, dst: Path, model_name: str, scale: int | None) -> int:
    model = load_model(model_name, scale=scale)
    network = model.module.float().eval()
    frames = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        video = inp.streams.video[0]
        stream = out.add_stream("libx264", rate=video.average_rate)
        stream.width = video.codec_context.width * model.scale
        stream.height = video.codec_context.height * model.scale
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = video.time_base
        for frame in inp.decode(video):
            rgb = torch.from_numpy(frame.to_ndarray(format="rgb24"))
            x = rgb.permute(2, 0, 1)[None].float() / 255
            with torch.inference_mode():
                y = network(x)
            image = (y[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            upscaled = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            upscaled.pts, upscaled.time_base = frame.pts, frame.time_base
            for packet in stream.encode(upscaled):
                out.mux(packet)
            frames += 1
        for packet in stream.encode(None):
            out.mux(packet)
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--model", required=True)
    parser.add_argument("--scale", type=int)
    args = parser.parse_args()
    serial_upscale(args.input, args.output, args.model, args.scale)


if __name__ == "__main__":
    main()
