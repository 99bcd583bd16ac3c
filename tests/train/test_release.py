from __future__ import annotations

import shutil

import torch

from vidsr.archs import load_arch_from_state_dict
from vidsr.models.weights_file import read_state_dict
from vidsr.train.data import PairSampler, collect_sources
from vidsr.train.loop import build_generator, fit
from vidsr.train.release import release_run


def _trained(cfg, image_folder, run):
    """A run of ``cfg`` on the generated images, from a fixed seed; its folder."""
    torch.manual_seed(0)
    sampler = PairSampler(collect_sources(image_folder, 4), cfg.data, seed=0,
                          degrade=cfg.degrade)
    fit(cfg, sampler, run, generator=build_generator(cfg))
    return run


def test_release_writes_weights_and_a_measured_card(image_folder, val_folder, tmp_path,
                                                    tiny_config):
    cfg = tiny_config(train__total_steps=6)
    run = _trained(cfg, image_folder, tmp_path / "run")
    out = release_run(run, tmp_path / "weights", "tiny-x2", eval_folder=val_folder,
                      data_note="four generated images", hardware_note="test CPU")
    assert out.step == 6 and out.weights.name == "tiny-x2.safetensors"
    sd = read_state_dict(out.weights)
    ema = read_state_dict(run / "checkpoints/00000006/params_ema.safetensors")
    assert all(torch.equal(sd[k], ema[k]) for k in ema)
    assert load_arch_from_state_dict(sd).spec.scales == (2,)
    card = out.card.read_text()
    assert "| steps | 6 of 6 planned |" in card
    s = out.scores[2]
    assert (f"| x2 | {s.bicubic_psnr:.2f} / {s.bicubic_ssim:.4f} | {s.psnr:.2f} / {s.ssim:.4f} |"
            in card)
    assert "test CPU" in card and "four generated images" in card
    assert "Checkpoints were not picked by their" in card
    assert 10 < s.bicubic_psnr < 60 and out.frame_s > 0 and list(out.scores) == [2]


def test_a_run_shipped_before_its_end_says_its_figure_is_a_validation_one(
        image_folder, val_folder, tmp_path, tiny_config):
    cfg = tiny_config(train__total_steps=6)
    run = _trained(cfg, image_folder, tmp_path / "run")
    shutil.rmtree(run / "checkpoints/00000006")  # as if stopped once validation passed a target
    out = release_run(run, tmp_path / "weights", "early", eval_folder=val_folder,
                      data_note="generated")
    card = out.card.read_text()
    assert out.step == 3 and "| steps | 3 of 6 planned |" in card
    assert "shipped before its planned end" in card and "not picked" not in card


def test_release_can_ship_the_raw_parameters(image_folder, val_folder, tmp_path, tiny_config):
    cfg = tiny_config(train__total_steps=3)
    run = _trained(cfg, image_folder, tmp_path / "run")
    out = release_run(run, tmp_path / "weights", "raw", eval_folder=val_folder,
                      data_note="generated", use_ema=False)
    raw = read_state_dict(run / "checkpoints/00000003/params.safetensors")
    sd = read_state_dict(out.weights)
    assert all(torch.equal(sd[k], raw[k]) for k in raw)
    assert "raw (not EMA) weights" in out.card.read_text()


def test_release_can_store_fp16_and_scores_what_it_stores(image_folder, val_folder, tmp_path,
                                                          tiny_config):
    cfg = tiny_config(train__total_steps=3)
    run = _trained(cfg, image_folder, tmp_path / "run")
    full = release_run(run, tmp_path / "weights", "full", eval_folder=val_folder,
                       data_note="generated")
    half = release_run(run, tmp_path / "weights", "half", eval_folder=val_folder,
                       data_note="generated", half=True)
    sd, ema = read_state_dict(half.weights), read_state_dict(full.weights)
    assert all(sd[k].dtype == torch.float16 and torch.equal(sd[k], ema[k].half()) for k in ema)
    assert half.weights.stat().st_size < 0.6 * full.weights.stat().st_size
    assert abs(half.scores[2].psnr - full.scores[2].psnr) < 0.05


def test_the_card_of_a_degraded_fine_tune_says_how_its_lr_was_made(image_folder, val_folder,
                                                                   tmp_path, tiny_config):
    cfg = tiny_config(train__total_steps=2, degrade__enabled=True, degrade__video_prob=0.0)
    run = _trained(cfg, image_folder, tmp_path / "run")
    card = release_run(run, tmp_path / "weights", "d", eval_folder=val_folder,
                       data_note="generated").card.read_text()
    assert "LR by the degradation pipeline" in card and "MATLAB-style" not in card
    assert "sigma 0.2-2 HR px" in card and "JPEG (p 0.3, quality 40-95)" in card
    assert "round trip of the batch as a clip" in card


def test_the_card_of_a_clip_run_says_its_runs_were_coded_as_clips(image_folder, val_folder,
                                                                  tmp_path, tiny_config):
    cfg = tiny_config(train__total_steps=2, degrade__enabled=True, degrade__video_prob=1.0,
                      data__clip_frames=2)
    run = _trained(cfg, image_folder, tmp_path / "run")
    card = release_run(run, tmp_path / "weights", "c", eval_folder=val_folder,
                       data_note="generated").card.read_text()
    assert "each run of 2 crops panning across one image" in card


def test_release_of_a_multiscale_model_scores_every_scale(image_folder, val_folder, tmp_path):
    from vidsr.train.config import load_config

    cfg = load_config("vdsr-small", {"model.config": {"num_feat": 4, "num_layers": 3},
                                     "data.hr_size": 12, "data.batch_size": 2,
                                     "data.scale_weights": [2, 1, 1],
                                     "train.total_steps": 2, "train.progress": False})
    run = _trained(cfg, image_folder, tmp_path / "run")
    out = release_run(run, tmp_path / "weights", "ms", eval_folder=val_folder, data_note="g")
    assert sorted(out.scores) == [2, 3, 4]
    card = out.card.read_text()
    assert all(f"| x{k} | " in card for k in (2, 3, 4))
    assert "(bicubic-upscaled first)" in card
    assert "one scale per batch (x2 50 %, x3 25 %, x4 25 %)" in card


def test_a_fine_tune_card_lists_both_stages(image_folder, val_folder, tmp_path, tiny_config):
    stage1 = tiny_config(train__total_steps=4)
    torch.manual_seed(0)
    images = collect_sources(image_folder, 4)
    fit(stage1, PairSampler(images, stage1.data, seed=0), tmp_path / "s1",
        generator=build_generator(stage1))
    init = tmp_path / "s1/checkpoints/00000004/params_ema.safetensors"
    stage2 = tiny_config(train__total_steps=3, model__init=str(init), loss__pixel="mse")
    fit(stage2, PairSampler(images, stage2.data, seed=1), tmp_path / "s2",
        generator=build_generator(stage2))
    out = release_run(tmp_path / "s2", tmp_path / "weights", "two", eval_folder=val_folder,
                      data_note="generated")
    card = out.card.read_text()
    assert "| steps | 7 in 2 stages (below) |" in card
    assert "## Training stages" in card
    assert "| 1 | `tiny` | l1 (weight 1) |" in card and "| 2 | `tiny` | mse (weight 1) |" in card
