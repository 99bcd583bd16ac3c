"""vsvidsr in a real VapourSynth core: the engine's frames, formats, properties, faults."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import torch

vs = pytest.importorskip("vapoursynth", reason="needs VapourSynth (pip install '.[vapoursynth]')")
vsvidsr = pytest.importorskip("vsvidsr", reason="vsvidsr is installed by pip install -e .")

from clipgen import decoded_frames, shot_frames, write_ffv1  # noqa: E402
from engines import engine_for  # noqa: E402

from vidsr.io.encode_options import EncodeOptions  # noqa: E402
from vidsr.io.frames import FrameBatch  # noqa: E402
from vidsr.io.script_source import colour_of, layout_of  # noqa: E402
from vidsr.models.zoo import SRModel, load_model  # noqa: E402
from vidsr.plan.run_plan import EngineOptions  # noqa: E402
from vidsr.run.transcode import RunControl, upscale_video  # noqa: E402

CPU_FP32 = EngineOptions(device="cpu", precision="fp32")


@pytest.fixture
def core():
    """The process's core with four threads, so requests really arrive at once."""
    core = vs.core
    saved = core.num_threads
    core.num_threads = 4
    yield core
    core.num_threads = saved


def clip_of(core, fmt, planes: list[np.ndarray], *, props=None) -> vs.VideoNode:
    """A clip whose frame n holds ``planes[p][n]`` (VapourSynth's plane order), with
    ``props(n)`` set on it."""
    n, h, w = planes[0].shape
    blank = core.std.BlankClip(width=w, height=h, format=fmt, length=n, fpsnum=24, fpsden=1)

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        for p, plane in enumerate(planes):
            np.asarray(out[p])[...] = plane[n]
        for key, value in (props(n) if props else {}).items():
            out.props[key] = value
        return out

    return core.std.ModifyFrame(blank, blank, fill)


def random_yuv(rng, n, w, h, depth, sub=1):
    top = (1 << depth) - 1
    dtype = np.uint8 if depth == 8 else np.uint16
    y = rng.integers(0, top + 1, (n, h, w)).astype(dtype)
    u = rng.integers(0, top + 1, (n, h >> sub, w >> sub)).astype(dtype)
    v = rng.integers(0, top + 1, (n, h >> sub, w >> sub)).astype(dtype)
    return [y, u, v]


def planes_of(frames, count):
    return [np.stack([np.asarray(f[p]) for f in frames]) for p in range(count)]


def get_all(clip):
    return list(clip.frames())


def test_rgb_model_equals_the_engine_in_fp32(core):
    rng = np.random.default_rng(1)
    data = rng.random((5, 3, 24, 32), dtype=np.float32)
    clip = clip_of(core, vs.RGBS, [data[:, c] for c in range(3)])
    up = vsvidsr.upscale(clip, "compact", scale=2, device="cpu", precision="fp32")
    assert (up.format.name, up.width, up.height, up.num_frames) == ("RGBS", 64, 48, 5)
    got = np.stack(planes_of(get_all(up), 3), axis=1)
    with engine_for(load_model("compact", scale=2), CPU_FP32) as engine:
        want = engine.run_network(torch.from_numpy(data)).numpy()
    assert np.abs(got - want).max() <= 1e-5


def test_runtime_openvino_gives_the_engines_frames_and_auto_plans_as_vidsr(core, monkeypatch,
                                                                           tmp_path):
    from vidsr.plan.machine import openvino_unusable as unusable

    if unusable():
        pytest.skip(f"runtime='openvino': {unusable()}")
    monkeypatch.setenv("VIDSR_CACHE_DIR", str(tmp_path))
    rng = np.random.default_rng(2)
    data = rng.random((3, 3, 24, 32), dtype=np.float32)
    clip = clip_of(core, vs.RGBS, [data[:, c] for c in range(3)])
    up = vsvidsr.upscale(clip, "compact", scale=2, device="cpu", precision="fp32",
                         runtime="openvino")
    got = np.stack(planes_of(get_all(up), 3), axis=1)
    with engine_for(load_model("compact", scale=2), CPU_FP32) as engine:
        want = engine.run_network(torch.from_numpy(data)).numpy()
    assert np.abs(got - want).max() <= 1e-4  # OpenVINO's f32 against torch's
    # Left out, the runtime is the plan's default, as for `vidsr`.
    seen = []
    real = vsvidsr.filter.resolve_plan
    monkeypatch.setattr(vsvidsr.filter, "resolve_plan",
                        lambda *a, **k: seen.append(a[1].runtime) or real(*a, **k))
    vsvidsr.upscale(clip, "compact", scale=2, device="cpu")
    vsvidsr.upscale(clip, "compact", scale=2, device="cpu", runtime="auto")
    assert seen == [EngineOptions.runtime, "auto"]
    with pytest.raises(vs.Error, match="unknown runtime 'onnx'"):
        vsvidsr.upscale(clip, "compact", scale=2, device="cpu", runtime="onnx")


