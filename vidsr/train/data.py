"""Training pairs: HR crops from image folders and video files, LR made on the fly.

The batch for step ``k`` is a pure function of (the source, the options, the
seed, ``k``): every random choice draws from a generator seeded with the seed
and the step. The sampler's position is therefore the step itself, which is
what makes a resumed run see exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import torch

from vidsr.errors import DecodeError, InputError
from vidsr.io.images import IMAGE_SUFFIXES, read_rgb
from vidsr.train.config import DataOptions, DegradeOptions
from vidsr.train.degrade import bicubic_downscale, degrade_batch

log = logging.getLogger("vidsr")

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".m2ts", ".ts", ".y4m"})


@dataclass(frozen=True)
class Batch:
    """One training batch: ``lr`` (N, 3, H/s + 2m, W/s + 2m) and ``hr`` (N, 3, H, W), RGB in
    [0, 1]: the target covers the LR's centre, ``margin`` (m) LR pixels in from each edge
    (0: all of it; a teacher cache keeps context around its crops).

    For a network that sees windows of T frames ``lr`` is (N, T, 3, H/s, W/s) and
    ``hr`` the centre frame's ground truth.
    """

    lr: torch.Tensor
    hr: torch.Tensor
    scale: int
    margin: int = 0


def sample_video_frames(path: Path, count: int) -> list[torch.Tensor]:
    """``count`` frames spread evenly across a video, as (3, H, W) uint8 RGB tensors.

    Seeks to evenly spaced timestamps and keeps the first frame decoded after
    each, so long files cost ``count`` short decodes, not a full pass.
    """
    frames: list[torch.Tensor] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path} has no video stream; expected a video file for training")
            stream = container.streams.video[0]
            duration = (float(stream.duration * stream.time_base) if stream.duration
                        else (container.duration or 0) / av.time_base)
            start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
            for i in range(count):
                target = start + duration * (i + 0.5) / count
                container.seek(int(target / stream.time_base), stream=stream, backward=True)
                for frame in container.decode(stream):
                    if frame.time is None or frame.time >= target - 1e-6:
                        frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24"))
                                      .permute(2, 0, 1).contiguous())
                        break
    except av.FFmpegError as exc:
        raise DecodeError(f"cannot decode training video {path}: {exc}") from exc
    return frames


def list_training_files(paths: Path | Sequence[Path]) -> list[Path]:
    """Every training image and video under ``paths`` (files or folders, searched recursively).

    Sorted by path so the order, and so the batches, do not depend on the file system.
    """
    roots = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    files: list[Path] = []
    for root in roots:
        if root.is_dir():
            files.extend(p for p in root.rglob("*") if p.suffix.lower() in
                         IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        elif root.is_file():
            files.append(root)
        else:
            raise InputError(f"training data {root} does not exist")
    files.sort()
    if not files:
        raise InputError(f"no training images or videos found in {', '.join(map(str, roots))}")
    return files


def collect_sources(paths: Path | Sequence[Path], frames_per_video: int) -> list[torch.Tensor]:
    """Every training image under ``paths`` (files or folders, searched recursively).

    Images are kept whole in memory as uint8; videos contribute
    ``frames_per_video`` frames each.
    """
    files = list_training_files(paths)
    images: list[torch.Tensor] = []
    for f in files:
        if f.suffix.lower() in VIDEO_SUFFIXES:
            images.extend(sample_video_frames(f, frames_per_video))
        else:
            images.append(read_rgb(f))
    log.info("training data: %d images from %d files", len(images), len(files))
    return images


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """The generator for one step's random choices (``stream`` separates independent uses)."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + step) * 7 + stream)
    return g


def randint(g: torch.Generator, high: int) -> int:
    """A draw from ``0 .. high - 1`` off a step's generator."""
    return int(torch.randint(high, (1,), generator=g))


def augment(image: torch.Tensor, flip_h: bool, flip_v: bool, transpose: bool) -> torch.Tensor:
    """Flips and a transpose: together the eight symmetries of the square (90-degree rotations)."""
    if flip_h:
        image = image.flip(-1)
    if flip_v:
        image = image.flip(-2)
    if transpose:
        image = image.transpose(-2, -1)
    return image


