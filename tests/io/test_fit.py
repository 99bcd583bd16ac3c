"""Fitting the upscaled picture to a height and to square pixels: the sizes, and a run."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from vidsr.__main__ import main
from vidsr.errors import OptionsError
from vidsr.io.encode_options import EncodeOptions
from vidsr.io.fit import plan_fit
from vidsr.io.probe import probe
from vidsr.run.transcode import RunControl, TranscodeOptions, upscale_video


@pytest.mark.parametrize(("source", "sar", "scale", "height", "square", "expected"), [
    ((720, 576), Fraction(16, 15), 2, None, True, (1536, 1152, Fraction(1))),  # PAL 4:3
    ((720, 576), Fraction(64, 45), 2, 1080, True, (1920, 1080, Fraction(1))),  # PAL 16:9
    ((352, 240), Fraction(10, 11), 4, 1080, True, (1440, 1080, Fraction(1))),  # NTSC SIF 4:3
    ((720, 576), Fraction(16, 15), 2, 1080, False, (1350, 1080, Fraction(16, 15))),
])
def test_sizes_keep_the_display_aspect(source, sar, scale, height, square, expected):
    fit = plan_fit(*source, sar, scale, target_height=height, square=square)
    assert (fit.width, fit.height, fit.sar) == expected
    shown = Fraction(fit.width, fit.height) * fit.sar
    assert abs(shown / (Fraction(*source) * sar) - 1) < 0.005


def test_nothing_to_fit_is_none():
    assert plan_fit(720, 576, Fraction(1), 2, square=True) is None
    assert plan_fit(720, 576, Fraction(16, 15), 2, target_height=1152) is None
    with pytest.raises(OptionsError, match="--height must be at least 2"):
        plan_fit(720, 576, Fraction(1), 2, target_height=1)


def test_an_anamorphic_clip_comes_out_square_at_the_height_asked(clip, tmp_path, capsys):
    # 32x24 at SAR 16:11 shows at 1.939:1; x2 then 36 lines: 70x36 square pixels.
    src = clip("ana.mkv", width=32, height=24, frames=3, sar=Fraction(16, 11),
               content="gradient", lossless=True)
    dst = tmp_path / "out.mkv"
    upscale_video(src, dst, model="nearest", scale=2, encode=EncodeOptions(codec="ffv1"),
                  options=TranscodeOptions(height=36, square_pixels=True),
                  control=RunControl(progress=False))
    out = probe(dst)
    assert (out.width, out.height, out.sar) == (70, 36, 1)
    with av.open(str(dst)) as b:
        frames = [f.to_ndarray(format="gray").astype(int) for f in b.decode(video=0)]
    assert len(frames) == 3
    luma = frames[0]
    # The horizontal ramp is resized, not cropped or squeezed: every row is the same ramp,
    # rising from end to end.
    assert np.abs(luma - luma[0]).max() <= 1
    assert np.all(np.diff(luma[0]) >= -1) and luma[0, -1] - luma[0, 0] > 150
    assert main([str(src), str(tmp_path / "plan.mkv"), "--model", "nearest", "--scale", "2",
                 "--square-pixels", "--dry-run"]) == 0
    assert "94x48, SAR 1:1 (square pixels)" in capsys.readouterr().out
