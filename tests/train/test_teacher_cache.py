"""The teacher cache: shards made once from degraded crops, the teacher's output on their
centre, the same shard made again after an interruption, another recipe kept apart."""

from __future__ import annotations

import numpy as np
import torch

from vidsr.archs import create_arch
from vidsr.engine.engine import Engine
from vidsr.models.zoo import SRModel
from vidsr.plan.run_plan import EngineOptions, resolve_plan
from vidsr.train.teacher_cache import TeacherRecipe, build_cache, load_shard, shard_path

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
    shard = load_shard(folder, 1)
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
    assert not np.array_equal(load_shard(other, 0)["lr"], load_shard(folder, 0)["lr"])
