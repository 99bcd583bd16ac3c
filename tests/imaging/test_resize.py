import pytest
import torch

from vidsr.imaging.resize import imresize


def test_downscale_of_a_constant_is_the_constant():
    image = torch.full((2, 12, 9), 77.0, dtype=torch.float64)
    out = imresize(image, scale=1 / 3)
    assert out.shape == (2, 4, 3)
    assert torch.allclose(out, torch.full_like(out, 77.0), atol=1e-12)


def test_halving_a_ramp_samples_it_between_pixel_pairs():
    # Output pixel j (1-based) is centred on input position 2j - 0.5; a normalised
    # symmetric kernel reproduces a linear ramp exactly wherever its 8 taps
    # (antialiased width 4 / 0.5) stay inside: j = 3..6 of 8 for 16 pixels.
    ramp = torch.arange(1, 17, dtype=torch.float64)[None, :].repeat(3, 1)
    out = imresize(ramp, size=(3, 8))
    assert out[0, 2:6].tolist() == pytest.approx([5.5, 7.5, 9.5, 11.5], abs=1e-12)
    # At j = 1 (centre 1.5) the taps at 0, -1, -2 read the mirrored 1, 2, 3 instead
    # of the ramp's 0, -1, -2, with weights 0.5 k(0.75), 0.5 k(1.25), 0.5 k(1.75):
    # 0.5 * (1 * 0.2265625 + 3 * -0.0703125 + 5 * -0.0234375) = -0.05078125.
    assert out[0, 0].item() == pytest.approx(1.5 - 0.05078125, abs=1e-12)
    assert out[0, -1].item() == pytest.approx(15.5 + 0.05078125, abs=1e-12)


def test_doubling_two_pixels_matches_matlab():
    # imresize([0 1], [1 4]) in MATLAB: [-0.09375 0.203125 0.796875 1.09375];
    # by hand: Keys a = -0.5 at distances 0.25 / 0.75 / 1.25 / 1.75, symmetric padding.
    out = imresize(torch.tensor([[0.0, 1.0]], dtype=torch.float64), size=(1, 4))
    assert out[0].tolist() == pytest.approx([-0.09375, 0.203125, 0.796875, 1.09375], abs=1e-12)


def test_quantize_rounds_halves_up_like_matlab():
    # Same size: the kernel is the identity, so only the rounding shows.
    values = torch.tensor([[0.5, 1.5, 2.5, 254.7, 300.0]], dtype=torch.float64)
    out = imresize(values, size=(1, 5), quantize=255)
    assert out[0].tolist() == [1.0, 2.0, 3.0, 255.0, 255.0]


def test_uint8_input_is_computed_in_double_and_returned_as_float32():
    image = torch.tensor([[[10, 20], [30, 40]]], dtype=torch.uint8)
    out = imresize(image, scale=2.0, quantize=255)
    assert out.dtype == torch.float32
    assert out.shape == (1, 4, 4)
    assert out.min().item() >= 0 and out.max().item() <= 255


@pytest.mark.gpu
def test_resizing_on_cuda_matches_the_cpu():
    image = torch.rand(2, 3, 37, 53, dtype=torch.float64)
    for kwargs in ({"scale": 4}, {"scale": 0.25}, {"size": (20, 90)}):
        on_cpu = imresize(image, **kwargs)
        on_cuda = imresize(image.cuda(), **kwargs)
        assert on_cuda.device.type == "cuda"
        assert torch.allclose(on_cuda.cpu(), on_cpu, atol=1e-12)
