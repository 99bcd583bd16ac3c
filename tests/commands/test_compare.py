"""vidsr compare: the grid's size, panels, labels and crops, scores, deinterlacing, and bad
input."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from clipgen import make_interlaced
from PIL import Image

from vidsr.__main__ import main
from vidsr.commands.compare import (
    CAPTION_HEIGHT,
    GAP,
    CompareOptions,
    caption_strip,
    grid_shape,
    grid_size,
    model_frames,
    panel_captions,
    read_still,
    run_compare,
    upscale_still,
)
from vidsr.errors import InputError
from vidsr.imaging.scoring import evaluate_folder
from vidsr.io.colour import batch_rgb
from vidsr.io.decode import Decoder
from vidsr.io.deinterlace import DeinterlacePlan, qtgmc_missing
from vidsr.io.qtgmc import QtgmcSource
from vidsr.models.zoo import load_model
from vidsr.plan.run_plan import EngineOptions, resolve_plan


def _sheet(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _panel(sheet, k, width, height, columns):
    left = GAP + (k % columns) * (width + GAP)
    top = GAP + (k // columns) * (height + CAPTION_HEIGHT + GAP)
    return sheet[top: top + height, left: left + width], sheet[
        top + height: top + height + CAPTION_HEIGHT, left: left + width]


@pytest.fixture
def video(clip):
    return clip("in.mkv", width=32, height=24, frames=6, content="noise", lossless=True)


@pytest.fixture
def image(tmp_path):
    rng = np.random.default_rng(7)
    (tmp_path / "src").mkdir()
    path = tmp_path / "src" / "in.png"
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
    return path


def test_grid_has_one_labelled_panel_per_model(video, tmp_path, capsys):
    out = tmp_path / "compare.png"
    assert main(["compare", str(video), "--models", "nearest,bicubic", "--scale", "2",
                 "--frame", "3", "--device", "cpu", "-o", str(out)]) == 0
    assert capsys.readouterr().err.splitlines()[-1] == f"vidsr: wrote {out}"
    sheet = _sheet(out)
    assert grid_shape(2) == (2, 1)
    assert sheet.shape[:2][::-1] == grid_size(2, 64, 48) == (2 * 64 + 3 * GAP,
                                                           48 + CAPTION_HEIGHT + 2 * GAP)
    captions = panel_captions(out)
    assert [c[0] for c in captions] == ["nearest x2", "bicubic x2"]
    for caption in captions:
        assert len(caption) == 2 and re.fullmatch(r"\d+ ms/frame \(fp32\)", caption[1])
    # The nearest panel is the decoded frame 3 with every plane's pixels doubled, and the
    # caption strip is exactly the caption drawn with the built-in font.
    with Decoder(video, batch_size=1) as decoder:
        batch = list(decoder)[3]
        colour = decoder.info.colour
    batch.planes = [p.repeat(2, axis=1).repeat(2, axis=2) for p in batch.planes]
    expected = batch_rgb(batch, colour)[0].permute(1, 2, 0).numpy()
    picture, strip = _panel(sheet, 0, 64, 48, 2)
    np.testing.assert_array_equal(picture, expected)
    np.testing.assert_array_equal(strip, np.asarray(caption_strip(captions[0], 64)))
    assert not np.array_equal(_panel(sheet, 1, 64, 48, 2)[0], expected)


@pytest.mark.skipif(qtgmc_missing() is not None,
                    reason="the qtgmc extra is not installed: pip install 'vidsr[qtgmc]'")
def test_an_interlaced_frame_deinterlaced_by_qtgmc_is_the_whole_runs_frame(tmp_path, capsys):
    src = make_interlaced(tmp_path / "in.mkv", "tff", "tt")
    out = tmp_path / "qtgmc.png"
    assert main(["compare", str(src), "--models", "nearest", "--scale", "2", "--frame", "4",
                 "--deinterlace", "auto", "--deinterlacer", "qtgmc", "--device", "cpu",
                 "-o", str(out)]) == 0, capsys.readouterr().err
    # The panel is frame 4 of QTGMC's run through the whole file, its pixels doubled.
    with QtgmcSource(src, DeinterlacePlan("tff", "frame", "flag", deinterlacer="qtgmc"),
                     batch_size=1) as whole:
        batch = list(whole)[4]
        colour = whole.info.colour
    batch.planes = [p.repeat(2, axis=1).repeat(2, axis=2) for p in batch.planes]
    expected = batch_rgb(batch, colour)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(_panel(_sheet(out), 0, 128, 96, 1)[0], expected)
    # Not the woven frame as stored (the default, --deinterlace off).
    stored = tmp_path / "stored.png"
    assert main(["compare", str(src), "--models", "nearest", "--scale", "2", "--frame", "4",
                 "--device", "cpu", "-o", str(stored)]) == 0
    assert not np.array_equal(_panel(_sheet(stored), 0, 128, 96, 1)[0], expected)


def test_same_model_twice_gives_identical_panels(video, tmp_path):
    out = tmp_path / "twice.png"
    run_compare(video, ["nearest", "nearest"], CompareOptions(scale=2, device="cpu"), out)
    sheet = _sheet(out)
    first, second = (_panel(sheet, k, 64, 48, 2)[0] for k in (0, 1))
    np.testing.assert_array_equal(first, second)
    assert first.std() > 10  # noise, not an empty panel


def test_crop_shows_that_region_enlarged(image, tmp_path):
    out = tmp_path / "crop.png"
    options = CompareOptions(scale=2, crop=(5, 7, 10, 6), zoom=3, device="cpu")
    run_compare(image, ["nearest"], options, out)
    sheet = _sheet(out)
    assert sheet.shape[:2][::-1] == grid_size(1, 60, 36)
    with Image.open(image) as source:
        region = np.asarray(source)[7:13, 5:15]
    np.testing.assert_array_equal(_panel(sheet, 0, 60, 36, 1)[0],
                                  region.repeat(6, axis=0).repeat(6, axis=1))


@pytest.mark.parametrize(("name", "tolerance"), [
    # An RGB model in fp32: the same LR, network and scoring as vidsr eval.
    ("compact", 1e-6),
    # vidsr eval keeps a luma model's output in float; a panel is an 8-bit picture.
    ("vdsr-small", 0.01),
    ("bicubic", 0.01),
])
def test_self_test_scores_as_vidsr_eval_does(image, tmp_path, name, tolerance):
    out = tmp_path / "self.png"
    panels = run_compare(image, [name], CompareOptions(
        scale=2, self_test=True, device="cpu", precision="fp32"), out)
    reference, panel = panels
    assert reference.title == "reference (input)" and reference.psnr is None
    (score,) = evaluate_folder(load_model(name, scale=2), image.parent, 2).images
    assert panel.psnr == pytest.approx(score.psnr, abs=tolerance)
    assert panel.ssim == pytest.approx(score.ssim, abs=tolerance / 10)
    captions = panel_captions(out)
    assert captions[1][2] == f"Y {panel.psnr:.2f} dB / SSIM {panel.ssim:.4f}"
    assert _sheet(out).shape[:2][::-1] == grid_size(2, 40, 30)


def test_reference_equal_to_the_output_is_flagged_identical(image, tmp_path):
    with Image.open(image) as source:
        hr = np.asarray(source).repeat(2, axis=0).repeat(2, axis=1)
    Image.fromarray(hr).save(tmp_path / "hr.png")
    out = tmp_path / "ref.png"
    panels = run_compare(image, ["nearest", "bicubic"], CompareOptions(
        scale=2, reference=tmp_path / "hr.png", device="cpu"), out)
    assert [p.title for p in panels] == ["reference", "nearest x2", "bicubic x2"]
    assert panels[1].psnr == float("inf") and panels[1].ssim == 1.0
    assert 10 < panels[2].psnr < 40
    assert panel_captions(out)[1][2] == "Y inf (identical) / SSIM 1.0000"
    assert torch.equal(panels[0].image, panels[1].image)


def test_time_picks_the_frame_shown_then(video):
    # 25 fps: frame 2 is shown from 0.08 s to 0.12 s.
    assert read_still(video, seconds=0.1).index == 2
    assert read_still(video, seconds=0.0).index == 0
    assert read_still(video, seconds=0.21).index == 5
    assert read_still(video, frame=4).index == 4


@pytest.mark.parametrize("index", [0, 4, 7, 11])
def test_the_models_decode_exactly_the_chosen_frame_from_its_span(clip, index):
    # B-frames and a keyframe every 5 frames: the span holds the frame and nothing else,
    # decoded as the plan says, equal to the frame read_still found.
    video = clip("gop.mp4", width=32, height=24, frames=12, content="noise", gop=5)
    still = read_still(video, frame=index)
    plan = resolve_plan(load_model("nearest", scale=2), EngineOptions(device="cpu"))
    frames = model_frames(plan, still)
    assert [len(batch) for batch in frames] == [1]
    assert frames[0].pts == still.batch.pts
    for got, expected in zip(frames[0].planes, still.batch.planes, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_the_last_frame_after_a_gap_is_shown_one_frame_long(clip):
    # Frames at 0, 40 and 10 000 ms: the last is shown for a frame of the stream's rate
    # (FFmpeg guesses 25/3 fps from so few), not for the average frame time (3.35 s).
    video = clip("gap.mp4", width=32, height=24, pts=[0, 40, 10_000])
    assert read_still(video, seconds=10.02).index == 2
    with pytest.raises(InputError, match=r"--time 10\.5 is past the end \(the last frame"
                                         r" starts at 10\.000 s\)"):
        read_still(video, seconds=10.5)


@pytest.mark.parametrize(("args", "message"), [
    (["missing.mkv", "--models", "nearest"], "missing.mkv: no such file"),
    (["{video}", "--models", "nearest", "--frame", "6"],
     "--frame 6 is past the end (6 frames, 0 to 5)"),
    (["{video}", "--models", "nearest", "--time", "0.3"], "--time 0.3 is past the end"),
    (["{video}", "--models", "nearest", "--crop", "20,10,16,8"],
     "--crop 20,10,16,8 is outside the 32x24 frame"),
    (["{video}", "--models", "nearest,nosuchmodel"], "unknown model 'nosuchmodel'"),
    (["{image}", "--models", "nearest", "--frame", "1"], "an image has one frame"),
    (["{video}", "--models", "nearest", "--self-test", "--deinterlace", "on"],
     "--self-test scores the frame as stored; drop --deinterlace"),
    (["{video}", "--models", "nearest", "--deinterlace", "ivtc"],
     "inverse telecine regroups the fields of several"),
])
def test_bad_input_is_one_line(video, image, tmp_path, capsys, args, message):
    out = tmp_path / "bad.png"
    argv = ["compare", *(a.format(video=video, image=image) for a in args), "--scale", "2",
            "--device", "cpu", "-o", str(out)]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vidsr: error: ")
    assert message in err
    assert not out.exists()


def test_reference_video_at_a_time(clip, tmp_path):
    # Colour bars at twice the size are exactly the nearest x2 of the small bars, plane by plane.
    small = clip("small.mkv", width=32, height=24, frames=4, lossless=True)
    large = clip("large.mkv", width=64, height=48, frames=4, lossless=True)
    panels = run_compare(small, ["nearest", "bicubic"], CompareOptions(
        scale=2, time=0.1, reference=large, device="cpu"), tmp_path / "bars.png")
    assert panels[0].note == "large.mkv, frame 2 (0.08 s)"
    assert panels[1].psnr == float("inf")
    assert math.isfinite(panels[2].psnr)


def test_an_existing_picture_is_replaced_only_with_overwrite(video, tmp_path, capsys):
    out = tmp_path / "compare.png"
    out.write_bytes(b"mine")
    argv = ["compare", str(video), "--models", "nearest", "--scale", "2", "--device", "cpu",
            "-o", str(out)]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert err == f"vidsr: error: {out}: already exists (use --overwrite to replace it)\n"
    assert out.read_bytes() == b"mine"
    assert main([*argv, "--overwrite"]) == 0
    assert panel_captions(out)[0][0] == "nearest x2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compare.png", "in.mkv"]


def test_compare_gives_a_window_model_the_frames_neighbours(clip, temporal):
    video = clip("moving.mkv", frames=6, content="moving", codec="ffv1")
    model = load_model(temporal)
    plan = resolve_plan(model, EngineOptions(device="cpu"))
    still = read_still(video, frame=3)
    (batch,) = model_frames(plan, still)
    assert batch.pts == [still.batch.pts[0]] and batch.windows is not None
    with Decoder(video, batch_size=1) as decoder:
        frames = [b.planes[0][0] for b in decoder]
    window = [batch.planes[0][i] for i in batch.windows.index[0]]
    for got, want in zip(window, frames[2:5], strict=True):
        np.testing.assert_array_equal(got, want)
    image, _, _ = upscale_still(model, still, CompareOptions(scale=2, device="cpu"))
    assert image.shape == (3, 96, 128)
