from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from vidsr.archs import load_arch_from_state_dict
from vidsr.errors import OptionsError
from vidsr.models.weights_file import read_state_dict, save_state_dict
from vidsr.train import run_training
from vidsr.train.config import load_config
from vidsr.train.data import PairSampler, collect_sources
from vidsr.train.loop import StepLosses, build_generator, fit, to_model_space
from vidsr.train.losses import VGG19Features
from vidsr.train.schedule import learning_rate

# Tiny versions of each bundled recipe: the recipe's loss, optimiser and
# schedule, with a network and crops small enough for a few CPU steps.
TINY = {
    "esrgan-psnr": {"model.config": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4,
                                     "scale": 4}, "data.hr_size": 16},
    "vdsr": {"model.config": {"num_feat": 8, "num_layers": 4}, "data.hr_size": 12},
    "vdsr-small": {"model.config": {"num_feat": 8, "num_layers": 4}, "data.hr_size": 12},
    "espcn": {"model.config": {"scale": 3, "num_feat": 8, "num_mid": 4}, "data.hr_size": 12},
    "edsr": {"model.config": {"num_feat": 8, "num_block": 1, "scale": 2}, "data.hr_size": 16},
    "wdsr": {"model.config": {"num_feat": 8, "num_block": 1, "scale": 2}, "data.hr_size": 16},
    "rednet": {"model.config": {"num_feat": 8, "depth": 4}, "data.hr_size": 12},
    "compact-x2": {"model.config": {"num_feat": 8, "num_conv": 2, "scale": 2},
                   "data.hr_size": 16},
    "compact-x4": {"model.config": {"num_feat": 8, "num_conv": 2, "scale": 4},
                   "data.hr_size": 16},
    "rrdb-small-x4": {"model.config": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4,
                                       "scale": 4}, "data.hr_size": 16},
}
STEPS = 25


def tiny(name, **extra):
    overrides = {"data.batch_size": 4, "train.total_steps": STEPS, "train.progress": False,
                 "train.log_every": 1, "train.checkpoint_every": 100, **TINY[name], **extra}
    return load_config(name, overrides)


def fixed_loss(cfg, generator, batch, losses):
    with torch.no_grad():
        lr, hr = to_model_space(batch, generator.spec, torch.device("cpu"))
        terms = losses.generator_terms(generator(lr), hr, None)
    return sum(float(v) for v in terms.values())


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_few_steps_of_each_recipe_reduce_the_loss(name, image_folder, tmp_path):
    cfg = tiny(name)
    torch.manual_seed(0)
    generator = build_generator(cfg)
    sampler = PairSampler(collect_sources(image_folder, 4), cfg.data, seed=0)
    losses = StepLosses(cfg, torch.device("cpu"))
    # One held-out batch per scale the recipe trains.
    probes = {}
    step = 10_000
    while len(probes) < len(cfg.data.scales):
        batch = sampler.batch(step)
        probes.setdefault(batch.scale, batch)
        step += 1
    before = sum(fixed_loss(cfg, generator, b, losses) for b in probes.values())
    result = fit(cfg, sampler, tmp_path / "run", generator=generator)
    after = sum(fixed_loss(cfg, generator, b, losses) for b in probes.values())
    assert result.step == STEPS
    # At the recipes' own learning rates (EDSR's 1e-4 is the slowest) 25 steps gain >= 1%.
    assert after < 0.99 * before, (before, after)


def vgg_file(tmp_path):
    torch.manual_seed(3)
    path = tmp_path / "vgg19.safetensors"
    save_file(VGG19Features(layers=("conv5_4",)).state_dict(), str(path))
    return path


def gan_config(tmp_path, **extra):
    stage1 = tmp_path / "stage1.safetensors"
    if not stage1.exists():
        cfg = tiny("esrgan-psnr")
        torch.manual_seed(5)
        save_state_dict(stage1, build_generator(cfg).state_dict())
    return load_config("esrgan-gan", {
        "model.config": TINY["esrgan-psnr"]["model.config"], "model.init": str(stage1),
        "loss.vgg_weights": str(vgg_file(tmp_path)), "loss.disc_feat": 4,
        "data.hr_size": 32, "data.batch_size": 2, "train.total_steps": 6,
        "train.progress": False, "train.log_every": 1, "train.checkpoint_every": 100,
        "optim.lr": 1e-3, **extra})