@pytest.mark.parametrize(("fmt", "depth", "matrix", "full"), [
    ("YUV420P8", 8, 1, False), ("YUV420P10", 10, 9, False), ("YUV420P8", 8, 6, True)])
def test_luma_model_on_yuv_equals_the_engine(core, fmt, depth, matrix, full):
    rng = np.random.default_rng(depth)
    planes = random_yuv(rng, 4, 32, 24, depth)
    props = {"_Matrix": matrix, "_Range": 1 if full else 0}
    clip = clip_of(core, getattr(vs, fmt), planes, props=lambda n: props)
    up = vsvidsr.upscale(clip, "espcn", scale=2, device="cpu", precision="fp32")
    frames = get_all(up)
    got = planes_of(frames, 3)
    layout = layout_of(clip.format)
    colour = colour_of(props, layout, 24)
    model = load_model("espcn", scale=2)
    with engine_for(model, CPU_FP32) as engine:
        want = engine.upscale_batch(FrameBatch(planes, [0, 1, 2, 3], Fraction(1), 0, layout),
                                    colour, layout).planes
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert np.array_equal(g, w)


def test_luma_model_on_grays_is_the_engine_network_in_studio_swing(core):
    rng = np.random.default_rng(3)
    gray = rng.random((3, 24, 32), dtype=np.float32)
    up = vsvidsr.upscale(clip_of(core, vs.GRAYS, [gray]), "espcn", scale=2, device="cpu",
                         precision="fp32")
    got = planes_of(get_all(up), 1)[0]
    with engine_for(load_model("espcn", scale=2), CPU_FP32) as engine:
        studio = (16 + 219 * torch.from_numpy(gray)) / 255
        want = ((engine.run_network(studio[:, None])[:, 0] * 255 - 16) / 219).numpy()
    assert np.abs(got - want).max() <= 1e-5


def test_rgbh_stays_half_and_matches_rgbs(core):
    rng = np.random.default_rng(4)
    data = rng.random((2, 3, 24, 32), dtype=np.float32).astype(np.float16)
    planes = [data[:, c] for c in range(3)]
    half = vsvidsr.upscale(clip_of(core, vs.RGBH, planes), "compact", scale=2, device="cpu",
                           precision="fp32")
    single = vsvidsr.upscale(clip_of(core, vs.RGBS, [p.astype(np.float32) for p in planes]),
                             "compact", scale=2, device="cpu", precision="fp32")
    assert half.format.name == "RGBH"
    got = np.stack(planes_of(get_all(half), 3))
    want = np.stack(planes_of(get_all(single), 3))
    assert got.dtype == np.float16
    # The half result is the single one rounded to fp16 (10-bit mantissa).
    assert np.abs(got.astype(np.float32) - want).max() <= 2 ** -10


