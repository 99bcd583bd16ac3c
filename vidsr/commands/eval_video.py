"""``vidsr eval-video``: PSNR / SSIM and flicker of models on a clip, through the transcoder.

The protocol is ``vidsr eval``'s, frame by frame, with the upscaling done by the
real transcoder (:func:`vidsr.run.transcode.upscale_video`: the run plan, the
pipeline, the engine, the encoder):

1. Every HR frame is decoded and turned into 8-bit RGB with the stream's own
   matrix and range (:func:`frames_rgb`), then mod-cropped to the scale.
2. Its LR is made by :mod:`vidsr.train.degrade_clip` (``vidsr eval``'s bicubic, or
   the archival degradation) and written as a lossless clip: RGB (``gbrp``) for
   RGB models, and for luma and plane-wise models the LR's rounded BT.601 Y as
   a ``gray`` clip, which is what ``vidsr eval`` feeds them and what a luma
   path reads from the Y plane of 8-bit video.
3. Each model upscales that clip with ``vidsr``'s transcoder into a lossless
   clip: RGB models write 8-bit RGB (``vidsr eval`` rounds their output to the
   image they would save); luma and plane-wise models write 16-bit luma, so
   their output is scored as ``vidsr eval`` scores it, before any rounding to
   8 bits (within 1/256 of a code value).
4. PSNR and SSIM on Y against the HR's rounded Y, ``scale`` border pixels
   cropped (:func:`vidsr.imaging.scoring.score_luma`), per frame; the temporal
   figure is the mean absolute change of the error (output Y minus HR Y, in
   code values, same border) from one frame to the next: flicker that a
   still picture cannot show, 0 for an error that holds still.

So a clip degraded with ``bicubic`` gives, frame by frame, the figures
``vidsr eval`` gives for the same frames saved as images.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from vidsr.engine.model_space import ModelSpace
from vidsr.errors import InputError, OptionsError
from vidsr.imaging.plot import FRAME_COLOUR, Axes, draw_line, line_colour
from vidsr.imaging.scoring import MAX_CODE, finite_or_none, luma_of_uint8, mod_crop, score_luma
from vidsr.io.colour import batch_rgb
from vidsr.io.decode import Decoder
from vidsr.io.encode_options import EncodeOptions
from vidsr.io.frames import FrameBatch
from vidsr.io.pixfmt import planes_to_frame, source_format
from vidsr.io.safe_output import check_output_path, write_small_output
from vidsr.models.zoo import SRModel, load_model
from vidsr.plan.precision import Precision
from vidsr.plan.run_plan import EngineOptions
from vidsr.run.transcode import RunControl, TranscodeOptions, upscale_video
from vidsr.train.degrade_clip import ArchivalOptions, Degradation, degraded_lr

log = logging.getLogger("vidsr")

# Lossless, fast, and it holds gbrp, gray and gray16le (FFV1 has no 8-bit gbrp);
# NUT, because this FFmpeg's Matroska muxer does not take ffvhuff.
LOSSLESS_CODEC = "ffvhuff"
CLIP_SUFFIX = ".nut"


@dataclass(frozen=True)
class EvalVideoOptions:
    """How to evaluate: the scale, the LR's degradation, how many frames, the engine."""

    scale: int
    degradation: Degradation = "bicubic"
    archival: ArchivalOptions = field(default_factory=ArchivalOptions)
    frames: int | None = None  # the first N frames; None: all
    device: str = "auto"
    precision: Precision = "fp32"

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise OptionsError(f"scale must be at least 1, got {self.scale}")
        if self.frames is not None and self.frames < 1:
            raise OptionsError(f"--frames must be at least 1, got {self.frames}")
        if self.degradation not in ("bicubic", "archival"):
            raise OptionsError(f"unknown degradation {self.degradation!r}:"
                               " use bicubic or archival")

    def engine(self) -> EngineOptions:
        """What the run plan of every model's transcode is resolved from."""
        return EngineOptions(device=self.device, precision=self.precision)

    def describe_degradation(self) -> str:
        if self.degradation == "archival":
            return self.archival.describe()
        return "bicubic (MATLAB antialiased, as vidsr eval)"


