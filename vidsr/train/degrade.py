"""Degradations: small functions from a clean HR batch to the LR a network will meet.

The default is the papers' clean bicubic downscale (``bicubic_downscale``),
identical to the LR of ``vidsr eval``. For real footage ``degrade_batch``
chains blur, a randomly chosen downscale kernel, noise, and JPEG or video
re-encoding (H.264 / MPEG-2 through PyAV). All tensors are (N, 3, H, W) RGB
in [0, 1]; random choices come from the generator the caller passes.
"""

from __future__ import annotations

import io
import math

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vidsr.errors import EncodeError
from vidsr.imaging.resize import imresize
from vidsr.io.encode_options import constant_quantiser
from vidsr.train.config import DegradeOptions, ResizeKernel, VideoCodec


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit code values, as any stored image or decoded frame is."""
    return (x.clamp(0, 1) * 255).round() / 255


def bicubic_downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """LR exactly as ``vidsr eval`` makes it: MATLAB antialiased bicubic of the 8-bit codes."""
    return imresize((hr * 255).round(), scale=1 / scale, quantize=255) / 255


def downscale(x: torch.Tensor, scale: int, kernel: ResizeKernel) -> torch.Tensor:
    """Downscale by an integer factor with one of several kernels (not quantized)."""
    if kernel == "bicubic":
        return imresize(x, scale=1 / scale)
    size = (x.shape[-2] // scale, x.shape[-1] // scale)
    if kernel == "bilinear":
        return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    if kernel == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="nearest")


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian, 3 sigma each side."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Isotropic Gaussian blur of every channel, reflecting at the borders."""
    k = gaussian_kernel(sigma).to(x)
    r = k.numel() // 2
    c = x.shape[1]
    y = F.pad(x, (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def add_gaussian_noise(x: torch.Tensor, sigma: float, g: torch.Generator) -> torch.Tensor:
    """Additive white Gaussian noise; ``sigma`` in 8-bit code values."""
    return x + torch.randn(x.shape, generator=g).to(x) * (sigma / 255)


def jpeg_compress(image: torch.Tensor, quality: int) -> torch.Tensor:
    """One (3, H, W) image through a pillow JPEG round trip at ``quality``."""
    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        out = np.asarray(decoded.convert("RGB"))
    return torch.from_numpy(out.copy()).permute(2, 0, 1).float().div(255).to(image)


def mpeg2_quantiser(crf: int) -> int:
    """The MPEG-2 quantiser whose round trip is about as lossy as x264's ``crf`` (veryfast).

    Fitted on PSNR of 4:2:0 round trips of noisy 2x and 4x downscales of foreman and Big
    Buck Bunny: CRF 18 ~ q 3.5, 26 ~ q 7.5, 30 ~ q 11, 34 ~ q 17.
    """
    return min(31, max(1, round(3.5 * 2 ** ((crf - 18) / 7))))


def video_reencode(frames: torch.Tensor, codec: VideoCodec, crf: int) -> torch.Tensor:
    """A batch of frames encoded as one yuv420p clip and decoded back (chroma subsampling,
    blocking, ringing and inter-frame artifacts of real footage).

    ``crf`` is x264's CRF; MPEG-2 gets a qscale of similar quality. Odd sizes are
    padded by edge replication for 4:2:0 and cropped back.
    """
    n, _, h, w = frames.shape
    ph, pw = h % 2, w % 2
    padded = F.pad(frames, (0, pw, 0, ph), mode="replicate") if ph or pw else frames
    codes = (padded.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    buffer = io.BytesIO()
    try:
        with av.open(buffer, mode="w", format="matroska") as out:
            stream = out.add_stream("libx264" if codec == "h264" else "mpeg2video", rate=25)
            stream.width, stream.height = w + pw, h + ph
            stream.pix_fmt = "yuv420p"
            if codec == "h264":
                stream.options = {"crf": str(crf), "preset": "veryfast"}
            else:
                stream.options = constant_quantiser(mpeg2_quantiser(crf))
            for array in codes:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
            out.mux(stream.encode())
        buffer.seek(0)
        with av.open(buffer, mode="r") as clip:
            decoded = [f.to_ndarray(format="rgb24") for f in clip.decode(video=0)]
    except av.FFmpegError as exc:
        raise EncodeError(f"re-encoding training frames with {codec} failed: {exc}") from exc
    assert len(decoded) == n, (len(decoded), n)
    out_t = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).float().div(255)
    return out_t[..., :h, :w].to(frames)


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _chance(g: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=g)) < p


def _between(g: torch.Generator, low: int, high: int) -> int:
    """A whole number in [low, high], both ends included."""
    return int(torch.randint(low, high + 1, (1,), generator=g))


def _pick[T](g: torch.Generator, choices: tuple[T, ...]) -> T:
    return choices[int(torch.randint(len(choices), (1,), generator=g))]


def degrade_batch(hr: torch.Tensor, scale: int, options: DegradeOptions,
                  g: torch.Generator, clip_frames: int = 1) -> torch.Tensor:
    """A first-order real-world degradation of an HR batch: blur, downscale, noise, compression.

    Blur, noise and JPEG are drawn per image; the downscale kernel and the
    video re-encode (the whole batch as one clip) per batch. With ``clip_frames`` > 1
    the batch is runs of that many frames of one pan (see ``DataOptions.clip_frames``):
    see :func:`degrade_clips`.
    """
    if clip_frames > 1:
        return degrade_clips(hr, scale, options, g, clip_frames)
    images = []
    for image in hr:
        x = image.unsqueeze(0)
        if _chance(g, options.blur_prob):
            x = gaussian_blur(x, _uniform(g, *options.blur_sigma))
        images.append(x)
    kernel = _pick(g, options.resize_kernels)
    lr = []
    for x in images:
        y = downscale(x, scale, kernel)
        if _chance(g, options.noise_prob):
            y = add_gaussian_noise(y, _uniform(g, *options.noise_sigma), g)
        y = quantize(y)[0]
        if _chance(g, options.jpeg_prob):
            y = jpeg_compress(y, _between(g, *options.jpeg_quality))
        lr.append(y)
    return _maybe_reencoded(torch.stack(lr), options, g)


def _maybe_reencoded(clip: torch.Tensor, options: DegradeOptions,
                     g: torch.Generator) -> torch.Tensor:
    """``clip`` through a video round trip with probability ``video_prob``, codec and CRF drawn."""
    if options.video_codecs and _chance(g, options.video_prob):
        codec = _pick(g, options.video_codecs)
        clip = video_reencode(clip, codec, _between(g, *options.video_crf))
    return clip


def degrade_clips(hr: torch.Tensor, scale: int, options: DegradeOptions,
                  g: torch.Generator, clip_frames: int) -> torch.Tensor:
    """``degrade_batch`` for runs of ``clip_frames`` frames of one clip each.

    As footage is: one blur, noise level, JPEG quality, codec and CRF per clip,
    fresh noise in every frame, and each clip re-encoded on its own. The
    downscale kernel is drawn per batch.
    """
    kernel = _pick(g, options.resize_kernels)
    clips = []
    for run in hr.split(clip_frames):
        blur = _uniform(g, *options.blur_sigma) if _chance(g, options.blur_prob) else 0.0
        noise = _uniform(g, *options.noise_sigma) if _chance(g, options.noise_prob) else 0.0
        quality = _between(g, *options.jpeg_quality) if _chance(g, options.jpeg_prob) else None
        frames = []
        for image in run:
            x = image.unsqueeze(0)
            if blur:
                x = gaussian_blur(x, blur)
            y = downscale(x, scale, kernel)
            if noise:
                y = add_gaussian_noise(y, noise, g)
            y = quantize(y)[0]
            frames.append(jpeg_compress(y, quality) if quality is not None else y)
        clips.append(_maybe_reencoded(torch.stack(frames), options, g))
    return torch.cat(clips)
