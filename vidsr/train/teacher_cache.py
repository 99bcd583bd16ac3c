"""A teacher's outputs on degraded training crops, computed once and kept for distillation.

A slow, GAN-trained teacher (Real-ESRGAN's RRDB net) shows a small student the picture to
make; running it at every training step would cost most of the run. So the pairs are made
ahead, in shards, each a pure function of the recipe and its number: shard ``k`` is the
batch of step ``k`` of a :class:`~vidsr.train.data.PairSampler` over the training data
(HR crops of ``core + 2 * margin`` LR pixels a side, degraded to LR by the preset's
degradation), and the teacher's output on that LR. A shard stores, as uint8 RGB:

- ``lr``: the whole LR crop, margins included (what the student takes);
- ``teacher``: the teacher's output for the centre ``core`` x ``core`` LR pixels, which the
  margins keep clear of the zero padding at the crop's edges;
- ``hr``: the HR crop's same centre (for a pixel loss against the truth).

Shards are written atomically and named by number under a folder named by the recipe's
digest (teacher tensors, preset values, data files, sizes, seed), so an interrupted build
resumes where it stopped, and another recipe never reads these.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidsr.engine.engine import Engine
from vidsr.errors import InputError, OptionsError
from vidsr.imaging.resize import imresize
from vidsr.io.atomic_write import atomic_write
from vidsr.models.zoo import SRModel, tensor_digest
from vidsr.plan.run_plan import EngineOptions, resolve_plan
from vidsr.train.config import DataOptions, TrainConfig
from vidsr.train.data import (
    Batch,
    PairSampler,
    augment,
    collect_sources,
    draw_symmetry,
    list_training_files,
    randint,
    step_generator,
)

log = logging.getLogger("vidsr")


@dataclass(frozen=True)
class TeacherRecipe:
    """What a cache holds: ``shard_size`` samples a shard, each a ``core`` x ``core`` LR
    centre with ``margin`` LR pixels of context on every side, at the teacher's scale."""

    core: int = 32
    margin: int = 8
    shard_size: int = 16
    precision: str = "bf16"  # the teacher's, on the CPU
    # OpenVINO's bf16 runs the RRDB teacher 1.5x as fast as torch's on an AVX-512 BF16 CPU
    # (3.1 against 4.6 s a shard), its outputs 53 dB from torch's.
    runtime: str = "openvino"

    @property
    def lr_side(self) -> int:
        return self.core + 2 * self.margin


def sampled_options(config: TrainConfig, recipe: TeacherRecipe, scale: int) -> DataOptions:
    """The data options the cache's sampler draws with: the preset's, at the recipe's sizes."""
    return replace(config.data, hr_size=recipe.lr_side * scale, batch_size=recipe.shard_size,
                   clip_frames=1)


def recipe_parts(teacher: SRModel, config: TrainConfig, data: Sequence[Path],
                 recipe: TeacherRecipe) -> dict[str, Any]:
    """What makes a shard, as plain data: the teacher's scale, what makes the LR (the
    sampler's options, the degradation, the seed), the data files, the sizes. The preset's
    other values (losses, optimiser) do not change a shard, so they are not in it."""
    return {
        "scale": teacher.scale,
        "sampler": asdict(sampled_options(config, recipe, teacher.scale)),
        "degrade": config.to_dict()["degrade"],
        "seed": config.train.seed,
        "data": [str(p) for p in list_training_files(list(data))],
        "recipe": recipe.__dict__,
    }


def recipe_digest(teacher: SRModel, parts: dict[str, Any]) -> str:
    """Names a recipe: the teacher's tensors and :func:`recipe_parts`."""
    named = {"teacher": tensor_digest(teacher.module), **parts}
    return hashlib.sha256(json.dumps(named, sort_keys=True, default=str).encode()).hexdigest()[:16]


RECIPE_FILE = "recipe.json"  # the sizes and scale a cache holds, beside its shards
TEACHER_CACHE_NOTE = "teacher_cache.json"  # in a run trained on a cache: its recipe


def cache_dir(root: Path, digest: str) -> Path:
    return root / f"teacher-{digest}"


def shard_path(folder: Path, index: int) -> Path:
    return folder / f"shard-{index:06d}.npz"


