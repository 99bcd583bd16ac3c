from __future__ import annotations

import pytest
import torch

from vidsr.train.discriminator import VGGStyleDiscriminator


def test_one_logit_per_patch():
    torch.manual_seed(0)
    disc = VGGStyleDiscriminator(num_feat=8, input_size=128)
    out = disc(torch.rand(3, 3, 128, 128))
    assert out.shape == (3, 1)
    assert disc.linear1.in_features == 64 * 4 * 4


def test_basicsr_parameter_names():
    keys = set(VGGStyleDiscriminator(num_feat=4, input_size=32).state_dict())
    for key in ("conv0_0.weight", "conv0_0.bias", "conv0_1.weight", "bn0_1.running_mean",
                "conv4_1.weight", "bn4_1.weight", "linear1.weight", "linear2.bias"):
        assert key in keys
    assert "conv0_1.bias" not in keys  # followed by batch norm


def test_other_sizes_are_refused():
    disc = VGGStyleDiscriminator(num_feat=4, input_size=32)
    with pytest.raises(ValueError, match="32x32 patches"):
        disc(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="divisible by 32"):
        VGGStyleDiscriminator(input_size=100)