@dataclass(frozen=True)
class FrameScore:
    """One frame's figures; ``psnr`` is inf where the output equals the reference."""

    index: int
    psnr: float
    ssim: float


@dataclass(frozen=True)
class ModelScore:
    """One model over the clip."""

    model: str
    frames: tuple[FrameScore, ...]
    temporal: float  # mean |error(t) - error(t-1)| in code values; nan for a single frame
    fps: float  # the transcoder's frames per second on the LR clip, start-up included
    precision: str

    @property
    def mean_psnr(self) -> float:
        return math.fsum(f.psnr for f in self.frames) / len(self.frames)

    @property
    def mean_ssim(self) -> float:
        return math.fsum(f.ssim for f in self.frames) / len(self.frames)

    @property
    def identical(self) -> int:
        """Frames whose output equals the reference (PSNR infinite)."""
        return sum(1 for f in self.frames if math.isinf(f.psnr))


@dataclass(frozen=True)
class VideoEvalReport:
    """Every model's per-frame and mean figures on one clip."""

    clip: str
    scale: int
    degradation: str
    width: int  # of the HR frames scored (mod-cropped)
    height: int
    models: tuple[ModelScore, ...]

    @property
    def frame_count(self) -> int:
        return len(self.models[0].frames) if self.models else 0

    def to_text(self) -> str:
        """Per-frame PSNR / SSIM, one column pair per model, then the means and flicker."""
        names = [m.model for m in self.models]
        width = max(9, *(len(n) for n in names))
        lines = [
            f"{self.clip}: {self.frame_count} frames, {self.width}x{self.height}, x{self.scale};"
            f" LR {self.degradation}; Y (BT.601), {self.scale}px border",
            "frame" + "".join(f"  {name + ' PSNR / SSIM':>{width + 12}}" for name in names),
        ]
        for k in range(self.frame_count):
            cells = "".join(f"  {_db(m.frames[k].psnr):>{width + 5}}  {m.frames[k].ssim:6.4f}"
                            for m in self.models)
            lines.append(f"{self.models[0].frames[k].index:>5}{cells}")
        lines += ["", f"{'model':<{width}}  {'PSNR':>8}  {'SSIM':>6}  {'flicker':>7}  "
                      f"{'fps':>6}  precision"]
        for m in self.models:
            flicker = "n/a" if math.isnan(m.temporal) else f"{m.temporal:.3f}"
            lines.append(f"{m.model:<{width}}  {_db(m.mean_psnr):>8}  {m.mean_ssim:6.4f}"
                         f"  {flicker:>7}  {m.fps:6.2f}  {m.precision}")
        for m in self.models:
            if m.identical:
                lines.append(f"{m.model}: {m.identical} of {len(m.frames)} frame(s) equal the"
                             " reference (PSNR infinite)")
        lines.append("flicker: mean absolute change of the Y error between successive frames,"
                     " in code values")
        return "\n".join(lines)

    def to_json(self) -> str:
        """The report for machines; infinite PSNR (an exact output) as null, flagged."""
        payload = {
            "clip": self.clip, "scale": self.scale, "degradation": self.degradation,
            "width": self.width, "height": self.height, "frames": self.frame_count,
            "models": [{
                "model": m.model, "precision": m.precision, "fps": m.fps,
                "mean": {"psnr": m.mean_psnr, "ssim": m.mean_ssim},
                "temporal": m.temporal, "identical_frames": m.identical,
                "frames": [{"index": f.index, "psnr": f.psnr, "ssim": f.ssim,
                            "identical": math.isinf(f.psnr)} for f in m.frames],
            } for m in self.models],
        }
        return json.dumps(finite_or_none(payload), indent=2)


def _db(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}"


# -- frames in and out --------------------------------------------------------------------


def frames_rgb(path: str | Path, limit: int | None = None) -> Iterator[torch.Tensor]:
    """The first ``limit`` frames (all when None) of a video file as (3, H, W) uint8 RGB."""
    if limit is not None and limit < 1:
        return
    count = 0
    with Decoder(Path(path), batch_size=1) as decoder:
        colour = decoder.info.colour
        for batch in decoder:
            yield batch_rgb(batch, colour)[0]
            count += 1
            if limit is not None and count >= limit:
                return