def _codes(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def build_cache(teacher: SRModel, config: TrainConfig, data: Sequence[Path], root: Path,
                shards: int, recipe: TeacherRecipe = TeacherRecipe()) -> Path:
    """Make shards ``0 .. shards - 1`` under ``root`` (those already there are kept) and
    return their folder. The preset's own crop size and batch size are replaced by the
    recipe's; its degradation, data options and seed are used as they are."""
    scale = teacher.scale
    if config.data.scales != (scale,):
        raise OptionsError(f"the teacher upscales x{scale}; the preset trains"
                           f" x{', x'.join(map(str, config.data.scales))}")
    parts = recipe_parts(teacher, config, data, recipe)
    folder = cache_dir(root, recipe_digest(teacher, parts))
    folder.mkdir(parents=True, exist_ok=True)
    description = folder / RECIPE_FILE
    # What a model card says of its data: the teacher, the degradation, the files.
    text = json.dumps({**recipe.__dict__, "scale": scale, "teacher": teacher.name,
                       **{k: parts[k] for k in ("degrade", "seed", "data")}}, indent=1)
    if not description.is_file() or description.read_text() != text:
        with atomic_write(description, shared=True) as partial:
            partial.write_text(text)
    missing = [k for k in range(shards) if not shard_path(folder, k).is_file()]
    if not missing:
        return folder
    options = sampled_options(config, recipe, scale)
    sampler = PairSampler(collect_sources(list(data), options.frames_per_video), options,
                          seed=config.train.seed, degrade=config.degrade)
    plan = resolve_plan(teacher, EngineOptions(device="cpu", precision=recipe.precision,
                                                 runtime=recipe.runtime))
    lo, hi = recipe.margin, recipe.margin + recipe.core
    with Engine(teacher, plan) as engine:
        for done, k in enumerate(missing, 1):
            pair = sampler.batch(k)
            out = engine.run_network(pair.lr)
            arrays = {
                "lr": _codes(pair.lr),
                "teacher": _codes(out[..., lo * scale : hi * scale, lo * scale : hi * scale]),
                "hr": _codes(pair.hr[..., lo * scale : hi * scale, lo * scale : hi * scale]),
            }
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            with atomic_write(shard_path(folder, k)) as partial:
                partial.write_bytes(buffer.getvalue())
            if done % 10 == 0 or done == len(missing):
                log.info("teacher cache %s: %d of %d shards made", folder, done, len(missing))
    return folder


def load_shard(path: Path) -> dict[str, np.ndarray]:
    """A shard's arrays (``lr``, ``teacher``, ``hr``), uint8 (N, 3, h, w)."""
    with np.load(path) as shard:
        return {name: shard[name] for name in ("lr", "teacher", "hr")}


def is_teacher_cache(path: Path) -> bool:
    """Whether ``path`` is a teacher cache's folder (what ``vidsr train --data`` may name)."""
    return path.is_dir() and (path / RECIPE_FILE).is_file()


class CachedPairs:
    """Training batches out of a teacher cache: the LR crops with their margins, and the
    teacher's output as the target (distillation). Step ``k``'s batch is a pure function
    of the cache, the options and the seed, as :class:`~vidsr.train.data.PairSampler`'s is:
    ``batch_size`` samples drawn from the shards there are, each flipped and turned as the
    data options allow (the LR and its target alike).

    A preset may train a smaller scale than the teacher's that divides it (x2 from a x4
    teacher): the target is then the teacher's output downscaled to that scale with
    vidsr's antialiased bicubic (:func:`~vidsr.imaging.resize.imresize`), the picture the
    teacher would show at that size, and the LR is the same."""

    def __init__(self, folder: Path, options: DataOptions, *, seed: int) -> None:
        described = json.loads((folder / RECIPE_FILE).read_text())
        self.shards = sorted(folder.glob("shard-*.npz"))
        if not self.shards:
            raise InputError(f"teacher cache {folder} has no shards yet; build some with"
                             " scripts/cache_teacher.sh")
        self.teacher_scale = int(described["scale"])
        if len(options.scales) != 1 or self.teacher_scale % options.scales[0]:
            raise OptionsError(f"teacher cache {folder} holds x{self.teacher_scale} pairs; the"
                               f" preset trains x{', x'.join(map(str, options.scales))}, where"
                               " it takes one scale that divides the teacher's")
        self.scale = options.scales[0]
        target = int(described["core"]) * self.scale
        if options.hr_size != target:  # the discriminator is built for data.hr_size
            raise OptionsError(f"teacher cache {folder}: its x{self.scale} targets are"
                               f" {target}x{target}; set data.hr_size = {target}")
        self.described = {**described, "folder": str(folder), "shards": len(self.shards)}
        self.margin = int(described["margin"])
        self.per_shard = int(described["shard_size"])
        self.options = options
        self.seed = seed
        # A few shards kept in memory: a cache of hours is gigabytes.
        self._shard = functools.lru_cache(maxsize=32)(lambda i: load_shard(self.shards[i]))
        log.info("teacher cache %s: %d shards of %d pairs", folder, len(self.shards),
                 self.per_shard)

    def batch(self, step: int) -> Batch:
        g = step_generator(self.seed, step)
        lrs, targets = [], []
        for _ in range(self.options.batch_size):
            shard = self._shard(randint(g, len(self.shards)))
            i = randint(g, self.per_shard)
            symmetry = draw_symmetry(self.options, g)
            lrs.append(augment(torch.from_numpy(shard["lr"][i]), *symmetry))
            targets.append(augment(torch.from_numpy(shard["teacher"][i]), *symmetry))
        target = torch.stack(targets).float() / 255
        if self.scale != self.teacher_scale:
            target = imresize(target, scale=self.scale / self.teacher_scale).clamp(0, 1)
        return Batch(lr=torch.stack(lrs).float() / 255, hr=target, scale=self.scale,
                     margin=self.margin)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vidsr.train.teacher_cache``: build (or complete) a teacher cache."""
    import argparse

    from vidsr.models.zoo import load_model
    from vidsr.train.config import load_config

    parser = argparse.ArgumentParser(prog="python -m vidsr.train.teacher_cache",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="the teacher's weights file")
    parser.add_argument("--preset", required=True,
                        help="the training preset whose degradation, data options and seed"
                             " make the LR (a bundled name or a path)")
    parser.add_argument("--data", type=Path, action="append", required=True,
                        help="training images and videos (folders or files; repeatable)")
    parser.add_argument("--out", type=Path, required=True,
                        help="the caches' root; this recipe's shards go in a folder of it")
    parser.add_argument("--shards", type=int, required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a preset value, as `vidsr train --set`")
    parser.add_argument("--runtime", default=TeacherRecipe.runtime, choices=("torch", "openvino"),
                        help="what runs the teacher (part of the recipe: another runtime makes"
                             " another cache)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    teacher = load_model(args.teacher)
    config = load_config(args.preset, args.set)
    folder = build_cache(teacher, config, args.data, args.out, args.shards,
                         TeacherRecipe(runtime=args.runtime))
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