def test_length_rate_durations_and_every_property_are_kept(core):
    rng = np.random.default_rng(5)
    planes = random_yuv(rng, 6, 32, 24, 8)

    def props(n):
        return {"_Matrix": 1, "_Primaries": 1, "_Transfer": 1, "_Range": 0,
                "_SARNum": 4, "_SARDen": 3, "_FieldBased": 2, "_SceneChangePrev": n % 2,
                "_DurationNum": 1 + n, "_DurationDen": 50, "Note": f"frame {n}"}

    clip = clip_of(core, vs.YUV420P8, planes, props=props)
    up = vsvidsr.upscale(clip, "nearest", scale=3, device="cpu")
    assert (up.num_frames, up.fps, up.width, up.height) == (6, clip.fps, 96, 72)
    for n, frame in enumerate(up.frames()):
        got = dict(frame.props)
        got["Note"] = got["Note"].decode() if isinstance(got["Note"], bytes) else got["Note"]
        assert got == props(n)
        # nearest x3 repeats each code value: the frame is its source's, exactly.
        assert np.array_equal(np.asarray(frame[0])[::3, ::3], planes[0][n])


@pytest.mark.parametrize(("fmt", "model", "named"), [
    ("YUV420P8", "compact", "core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s='709')"),
    ("RGB24", "compact", "core.resize.Point(clip, format=vs.RGBS)"),
    ("RGBS", "espcn", "core.resize.Bicubic(clip, format=vs.YUV444P16, matrix_s='709')"),
    ("YUV444PS", "espcn", "core.resize.Point(clip, format=vs.YUV444P16)"),
])
def test_a_wrong_format_names_itself_and_the_conversion(core, fmt, model, named):
    clip = core.std.BlankClip(width=32, height=24, format=getattr(vs, fmt), length=2)
    with pytest.raises(vs.Error) as caught:
        vsvidsr.upscale(clip, model, scale=2, device="cpu")
    message = str(caught.value)
    assert "\n" not in message
    assert f"not {fmt};" in message and named in message


def test_a_missing_weights_file_is_one_line_at_script_time(core, tmp_path):
    clip = core.std.BlankClip(width=32, height=24, format=vs.RGBS, length=2)
    with pytest.raises(vs.Error) as caught:
        vsvidsr.upscale(clip, "compact", scale=2, weights=tmp_path / "missing.safetensors")
    assert "\n" not in str(caught.value) and "missing.safetensors" in str(caught.value)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(vs.Error) as caught:
        vsvidsr.upscale(clip, tmp_path / "junk.pth")
    assert "\n" not in str(caught.value) and "junk.pth" in str(caught.value)


def _failing(model: SRModel, when) -> SRModel:
    """``model`` whose network raises ``when(x)`` (an exception or None) on each call."""
    module = model.module
    base = type(module)

    class Failing(base):  # type: ignore[misc, valid-type]
        def forward(self, x):
            error = when(x)
            if error is not None:
                raise error
            return base.forward(self, x)

    failing = base.__new__(Failing)
    failing.__dict__.update(module.__dict__)
    return replace(model, module=failing)


def test_out_of_memory_inside_a_request_ends_as_frames(core, caplog):
    rng = np.random.default_rng(6)
    data = rng.random((8, 3, 64, 96), dtype=np.float32)
    clip = clip_of(core, vs.RGBS, [data[:, c] for c in range(3)])
    model = load_model("compact", scale=2)

    def tiny_memory(x):
        # Room for one 72x64 tile, not for two frames or a whole 96x64 frame.
        if x.shape[0] > 1 or x.shape[-1] * x.shape[-2] > 5000:
            return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 MiB")
        return None

    with caplog.at_level(logging.WARNING, logger="vidsr"):
        up = vsvidsr.upscale(clip, _failing(model, tiny_memory), device="cpu",
                             precision="fp32", batch_size=4)
        got = np.stack(planes_of(get_all(up), 3), axis=1)
    with engine_for(model, CPU_FP32) as engine:
        want = engine.run_network(torch.from_numpy(data)).numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5
    text = caplog.text
    assert "retrying in batches of" in text and "retrying in 48-pixel tiles" in text


def test_non_finite_output_is_a_one_line_error_and_the_host_lives_on(core):
    data = np.full((4, 3, 24, 32), 0.5, np.float32)
    clip = clip_of(core, vs.RGBS, [data[:, c] for c in range(3)])
    model = load_model("compact", scale=2)
    bad = replace(model, module=_poisoned_copy(model.module))
    up = vsvidsr.upscale(clip, bad, device="cpu", precision="fp32", batch_size=1)
    for n in (0, 3):
        with pytest.raises(vs.Error) as caught:
            up.get_frame(n)
        last = str(caught.value).strip().splitlines()[-1]
        # The engine's own check (the transcoder's too), naming the batch's frames.
        assert last.endswith(f"vsvidsr: frame {n}: the model gave non-finite or out-of-range"
                             f" values (NaN, Inf or past ±16) on frame {n}; the weights look"
                             " damaged")
    # The same process still upscales with a good model.
    good = vsvidsr.upscale(clip, model, device="cpu", precision="fp32")
    assert np.isfinite(np.asarray(good.get_frame(3)[0])).all()