class LosslessClipWriter:
    """Writes planes ((h, w) arrays in ``pix_fmt``'s planar order) as a lossless clip, one
    frame per :meth:`write`, at ``rate``; a context manager."""

    def __init__(self, path: Path, pix_fmt: str, rate: Fraction) -> None:
        self.path, self.pix_fmt, self.rate = Path(path), pix_fmt, rate
        self.layout = source_format(pix_fmt).layout
        self.count = 0
        self._out = av.open(str(self.path), mode="w")
        self._stream: av.VideoStream | None = None

    def write(self, planes: list[np.ndarray]) -> None:
        if self._stream is None:
            self._stream = self._out.add_stream(LOSSLESS_CODEC, rate=self.rate)
            self._stream.height, self._stream.width = planes[0].shape
            self._stream.pix_fmt = self.pix_fmt
            self._stream.codec_context.time_base = 1 / self.rate
        frame = planes_to_frame(planes, self.layout)
        frame.pts = self.count
        self._out.mux(self._stream.encode(frame))
        self.count += 1

    def close(self) -> None:
        try:
            if self._stream is not None:
                self._out.mux(self._stream.encode(None))
                self._stream = None
        finally:
            self._out.close()

    def __enter__(self) -> LosslessClipWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rgb_planes(rgb: torch.Tensor) -> list[np.ndarray]:
    """(3, H, W) uint8 RGB as gbrp planes (G, B, R)."""
    return [rgb[1].numpy(), rgb[2].numpy(), rgb[0].numpy()]


def luma_planes(rgb: torch.Tensor) -> list[np.ndarray]:
    """(3, H, W) uint8 RGB as one gray plane: its rounded BT.601 Y (``vidsr eval``'s)."""
    return [luma_of_uint8(rgb).to(torch.uint8).numpy()]


def takes_rgb(model: SRModel) -> bool:
    """Whether the model's network takes RGB (else one channel: luma, or each plane)."""
    return ModelSpace.of(model.spec, model.scale).channels == 3


def lr_format(model: SRModel) -> str:
    """The pixel format of the LR clip the model reads (see the module's docstring)."""
    return "gbrp" if takes_rgb(model) else "gray"


def output_format(model: SRModel) -> str:
    """The pixel format the model's output clip is written in (see the module's docstring)."""
    return "gbrp" if takes_rgb(model) else "gray16le"


def output_luma(batch: FrameBatch) -> torch.Tensor:
    """Y (float64, 0..255) of a decoded output frame in :func:`output_format`."""
    if batch.layout.family == "rgb":
        g, b, r = (torch.from_numpy(p[0]) for p in batch.planes)
        return luma_of_uint8(torch.stack((r, g, b)))
    # Studio-swing luma at more than 8 bits: 8-bit codes times 2^(depth - 8).
    steps = float(1 << (batch.layout.bit_depth - 8))
    return (torch.from_numpy(batch.planes[0][0].astype(np.float64)) / steps).clamp(0, MAX_CODE)


# -- the evaluation ------------------------------------------------------------------------


def _hr_frames(path: Path, options: EvalVideoOptions) -> Iterator[torch.Tensor]:
    for frame in frames_rgb(path, options.frames):
        hr = mod_crop(frame, options.scale)
        if hr.shape[-1] == 0 or hr.shape[-2] == 0:
            raise InputError(f"{path}: {frame.shape[-1]}x{frame.shape[-2]} frames are smaller"
                             f" than the scale x{options.scale}")
        yield hr


def _write_lr_clips(hr_path: Path, options: EvalVideoOptions, workdir: Path,
                    formats: set[str]) -> dict[str, Path]:
    """The LR clip in each of ``formats`` ("gbrp", "gray"), all from one pass over the HR
    (the archival degradation is drawn once, so every model sees the same LR)."""
    with Decoder(hr_path, batch_size=1) as probe:
        rate = probe.info.average_rate or Fraction(25)
    planes_of = {"gbrp": rgb_planes, "gray": luma_planes}
    paths = {fmt: workdir / f"lr_{fmt}{CLIP_SUFFIX}" for fmt in sorted(formats)}
    with ExitStack() as stack:
        writers = {fmt: stack.enter_context(LosslessClipWriter(path, fmt, rate))
                   for fmt, path in paths.items()}
        for lr in degraded_lr(_hr_frames(hr_path, options), options.scale,
                              options.degradation, options.archival):
            for fmt, writer in writers.items():
                writer.write(planes_of[fmt](lr))
        count = max(writer.count for writer in writers.values())
    if count == 0:
        raise InputError(f"{hr_path}: no frames to evaluate")
    if options.frames is not None and count < options.frames:
        raise InputError(f"{hr_path}: --frames {options.frames} is past the end (the clip has"
                         f" {count} frames)")
    return paths


