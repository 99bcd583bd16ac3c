"""The teacher cache: shards made once from degraded crops, the teacher's output on their
centre, the same shard made again after an interruption, another recipe kept apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidsr.archs import create_arch
from vidsr.engine.engine import Engine
from vidsr.errors import OptionsError
from vidsr.models.zoo import SRModel
from vidsr.plan.run_plan import EngineOptions, resolve_plan
from vidsr.train.loop import (
    StepLosses,
    build_generator,
    fit,
    new_state,
    teacher_cache_in,
    train_step,
)
from vidsr.train.teacher_cache import (
    CachedPairs,
    TeacherRecipe,
    build_cache,
    is_teacher_cache,
    load_shard,
    shard_path,
)

RECIPE = TeacherRecipe(core=8, margin=4, shard_size=3, precision="fp32")


def _teacher() -> SRModel:
    torch.manual_seed(0)
    return SRModel.from_module(create_arch("compact", num_feat=8, num_conv=2, scale=2).eval(), 2)


def test_shards_hold_the_teachers_centre_and_resume_identically(image_folder, tiny_config,
                                                                  tmp_path):
    teacher = _teacher()
    config = tiny_config(degrade__enabled=True, degrade__video_prob=1.0)
    root = tmp_path / "cache"
    folder = build_cache(teacher, config, [image_folder], root, 2, RECIPE)
    shard = load_shard(shard_path(folder, 1))
    assert shard["lr"].shape == (3, 3, 16, 16) and shard["lr"].dtype == np.uint8
    assert shard["teacher"].shape == shard["hr"].shape == (3, 3, 16, 16)
    # The teacher's output on the whole LR crop, its centre kept: clear of the crop's edges.
    plan = resolve_plan(teacher, EngineOptions(device="cpu", precision="fp32"))
    with Engine(teacher, plan) as engine:
        out = engine.run_network(torch.from_numpy(shard["lr"]).float() / 255)
    centre = (out[..., 8:24, 8:24].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    assert np.abs(centre.astype(int) - shard["teacher"].astype(int)).max() <= 1
    # An interrupted build: the missing shard is made again, the same; the other is kept.
    kept = shard_path(folder, 0).stat().st_mtime_ns
    first = shard_path(folder, 1).read_bytes()
    shard_path(folder, 1).unlink()
    assert build_cache(teacher, config, [image_folder], root, 2, RECIPE) == folder
    assert shard_path(folder, 1).read_bytes() == first
    assert shard_path(folder, 0).stat().st_mtime_ns == kept
    # Another seed is another recipe, in a folder of its own.
    other = build_cache(teacher, tiny_config(degrade__enabled=True, train__seed=5),
                        [image_folder], root, 1, RECIPE)
    assert other != folder
    assert not np.array_equal(load_shard(shard_path(other, 0))["lr"],
                              load_shard(shard_path(folder, 0))["lr"])


def test_training_batches_from_the_cache_align_the_teachers_centre(image_folder, tiny_config,
                                                                    tmp_path):
    """A student that is the teacher starts at the loss of the cache's rounding alone: the
    loop crops its output to the centre the target covers. Then the run trains on."""
    teacher = _teacher()
    cache_config = tiny_config(degrade__enabled=True)
    folder = build_cache(teacher, cache_config, [image_folder], tmp_path / "cache", 3, RECIPE)
    assert is_teacher_cache(folder) and not is_teacher_cache(image_folder)
    cfg = tiny_config(data__flip=False, data__rotate=False, train__log_every=1,
                      train__total_steps=4)
    pairs = CachedPairs(folder, cfg.data, seed=0)
    batch = pairs.batch(0)
    assert batch.lr.shape == (4, 3, 16, 16) and batch.hr.shape == (4, 3, 16, 16)
    assert batch.margin == 4 and torch.equal(pairs.batch(0).lr, batch.lr)
    generator = build_generator(cfg)
    generator.load_state_dict(teacher.module.state_dict())
    state = new_state(cfg, generator, torch.device("cpu"))
    record = train_step(state, batch, cfg, StepLosses(cfg, torch.device("cpu")),
                        torch.device("cpu"))
    assert record["loss_pixel"] < 0.5 / 255  # L1: half a code value at most, from rounding
    # The loop itself on the cache; `vidsr train --data` names a cache alone.
    result = fit(cfg, pairs, tmp_path / "run", generator=build_generator(cfg))
    assert result.step == 4
    assert teacher_cache_in([folder]) == folder and teacher_cache_in(image_folder) is None
    with pytest.raises(OptionsError, match="teacher cache .* alone"):
        teacher_cache_in([folder, image_folder])
