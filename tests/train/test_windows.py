"""Training windows: consecutive video frames and panned images, degraded once per window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.clipgen import make_clip
from vidsr.train import degrade
from vidsr.train.config import DataOptions, DegradeOptions
from vidsr.train.windows import WindowSampler, cached_ground_truth, collect_window_sources

OPTIONS = DataOptions(hr_size=16, scales=(2,), batch_size=3, clip_motion=2, video_share=0.5)


@pytest.fixture
def sources(tmp_path: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VIDSR_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "videos").mkdir()
    clip = make_clip(tmp_path / "videos" / "pan.mp4", width=64, height=48, frames=10,
                     content="moving")
    return collect_window_sources([clip.parent, image_folder])


def test_video_frames_are_decoded_once_halved_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDSR_CACHE_DIR", str(tmp_path / "cache"))
    clip = make_clip(tmp_path / "clip.mp4", width=64, height=48, frames=6)
    frames = cached_ground_truth(clip)
    assert frames.shape == (6, 24, 32, 3) and frames.dtype == np.uint8
    cached = list((tmp_path / "cache" / "train-video").glob("clip-*-half.npy"))
    assert len(cached) == 1
    assert np.array_equal(cached_ground_truth(clip), frames)


def test_windows_have_the_shape_the_network_takes_and_are_seeded_by_step(sources):
    videos, images = sources
    sampler = WindowSampler(videos, images, OPTIONS, window=3, seed=5)
    batch = sampler.batch(4)
    assert batch.lr.shape == (3, 3, 3, 8, 8) and batch.hr.shape == (3, 3, 16, 16)
    assert batch.scale == 2
    # A resumed run builds a new sampler: the batch of a step is the same, bit for bit.
    again = WindowSampler(videos, images, OPTIONS, window=3, seed=5).batch(4)
    assert torch.equal(batch.lr, again.lr) and torch.equal(batch.hr, again.hr)
    assert not torch.equal(sampler.batch(5).hr, batch.hr)


def test_the_degradation_is_drawn_once_per_window(sources, monkeypatch):
    videos, images = sources
    clips: list[tuple[int, str, int]] = []
    original = degrade.video_reencode

    def recording(frames, codec, crf):
        clips.append((len(frames), codec, crf))
        return original(frames, codec, crf)

    monkeypatch.setattr(degrade, "video_reencode", recording)
    noise_only = DegradeOptions(enabled=True, blur_prob=0.0, noise_prob=1.0,
                                noise_sigma=(6.0, 6.0), jpeg_prob=0.0, video_prob=0.0)
    # Still windows (no motion): every difference between frames is the noise.
    still = DataOptions(hr_size=16, scales=(2,), batch_size=3, clip_motion=0, video_share=0.0)
    lr = WindowSampler([], images, still, window=3, seed=0, degrade=noise_only).batch(0).lr
    assert all(not torch.equal(w[0], w[1]) for w in lr)  # fresh noise in every frame
    clean = DegradeOptions(enabled=True, blur_prob=1.0, noise_prob=0.0, jpeg_prob=1.0,
                           video_prob=0.0)
    lr = WindowSampler([], images, still, window=3, seed=0, degrade=clean).batch(0).lr
    assert all(torch.equal(w[0], w[1]) and torch.equal(w[1], w[2]) for w in lr)  # one blur, JPEG
    coded = DegradeOptions(enabled=True, video_prob=1.0, video_crf=(20, 34))
    WindowSampler(videos, images, OPTIONS, window=3, seed=0, degrade=coded).batch(0)
    assert [n for n, _, _ in clips] == [3, 3, 3]  # each window coded as one clip


def test_training_on_windows_grows_from_compact_and_resumes_bit_exactly(sources, tmp_path):
    from safetensors.torch import save_file

    from vidsr.archs.compact import SRVGGNetCompact
    from vidsr.models.weights_file import read_state_dict
    from vidsr.train.config import config_from_dict
    from vidsr.train.loop import build_generator, fit

    torch.manual_seed(0)
    frame_model = SRVGGNetCompact(num_feat=8, num_conv=2, scale=2)
    init = tmp_path / "frame.safetensors"
    save_file(frame_model.state_dict(), str(init))
    cfg = config_from_dict({
        "model": {"arch": "temporal", "init": str(init),
                  "config": {"num_feat": 8, "num_conv": 2, "num_refine": 1, "radius": 1}},
        "data": {"hr_size": 16, "scales": [2], "batch_size": 2},
        "degrade": {"enabled": True, "video_prob": 0.5},
        "train": {"total_steps": 6, "log_every": 1, "checkpoint_every": 3, "progress": False},
    })
    videos, images = sources
    sampler = WindowSampler(videos, images, cfg.data, window=3, seed=0, degrade=cfg.degrade)
    grown = build_generator(cfg)
    with torch.no_grad():
        window = torch.rand(1, 3, 3, 8, 8)
        torch.testing.assert_close(grown.eval()(window), frame_model.eval()(window[:, 1]),
                                   atol=2e-6, rtol=0)

    def fresh(seed: int):  # the refine blocks' first convs are drawn from torch's generator
        torch.manual_seed(seed)
        return build_generator(cfg)

    fit(cfg, sampler, tmp_path / "whole", generator=fresh(0))
    fit(cfg, sampler, tmp_path / "parts", generator=fresh(0), stop_at=4)
    # A new process would build a different network; the checkpoint must replace all of it.
    fit(cfg, sampler, tmp_path / "parts", generator=fresh(123), resume=True)
    for name in ("params", "params_ema"):
        a = read_state_dict(tmp_path / f"whole/checkpoints/00000006/{name}.safetensors")
        b = read_state_dict(tmp_path / f"parts/checkpoints/00000006/{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert not torch.equal(a["head.frames.0.weight"], torch.zeros_like(a["head.frames.0.weight"]))