def _score_clip(model: SRModel, hr_path: Path, sr_path: Path,
                options: EvalVideoOptions) -> tuple[list[FrameScore], float]:
    scale = options.scale
    scores: list[FrameScore] = []
    changes: list[float] = []
    previous: torch.Tensor | None = None
    with Decoder(sr_path, batch_size=1) as decoder:
        outputs = iter(decoder)
        for index, hr in enumerate(_hr_frames(hr_path, options)):
            batch = next(outputs, None)
            if batch is None:
                raise InputError(f"{model.name}: the upscaled clip ends after {index} frames,"
                                 " before the HR does")
            hr_y, sr_y = luma_of_uint8(hr), output_luma(batch)
            try:
                value_psnr, value_ssim = score_luma(sr_y, hr_y, scale)
            except ValueError as exc:
                raise InputError(f"{hr_path}: {hr.shape[-1]}x{hr.shape[-2]} is too small to"
                                 f" score at x{scale} ({exc})") from exc
            scores.append(FrameScore(index, value_psnr, value_ssim))
            error = (sr_y - hr_y)[scale:-scale or None, scale:-scale or None]
            if previous is not None:
                changes.append((error - previous).abs().mean().item())
            previous = error
        if next(outputs, None) is not None:
            raise InputError(f"{model.name}: the upscaled clip has more frames than the"
                             f" {len(scores)} of the HR")
    temporal = statistics.fmean(changes) if changes else math.nan
    return scores, temporal


def evaluate_clip(hr_path: str | Path, models: Sequence[SRModel],
                  options: EvalVideoOptions, *, keep_lr: Path | None = None,
                  overwrite: bool = False) -> VideoEvalReport:
    """Evaluate ``models`` on the clip ``hr_path`` (see the module's docstring).

    ``keep_lr``: also keep the LR clip every model got (lossless RGB, .nut), e.g. for
    ``vidsr compare`` with the HR clip as its reference; an existing file only with
    ``overwrite``."""
    hr_path = Path(hr_path)
    for model in models:
        if model.scale != options.scale:
            raise OptionsError(f"model {model.name!r} is loaded for x{model.scale},"
                               f" not x{options.scale}")
    if not models:
        raise OptionsError("give at least one model")
    lr_formats = {lr_format(m) for m in models}
    if keep_lr is not None:
        if keep_lr.suffix != CLIP_SUFFIX:
            raise OptionsError(f"--keep-lr {keep_lr}: the LR clip is written as {CLIP_SUFFIX}"
                               " (lossless RGB); name it so")
        check_output_path(keep_lr, overwrite)
        lr_formats.add("gbrp")
    results = []
    with tempfile.TemporaryDirectory(prefix="vidsr-eval-video-") as tmp:
        workdir = Path(tmp)
        lr_paths = _write_lr_clips(hr_path, options, workdir, lr_formats)
        if keep_lr is not None:
            write_small_output(keep_lr, overwrite,
                               lambda tmp: shutil.copyfile(lr_paths["gbrp"], tmp))
        width = height = 0
        for k, model in enumerate(models):
            lr = lr_paths[lr_format(model)]
            sr = workdir / f"sr_{k}{CLIP_SUFFIX}"
            run = upscale_video(
                lr, sr, model=model,
                engine=options.engine(),
                encode=EncodeOptions(codec=LOSSLESS_CODEC, pix_fmt=output_format(model),
                                     quiet=True),
                # The LR is progressive by construction; idet calls noisy, compressed
                # LR interlaced (60 of 60 frames of foreman's x4 H.264 one), and bwdif
                # would then blur every model's input.
                options=TranscodeOptions(deinterlace="off"),
                control=RunControl(overwrite=True, progress=False),
            )
            width, height = run.width, run.height
            scores, temporal = _score_clip(model, hr_path, sr, options)
            sr.unlink()
            assert run.plan is not None
            result = ModelScore(model.name, tuple(scores), temporal, run.fps,
                                run.plan.precision.name)
            log.info("%s: %.2f dB, SSIM %.4f, flicker %.3f over %d frames", model.name,
                     result.mean_psnr, result.mean_ssim, temporal, len(scores))
            results.append(result)
    return VideoEvalReport(str(hr_path), options.scale, options.describe_degradation(),
                           width, height, tuple(results))


