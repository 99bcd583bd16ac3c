from __future__ import annotations

import pytest

from vidsr.errors import OptionsError
from vidsr.train.config import (
    PRESET_DIR,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_override,
)

BUNDLED = sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def test_bundled_presets_include_the_recipes():
    for name in ("esrgan-psnr", "esrgan-gan", "vdsr", "espcn", "edsr", "wdsr", "rednet",
                 "compact-x2", "compact-x4", "rrdb-small-x4"):
        assert name in BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_preset_validates(name):
    overrides = {"model.init": "stage1.safetensors", "loss.vgg_weights": "vgg19.pth"} \
        if name == "esrgan-gan" else {}
    cfg = load_config(name, overrides)
    assert cfg.name == name
    assert cfg.train.total_steps > 0
    assert all(cfg.data.hr_size % s == 0 for s in cfg.data.scales)
    # The plain dict form rebuilds the same configuration.
    assert config_from_dict(cfg.to_dict(), name=name) == cfg


def test_esrgan_recipes_follow_the_paper():
    psnr = load_config("esrgan-psnr")
    assert psnr.optim.lr == 2e-4 and psnr.optim.gamma == 0.5
    assert psnr.optim.milestones[:2] == (200000, 400000)
    assert psnr.loss.pixel == "l1" and psnr.train.ema_decay > 0
    gan = load_config("esrgan-gan", ["model.init='a.safetensors'", "loss.vgg_weights='v.pth'"])
    assert gan.optim.lr == 1e-4 and gan.optim.milestones == (50000, 100000, 200000, 300000)
    assert (gan.loss.pixel_weight, gan.loss.perceptual_weight, gan.loss.gan_weight) == \
        (1e-2, 1.0, 5e-3)
    assert dict(gan.loss.vgg_layers) == {"conv5_4": 1.0}
    assert gan.model.init == "a.safetensors"


def test_vdsr_recipe_is_multiscale_with_clipping():
    cfg = load_config("vdsr")
    assert cfg.data.scales == (2, 3, 4)
    assert cfg.optim.kind == "sgd" and cfg.optim.grad_clip == 0.4


def test_overrides_from_strings_and_mappings():
    cfg = load_config("compact-x4", ["optim.lr=1e-4", "model.config.num_feat=16",
                                     "train.precision=bf16", "data.scales=[4]"])
    assert cfg.optim.lr == 1e-4
    assert cfg.model.config["num_feat"] == 16 and cfg.model.config["num_conv"] == 10
    assert cfg.train.precision == "bf16"
    cfg = load_config("compact-x4", {"train.total_steps": 5})
    assert cfg.train.total_steps == 5


def test_parse_override_reads_toml_values():
    assert parse_override("optim.betas=[0.9, 0.99]") == ("optim.betas", [0.9, 0.99])
    assert parse_override("train.device=cuda:1") == ("train.device", "cuda:1")
    with pytest.raises(OptionsError, match="SECTION.KEY=VALUE"):
        parse_override("lr=3")
    with pytest.raises(OptionsError, match="unknown section"):
        apply_overrides({}, ["optimiser.lr=1"])


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(OptionsError, match=r"unknown key\(s\) learning_rate.*valid keys are kind"):
        load_config("compact-x4", {"optim.learning_rate": 1e-3})


@pytest.mark.parametrize(("override", "message"), [
    ({"optim.lr": "fast"}, "optim.lr: expected a number"),
    ({"train.precision": "fp8"}, "expected one of 'fp32', 'bf16', 'fp16'"),
    ({"data.hr_size": 30}, "not divisible by scale"),
    ({"optim.betas": [0.9]}, "expected 2 values"),
    ({"loss.perceptual_weight": 1.0}, "needs loss.vgg_weights"),
    ({"optim.milestones": [5, 2]}, "must increase"),
    ({"train.ema_decay": 1.0}, r"ema_decay must be in \[0, 1\)"),
    ({"data.batch_size": True}, "expected an integer"),
    ({"data.scale_weights": [1.0, 2.0]}, "one weight >= 0 per scale"),
])
def test_bad_values_are_rejected_at_the_edge(override, message):
    with pytest.raises(OptionsError, match=message):
        load_config("compact-x4", override)


def test_unknown_preset_names_the_bundled_ones():
    with pytest.raises(OptionsError, match="bundled: .*esrgan-psnr"):
        load_config("esrgan-psnrr")


def test_model_table_is_required():
    with pytest.raises(OptionsError, match=r"\[model\]"):
        config_from_dict({"data": {}})