def _poisoned_copy(module):
    import copy

    twin = copy.deepcopy(module)
    twin.body[0].weight.data.fill_(float("nan"))
    return twin


def test_requests_from_many_threads_are_batched_and_each_frame_comes_once(core):
    rng = np.random.default_rng(7)
    data = rng.random((12, 3, 24, 32), dtype=np.float32)
    clip = clip_of(core, vs.RGBS, [data[:, c] for c in range(3)])
    model = load_model("compact", scale=2)
    seen: list[int] = []  # frames per network call

    def count(x):
        seen.append(x.shape[0])

    up = vsvidsr.upscale(clip, _failing(model, count), device="cpu", precision="fp32",
                         batch_size=4)
    got = np.stack(planes_of(list(up.frames(prefetch=8)), 3), axis=1)
    assert sum(seen) == 12 and max(seen) > 1  # VapourSynth's threads met in batches
    with engine_for(model, CPU_FP32) as engine:
        want = engine.run_network(torch.from_numpy(data)).numpy()
    assert np.abs(got - want).max() <= 1e-5  # every frame in its place, none twice


def test_a_batch_that_cannot_fill_does_not_hold_frames_back(core):
    data = np.zeros((3, 3, 24, 32), np.float32)
    clip = clip_of(core, vs.RGBS, [data[:, c] for c in range(3)])
    up = vsvidsr.upscale(clip, "nearest", scale=2, device="cpu", batch_size=64)
    up.get_frame(0)  # the engine's first batch pays for its set-up
    started = time.perf_counter()
    for n in (1, 2):  # one at a time: each batch is a single frame that must go at once
        up.get_frame(n)
    assert time.perf_counter() - started < 0.5


def test_the_engine_and_its_threads_end_with_the_clip(core):
    import gc
    import threading

    def ours() -> set[threading.Thread]:
        return {t for t in threading.enumerate()
                if t.name.startswith(("vsvidsr-dispatch", "vidsr-cpu-worker"))}

    gc.collect()
    before = ours()
    clip = core.std.BlankClip(width=32, height=24, format=vs.RGBS, length=4)
    up = vsvidsr.upscale(clip, "nearest", scale=2, device="cpu")
    up.get_frame(0)
    assert "vsvidsr-dispatch" in {t.name for t in ours() - before}
    del up
    gc.collect()
    deadline = time.monotonic() + 5.0
    while ours() - before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not ours() - before


def test_a_preset_gives_the_model_and_engine_options_and_arguments_override_it(core, tmp_path,
                                                                               caplog):
    mine = tmp_path / "mine.toml"
    mine.write_text('[options]\nmodel = "nearest"\nscale = 3\nprecision = "fp32"\n'
                    'device = "cpu"\ncodec = "libx265"\nheight = 1080\n')
    rng = np.random.default_rng(5)
    planes = random_yuv(rng, 2, 16, 12, 8)
    clip = clip_of(core, vs.YUV420P8, planes)
    with caplog.at_level(logging.INFO, logger="vidsr"):
        tripled = get_all(vsvidsr.upscale(clip, preset=mine))
    assert (tripled[0].width, tripled[0].height) == (48, 36)
    assert np.array_equal(np.asarray(tripled[1][0]), planes[0][1].repeat(3, 0).repeat(3, 1))
    assert "codec, height left to the script" in caplog.text
    doubled = vsvidsr.upscale(clip, scale=2, preset=mine)
    assert (doubled.width, doubled.height) == (32, 24)
    with pytest.raises(vs.Error, match="unknown preset 'vhs'"):
        vsvidsr.upscale(clip, preset="vhs")
    bad = tmp_path / "bad.toml"
    bad.write_text('[options]\nprecision = "fp8"\n')
    with pytest.raises(vs.Error, match=r"bad\.toml: precision = fp8: invalid choice"):
        vsvidsr.upscale(clip, preset=bad)
    # Not "left to the script": a preset that asks to run code is refused, naming the key.
    bad.write_text('[options]\nmodel = "nearest"\nallow-unsafe-weights = true\n')
    with pytest.raises(vs.Error, match=r"bad\.toml: a preset may not set 'allow-unsafe-weights'"):
        vsvidsr.upscale(clip, preset=bad)
    # The filters' engines end with their clips (the engine tests count the threads left).
    import gc
    import threading

    del tripled, doubled
    gc.collect()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(
            t.name.startswith(("vsvidsr-dispatch", "vidsr-cpu-worker"))
            for t in threading.enumerate()):
        time.sleep(0.02)
    assert not [t for t in threading.enumerate() if t.name.startswith("vidsr-cpu-worker")]