# -- the plot ------------------------------------------------------------------------------

PLOT_WIDTH, PLOT_HEIGHT = 800, 420
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 64, 20, 56, 44


def write_psnr_plot(report: VideoEvalReport, path: Path, *, overwrite: bool = False) -> Path:
    """A PNG of PSNR per frame, one line per model (infinite PSNR is not drawn, but said)."""
    font = ImageFont.load_default(size=13)
    image = Image.new("RGB", (PLOT_WIDTH, PLOT_HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    left, right = _MARGIN_LEFT, PLOT_WIDTH - _MARGIN_RIGHT
    top, bottom = _MARGIN_TOP, PLOT_HEIGHT - _MARGIN_BOTTOM
    draw.rectangle((left, top, right, bottom), outline=FRAME_COLOUR)
    draw.text((left, 6), f"PSNR on Y per frame: {Path(report.clip).name}, x{report.scale},"
                         f" LR {report.degradation.split(' (')[0]}", fill="black", font=font)
    finite = [f.psnr for m in report.models for f in m.frames if math.isfinite(f.psnr)]
    count = report.frame_count
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if high - low < 0.5:
        low, high = low - 0.25, high + 0.25
    first = report.models[0].frames[0].index if count else 0
    axes = Axes(left, top, right, bottom, first, first + max(1, count - 1), low, high)

    for value in (low, (low + high) / 2, high):
        y = axes.point(first, value)[1]
        draw.line((left - 4, y, left, y), fill=FRAME_COLOUR)
        draw.text((6, y - 7), f"{value:.2f}", fill="black", font=font)
    draw.text((left, bottom + 6), f"frame {first}", fill="black", font=font)
    draw.text((right - 70, bottom + 6), f"frame {first + count - 1}", fill="black", font=font)
    draw.text((6, bottom + 24), "dB", fill="black", font=font)
    legend_x = left
    for k, model in enumerate(report.models):
        colour = line_colour(k)
        points = [axes.point(f.index, f.psnr) for f in model.frames if math.isfinite(f.psnr)]
        draw_line(draw, points, colour, dot=3, dot_at_end=False)
        text = f"{model.model} {_db(model.mean_psnr)} dB"
        if model.identical:
            text += f" ({model.identical} exact frame(s) not drawn)"
        draw.text((legend_x, 28), text, fill=colour, font=font)
        legend_x += int(draw.textlength(text, font=font)) + 24
    return write_small_output(Path(path), overwrite, lambda tmp: image.save(tmp, format="PNG"))


def run_eval_video(
    hr_path: str | Path, model_names: Sequence[str], options: EvalVideoOptions, *,
    plot: str | Path | None = None, as_json: bool = False,
    weights: str | Path | None = None, allow_unsafe: bool = False, overwrite: bool = False,
    keep_lr: str | Path | None = None,
) -> str:
    """What ``vidsr eval-video`` prints: load the models, evaluate, write the plot (an
    existing one only with ``overwrite``)."""
    if not model_names:
        raise OptionsError("--models needs at least one model name")
    if plot is not None:
        check_output_path(Path(plot), overwrite)
    models = [load_model(name, scale=options.scale, weights=weights,
                         allow_unsafe=allow_unsafe) for name in model_names]
    report = evaluate_clip(hr_path, models, options,
                           keep_lr=Path(keep_lr) if keep_lr is not None else None,
                           overwrite=overwrite)
    if plot is not None:
        write_psnr_plot(report, Path(plot), overwrite=overwrite)
    return report.to_json() if as_json else report.to_text()
