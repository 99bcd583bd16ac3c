from __future__ import annotations

import pytest
import torch

from vidsr.errors import InputError, OptionsError
from vidsr.imaging.scoring import make_lr
from vidsr.train.config import DataOptions, DegradeOptions, load_config
from vidsr.train.data import (
    PairSampler,
    augment,
    collect_sources,
    sample_video_frames,
)
from vidsr.train.degrade import bicubic_downscale


def sampler_for(folder, **options):
    opts = DataOptions(**{"hr_size": 16, "scales": (2,), "batch_size": 4, **options})
    return PairSampler(collect_sources(folder, 4), opts, seed=3)


def test_batches_are_a_function_of_seed_and_step(image_folder):
    a, b = sampler_for(image_folder), sampler_for(image_folder)
    first, again = a.batch(5), b.batch(5)
    assert torch.equal(first.hr, again.hr) and torch.equal(first.lr, again.lr)
    assert not torch.equal(a.batch(6).hr, first.hr)
    other_seed = PairSampler(a.images, a.options, seed=4)
    assert not torch.equal(other_seed.batch(5).hr, first.hr)


def test_shapes_and_range(image_folder):
    batch = sampler_for(image_folder).batch(0)
    assert batch.hr.shape == (4, 3, 16, 16) and batch.lr.shape == (4, 3, 8, 8)
    assert batch.hr.dtype == torch.float32 and batch.scale == 2
    assert 0 <= float(batch.hr.min()) and float(batch.hr.max()) <= 1
    # 8-bit code values, as stored images are.
    assert torch.equal(batch.lr * 255, (batch.lr * 255).round())


def test_lr_is_exactly_what_vidsr_eval_makes(image_folder):
    batch = sampler_for(image_folder).batch(1)
    for hr, lr in zip(batch.hr, batch.lr, strict=True):
        expected = make_lr((hr * 255).round().to(torch.uint8), 2)
        assert torch.equal((lr * 255).round().to(torch.uint8), expected)


def test_multiscale_batches_cover_every_scale(image_folder):
    sampler = sampler_for(image_folder, hr_size=12, scales=(2, 3, 4))
    seen = set()
    for step in range(30):
        batch = sampler.batch(step)
        assert batch.lr.shape[-1] * batch.scale == 12
        seen.add(batch.scale)
    assert seen == {2, 3, 4}


def test_scale_weights_set_how_often_each_scale_is_drawn(image_folder):
    sampler = sampler_for(image_folder, hr_size=12, scales=(2, 3, 4), scale_weights=(6, 1, 1))
    drawn = [sampler.hr_batch(step)[1] for step in range(400)]
    assert 0.65 < drawn.count(2) / len(drawn) < 0.85
    assert drawn.count(3) and drawn.count(4)
    assert drawn == [sampler.hr_batch(step)[1] for step in range(400)]


def test_the_eight_symmetries_are_distinct_and_include_rotations():
    image = torch.arange(9).view(1, 3, 3)
    results = {augment(image, h, v, t).flatten().tolist().__str__()
               for h in (False, True) for v in (False, True) for t in (False, True)}
    assert len(results) == 8
    assert torch.equal(augment(image, True, False, True), torch.rot90(image, 1, (-2, -1)))


def test_augmentation_can_be_turned_off(image_folder):
    plain = sampler_for(image_folder, flip=False, rotate=False)
    batch = plain.batch(2)
    # Every crop appears unrotated in one of the source images.
    found = 0
    for crop in (batch.hr * 255).round().to(torch.uint8):
        for image in plain.images:
            windows = image.unfold(1, 16, 1).unfold(2, 16, 1)  # (3, h', w', 16, 16)
            match = (windows == crop[:, None, None]).all(dim=(0, 3, 4))
            found += bool(match.any())
    assert found == 4


def test_images_too_small_are_skipped_or_refused(image_folder):
    with pytest.raises(InputError, match="at least 64x64"):
        sampler_for(image_folder, hr_size=64)


def test_missing_or_empty_data_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        collect_sources(tmp_path / "nope", 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no training images"):
        collect_sources(tmp_path / "empty", 4)


def test_video_frames_are_sampled_across_the_file(clip):
    path = clip("train.mkv", width=64, height=48, frames=20, content="moving")
    frames = sample_video_frames(path, 4)
    assert len(frames) == 4
    assert all(f.shape == (3, 48, 64) and f.dtype == torch.uint8 for f in frames)
    # Spread out: no two samples are the same frame of the moving content.
    assert len({f.flatten()[:2000].sum().item() for f in frames}) == 4


def test_folders_mix_images_and_videos(image_folder, clip):
    video = clip("more.mkv", width=64, height=48, frames=10)
    video.rename(image_folder / "more.mkv")
    images = collect_sources(image_folder, 3)
    assert len(images) == 4 + 3


def test_degraded_batches_are_deterministic_too(image_folder):
    opts = DataOptions(hr_size=16, scales=(2,), batch_size=4)
    degrade = DegradeOptions(enabled=True, video_prob=0.0)
    images = collect_sources(image_folder, 4)
    a = PairSampler(images, opts, seed=1, degrade=degrade).batch(3)
    b = PairSampler(images, opts, seed=1, degrade=degrade).batch(3)
    assert torch.equal(a.lr, b.lr) and a.lr.shape == (4, 3, 8, 8)
    assert not torch.equal(a.lr, bicubic_downscale(a.hr, 2))


def _pan(a, b, motion):
    """The (dy, dx) within ``motion`` that moves crop ``a`` onto crop ``b``, or None."""
    size = a.shape[-1]
    for dy in range(-motion, motion + 1):
        for dx in range(-motion, motion + 1):
            ya, yb = max(dy, 0), max(-dy, 0)
            xa, xb = max(dx, 0), max(-dx, 0)
            if torch.equal(a[:, ya:size - yb, xa:size - xb], b[:, yb:size - ya, xb:size - xa]):
                return dy, dx
    return None


def test_clip_runs_pan_steadily_across_one_image(image_folder):
    sampler = sampler_for(image_folder, batch_size=6, clip_frames=3, clip_motion=2, rotate=False,
                          flip=False)
    moving = 0
    for step in range(8):
        hr = sampler.hr_batch(step)[0]
        for run in hr.split(3):
            first, second = _pan(run[0], run[1], 2), _pan(run[1], run[2], 2)
            assert first is not None and first == second  # one steady pan per run
            moving += first != (0, 0)
    assert moving > 0
    assert torch.equal(sampler.batch(5).lr, sampler.batch(5).lr)


def test_clip_runs_are_degraded_and_coded_as_clips(image_folder):
    opts = DataOptions(hr_size=16, scales=(2,), batch_size=4, clip_frames=2)
    degrade = DegradeOptions(enabled=True, video_prob=1.0, jpeg_prob=0.0)
    images = collect_sources(image_folder, 4)
    a = PairSampler(images, opts, seed=1, degrade=degrade).batch(3)
    assert torch.equal(a.lr, PairSampler(images, opts, seed=1, degrade=degrade).batch(3).lr)
    assert a.lr.shape == (4, 3, 8, 8) and not torch.equal(a.lr, bicubic_downscale(a.hr, 2))


def test_clip_frames_must_divide_the_batch(image_folder):
    with pytest.raises(OptionsError, match="clip_frames"):
        load_config("archival-x4", {"data.clip_frames": 5})