def test_gan_recipe_starts_from_stage_one_and_trains_both_networks(image_folder, tmp_path):
    cfg = gan_config(tmp_path)
    generator = build_generator(cfg)
    stage1 = read_state_dict(tmp_path / "stage1.safetensors")
    assert all(torch.equal(v, stage1[k]) for k, v in generator.state_dict().items())
    sampler = PairSampler(collect_sources(image_folder, 4), cfg.data, seed=0)
    fit(cfg, sampler, tmp_path / "gan", generator=generator)
    records = [json.loads(line) for line in (tmp_path / "gan/metrics.jsonl").open()]
    assert {"loss_pixel", "loss_perceptual", "loss_gan", "loss_disc"} <= set(records[-1])
    disc = read_state_dict(tmp_path / "gan/checkpoints/00000006/discriminator.safetensors")
    assert "linear2.weight" in disc
    assert not all(torch.equal(v, stage1[k]) for k, v in generator.state_dict().items())


def run_records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]


@pytest.mark.parametrize("variant", ["plain", "bf16-multiscale", "gan"])
def test_resume_continues_bit_exactly(variant, image_folder, tmp_path, tiny_config):
    if variant == "gan":
        cfg = gan_config(tmp_path, **{"train.total_steps": 8})
    elif variant == "bf16-multiscale":
        cfg = load_config("vdsr", {**TINY["vdsr"], "data.batch_size": 2, "train.total_steps": 8,
                                   "train.log_every": 1, "train.progress": False,
                                   "train.precision": "bf16", "train.ema_decay": 0.9})
    else:
        cfg = tiny_config(train__total_steps=8, train__log_every=1)
    sampler = PairSampler(collect_sources(image_folder, 4), cfg.data, seed=0)

    def fresh(seed):
        torch.manual_seed(seed)
        return build_generator(cfg)

    whole = fresh(0)
    fit(cfg, sampler, tmp_path / "whole", generator=whole)
    first = fresh(0)
    stopped = fit(cfg, sampler, tmp_path / "parts", generator=first, stop_at=5)
    assert stopped.step == 5 and stopped.checkpoint.name == "00000005"
    # A new process would build a different network; the checkpoint must replace all of it.
    second = fresh(123)
    resumed = fit(cfg, sampler, tmp_path / "parts", generator=second, resume=True)
    assert resumed.step == 8

    a, b = run_records(tmp_path / "whole"), run_records(tmp_path / "parts")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        for key in ra:
            if key != "wall_s":
                assert ra[key] == rb[key], (ra["step"], key)
    for k, v in whole.state_dict().items():
        assert torch.equal(v, second.state_dict()[k]), k
    ema_a = read_state_dict(tmp_path / "whole/checkpoints/00000008/params_ema.safetensors")
    ema_b = read_state_dict(tmp_path / "parts/checkpoints/00000008/params_ema.safetensors")
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)


def test_run_directory_contents(image_folder, val_folder, tmp_path, tiny_config):
    cfg = tiny_config()
    torch.manual_seed(0)
    result = fit(cfg, PairSampler(collect_sources(image_folder, 4), cfg.data, seed=0),
                 tmp_path / "run", generator=build_generator(cfg), val=val_folder)
    run = tmp_path / "run"
    records = run_records(run)
    vals = [r for r in records if "val_psnr_x2" in r]
    assert [r["step"] for r in vals] == [6, 12]
    assert all(10 < r["val_psnr_x2"] < 60 and 0 < r["val_ssim_x2"] <= 1 for r in vals)
    assert result.best_psnr == max(r["val_psnr_x2"] for r in vals)
    best = read_state_dict(result.best_weights)
    model = load_arch_from_state_dict(best)
    assert model.spec.arch == "compact" and model.spec.scales == (2,)
    with Image.open(run / "progress.png") as plot:
        assert plot.size == (720, 520)
    assert json.loads((run / "config.json").read_text())["optim"]["lr"] == 2e-3
    # keep_checkpoints = 0 keeps every one; each has the ecosystem's .pth.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == \
        ["00000003", "00000006", "00000009", "00000012"]
    pth = torch.load(run / "checkpoints/00000012/model.pth", weights_only=True)
    assert set(pth) == {"params", "params_ema"}