def _yuv_clip(core, frames: list[list[np.ndarray]], props=None) -> vs.VideoNode:
    return clip_of(core, vs.YUV420P8, [np.stack(p) for p in zip(*frames, strict=True)],
                   props=props)


def _window_model(core, clip: vs.VideoNode, weights) -> list[list[np.ndarray]]:
    up = vsvidsr.upscale(clip, str(weights), device="cpu", precision="fp32")
    return [[np.asarray(f[p]).copy() for p in range(3)] for f in get_all(up)]


def _assert_frames_equal(got, want) -> None:
    assert len(got) == len(want)
    for n, (g, w) in enumerate(zip(got, want, strict=True)):
        for gp, wp in zip(g, w, strict=True):
            np.testing.assert_array_equal(gp, wp, err_msg=f"frame {n}")


def test_a_window_model_equals_the_transcoder_frame_for_frame_across_a_cut(core, tmp_path,
                                                                            temporal_luma):
    """The filter asks its clip for each frame's neighbours and finds the cut with the
    transcoder's own detector: the same frames as ``vidsr`` on the same lossless clip."""
    frames = shot_frames("square", 6) + shot_frames("bars", 6)
    clip = write_ffv1(tmp_path / "ab.mkv", frames)
    result = upscale_video(clip, tmp_path / "ab_x2.mkv", model=temporal_luma,
                           encode=EncodeOptions(codec="ffv1"), control=RunControl(progress=False),
                           engine=CPU_FP32)
    assert result.cuts == [6]
    _assert_frames_equal(_window_model(core, _yuv_clip(core, frames), temporal_luma),
                         decoded_frames(tmp_path / "ab_x2.mkv"))


def test_a_window_model_honours_the_scripts_scene_change_props(core, temporal_luma):
    """A cut the script marks is a cut where the pictures show none (``_SceneChangePrev``
    on the later frame or ``_SceneChangeNext`` on the earlier); props set to 0 mark that
    there is none, where the pictures show one."""
    one_shot = shot_frames("square", 8)
    alone = (_window_model(core, _yuv_clip(core, one_shot[:4]), temporal_luma)
             + _window_model(core, _yuv_clip(core, one_shot[4:]), temporal_luma))
    through = _window_model(core, _yuv_clip(core, one_shot), temporal_luma)
    assert np.abs(through[3][0].astype(int) - alone[3][0].astype(int)).max() > 2
    for props in (lambda n: {"_SceneChangePrev": int(n == 4)},
                  lambda n: {"_SceneChangeNext": int(n == 3)}):
        marked = _yuv_clip(core, one_shot, props=props)
        _assert_frames_equal(_window_model(core, marked, temporal_luma), alone)
    frames = shot_frames("square", 4) + shot_frames("bars", 4)
    found = _window_model(core, _yuv_clip(core, frames), temporal_luma)
    none = _yuv_clip(core, frames, props=lambda n: {"_SceneChangePrev": 0})
    unmarked = _window_model(core, none, temporal_luma)
    assert np.abs(unmarked[3][0].astype(int) - found[3][0].astype(int)).max() > 2
    _assert_frames_equal(unmarked[:2], found[:2])  # windows away from the cut
