"""The teacher cache: shards made once from degraded crops, the teacher's output on their
centre, the same shard made again after an interruption, another recipe kept apart."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from vidsr.archs import create_arch
from vidsr.engine.engine import Engine
from vidsr.errors import OptionsError
from vidsr.imaging.resize import imresize
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
from vidsr.train.release import release_run
from vidsr.train.teacher_cache import (
    CachedPairs,
    TeacherRecipe,
    build_cache,
    is_teacher_cache,
    load_shard,
    shard_path,
)

RECIPE = TeacherRecipe(core=8, margin=4, shard_size=3, precision="fp32", runtime="torch")


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
    # The preset's losses and optimiser do not make the LR: the same cache.
    assert build_cache(teacher, tiny_config(degrade__enabled=True, degrade__video_prob=1.0,
                                            optim__lr=1e-5, loss__pixel="mse"),
                       [image_folder], root, 2, RECIPE) == folder
    # Another seed is another recipe, in a folder of its own.
    other = build_cache(teacher, tiny_config(degrade__enabled=True, train__seed=5),
                        [image_folder], root, 1, RECIPE)
    assert other != folder
    assert not np.array_equal(load_shard(shard_path(other, 0))["lr"],
                              load_shard(shard_path(folder, 0))["lr"])


def test_training_batches_from_the_cache_align_the_teachers_centre(image_folder, tiny_config,
                                                                    val_folder, tmp_path):
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
    # Its model card says what it learned from: the cache's pairs, degradation, teacher.
    card = release_run(tmp_path / "run", tmp_path / "weights", "student", eval_folder=val_folder,
                       data_note="images").card.read_text()
    assert "pairs drawn from a teacher cache of 3 shards of 3 (9 pairs" in card
    assert "LR crops of 16x16 (8x8 and 4 px of context a side), made by the degradation" in card
    assert "target: the teacher's x2 output on the centre (teacher compact, run in fp32" in card
    assert teacher_cache_in([folder]) == folder and teacher_cache_in(image_folder) is None
    with pytest.raises(OptionsError, match="teacher cache .* alone"):
        teacher_cache_in([folder, image_folder])


def test_a_smaller_scale_trains_on_the_teachers_output_downscaled(image_folder, tiny_config,
                                                                  tmp_path):
    torch.manual_seed(0)
    teacher = SRModel.from_module(create_arch("compact", num_feat=8, num_conv=2,
                                              scale=4).eval(), 4)
    recipe = replace(RECIPE, core=4, margin=2)
    folder = build_cache(teacher, tiny_config(data__scales=(4,)), [image_folder],
                         tmp_path / "cache", 1, recipe)
    options = tiny_config(data__scales=(2,), data__hr_size=8, data__flip=False,
                          data__rotate=False).data
    batch = CachedPairs(folder, options, seed=0).batch(0)
    shard = load_shard(shard_path(folder, 0))
    assert batch.scale == 2 and batch.lr.shape[-2:] == (8, 8)
    assert batch.hr.shape[-2:] == (8, 8)  # the 4x4 centre, x2
    # Each target is the teacher's x4 centre, downscaled with vidsr's bicubic.
    first = torch.from_numpy(shard["lr"]).float() / 255
    index = next(i for i in range(3) if torch.equal(first[i], batch.lr[0]))
    want = imresize(torch.from_numpy(shard["teacher"][index]).float() / 255, scale=0.5)
    assert torch.allclose(batch.hr[0], want.clamp(0, 1), atol=1e-6)
    with pytest.raises(OptionsError, match="one scale that divides the teacher's"):
        CachedPairs(folder, tiny_config(data__scales=(3,), data__hr_size=24).data, seed=0)


def test_the_gan_recipe_runs_on_a_cache_with_the_teachers_features(image_folder, tiny_config,
                                                                    tmp_path):
    """ESRGAN's recipe without VGG19: RaGAN against the teacher's outputs and a perceptual
    loss on the teacher's own first layers, beside the distillation L1."""
    import json

    from vidsr.models.weights_file import save_state_dict

    torch.manual_seed(0)
    net = create_arch("rrdb", num_feat=8, num_block=1, num_grow_ch=4, scale=4).eval()
    weights = tmp_path / "teacher.safetensors"
    save_state_dict(weights, net.state_dict(), {"arch": "rrdb"})
    teacher = SRModel.from_module(net, 4)
    folder = build_cache(teacher, tiny_config(data__scales=(4,)), [image_folder],
                         tmp_path / "cache", 2, replace(RECIPE, margin=1))
    cfg = tiny_config(model__config={"num_feat": 8, "num_conv": 2, "scale": 4},
                      data__scales=(4,), data__hr_size=32, data__batch_size=2,
                      loss__gan_weight=0.1, loss__disc_feat=4, loss__perceptual_weight=1.0,
                      loss__perceptual_net="teacher", loss__teacher_weights=str(weights),
                      train__total_steps=3, train__log_every=1)
    fit(cfg, CachedPairs(folder, cfg.data, seed=0), tmp_path / "gan",
        generator=build_generator(cfg))
    records = [json.loads(line) for line in (tmp_path / "gan/metrics.jsonl").open()]
    assert {"loss_pixel", "loss_perceptual", "loss_gan", "loss_disc"} <= set(records[-1])
    assert records[-1]["loss_perceptual"] > 0
    with pytest.raises(OptionsError, match="set data.hr_size = 32"):
        CachedPairs(folder, tiny_config(data__scales=(4,), data__hr_size=64).data, seed=0)