def test_checkpoints_are_pruned(image_folder, tmp_path, tiny_config):
    cfg = tiny_config(train__keep_checkpoints=2)
    torch.manual_seed(0)
    fit(cfg, PairSampler(collect_sources(image_folder, 4), cfg.data, seed=0), tmp_path / "run",
        generator=build_generator(cfg))
    assert sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir()) == \
        ["00000009", "00000012"]


def test_resume_needs_a_checkpoint_and_a_new_run_needs_an_empty_dir(image_folder, tmp_path,
                                                                    tiny_config):
    cfg = tiny_config(train__total_steps=3)
    sampler = PairSampler(collect_sources(image_folder, 4), cfg.data, seed=0)
    with pytest.raises(OptionsError, match="no checkpoint"):
        fit(cfg, sampler, tmp_path / "run", generator=build_generator(cfg), resume=True)
    fit(cfg, sampler, tmp_path / "run", generator=build_generator(cfg))
    with pytest.raises(OptionsError, match="already holds checkpoints"):
        fit(cfg, sampler, tmp_path / "run", generator=build_generator(cfg))


def test_run_training_from_a_preset_file(image_folder, val_folder, tmp_path):
    preset = tmp_path / "mine.toml"
    preset.write_text('[model]\narch = "compact"\n'
                      'config = { num_feat = 8, num_conv = 2, scale = 2 }\n'
                      '[data]\nhr_size = 16\nscales = [2]\nbatch_size = 2\n'
                      '[train]\ntotal_steps = 4\nval_every = 4\ncheckpoint_every = 2\n'
                      'progress = false\n')
    result = run_training(preset, image_folder, tmp_path / "out", val=val_folder,
                          overrides=["optim.lr=1e-3"])
    assert result.step == 4 and result.best_weights is not None
    again = run_training(preset, image_folder, tmp_path / "out", resume=True,
                         overrides=["train.total_steps=6"])
    assert again.step == 6
    with pytest.raises(OptionsError, match=r"do not fit the compact model, which produces x\[2\]"):
        run_training(preset, image_folder, tmp_path / "bad", overrides=["data.scales=[4]"])


