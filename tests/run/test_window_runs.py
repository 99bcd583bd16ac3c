"""Models that see a window of frames, through the transcoder: windows, cuts, tiles, plans."""

from __future__ import annotations

import logging
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from clipgen import decoded_frames, shot_frames, write_ffv1

from vidsr.engine.model_space import RgbRoute
from vidsr.executors.replica import Replica
from vidsr.io.encode_options import EncodeOptions
from vidsr.io.frames import FrameBatch
from vidsr.io.pixfmt import source_format
from vidsr.io.windows import WindowedSource
from vidsr.models.zoo import load_model
from vidsr.plan.run_plan import CpuWorkersPlan, CudaSlotsPlan, EngineOptions, RunPlan, SyncPlan
from vidsr.run.transcode import RunControl, plan_upscale, run_to_file, upscale_video

QUIET = RunControl(progress=False)
FFV1 = EncodeOptions(codec="ffv1")


def upscale(src: Path, dst: Path, model: Path, **engine) -> tuple[list, object]:
    result = upscale_video(src, dst, model=model, encode=FFV1, control=QUIET,
                           engine=EngineOptions(device="cpu", **engine))
    return decoded_frames(dst), result


def test_a_cut_splits_windows_so_each_shot_comes_out_as_alone(temporal, tmp_path):
    a, b = shot_frames("square", 6), shot_frames("bars", 6)
    joined = write_ffv1(tmp_path / "ab.mkv", a + b)
    out_ab, result = upscale(joined, tmp_path / "ab_x2.mkv", temporal)
    out_a, alone_a = upscale(write_ffv1(tmp_path / "a.mkv", a), tmp_path / "a_x2.mkv", temporal)
    out_b, alone_b = upscale(write_ffv1(tmp_path / "b.mkv", b), tmp_path / "b_x2.mkv", temporal)
    assert result.cuts == [6] and alone_a.cuts == [] and alone_b.cuts == []
    assert "1 scene cut(s) found" in result.summary()
    assert len(out_ab) == 12
    for got, want in zip(out_ab, out_a + out_b, strict=True):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_the_neighbours_change_the_output(temporal, tmp_path):
    """A window's neighbours count: the same frame between other frames comes out other than
    between copies of itself (so a window mixing two shots would show)."""
    a = shot_frames("square", 5)
    out_a, _ = upscale(write_ffv1(tmp_path / "a.mkv", a), tmp_path / "a_x2.mkv", temporal)
    still, _ = upscale(write_ffv1(tmp_path / "s.mkv", [a[2]] * 3), tmp_path / "s_x2.mkv",
                       temporal)
    assert np.abs(out_a[2][0].astype(int) - still[1][0].astype(int)).max() > 2


def _batches(values: list[int], size: int = 2) -> list[FrameBatch]:
    """Decoded-looking batches of 8x8 gray frames of the given values."""
    gray = source_format("gray").layout
    frames = [np.full((8, 8), v, np.uint8) for v in values]
    return [FrameBatch([np.stack(frames[i:i + size])], list(range(i, i + len(frames[i:i + size]))),
                       Fraction(1, 25), i, gray)
            for i in range(0, len(frames), size)]


class _Frames:
    """A source of the given batches."""

    info = SimpleNamespace(path="frames")

    def __init__(self, batches: list[FrameBatch]) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)


def _windows(values: list[int], radius: int, batch: int) -> tuple[list[list[int]], list[int],
                                                                  WindowedSource]:
    """Each output frame's window as the values of its frames, the most frames one batch
    held, and the source."""
    source = WindowedSource(_Frames(_batches(values)), 2 * radius + 1, batch)
    windows, held = [], []
    for out in source:
        assert out.windows is not None
        held.append(out.planes[0].shape[0])
        windows += [[int(out.planes[0][i, 0, 0]) for i in row] for row in out.windows.index]
    return windows, held, source


def test_clip_ends_repeat_the_first_and_last_frames():
    values = [10, 11, 12, 13, 14, 15, 16]
    windows, held, source = _windows(values, radius=2, batch=3)
    assert windows[0] == [10, 10, 10, 11, 12]
    assert windows[1] == [10, 10, 11, 12, 13]
    assert windows[3] == [11, 12, 13, 14, 15]
    assert windows[-1] == [14, 15, 16, 16, 16]
    assert [w[2] for w in windows] == values  # every frame once, in order, at the centre
    assert source.decoded == len(values) and source.cuts == []
    assert max(held) <= 3 + 2 * 2  # a batch and 2r neighbours


