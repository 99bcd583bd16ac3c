"""The strength knob: a model blended with its PSNR-trained partner once, at load time."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from vidsr.errors import ModelChoiceError, OptionsError
from vidsr.models.zoo import load_model, model_cards, register_card, unregister_card
from vidsr.options import SHARED_OPTIONS, defaults, upscale_arguments, with_overrides


@pytest.fixture
def knobbed():
    """``knobbed``: the archival weights, with compact (one architecture and config, one
    lineage: archival was fine-tuned from it) as the partner strength 0 gives."""
    card = replace(model_cards()["archival"], name="knobbed", strength_from="compact")
    register_card(card)
    yield card.name
    unregister_card(card.name)


def tensors(model):
    return model.module.state_dict()


def test_strength_0_is_the_partner_1_the_model_and_between_blends_every_tensor(knobbed):
    own, partner = load_model("archival", scale=2), load_model("compact", scale=2)
    at = {s: load_model(knobbed, scale=2, strength=s) for s in (0.0, 0.5, 1.0)}
    for key, value in tensors(partner).items():
        assert torch.equal(tensors(at[0.0])[key], value)
        assert torch.equal(tensors(at[1.0])[key], tensors(own)[key])
        assert torch.allclose(tensors(at[0.5])[key], (value + tensors(own)[key]) / 2,
                              atol=1e-7)
    assert [at[s].name for s in (0.0, 0.5, 1.0)] == ["knobbed@0", "knobbed@0.5", "knobbed"]
    # A blend is not the card's own weights: the card's measured precision costs are not its.
    assert at[1.0].card_weights and not at[0.5].card_weights


def test_the_blends_picture_lies_between_its_ends(knobbed):
    image = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(3))
    out = {s: load_model(knobbed, scale=2, strength=s).module(image) for s in (0.0, 0.5, 1.0)}

    def distance(a, b):
        return (out[a] - out[b]).abs().mean().item()

    assert distance(0.5, 0.0) < distance(1.0, 0.0)
    assert distance(0.5, 1.0) < distance(0.0, 1.0)
    assert distance(0.5, 0.0) > 0.2 * distance(1.0, 0.0)


def test_name_at_strength_is_the_same_blend_and_must_agree_with_the_option(knobbed):
    named = load_model(f"{knobbed}@0.25", scale=2)
    given = load_model(knobbed, scale=2, strength=0.25)
    assert named.name == given.name == "knobbed@0.25"
    for key, value in tensors(given).items():
        assert torch.equal(tensors(named)[key], value)
    with pytest.raises(OptionsError, match="names strength 0.25 but --strength is 0.5"):
        load_model(f"{knobbed}@0.25", scale=2, strength=0.5)
    with pytest.raises(OptionsError, match=r"model 'knobbed@2': expected a number from 0 to 1"):
        load_model(f"{knobbed}@2", scale=2)


def test_a_model_without_the_knob_or_a_strength_out_of_range_is_refused(knobbed):
    with pytest.raises(ModelChoiceError, match=r"model 'compact' has no --strength \(it is for"
                                               r" .*knobbed"):
        load_model("compact", scale=2, strength=0.5)
    with pytest.raises(ModelChoiceError, match="model 'compact' has no --strength"):
        load_model("compact", scale=2, strength=1.0)
    with pytest.raises(OptionsError, match="--strength must be from 0 to 1, got 1.5"):
        load_model(knobbed, scale=2, strength=1.5)
    with pytest.raises(OptionsError, match="expected a number from 0 to 1, got '-0.1'"):
        SHARED_OPTIONS["strength"].value_of("-0.1")


def test_presets_and_manifest_rows_give_the_strength_to_the_run():
    values = with_overrides(defaults(), {"model": "crisp", "strength": "0.3"})
    arguments = upscale_arguments(values)
    assert arguments["model"] == "crisp" and arguments["strength"] == 0.3
    assert upscale_arguments(defaults())["strength"] is None


def test_the_transcoder_and_vsvidsr_run_the_blend(knobbed, tmp_path):
    """`vidsr --strength 0` makes the partner's frames; vsvidsr's ``strength=`` the same."""
    from clipgen import decoded_frames, shot_frames, write_ffv1

    from vidsr.io.encode_options import EncodeOptions
    from vidsr.plan.run_plan import EngineOptions
    from vidsr.run.transcode import upscale_video

    clip = write_ffv1(tmp_path / "in.mkv", shot_frames("square", 2, 32, 24))
    engine = EngineOptions(device="cpu", precision="fp32")
    lossless = EncodeOptions(codec="ffv1")
    outputs = {}
    for name, model, strength in (("partner", "compact", None), ("zero", knobbed, 0.0),
                                  ("half", knobbed, 0.5)):
        upscale_video(clip, tmp_path / f"{name}.mkv", model=model, scale=2, strength=strength,
                      engine=engine, encode=lossless)
        outputs[name] = decoded_frames(tmp_path / f"{name}.mkv")
    for got, want in zip(outputs["zero"], outputs["partner"], strict=True):
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
    assert not np.array_equal(outputs["half"][0][0], outputs["partner"][0][0])
    vs = pytest.importorskip("vapoursynth", reason="needs VapourSynth for vsvidsr")
    vsvidsr = pytest.importorskip("vsvidsr", reason="vsvidsr is installed by pip install -e .")
    source = vs.core.std.BlankClip(width=16, height=12, format=vs.RGBS, length=1,
                                   color=[0.2, 0.5, 0.7])
    frames = {}
    for name, model, strength in (("partner", "compact", None), ("zero", knobbed, 0.0)):
        up = vsvidsr.upscale(source, model=model, scale=2, strength=strength, device="cpu",
                             precision="fp32")
        frames[name] = np.stack([np.asarray(p) for p in up.get_frame(0)])
    assert np.array_equal(frames["zero"], frames["partner"])


@pytest.mark.parametrize("scale", [2, 4])
def test_crisp_at_strength_0_is_archival_at_1_itself_and_between_in_between(scale):
    """The bundled pair: ``--model crisp --strength S`` from `archival`'s frames to its own."""
    crisp, archival = load_model("crisp", scale=scale), load_model("archival", scale=scale)
    assert crisp.card is not None and crisp.card.strength_from == "archival"
    image = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(scale))
    out = {s: load_model("crisp", scale=scale, strength=s).module(image)
           for s in (0.0, 0.5, 1.0)}
    assert torch.equal(out[0.0], archival.module(image))
    assert torch.equal(out[1.0], crisp.module(image))
    gap = (out[1.0] - out[0.0]).abs().mean()
    assert gap > 1e-3  # the two models differ
    assert (out[0.5] - out[0.0]).abs().mean() < gap
    assert (out[0.5] - out[1.0]).abs().mean() < gap