def test_learning_rate_schedules():
    cfg = load_config("esrgan-gan", {"model.init": "x", "loss.vgg_weights": "y"})
    o = cfg.optim
    assert learning_rate(o, 0, 400000) == 1e-4
    assert learning_rate(o, 49999, 400000) == 1e-4
    assert learning_rate(o, 50000, 400000) == 5e-5
    assert learning_rate(o, 300000, 400000) == 1e-4 / 16
    cos = load_config("compact-x4").optim
    assert learning_rate(cos, 0, 100) == cos.lr
    assert learning_rate(cos, 100, 100) == pytest.approx(cos.min_lr)
    assert learning_rate(cos, 50, 100) == pytest.approx((cos.lr + cos.min_lr) / 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_amp_on_cuda_trains_and_resumes(image_folder, tmp_path, tiny_config):
    cfg = tiny_config(train__total_steps=6, train__precision="fp16", train__device="cuda")
    sampler = PairSampler(collect_sources(image_folder, 4), cfg.data, seed=0)
    torch.manual_seed(0)
    fit(cfg, sampler, tmp_path / "run", generator=build_generator(cfg), stop_at=3)
    torch.manual_seed(1)
    result = fit(cfg, sampler, tmp_path / "run", generator=build_generator(cfg), resume=True)
    assert result.step == 6
    losses = [r["loss"] for r in run_records(tmp_path / "run") if "loss" in r]
    assert all(0 < v < 1 for v in losses)


def test_fp16_needs_cuda(image_folder, tmp_path, tiny_config):
    cfg = tiny_config(train__precision="fp16", train__device="cpu")
    sampler = PairSampler(collect_sources(image_folder, 4), cfg.data, seed=0)
    with pytest.raises(OptionsError, match="fp16' needs CUDA"):
        fit(cfg, sampler, tmp_path / "run", generator=build_generator(cfg))


def test_ema_decay_warms_up():
    from vidsr.train.loop import ema_decay_at

    assert ema_decay_at(0.999, 0) == 0.1
    assert ema_decay_at(0.999, 90) == 0.91
    assert ema_decay_at(0.999, 20000) == 0.999


def test_interrupt_saves_a_checkpoint_that_resumes(image_folder, tmp_path, tiny_config,
                                                   monkeypatch):
    from vidsr.errors import Cancelled
    from vidsr.train import loop

    cfg = tiny_config(train__total_steps=8, train__checkpoint_every=100)
    sampler = PairSampler(collect_sources(image_folder, 4), cfg.data, seed=0)
    real_step = loop.train_step

    def interrupted(state, *args):
        if state.step == 5:
            raise KeyboardInterrupt
        return real_step(state, *args)

    monkeypatch.setattr(loop, "train_step", interrupted)
    with pytest.raises(Cancelled, match="interrupted at step 5"):
        fit(cfg, sampler, tmp_path / "run", generator=build_generator(cfg))
    monkeypatch.setattr(loop, "train_step", real_step)
    result = fit(cfg, sampler, tmp_path / "run", generator=build_generator(cfg), resume=True)
    assert result.step == 8


def test_init_weights_must_match_the_preset(tmp_path):
    stage1 = tmp_path / "stage1.safetensors"
    torch.manual_seed(0)
    save_state_dict(stage1, build_generator(tiny("compact-x4")).state_dict())
    model = build_generator(tiny("compact-x4", **{"model.init": str(stage1)}))
    assert model.spec.config["num_feat"] == 8
    narrower = r"num_feat = 4 in the preset, 8 in the weights \(compact widens only"
    with pytest.raises(OptionsError, match=narrower):
        build_generator(tiny("compact-x4", **{"model.init": str(stage1),
                                              "model.config": {"num_feat": 4, "num_conv": 2,
                                                               "scale": 4}}))
    with pytest.raises(OptionsError, match="scale = 2 in the preset, 4 in the weights .*not to"):
        build_generator(tiny("compact-x2", **{"model.init": str(stage1)}))
    rrdb = tmp_path / "rrdb.safetensors"
    save_state_dict(rrdb, build_generator(tiny("rrdb-small-x4")).state_dict())
    wider = {"num_feat": 8, "num_block": 2, "num_grow_ch": 4, "scale": 4}
    with pytest.raises(OptionsError, match="num_block = 2 in the preset, 1 in the weights"):
        build_generator(tiny("rrdb-small-x4", **{"model.init": str(rrdb),
                                                 "model.config": wider}))
    with pytest.raises(OptionsError, match="holds a compact, the preset trains a rrdb"):
        build_generator(tiny("rrdb-small-x4", **{"model.init": str(stage1)}))


def test_a_wider_compact_grows_from_a_trained_one(tmp_path):
    """A preset may widen and deepen the compact network it starts from (the crisp model
    from archival): at step 0 it computes what the trained one does."""
    stage1 = tmp_path / "stage1.safetensors"
    torch.manual_seed(0)
    trained = build_generator(tiny("compact-x4")).eval()
    save_state_dict(stage1, trained.state_dict())
    wide = {"num_feat": 12, "num_conv": 4, "scale": 4}
    grown = build_generator(tiny("compact-x4", **{"model.init": str(stage1),
                                                  "model.config": wide}))
    assert {k: grown.spec.config[k] for k in wide} == wide
    x = torch.rand(2, 3, 10, 14)
    with torch.no_grad():
        assert torch.equal(grown.eval()(x), trained(x))
