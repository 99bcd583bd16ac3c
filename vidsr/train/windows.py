"""Training windows for networks that see neighbouring frames: consecutive frames of real
footage, and images panned to make synthetic motion.

Video files are decoded once, downscaled by 2 (their lossy coding then no longer
shows: the result is clean ground truth) and cached as uint8 arrays under the
cache directory, read back memory-mapped, so a step costs a crop, not a decode.
As for pairs, the batch of step ``k`` is a pure function of the sources, the
options, the seed and ``k``, so a resumed run sees exactly the same windows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import torch

from vidsr.errors import DecodeError, InputError
from vidsr.io.atomic_write import atomic_write
from vidsr.io.file_digest import file_digest
from vidsr.io.images import read_rgb
from vidsr.models.download import cache_dir
from vidsr.train.config import DataOptions, DegradeOptions
from vidsr.train.data import (
    VIDEO_SUFFIXES,
    Batch,
    augment,
    draw_scale,
    draw_symmetry,
    list_training_files,
    pan_crops,
    randint,
    step_generator,
)
from vidsr.train.degrade import bicubic_downscale, degrade_clips

log = logging.getLogger("vidsr")

# Real footage is lossy; halving it averages its coding noise away (see SOURCES.md).
GROUND_TRUTH_DOWNSCALE = 2
# A window whose centre crop varies less than this (code values) is a fade or a flat
# title background: nothing to learn from, so it is drawn again.
FLAT_STD = 2.0
FLAT_REDRAWS = 4


def video_cache_dir() -> Path:
    return cache_dir() / "train-video"


def decode_ground_truth(path: Path) -> np.ndarray:
    """Every frame of ``path`` downscaled by 2 (area), as (F, H, W, 3) uint8 RGB."""
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path} has no video stream; expected a video file for training")
            stream = container.streams.video[0]
            width = stream.codec_context.width // GROUND_TRUTH_DOWNSCALE
            height = stream.codec_context.height // GROUND_TRUTH_DOWNSCALE
            for frame in container.decode(stream):
                frames.append(frame.reformat(width=width, height=height, format="rgb24",
                                             interpolation="AREA").to_ndarray())
    except av.FFmpegError as exc:
        raise DecodeError(f"cannot decode training video {path}: {exc}") from exc
    if not frames:
        raise InputError(f"training video {path} has no frames")
    return np.stack(frames)


def cached_ground_truth(path: Path) -> np.ndarray:
    """``decode_ground_truth(path)``, from the cache when this file's bytes were seen before."""
    folder = video_cache_dir()
    target = folder / f"{path.stem}-{file_digest(path)[:16]}-half.npy"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        frames = decode_ground_truth(path)
        # Shared: two runs may fill the cache at once; the second rename replaces like by like.
        with atomic_write(target, shared=True) as tmp, tmp.open("wb") as f:
            np.save(f, frames)
        log.info("cached %d frames of %s in %s", len(frames), path.name, target)
    return np.load(target, mmap_mode="r")


def collect_window_sources(paths: Path | Sequence[Path]
                           ) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """The videos (cached ground-truth frames) and the images under ``paths``."""
    videos: list[np.ndarray] = []
    images: list[torch.Tensor] = []
    files = list_training_files(paths)
    for f in files:
        if f.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(cached_ground_truth(f))
        else:
            images.append(read_rgb(f))
    log.info("training windows from %d videos (%d frames) and %d images", len(videos),
             sum(len(v) for v in videos), len(images))
    return videos, images


class WindowSampler:
    """Makes the batch of windows of any step: ``lr`` (N, T, 3, h, w), ``hr`` the centre.

    A window comes from a video with probability ``DataOptions.video_share`` (when
    there are both): ``T`` consecutive frames, played forwards or backwards; else
    from an image, as a pan of up to ``clip_motion`` HR pixels a frame. The
    degradation is drawn once per window (``degrade_clips``), with fresh noise in
    every frame and the window coded as one clip.
    """

    def __init__(self, videos: Sequence[np.ndarray], images: Sequence[torch.Tensor],
                 options: DataOptions, *, window: int, seed: int,
                 degrade: DegradeOptions | None = None) -> None:
        side = options.hr_size
        self.videos = [v for v in videos if len(v) >= window and min(v.shape[1:3]) >= side]
        self.images = [im for im in images if min(im.shape[-2:]) >= side]
        if not self.videos and not self.images:
            raise InputError(f"no training video of {window} frames and no image is at least "
                             f"{side}x{side}; lower data.hr_size or add larger sources")
        skipped = len(videos) + len(images) - len(self.videos) - len(self.images)
        if skipped:
            log.warning("skipping %d training sources smaller than %dx%d (or shorter than %d "
                        "frames)", skipped, side, side, window)
        self.options = options
        self.window = window
        self.seed = seed
        self.degrade = degrade if degrade is not None and degrade.enabled else None

    def _from_video(self, g: torch.Generator) -> torch.Tensor:
        frames = self.videos[randint(g, len(self.videos))]
        size = self.options.hr_size
        start = randint(g, len(frames) - self.window + 1)
        top = randint(g, frames.shape[1] - size + 1)
        left = randint(g, frames.shape[2] - size + 1)
        crop = np.ascontiguousarray(
            frames[start:start + self.window, top:top + size, left:left + size])
        clip = torch.from_numpy(crop).permute(0, 3, 1, 2).contiguous()
        return clip.flip(0) if randint(g, 2) else clip

    def _from_image(self, g: torch.Generator) -> torch.Tensor:
        o = self.options
        image = self.images[randint(g, len(self.images))]
        return torch.stack(pan_crops(image, o.hr_size, self.window, o.clip_motion, g))

    def _hr_window(self, g: torch.Generator) -> torch.Tensor:
        """One (T, 3, S, S) uint8 window, not flat, augmented alike in every frame."""
        use_video = bool(self.videos) and (
            not self.images or float(torch.rand((), generator=g)) < self.options.video_share)
        for _ in range(FLAT_REDRAWS):
            clip = self._from_video(g) if use_video else self._from_image(g)
            if float(clip[self.window // 2].float().std()) >= FLAT_STD:
                break
        return augment(clip, *draw_symmetry(self.options, g))

    def hr_windows(self, step: int) -> tuple[torch.Tensor, int]:
        """A step's HR windows (N, T, 3, S, S), float in [0, 1], and the step's scale."""
        g = step_generator(self.seed, step)
        scale = draw_scale(self.options, g)
        windows = [self._hr_window(g) for _ in range(self.options.batch_size)]
        return torch.stack(windows).float() / 255, scale

    def batch(self, step: int) -> Batch:
        """The (LR windows, HR centre frames) batch of a step."""
        hr, scale = self.hr_windows(step)
        n, t = hr.shape[:2]
        frames = hr.flatten(0, 1)
        if self.degrade is not None:
            lr = degrade_clips(frames, scale, self.degrade, step_generator(self.seed, step, 1),
                               clip_frames=t)
        else:
            lr = bicubic_downscale(frames, scale)
        return Batch(lr=lr.unflatten(0, (n, t)), hr=hr[:, t // 2].contiguous(), scale=scale)
