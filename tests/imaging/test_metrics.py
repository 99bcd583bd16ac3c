import math

import numpy as np
import pytest
import torch

from vidsr.imaging.metrics import gaussian_window, psnr, rgb_to_y_bt601, ssim


def test_psnr_of_identical_images_is_infinite():
    image = torch.arange(16.0).reshape(4, 4)
    assert psnr(image, image.clone()) == math.inf


def test_psnr_by_hand():
    # One pixel of four off by 2: MSE = 4 / 4 = 1, so PSNR = 20 log10(255).
    a = torch.zeros(2, 2)
    b = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    assert psnr(a, b) == pytest.approx(20 * math.log10(255), abs=1e-12)
    assert psnr(a, b, max_value=1.0) == pytest.approx(0.0, abs=1e-12)


def test_psnr_border_drops_the_outer_ring():
    a = torch.zeros(5, 5)
    b = torch.zeros(5, 5)
    b[0, :] = 100.0  # only in the border
    b[2, 2] = 3.0  # MSE over the 3x3 centre = 9 / 9 = 1
    assert psnr(a, b, border=1) == pytest.approx(20 * math.log10(255), abs=1e-12)


def test_psnr_takes_numpy_and_rejects_mismatched_shapes():
    a = np.zeros((3, 3), dtype=np.uint8)
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(np.zeros((3, 3)), np.zeros((3, 4)))


def test_rgb_to_y_bt601_maps_black_and_white_to_studio_swing():
    rgb = torch.tensor([[[0.0, 1.0]], [[0.0, 1.0]], [[0.0, 1.0]]])  # (3, 1, 2)
    y = rgb_to_y_bt601(rgb)
    assert y.dtype == torch.float64
    assert y[0].tolist() == pytest.approx([16.0, 235.0], abs=1e-9)
    pure_red = torch.tensor([1.0, 0.0, 0.0]).reshape(3, 1, 1)
    assert rgb_to_y_bt601(pure_red).item() == pytest.approx(16 + 65.481)


def test_gaussian_window_matches_fspecial():
    window = gaussian_window()
    assert window.shape == (11, 11)
    assert window.sum().item() == pytest.approx(1.0, abs=1e-15)
    # fspecial('gaussian', 11, 1.5): centre 0.070762, corner 1.0576e-06.
    assert window[5, 5].item() == pytest.approx(0.0707622, rel=1e-5)
    assert window[0, 0].item() == pytest.approx(1.0576e-06, rel=1e-3)


def test_ssim_of_identical_images_is_one():
    image = torch.rand(20, 24, generator=torch.Generator().manual_seed(0)) * 255
    assert ssim(image, image.clone()) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_two_flat_images_by_hand():
    # No variance: SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1), C1 = (0.01 * 255)^2.
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)
    assert ssim(torch.full((16, 16), 100.0), torch.full((16, 16), 110.0)) == pytest.approx(
        expected, abs=1e-12
    )


def _ssim_by_loops(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al.'s formula written out window by window, independently of conv2d."""
    window = gaussian_window().numpy()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for top in range(a.shape[0] - 10):
        for left in range(a.shape[1] - 10):
            pa = a[top : top + 11, left : left + 11]
            pb = b[top : top + 11, left : left + 11]
            mu_a, mu_b = (window * pa).sum(), (window * pb).sum()
            var_a = (window * (pa - mu_a) ** 2).sum()
            var_b = (window * (pb - mu_b) ** 2).sum()
            cov = (window * (pa - mu_a) * (pb - mu_b)).sum()
            values.append(
                (2 * mu_a * mu_b + c1) * (2 * cov + c2)
                / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
            )
    return float(np.mean(values))


def test_ssim_matches_the_formula_window_by_window():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(14, 15)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 20, size=a.shape), 0, 255)
    value = ssim(a, b)
    assert 0.0 < value < 1.0
    assert value == pytest.approx(_ssim_by_loops(a, b), abs=1e-12)
    assert ssim(b, a) == pytest.approx(value, abs=1e-15)


def test_ssim_border_and_size_errors():
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.zeros(12, 12), torch.zeros(12, 12), border=1)
    with pytest.raises(ValueError, match="leaves nothing"):
        ssim(torch.zeros(4, 4), torch.zeros(4, 4), border=2)
