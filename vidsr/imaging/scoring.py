"""PSNR / SSIM of a model on HR images, the papers' way: the protocol ``vidsr eval`` runs on
a folder, and ``vidsr compare``, ``vidsr eval-video`` and training's validation share.

The protocol, one function per step:

1. ``mod_crop``: the HR image is cropped to a multiple of the scale.
2. ``make_lr``: the LR image is MATLAB's antialiased bicubic ``imresize`` of
   the 8-bit HR, rounded to 8 bits after each axis as MATLAB does for uint8.
3. ``upscale_for_eval``: the model upscales the LR in its own input space
   and returns the luma it produced, on the 0..255 scale.
4. ``score_luma``: PSNR and SSIM against the HR luma with ``scale`` border
   pixels cropped.

Luma conventions (chosen because they reproduce the published figures, see
tests/commands/test_evaluate.py): luma taken from an 8-bit RGB image is rounded to 8
bits, as MATLAB's ``rgb2ycbcr`` does for uint8 input. So the reference is the
rounded Y of the HR; "y" and "planes" models run on the rounded Y of the LR
(exactly what a luma-only path gets from 8-bit YUV video) and their output is
compared in float, clamped to 0..255, as the VDSR evaluation code does; "rgb"
models return RGB that is rounded to 8 bits (the image they would save) before
its Y is taken.

A grayscale HR image (one channel) is scored on its own values, as MATLAB's
protocol does (it calls ``rgb2ycbcr`` only on three-channel images): converting
it to RGB and then to studio-range Y would squeeze its 0..255 into 16..235 and
inflate the PSNR by about 20 log10(255/219) = 1.3 dB. Luma models take the gray
values as they are; RGB models take them in all three channels, and their 8-bit
output is brought back to one channel with the full-range BT.601 weights (what
saving it as a grayscale image does).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vidsr.errors import InputError, ModelError
from vidsr.imaging.metrics import psnr, rgb_to_y_bt601, ssim
from vidsr.imaging.resize import imresize
from vidsr.io.colour import MAX_CODE_8BIT as MAX_CODE
from vidsr.io.colour import round_half_up
from vidsr.io.images import list_images, read_image

if TYPE_CHECKING:
    from vidsr.engine.engine import Engine
    from vidsr.models.zoo import SRModel
    from vidsr.plan.precision import Precision
    from vidsr.plan.run_plan import Runtime

log = logging.getLogger("vidsr")

GRAY_WEIGHTS = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class ImageScore:
    """The figures of one image."""

    name: str
    psnr: float
    ssim: float


@dataclass(frozen=True)
class EvalReport:
    """Per-image PSNR (dB) / SSIM of one model at one scale, and their means."""

    model: str
    scale: int
    folder: str
    images: tuple[ImageScore, ...]
    precision: str = "fp32"

    @property
    def mean_psnr(self) -> float:
        return math.fsum(score.psnr for score in self.images) / len(self.images)

    @property
    def mean_ssim(self) -> float:
        return math.fsum(score.ssim for score in self.images) / len(self.images)

    def to_text(self) -> str:
        """A table for people: one row per image, then the mean."""
        width = max(len("mean"), *(len(score.name) for score in self.images))
        lines = [
            f"{self.model} x{self.scale} on {self.folder} (Y, BT.601; {self.scale}px border;"
            f" {self.precision})",
            f"{'image':<{width}}  {'PSNR':>8}  {'SSIM':>6}",
        ]
        for score in self.images:
            lines.append(f"{score.name:<{width}}  {score.psnr:8.2f}  {score.ssim:6.4f}")
        lines.append(f"{'mean':<{width}}  {self.mean_psnr:8.2f}  {self.mean_ssim:6.4f}")
        return "\n".join(lines)

    def to_json(self) -> str:
        """The report for machines; figures unrounded, PSNR of identical images as null."""
        payload = {
            "model": self.model,
            "scale": self.scale,
            "folder": self.folder,
            "precision": self.precision,
            "images": [asdict(score) for score in self.images],
            "mean": {"psnr": self.mean_psnr, "ssim": self.mean_ssim},
        }
        return json.dumps(finite_or_none(payload), indent=2)


def finite_or_none(value: object) -> object:
    """``value`` with every infinite or NaN float as None: JSON has no infinity, so a perfect
    reconstruction reports null rather than invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite_or_none(item) for item in value]
    return value