def test_a_window_repeats_its_own_shots_nearest_frame_at_a_cut():
    values = [10, 11, 12, 200, 201, 202]
    windows, _, source = _windows(values, radius=2, batch=1)
    assert source.cuts == [3]
    assert windows[2] == [10, 11, 12, 12, 12]
    assert windows[3] == [200, 200, 200, 201, 202]


def test_every_frame_is_decoded_once(temporal, tmp_path, monkeypatch):
    clip = write_ffv1(tmp_path / "c.mkv", shot_frames("square", 9))
    counted: list[int] = []
    original = WindowedSource.__iter__

    def counting(self):
        yield from original(self)
        counted.append(self.decoded)

    monkeypatch.setattr(WindowedSource, "__iter__", counting)
    out, result = upscale(clip, tmp_path / "x2.mkv", temporal, batch_size=4)
    assert counted == [9] and result.frames == 9 and len(out) == 9


@pytest.mark.parametrize("executor", [SyncPlan(1), CpuWorkersPlan(2, 1), CudaSlotsPlan(2)],
                         ids=["sync", "cpu-workers", "cuda-slots"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_every_frame_is_converted_once_and_outputs_do_not_change(temporal, tmp_path,
                                                                   monkeypatch, executor,
                                                                   batch_size):
    """Neighbours a batch shares with the one before are not converted again: 9 frames,
    9 conversions, whatever the batch and however many batches are in flight."""
    clip = write_ffv1(tmp_path / "c.mkv", shot_frames("square", 9))
    want, _ = upscale(clip, tmp_path / "want.mkv", temporal, batch_size=1)
    converted: list[int] = []
    original = RgbRoute.to_model

    def counting(self, planes, colour):
        converted.append(planes[0].shape[0])
        return original(self, planes, colour)

    monkeypatch.setattr(RgbRoute, "to_model", counting)
    model = load_model(str(temporal))
    plan = plan_upscale(clip, tmp_path / "x2.mkv", model=temporal, encode=FFV1,
                        engine=EngineOptions(device="cpu", batch_size=batch_size))
    if isinstance(executor, CudaSlotsPlan):
        plan = replace(plan, devices=("cpu",))
    result = run_to_file(replace(plan, executor=executor), model, QUIET)
    assert result.frames == 9 and sum(converted) == 9
    for got, w in zip(decoded_frames(tmp_path / "x2.mkv"), want, strict=True):
        for gp, wp in zip(got, w, strict=True):
            np.testing.assert_array_equal(gp, wp)


def test_tiles_of_windows_match_whole_frames(temporal, tmp_path):
    clip = write_ffv1(tmp_path / "c.mkv", shot_frames("square", 4, width=96, height=64))
    whole, _ = upscale(clip, tmp_path / "whole.mkv", temporal)
    tiled, _ = upscale(clip, tmp_path / "tiled.mkv", temporal, tile=32)
    for got, want in zip(tiled, whole, strict=True):
        for g, w in zip(got, want, strict=True):
            assert np.abs(g.astype(int) - w.astype(int)).max() <= 1


def test_a_window_that_gives_no_picture_in_bf16_is_redone_in_fp32(temporal, tmp_path,
                                                                  monkeypatch, caplog):
    clip = write_ffv1(tmp_path / "c.mkv", shot_frames("square", 3))
    want, _ = upscale(clip, tmp_path / "fp32.mkv", temporal, precision="fp32")
    original = Replica.torch_forward

    def broken_below_fp32(self, x, fp32, flags):
        assert x.ndim == 5  # windows reach the network as (N, T, C, h, w)
        y = original(self, x, fp32, flags)
        if not fp32:
            flags[-1] = torch.tensor(False)
            y = y * float("nan")
        return y

    monkeypatch.setattr(Replica, "torch_forward", broken_below_fp32)
    with caplog.at_level(logging.WARNING, logger="vidsr"):
        got, _ = upscale(clip, tmp_path / "bf16.mkv", temporal, precision="bf16")
    assert "redoing it in fp32" in caplog.text
    for g, w in zip(got, want, strict=True):
        for gp, wp in zip(g, w, strict=True):
            np.testing.assert_array_equal(gp, wp)


def test_the_plan_carries_the_window_in_text_and_json(temporal, tmp_path):
    clip = write_ffv1(tmp_path / "c.mkv", shot_frames("square", 2))
    plan = plan_upscale(clip, tmp_path / "x2.mkv", model=temporal,
                        engine=EngineOptions(device="cpu"))
    assert plan.window == 3
    assert "window     3 frames centred on the output frame (radius 1)" in plan.to_text()
    assert RunPlan.from_json(plan.to_json()) == plan
    frame_wise = plan_upscale(clip, tmp_path / "x2.mkv", model="nearest", scale=2)
    assert frame_wise.window == 1 and "1 frame: frame-wise" in frame_wise.to_text()
