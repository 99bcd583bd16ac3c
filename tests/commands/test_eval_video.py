"""vidsr eval-video: the clip protocol against vidsr eval, exact outputs, flicker, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from vidsr.__main__ import main
from vidsr.archs.spec import ArchSpec
from vidsr.commands.eval_video import (
    PLOT_HEIGHT,
    PLOT_WIDTH,
    EvalVideoOptions,
    evaluate_clip,
    frames_rgb,
    write_psnr_plot,
)
from vidsr.imaging.scoring import evaluate_folder, luma_of_uint8, make_lr, mod_crop, score_luma
from vidsr.models.zoo import SRModel, load_model
from vidsr.train.degrade_clip import ArchivalOptions, archival_lr, bicubic_lr


@pytest.fixture
def hr_clip(clip):
    # Lossless so the frames written as images are exactly the frames the clip decodes to;
    # 50x38: mod-cropped to 50x38 at x2, odd LR width (25).
    return clip("hr.mkv", width=50, height=38, frames=3, content="moving", lossless=True)


def _frames_as_images(path, folder):
    folder.mkdir()
    for k, frame in enumerate(frames_rgb(path)):
        Image.fromarray(frame.permute(1, 2, 0).numpy()).save(folder / f"{k:03d}.png")
    return folder


def test_bicubic_clip_reproduces_vidsr_eval_on_the_frames_as_images(hr_clip, tmp_path):
    report = evaluate_clip(hr_clip, [load_model("bicubic", scale=2)],
                           EvalVideoOptions(scale=2, device="cpu"))
    images = evaluate_folder(load_model("bicubic", scale=2), _frames_as_images(
        hr_clip, tmp_path / "frames"), 2)
    (scores,) = report.models
    assert [f.index for f in scores.frames] == [0, 1, 2]
    assert (report.width, report.height) == (50, 38)
    for frame, image in zip(scores.frames, images.images, strict=True):
        assert frame.psnr == pytest.approx(image.psnr, abs=0.01)
        assert frame.ssim == pytest.approx(image.ssim, abs=1e-4)
    assert scores.mean_psnr == pytest.approx(images.mean_psnr, abs=0.01)
    # The moving square changes the error from frame to frame: flicker is measured.
    assert scores.temporal > 0.1


def test_rgb_model_clip_reproduces_vidsr_eval(hr_clip, tmp_path):
    # RGB models take the LR as RGB and are scored on their 8-bit output, as vidsr eval does.
    model = load_model("compact", scale=2)
    report = evaluate_clip(hr_clip, [model], EvalVideoOptions(scale=2, device="cpu"))
    images = evaluate_folder(model, _frames_as_images(hr_clip, tmp_path / "frames"), 2)
    for frame, image in zip(report.models[0].frames, images.images, strict=True):
        assert frame.psnr == pytest.approx(image.psnr, abs=0.01)


class _Oracle(nn.Module):
    """A test double: returns the HR luma of whichever LR luma it is given."""

    def __init__(self, table: dict[bytes, torch.Tensor]) -> None:
        super().__init__()
        self.table = table

    @property
    def spec(self) -> ArchSpec:
        return ArchSpec("oracle", (2,), "planes", receptive_radius=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keys = [(plane[0] * 255).round().to(torch.uint8).numpy().tobytes() for plane in x]
        return torch.stack([self.table[key][None] for key in keys]).to(x)


def test_model_that_returns_the_reference_is_flagged_infinite(hr_clip, tmp_path):
    table = {}
    for frame in frames_rgb(hr_clip):
        hr = mod_crop(frame, 2)
        lr_y = luma_of_uint8(make_lr(hr, 2)).to(torch.uint8)
        table[lr_y.numpy().tobytes()] = luma_of_uint8(hr).to(torch.float32) / 255
    oracle = SRModel("oracle", _Oracle(table), _Oracle(table).spec, 2)
    report = evaluate_clip(hr_clip, [oracle, load_model("nearest", scale=2)],
                           EvalVideoOptions(scale=2, device="cpu"))
    exact, nearest = report.models
    assert all(math.isinf(f.psnr) for f in exact.frames) and exact.identical == 3
    assert [f.ssim for f in exact.frames] == [1.0, 1.0, 1.0]
    assert exact.temporal == 0.0
    assert all(math.isfinite(f.psnr) for f in nearest.frames)
    data = json.loads(report.to_json())
    assert data["models"][0]["mean"]["psnr"] is None
    assert data["models"][0]["identical_frames"] == 3
    assert [f["identical"] for f in data["models"][0]["frames"]] == [True, True, True]
    text = report.to_text()
    assert "oracle: 3 of 3 frame(s) equal the reference (PSNR infinite)" in text
    plot = write_psnr_plot(report, tmp_path / "plot.png")
    with Image.open(plot) as image:
        assert image.size == (PLOT_WIDTH, PLOT_HEIGHT)


def test_still_clip_has_no_flicker(clip):
    # Every frame the same: the error cannot change between frames.
    path = clip("still.mkv", width=40, height=32, frames=3, content="gradient", lossless=True)
    report = evaluate_clip(path, [load_model("bicubic", scale=2)],
                           EvalVideoOptions(scale=2, device="cpu", frames=2))
    (scores,) = report.models
    assert len(scores.frames) == 2
    assert scores.temporal == 0.0
    assert scores.frames[0].psnr == scores.frames[1].psnr


def test_archival_degradation_is_seeded_and_worse_than_bicubic(hr_clip):
    frames = [mod_crop(f, 2) for f in frames_rgb(hr_clip)]
    options = ArchivalOptions(seed=3, segment=2)
    first = list(archival_lr(frames, 2, options))
    again = list(archival_lr(frames, 2, options))
    other = list(archival_lr(frames, 2, ArchivalOptions(seed=4, segment=2)))
    clean = list(bicubic_lr(frames, 2))
    assert [f.shape for f in first] == [(3, 19, 25)] * 3
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(first, clean, strict=True))
    bicubic = load_model("bicubic", scale=2)
    clean_psnr = evaluate_clip(hr_clip, [bicubic], EvalVideoOptions(scale=2, device="cpu"))
    worn_psnr = evaluate_clip(hr_clip, [bicubic], EvalVideoOptions(
        scale=2, device="cpu", degradation="archival"))
    assert worn_psnr.models[0].mean_psnr < clean_psnr.models[0].mean_psnr - 0.5


def test_cli_writes_json_and_plot(hr_clip, tmp_path, capsys):
    plot = tmp_path / "psnr.png"
    code = main(["eval-video", str(hr_clip), "--models", "nearest,bicubic", "--scale", "2",
                 "--frames", "2", "--device", "cpu", "--json", "--plot", str(plot), "-q"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["model"] for m in data["models"]] == ["nearest", "bicubic"]
    assert data["frames"] == 2 and data["scale"] == 2
    assert data["models"][1]["mean"]["psnr"] > data["models"][0]["mean"]["psnr"]
    with Image.open(plot) as image:
        assert image.size == (PLOT_WIDTH, PLOT_HEIGHT)
    # The plot is there now: a second run refuses to replace it before any work, unless asked.
    again = ["eval-video", str(hr_clip), "--models", "nearest", "--scale", "2", "--frames", "1",
             "--device", "cpu", "--plot", str(plot), "-q"]
    before = plot.read_bytes()
    assert main(again) != 0
    assert capsys.readouterr().err == (
        f"vidsr: error: {plot}: already exists (use --overwrite to replace it)\n")
    assert plot.read_bytes() == before
    assert main([*again, "--overwrite"]) == 0
    assert plot.read_bytes() != before


@pytest.mark.parametrize(("args", "message"), [
    (["missing.mkv", "--models", "bicubic"], "missing.mkv"),
    (["{clip}", "--models", "bicubic,nosuchmodel"], "unknown model 'nosuchmodel'"),
    (["{clip}", "--models", "bicubic", "--frames", "0"], "--frames must be at least 1"),
    (["{clip}", "--models", "rrdb"], "supports x4, not x2"),
    (["{clip}", "--models", "bicubic", "--frames", "4"],
     "--frames 4 is past the end (the clip has 3 frames)"),
])
def test_bad_input_is_one_line(hr_clip, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    argv = ["eval-video", *(a.format(clip=hr_clip) for a in args), "--scale", "2"]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vidsr: error: ")
    assert message in err
    assert not list(tmp_path.glob("*.png"))


SHARED_VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "videos"
FOREMAN = SHARED_VIDEOS / "foreman_cif.mp4"


@pytest.mark.skipif(not FOREMAN.is_file(), reason=f"needs the shared test clip {FOREMAN}")
def test_a_noisy_archival_lr_is_upscaled_as_it_is_not_deinterlaced():
    # idet calls this progressive LR interlaced (bff on all 12 frames): the transcode must
    # still feed the model the LR itself, as vidsr eval would.
    options = EvalVideoOptions(scale=4, degradation="archival", frames=12, device="cpu",
                               archival=ArchivalOptions(codec="h264", seed=1))
    model = load_model("compact", scale=4)
    report = evaluate_clip(FOREMAN, [model], options)
    hr = [mod_crop(frame, 4) for frame in frames_rgb(FOREMAN, 12)]
    for frame, truth, lr in zip(report.models[0].frames, hr,
                                archival_lr(iter(hr), 4, options.archival), strict=True):
        with torch.inference_mode():
            out = model.module(lr.float()[None] / 255)[0]
        sr = torch.floor(out.double().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        assert frame.psnr == pytest.approx(
            score_luma(luma_of_uint8(sr), luma_of_uint8(truth), 4)[0], abs=0.01)


def test_the_kept_lr_is_what_the_models_got_and_compare_shows_it(hr_clip, tmp_path, capsys):
    """`--keep-lr` keeps the archival LR; `vidsr compare` against the HR clip scores a model
    on it as eval-video did (the same frame, the same PSNR)."""
    kept = tmp_path / "lr.nut"
    args = ["eval-video", str(hr_clip), "--models", "bicubic", "--scale", "2", "--frames", "2",
            "--degrade", "archival", "--device", "cpu", "--json", "--keep-lr", str(kept),
            "--plot", str(tmp_path / "p.png"), "-q"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    first = report["models"][0]["frames"][0]["psnr"]
    frames = list(frames_rgb(kept))
    assert len(frames) == 2 and tuple(frames[0].shape) == (3, 19, 25)
    picture = tmp_path / "compare.png"
    assert main(["compare", str(kept), "--models", "bicubic", "--scale", "2", "--frame", "0",
                 "--reference", str(hr_clip), "--device", "cpu", "-o", str(picture)]) == 0
    assert f"Y {first:.2f} dB" in capsys.readouterr().err
    bad = ["eval-video", str(hr_clip), "--models", "bicubic", "--scale", "2", "--frames", "1",
           "--device", "cpu", "--keep-lr", str(tmp_path / "lr.mkv"), "-q"]
    assert main(bad) != 0
    assert "the LR clip is written as .nut" in capsys.readouterr().err
