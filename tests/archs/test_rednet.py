"""RED-Net: symmetric conv/deconv with skips every two layers, residual on the upscaled input."""

from __future__ import annotations

import pytest
import torch

from vidsr.archs.rednet import REDNet
from vidsr.errors import ModelError


def test_red30_by_default() -> None:
    model = REDNet()
    assert len(model.convs) == 15 and len(model.deconvs) == 15
    spec = model.spec
    assert (spec.input_space, spec.pre_upsampled, spec.scales) == ("y", True, (2, 3, 4))
    assert REDNet(channels=3, depth=10).spec.input_space == "rgb"


def test_output_is_input_plus_residual() -> None:
    model = REDNet(num_feat=8, depth=6).eval()
    with torch.no_grad():
        model.deconvs[-1].weight.zero_()
        model.deconvs[-1].bias.zero_()
        x = torch.rand(1, 1, 12, 12)
        assert torch.equal(model(x), x)


def test_skips_join_every_second_conv_to_its_mirror() -> None:
    # depth 8: convs 1..4, deconvs 1..4. Conv 2's output joins deconv 2's output
    # (4 - 2 = 2); conv 4 is the bottleneck and has no skip.
    torch.manual_seed(0)
    model = REDNet(num_feat=4, depth=8).eval()
    seen: dict[str, torch.Tensor] = {}
    model.convs[1].register_forward_hook(lambda m, i, o: seen.__setitem__("conv2", o.clamp(min=0)))
    model.deconvs[2].register_forward_hook(lambda m, i, o: seen.__setitem__("deconv3_in", i[0]))
    model.deconvs[1].register_forward_hook(lambda m, i, o: seen.__setitem__("deconv2_out", o))
    with torch.no_grad():
        model(torch.rand(1, 1, 8, 8))
    expected = (seen["deconv2_out"] + seen["conv2"]).clamp(min=0)
    assert torch.allclose(seen["deconv3_in"], expected)


@pytest.mark.parametrize("depth", [3, 5, 2])
def test_depth_must_be_even_and_at_least_4(depth: int) -> None:
    with pytest.raises(ModelError, match="even"):
        REDNet(depth=depth)


def test_a_fresh_network_starts_at_its_input_with_live_hidden_layers() -> None:
    # He init keeps a deep plain net's signal alive (torch's default left the shipped
    # preset at bicubic for thousands of steps); the zero last layer starts at the input.
    torch.manual_seed(0)
    model = REDNet(num_feat=32, depth=20)
    x = torch.rand(2, 1, 24, 24)
    assert torch.equal(model(x), x)
    hidden = x
    for conv in model.convs:
        hidden = torch.relu(conv(hidden))
    assert hidden.std() > 0.1
    loss = (model(x) - x.flip(-1)).abs().mean()
    loss.backward()
    assert model.deconvs[-1].weight.grad.abs().mean() > 1e-3
