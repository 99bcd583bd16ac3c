from __future__ import annotations

import pytest
import torch

from vidsr.imaging.metrics import psnr
from vidsr.train.config import DegradeOptions
from vidsr.train.degrade import (
    add_gaussian_noise,
    bicubic_downscale,
    degrade_batch,
    downscale,
    gaussian_blur,
    gaussian_kernel,
    jpeg_compress,
    mpeg2_quantiser,
    quantize,
    video_reencode,
)


def smooth(n=2, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear",
                                           align_corners=False)


def test_gaussian_kernel_is_normalised_and_symmetric():
    k = gaussian_kernel(1.0)
    assert k.numel() == 7
    assert torch.isclose(k.sum(), torch.tensor(1.0))
    assert torch.equal(k, k.flip(0))


def test_blur_keeps_flat_images_and_smooths_noise():
    flat = torch.full((1, 3, 16, 16), 0.25)
    assert torch.allclose(gaussian_blur(flat, 1.5), flat, atol=1e-6)
    noise = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert gaussian_blur(noise, 1.5).std() < 0.5 * noise.std()


def test_noise_has_the_asked_sigma_in_code_values():
    x = torch.zeros(1, 3, 64, 64)
    y = add_gaussian_noise(x, 10.0, torch.Generator().manual_seed(0))
    assert abs(float(y.std()) * 255 - 10.0) < 0.5


@pytest.mark.parametrize("kernel", ["bicubic", "bilinear", "area", "nearest"])
def test_downscale_kernels(kernel):
    x = smooth()
    y = downscale(x, 4, kernel)
    assert y.shape == (2, 3, 8, 8)
    assert abs(float(y.mean() - x.mean())) < 0.02


def test_bicubic_downscale_is_quantized():
    lr = bicubic_downscale(smooth(), 2)
    assert lr.shape == (2, 3, 16, 16)
    assert torch.equal(lr, quantize(lr))


def test_jpeg_round_trip_is_lossy_but_close():
    x = quantize(smooth(1)[0])
    y = jpeg_compress(x, 30)
    assert y.shape == x.shape and not torch.equal(x, y)
    assert psnr(x * 255, y * 255) > 28
    assert psnr(x * 255, jpeg_compress(x, 95) * 255) > psnr(x * 255, y * 255)


@pytest.mark.parametrize("codec", ["h264", "mpeg2video"])
@pytest.mark.parametrize("size", [(16, 16), (15, 17)])
def test_video_reencode_keeps_shape_and_content(codec, size):
    x = quantize(smooth(3, *size))
    y = video_reencode(x, codec, 28)
    assert y.shape == x.shape
    assert 22 < psnr(x * 255, y * 255) < 60


@pytest.mark.parametrize("codec", ["h264", "mpeg2video"])
def test_video_quality_follows_crf(codec):
    x = quantize(smooth(3, 32, 32, seed=4) + 0.05 * torch.rand(3, 3, 32, 32))
    good = psnr(x * 255, video_reencode(x, codec, 12) * 255)
    bad = psnr(x * 255, video_reencode(x, codec, 34) * 255)
    assert good > bad + 3


def test_mpeg2_quantiser_grows_with_crf_within_its_range():
    steps = [mpeg2_quantiser(crf) for crf in range(0, 52)]
    assert steps == sorted(steps) and steps[0] >= 1 and steps[-1] == 31
    assert mpeg2_quantiser(26) in (7, 8)


def test_degrade_batch_is_deterministic_and_quantized():
    x = smooth(4, 32, 32)
    opts = DegradeOptions(enabled=True, blur_prob=1, noise_prob=1, jpeg_prob=1, video_prob=1)
    a = degrade_batch(x, 2, opts, torch.Generator().manual_seed(5))
    b = degrade_batch(x, 2, opts, torch.Generator().manual_seed(5))
    assert a.shape == (4, 3, 16, 16) and torch.equal(a, b)
    assert torch.equal(a, quantize(a))
    c = degrade_batch(x, 2, opts, torch.Generator().manual_seed(6))
    assert not torch.equal(a, c)


def test_degrade_batch_without_any_degradation_is_a_plain_downscale():
    x = smooth(2, 32, 32)
    opts = DegradeOptions(enabled=True, blur_prob=0, noise_prob=0, jpeg_prob=0, video_prob=0,
                          resize_kernels=("bicubic",))
    out = degrade_batch(x, 4, opts, torch.Generator().manual_seed(0))
    assert torch.allclose(out, quantize(downscale(x, 4, "bicubic")))