def mod_crop(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom and right so height and width are multiples of ``scale``."""
    height, width = image.shape[-2:]
    return image[..., : height - height % scale, : width - width % scale]


def make_lr(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """MATLAB's ``imresize(hr, 1/scale, 'bicubic')`` of a uint8 image: a uint8 result."""
    if hr.dtype != torch.uint8:
        raise ValueError(f"make_lr takes a uint8 image, got {hr.dtype}")
    lr = imresize(hr.to(torch.float64), scale=1.0 / scale, quantize=int(MAX_CODE))
    return lr.to(torch.uint8)


def luma_of_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """Y of a uint8 RGB image, rounded to 8 bits (MATLAB ``rgb2ycbcr`` on uint8), float64."""
    return round_half_up(rgb_to_y_bt601(rgb.to(torch.float64) / MAX_CODE))


def gray_of_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """The full-range BT.601 gray of a uint8 RGB image, rounded to 8 bits, float64."""
    weights = torch.tensor(GRAY_WEIGHTS, dtype=torch.float64).view(3, 1, 1)
    return round_half_up((rgb.to(torch.float64) * weights).sum(dim=-3))


def scored_values(image: torch.Tensor) -> torch.Tensor:
    """What the protocol scores of a uint8 image: a gray image's values, else its rounded Y."""
    if image.shape[-3] == 1:
        return image[..., 0, :, :].to(torch.float64)
    return luma_of_uint8(image)


def upscale_for_eval(engine: Engine, lr: torch.Tensor) -> torch.Tensor:
    """Upscale a (1 or 3, h, w) uint8 LR image with ``engine``'s model.

    Returns what is scored, (H, W) float64 0..255: the Y of an RGB image, the
    values of a gray one.
    """
    space = engine.space
    rgb = lr.expand(3, -1, -1).to(torch.float64)[None] / MAX_CODE
    # Luma and plane-wise models run on the rounded Y a luma path gets from 8-bit video.
    picture = space.from_rgb(rgb, luma=(scored_values(lr) / MAX_CODE)[None, None])
    out = engine.run_network(picture)
    if space.channels == 1:
        return (out[0, 0].to(torch.float64) * MAX_CODE).clamp(0, MAX_CODE).cpu()
    saved = round_half_up(out[0].to(torch.float64).cpu() * MAX_CODE).to(torch.uint8)
    return gray_of_uint8(saved) if lr.shape[0] == 1 else luma_of_uint8(saved)


def score_luma(sr_y: torch.Tensor, hr_y: torch.Tensor, scale: int) -> tuple[float, float]:
    """PSNR and SSIM of two lumas on the 0..255 scale, ``scale`` border pixels cropped."""
    return psnr(sr_y, hr_y, border=scale), ssim(sr_y, hr_y, border=scale)


def evaluate_image(engine: Engine, path: Path, scale: int) -> ImageScore:
    """Run the whole protocol on one HR image file."""
    hr = mod_crop(read_image(path), scale)
    height, width = hr.shape[-2:]
    if height == 0 or width == 0:
        raise InputError(f"{path}: the image is smaller than the scale x{scale}")
    lr = make_lr(hr, scale)
    sr_y = upscale_for_eval(engine, lr)
    try:
        value_psnr, value_ssim = score_luma(sr_y, scored_values(hr), scale)
    except ValueError as exc:
        message = f"{path}: {height}x{width} is too small to score at x{scale} ({exc})"
        raise InputError(message) from exc
    return ImageScore(path.stem, value_psnr, value_ssim)


def evaluate_folder(
    model: SRModel, folder: Path, scale: int, *, device: str = "cpu", precision: Precision = "fp32",
    runtime: Runtime = "torch", calibration: Path | None = None,
) -> EvalReport:
    """PSNR / SSIM of ``model`` on every image in ``folder`` at ``scale``.

    fp32 unless asked: the figures must not depend on a device's default precision;
    ``precision`` shows what a reduced one costs. ``runtime`` openvino runs the network
    on OpenVINO; its int8 is calibrated on ``calibration`` (a clip or an image folder).
    """
    from vidsr.engine.engine import Engine
    from vidsr.executors.openvino import faster_plan
    from vidsr.plan.run_plan import EngineOptions, OpenVinoOptions, resolve_plan

    if scale != model.scale:
        raise ModelError(f"model {model.name!r} is loaded for x{model.scale}, not x{scale}")
    paths = list_images(Path(folder))
    plan = resolve_plan(model, EngineOptions(device=device, precision=precision, runtime=runtime,
                                             openvino=OpenVinoOptions(calibration=calibration)),
                        measuring=True, choose_runtime=faster_plan)
    scores = []
    with Engine(model, plan) as engine:
        for path in paths:
            score = evaluate_image(engine, path, scale)
            log.info("%s: %.2f dB, SSIM %.4f", score.name, score.psnr, score.ssim)
            scores.append(score)
    return EvalReport(model.name, scale, str(folder), tuple(scores), plan.precision.name)
