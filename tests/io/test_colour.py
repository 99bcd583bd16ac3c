import numpy as np
import pytest
import torch
from clipgen import BAR_RGB, bar_values

from vidsr.io.colour import (
    MATRIX_COEFFS,
    ColourSpec,
    luma_to_model,
    model_to_luma,
    planes_to_rgb,
    rgb_to_planes,
)
from vidsr.io.frames import PlaneLayout

YUV444 = PlaneLayout("yuv", 8, 0, 0, "yuv444p")
YUV420_10 = PlaneLayout("yuv", 10, 1, 1, "yuv420p10le")


def _spec(matrix, full):
    return ColourSpec(matrix, full, "bt709", "bt709")


@pytest.mark.parametrize(("matrix", "table"), [("bt709", "bt709"), ("bt470bg", "bt601"),
                                               ("smpte170m", "bt601")])
def test_published_bars_convert_to_exact_rgb(matrix, table):
    yuv = torch.tensor(bar_values("bt709" if table == "bt709" else "bt601", 8),
                       dtype=torch.float32)
    planes = [yuv[:, i].reshape(1, 1, 8) for i in range(3)]
    rgb = planes_to_rgb(*planes, _spec(matrix, False), YUV444)
    # Published tables are rounded to whole codes: within 1.5/255 of the ideal bars.
    np.testing.assert_allclose(rgb[0, :, 0].T.numpy(), BAR_RGB, atol=1.5 / 255)


@pytest.mark.parametrize("matrix", sorted(MATRIX_COEFFS))
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("depth", [8, 10])
def test_round_trip_444_within_half_code(matrix, full, depth):
    layout = PlaneLayout("yuv", depth, 0, 0, "yuv444p" if depth == 8 else "yuv444p10le")
    spec = _spec(matrix, full)
    gen = torch.Generator().manual_seed(0)
    lo, hi = (0, layout.max_code) if full else (16 << (depth - 8), 235 << (depth - 8))
    y = torch.randint(lo, hi + 1, (2, 6, 5), generator=gen).float()
    c_hi = layout.max_code if full else 240 << (depth - 8)
    u, v = (torch.randint(lo, c_hi + 1, (2, 6, 5), generator=gen).float() for _ in range(2))
    back = rgb_to_planes(planes_to_rgb(y, u, v, spec, layout), spec, layout)
    for got, want in zip(back, (y, u, v), strict=True):
        assert (got - want).abs().max().item() < 0.5


def test_round_trip_420_flat_areas_exact_odd_size():
    spec = _spec("bt709", False)
    y = torch.full((1, 7, 9), 300.0)
    u = torch.full((1, 4, 5), 700.0)
    v = torch.full((1, 4, 5), 200.0)
    rgb = planes_to_rgb(y, u, v, spec, YUV420_10)
    assert rgb.shape == (1, 3, 7, 9)
    back = rgb_to_planes(rgb, spec, YUV420_10)
    assert [tuple(p.shape) for p in back] == [(1, 7, 9), (1, 4, 5), (1, 4, 5)]
    for got, want in zip(back, (y, u, v), strict=True):
        assert (got - want).abs().max().item() < 1e-3


def test_gray_and_rgb_layouts():
    gray = PlaneLayout("gray", 8, pix_fmt="gray")
    y = torch.tensor([[[16.0, 235.0]]])
    rgb = planes_to_rgb(y, None, None, _spec("bt709", False), gray)
    assert rgb.shape == (1, 3, 1, 2) and torch.allclose(rgb[0, :, 0, 1], torch.ones(3))
    (back,) = rgb_to_planes(rgb, _spec("bt709", False), gray)
    assert torch.allclose(back, y, atol=1e-4)
    gbrp = PlaneLayout("rgb", 8, pix_fmt="gbrp")
    g, b, r = (torch.tensor([[[v]]]) for v in (255.0, 0.0, 51.0))
    rgb = planes_to_rgb(g, b, r, _spec("gbr", True), gbrp)
    assert rgb[0, :, 0, 0].tolist() == pytest.approx([0.2, 1.0, 0.0])
    assert [p.item() for p in rgb_to_planes(rgb, _spec("gbr", True), gbrp)] == pytest.approx(
        [255.0, 0.0, 51.0])


def test_luma_for_models():
    limited10 = PlaneLayout("yuv", 10, 1, 1, "yuv420p10le")
    y = torch.tensor([64.0, 940.0])
    assert luma_to_model(y, _spec("bt709", False), limited10).tolist() == pytest.approx(
        [16 / 255, 235 / 255])
    full8 = PlaneLayout("yuv", 8, 1, 1, "yuv420p")
    yf = torch.tensor([0.0, 255.0])
    model = luma_to_model(yf, _spec("bt709", True), full8)
    assert model.tolist() == pytest.approx([16 / 255, 235 / 255])
    assert model_to_luma(model, _spec("bt709", True), full8).tolist() == pytest.approx([0, 255])