def test_a_model_grown_wider_than_its_partner_blends_with_the_partner_widened(tmp_path):
    """A crisp model trained from its partner widened (``compact``'s grow) blends with the
    partner widened the same way: strength 0 is the partner's picture, and each tensor
    is the blend of the two networks' weights."""
    from vidsr.archs.compact import widened
    from vidsr.models.weights_file import save_state_dict

    archival = load_model("archival", scale=2)
    start = widened(archival.module, num_feat=40, num_conv=12)
    torch.manual_seed(1)
    trained = {k: v + 0.01 * torch.randn_like(v) for k, v in start.state_dict().items()}
    weights = tmp_path / "wide.safetensors"
    save_state_dict(weights, trained)
    card = replace(model_cards()["archival"], name="wideknob", strength_from="archival",
                   config={"num_feat": 40, "num_conv": 12})
    register_card(card)
    try:
        at = {s: load_model("wideknob", scale=2, weights=weights, strength=s)
              for s in (0.0, 0.5)}
    finally:
        unregister_card(card.name)
    for key, value in start.state_dict().items():
        assert torch.equal(tensors(at[0.0])[key], value)
        assert torch.allclose(tensors(at[0.5])[key], (value + trained[key]) / 2, atol=1e-7)
    image = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.allclose(at[0.0].module(image), archival.module(image), atol=1e-6)
