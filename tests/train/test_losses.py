from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

from vidsr.errors import WeightsError
from vidsr.train.losses import (
    VGG19Features,
    charbonnier_loss,
    l1_loss,
    load_vgg19_features,
    mse_loss,
    perceptual_loss,
    pixel_loss,
    ragan_discriminator_loss,
    ragan_generator_loss,
    vgg19_layer_names,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_ragan_discriminator_loss_by_hand():
    real, fake = torch.tensor([[1.0], [2.0]]), torch.tensor([[0.0], [-1.0]])
    # D_Ra(x_r, x_f) = sigmoid(C(x_r) - E[C(x_f)]) with E[C(x_f)] = -0.5, E[C(x_r)] = 1.5.
    real_rel, fake_rel = [1.5, 2.5], [-1.5, -2.5]
    # -log(sigmoid(z)) = softplus(-z); -log(1 - sigmoid(z)) = softplus(z).
    expected = (sum(softplus(-z) for z in real_rel) / 2
                + sum(softplus(z) for z in fake_rel) / 2) / 2
    assert ragan_discriminator_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)


def test_ragan_generator_loss_by_hand():
    real, fake = torch.tensor([0.5, -0.5, 1.0]), torch.tensor([2.0, 0.0, 1.0])
    mean_real, mean_fake = 1 / 3, 1.0
    real_rel = [r - mean_fake for r in (0.5, -0.5, 1.0)]
    fake_rel = [f - mean_real for f in (2.0, 0.0, 1.0)]
    expected = (sum(softplus(z) for z in real_rel) / 3
                + sum(softplus(-z) for z in fake_rel) / 3) / 2
    assert ragan_generator_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)


def test_ragan_losses_are_symmetric_opposites():
    real, fake = torch.randn(5, 1), torch.randn(5, 1)
    # The generator's loss is the discriminator's with the roles of real and fake swapped.
    assert torch.allclose(ragan_generator_loss(real, fake), ragan_discriminator_loss(fake, real))


def test_pixel_losses_by_hand():
    pred, target = torch.tensor([0.0, 0.0]), torch.tensor([3.0, -4.0])
    assert l1_loss(pred, target).item() == 3.5
    assert mse_loss(pred, target).item() == 12.5
    eps = 0.5
    expected = (math.sqrt(9 + eps**2) + math.sqrt(16 + eps**2)) / 2
    assert charbonnier_loss(pred, target, eps).item() == pytest.approx(expected)
    assert pixel_loss("charbonnier", eps)(pred, target).item() == pytest.approx(expected)
    assert pixel_loss("l1") is l1_loss and pixel_loss("mse") is mse_loss


def test_vgg19_layer_names_match_torchvision_indices():
    names = vgg19_layer_names()
    assert names["conv1_1"] == 0 and names["relu1_1"] == 1 and names["pool1"] == 4
    assert names["conv5_4"] == 34 and names["relu5_4"] == 35 and names["pool5"] == 36
    assert sum(n.startswith("conv") for n in names) == 16


def test_vgg19_keys_are_torchvision_keys():
    model = VGG19Features(layers=("conv5_4",))
    convs = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    expected = {f"features.{i}.{p}" for i in convs for p in ("weight", "bias")}
    assert set(model.state_dict()) == expected
    assert not any(p.requires_grad for p in model.parameters())


def test_features_are_taken_before_activation():
    torch.manual_seed(0)
    model = VGG19Features(layers=("conv2_2", "relu2_2"))
    out = model(torch.rand(1, 3, 16, 16))
    assert out["conv2_2"].shape == (1, 128, 8, 8)
    assert float(out["conv2_2"].min()) < 0  # pre-activation features keep negatives
    assert torch.equal(out["relu2_2"], out["conv2_2"].clamp(min=0))
    assert len(model.features) == 9  # nothing past the deepest layer is built


def test_vgg19_weights_load_from_a_local_file(tmp_path):
    torch.manual_seed(1)
    source = VGG19Features(layers=("conv5_4",))
    sd = dict(source.state_dict())
    sd["classifier.0.weight"] = torch.zeros(2, 2)  # ignored
    save_file(sd, str(tmp_path / "vgg19.safetensors"))
    torch.save(sd, tmp_path / "vgg19.pth")
    for name in ("vgg19.safetensors", "vgg19.pth"):
        loaded = load_vgg19_features(tmp_path / name, ("conv3_1",))
        assert torch.equal(loaded.features[10].weight, source.features[10].weight)
    with pytest.raises(WeightsError, match="does not download"):
        load_vgg19_features(tmp_path / "missing.pth", ("conv5_4",))
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsError, match="not a torchvision-layout VGG19"):
        load_vgg19_features(tmp_path / "other.safetensors", ("conv5_4",))


def test_perceptual_loss_is_zero_for_equal_images_and_has_gradients():
    torch.manual_seed(2)
    vgg = VGG19Features(layers=("conv3_4", "conv5_4"))
    target = torch.rand(2, 3, 32, 32)
    weights = {"conv3_4": 0.5, "conv5_4": 1.0}
    assert perceptual_loss(vgg, target, target, weights).item() == 0.0
    pred = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)
    loss = perceptual_loss(vgg, pred, target, weights)
    loss.backward()
    assert loss.item() > 0 and pred.grad is not None and float(pred.grad.abs().sum()) > 0


def test_teacher_features_are_the_rrdb_networks_own_intermediate_outputs(tmp_path):
    from vidsr.archs import create_arch
    from vidsr.models.weights_file import save_state_dict
    from vidsr.train.losses import TeacherFeatures, load_teacher_features

    torch.manual_seed(0)
    net = create_arch("rrdb", num_feat=8, num_block=2, num_grow_ch=4, scale=4).eval()
    x = torch.rand(2, 3, 16, 16)
    features = TeacherFeatures(net, ("conv_first", "body.0.rdb2", "body.1"))
    assert len(features.body) == 2  # nothing past the deepest layer asked for runs
    got = features(x)
    first = net.conv_first(x)
    assert torch.equal(got["conv_first"], first)
    assert torch.allclose(got["body.0.rdb2"], net.body[0].rdb2(net.body[0].rdb1(first)))
    assert torch.allclose(got["body.1"], net.body[1](net.body[0](first)))
    assert len(TeacherFeatures(net, ("body.0.rdb1",)).body) == 1
    assert not any(p.requires_grad for p in features.parameters())
    # Gradients reach the picture through the frozen layers.
    pred = x.clone().requires_grad_(True)
    perceptual_loss(features, pred, torch.rand_like(x), {"body.0.rdb2": 1.0}).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown teacher layer"):
        TeacherFeatures(net, ("body.2",))
    save_state_dict(tmp_path / "teacher.safetensors", net.state_dict(), {"arch": "rrdb"})
    loaded = load_teacher_features(str(tmp_path / "teacher.safetensors"), ("conv_first",))
    assert torch.equal(loaded(x)["conv_first"], first)
    save_state_dict(tmp_path / "small.safetensors",
                    create_arch("compact", num_feat=4, num_conv=1, scale=2).state_dict(),
                    {"arch": "compact"})
    with pytest.raises(WeightsError, match="need an RRDB network, this is compact"):
        load_teacher_features(str(tmp_path / "small.safetensors"), ("conv_first",))