def draw_scale(options: DataOptions, g: torch.Generator) -> int:
    """The scale of one batch: one per batch so every tensor in it has one shape;
    multi-scale training sees all scales across steps."""
    if options.scale_weights:
        weights = torch.tensor(options.scale_weights, dtype=torch.float64)
        return options.scales[int(torch.multinomial(weights, 1, generator=g))]
    return options.scales[randint(g, len(options.scales))]


def draw_symmetry(options: DataOptions, g: torch.Generator) -> tuple[bool, bool, bool]:
    """``augment``'s flip_h, flip_v and transpose for one crop (or one run), as allowed."""
    bits = torch.randint(2, (3,), generator=g).tolist()
    return options.flip and bits[0] == 1, options.rotate and bits[1] == 1, \
        options.rotate and bits[2] == 1


def pan_crops(image: torch.Tensor, size: int, frames: int, motion: int,
              g: torch.Generator) -> list[torch.Tensor]:
    """``frames`` crops of ``image`` panning by up to ``motion`` pixels a frame in x and y.

    The pan fits the image: at most (room / (frames - 1)) pixels a frame.
    """
    h, w = image.shape[-2:]
    steps = max(frames - 1, 1)
    vy, vx = (randint(g, 2 * v + 1) - v for v in
              (min(motion, (h - size) // steps), min(motion, (w - size) // steps)))
    span_y, span_x = abs(vy) * (frames - 1), abs(vx) * (frames - 1)
    top = randint(g, h - size - span_y + 1) + (span_y if vy < 0 else 0)
    left = randint(g, w - size - span_x + 1) + (span_x if vx < 0 else 0)
    return [image[..., top + k * vy:top + k * vy + size, left + k * vx:left + k * vx + size]
            for k in range(frames)]


def random_crop(image: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """A ``size`` x ``size`` crop at a random position (the image must be at least that large)."""
    h, w = image.shape[-2:]
    top = randint(g, h - size + 1)
    left = randint(g, w - size + 1)
    return image[..., top:top + size, left:left + size]


class PairSampler:
    """Makes the training batch of any step from in-memory HR images."""

    def __init__(self, images: Sequence[torch.Tensor], options: DataOptions, *, seed: int,
                 degrade: DegradeOptions | None = None) -> None:
        side = options.hr_size
        usable = [im for im in images if min(im.shape[-2:]) >= side]
        if not usable:
            raise InputError(f"no training image is at least {side}x{side}; "
                             "lower data.hr_size or add larger images")
        if len(usable) < len(images):
            log.warning("skipping %d training images smaller than %dx%d",
                        len(images) - len(usable), side, side)
        self.images = usable
        self.options = options
        self.seed = seed
        self.degrade = degrade if degrade is not None and degrade.enabled else None

    def hr_batch(self, step: int) -> tuple[torch.Tensor, int]:
        """The augmented HR crops of a step, float in [0, 1], and the step's scale."""
        o = self.options
        g = step_generator(self.seed, step)
        scale = draw_scale(o, g)
        if o.clip_frames > 1:
            return self._clip_crops(g), scale
        crops = []
        for _ in range(o.batch_size):
            image = self.images[randint(g, len(self.images))]
            crop = random_crop(image, o.hr_size, g)
            crops.append(augment(crop, *draw_symmetry(o, g)))
        return torch.stack(crops).float() / 255, scale

    def _clip_crops(self, g: torch.Generator) -> torch.Tensor:
        """Runs of ``clip_frames`` crops, each run a pan across one image (see DataOptions)."""
        o = self.options
        crops = []
        for _ in range(o.batch_size // o.clip_frames):
            image = self.images[randint(g, len(self.images))]
            run = pan_crops(image, o.hr_size, o.clip_frames, o.clip_motion, g)
            symmetry = draw_symmetry(o, g)
            crops.extend(augment(crop, *symmetry) for crop in run)
        return torch.stack(crops).float() / 255

    def batch(self, step: int) -> Batch:
        """The (LR, HR) batch of a step."""
        hr, scale = self.hr_batch(step)
        if self.degrade is not None:
            lr = degrade_batch(hr, scale, self.degrade, step_generator(self.seed, step, 1),
                               clip_frames=self.options.clip_frames)
        else:
            lr = bicubic_downscale(hr, scale)
        return Batch(lr=lr, hr=hr, scale=scale)
