"""A VapourSynth script as the transcoder's input: frames, timestamps, colour, audio, errors."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

pytest.importorskip("vapoursynth", reason="needs VapourSynth (pip install '.[vapoursynth]')")

from vidsr.errors import DecodeError, InputError  # noqa: E402
from vidsr.io.encode_options import EncodeOptions  # noqa: E402
from vidsr.io.probe import probe  # noqa: E402
from vidsr.io.script_source import ScriptSource  # noqa: E402
from vidsr.run.transcode import RunControl, plan_upscale, upscale_video  # noqa: E402

HEAD = "import vapoursynth as vs\ncore = vs.core\n"
# 3 frames at 24 fps, then 2 at 30 fps: a VFR clip, tagged BT.709 limited, 4:3 pixels, TFF.
VFR = HEAD + (
    "a = core.std.BlankClip(width=32, height=24, format=vs.YUV420P10, length=3, fpsnum=24,"
    " fpsden=1, color=[400, 512, 512])\n"
    "b = core.std.BlankClip(width=32, height=24, format=vs.YUV420P10, length=2, fpsnum=30,"
    " fpsden=1, color=[600, 500, 520])\n"
    "clip = core.std.SetFrameProps(a + b, _Matrix=1, _Primaries=1, _Transfer=1, _Range=0,"
    " _SARNum=4, _SARDen=3, _FieldBased=2)\n"
    "clip.set_output()\n"
)
AUDIO = ("core.std.BlankAudio(channels=[vs.FRONT_LEFT, vs.FRONT_RIGHT], length=9000, bits=16,"
         " samplerate=48000, waveform='sine').set_output(1)\n")


def script(tmp_path, body: str, name: str = "clip.vpy"):
    path = tmp_path / name
    path.write_text(body)
    return path


def test_probe_reads_size_format_colour_aspect_and_fields(tmp_path):
    info = probe(script(tmp_path, VFR))
    assert (info.width, info.height, info.pix_fmt, info.frame_count) == (32, 24,
                                                                        "yuv420p10le", 5)
    c = info.colour
    assert (c.matrix, c.full_range, c.primaries, c.transfer) == ("bt709", False, "bt709", "bt709")
    assert (info.sar, info.field_order) == (Fraction(4, 3), "tt")
    # No constant rate: timestamps count in a tick that holds 24 and 30 fps exactly.
    assert info.time_base == Fraction(1, 90000) and info.average_rate == 24


def test_frames_carry_timestamps_from_their_durations(tmp_path):
    with ScriptSource(script(tmp_path, VFR), batch_size=2) as source:
        batches = list(source)
    assert [len(b) for b in batches] == [2, 2, 1]
    pts = [p for b in batches for p in b.pts]
    assert pts == [0, 3750, 7500, 11250, 14250]  # 1/24 s = 3750 ticks, 1/30 s = 3000
    assert batches[0].planes[0].dtype == np.uint16
    assert batches[0].planes[0][0, 0, 0] == 400 and batches[2].planes[1][0, 0, 0] == 500


def test_a_constant_rate_script_counts_in_frames(tmp_path):
    body = HEAD + ("core.std.BlankClip(width=32, height=24, format=vs.RGB24, length=3,"
                   " fpsnum=30000, fpsden=1001, color=[10, 20, 30]).set_output()\n")
    with ScriptSource(script(tmp_path, body), batch_size=4) as source:
        (batch,) = list(source)
    assert source.info.time_base == Fraction(1001, 30000) and batch.pts == [0, 1, 2]
    # vidsr holds RGB as gbrp: G, B, R.
    assert [int(p[0, 0, 0]) for p in batch.planes] == [20, 30, 10]


def test_vidsr_writes_a_vfr_script_with_its_timing_colour_and_audio(tmp_path):
    out = tmp_path / "out.mkv"
    result = upscale_video(script(tmp_path, VFR + AUDIO), out, model="nearest", scale=2,
                           encode=EncodeOptions(codec="ffv1"),
                           control=RunControl(progress=False))
    assert result.frames == 5
    # The plan every sink writes from: the script's aspect ratio and field order.
    plan = plan_upscale(tmp_path / "clip.vpy", tmp_path / "other.mp4", model="nearest",
                        scale=2)
    assert (plan.output.sar, plan.output.field_order) == (Fraction(4, 3), "tt")
    with av.open(str(out)) as written:
        video = written.streams.video[0]
        frames = list(written.decode(video))
        assert [round(f.pts * video.time_base * 1000) for f in frames] == [0, 42, 83, 125, 158]
        ctx = video.codec_context
        assert (ctx.width, ctx.height, ctx.format.name) == (64, 48, "yuv420p10le")
        assert (ctx.colorspace, ctx.color_range, ctx.color_primaries) == (1, 1, 1)
        assert frames[4].to_ndarray(format="yuv420p10le")[0, 0] == 600
    with av.open(str(out)) as written:
        audio = written.streams.audio[0]
        assert (audio.codec_context.name, audio.rate, audio.channels) == ("flac", 48000, 2)
        samples = np.concatenate([f.to_ndarray() for f in written.decode(audio)], axis=1)
    assert samples.shape == (1, 9000 * 2)  # s16 interleaved: every sample, none added
    assert np.abs(samples.astype(np.int32)).max() > 1000  # the sine, not silence


def test_a_float_script_is_refused_with_the_conversion(tmp_path):
    body = HEAD + "core.std.BlankClip(width=32, height=24, format=vs.RGBS).set_output()\n"
    with pytest.raises(InputError, match=r"outputs RGBS; .*core\.resize\.Point\(clip,"
                                         r" format=vs\.RGB48\)"):
        probe(script(tmp_path, body))


def test_a_failing_script_is_one_line_naming_the_error(tmp_path):
    path = script(tmp_path, HEAD + "clip = core.std.BlankClip(\nraise ValueError('no source')\n")
    with pytest.raises(InputError) as caught:
        probe(path)
    assert "\n" not in str(caught.value) and "SyntaxError" in str(caught.value)
    with pytest.raises(InputError, match=r"the script failed: ValueError: no source$"):
        probe(script(tmp_path, HEAD + "raise ValueError('no source')\n", "raises.vpy"))
    with pytest.raises(InputError, match="sets no video output 0"):
        probe(script(tmp_path, HEAD + AUDIO, "audio_only.vpy"))


def test_a_frame_that_fails_stops_the_run_naming_it(tmp_path):
    body = HEAD + (
        "def fail(n, f):\n"
        "    if n == 2:\n"
        "        raise RuntimeError('the deinterlacer gave up')\n"
        "    return f\n"
        "clip = core.std.BlankClip(width=32, height=24, format=vs.YUV420P8, length=4)\n"
        "core.std.ModifyFrame(clip, clip, fail).set_output()\n")
    out = tmp_path / "out.mkv"
    with pytest.raises(DecodeError, match="frame 2: the script failed: RuntimeError: the"
                                          " deinterlacer gave up"):
        upscale_video(script(tmp_path, body), out, model="nearest", scale=2,
                      control=RunControl(progress=False))
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["clip.vpy"]


# A script of the frames in an .npz file (Y, U, V stacked over frames), each frame n with
# the props that MARKS (a dict expression of n) gives.
FRAMES_SCRIPT = HEAD + (
    "import numpy as np\n"
    "planes = [np.load({npz!r})[k] for k in ('y', 'u', 'v')]\n"
    "blank = core.std.BlankClip(width=planes[0].shape[2], height=planes[0].shape[1],"
    " format=vs.YUV420P8, length=len(planes[0]), fpsnum=25, fpsden=1)\n"
    "def fill(n, f):\n"
    "    out = f.copy()\n"
    "    for p, plane in enumerate(planes):\n"
    "        np.asarray(out[p])[...] = plane[n]\n"
    "    for key, value in ({marks}).items():\n"
    "        out.props[key] = value\n"
    "    return out\n"
    "core.std.ModifyFrame(blank, blank, fill).set_output()\n"
)


def test_a_window_model_honours_the_scripts_scene_change_props(tmp_path, temporal_luma):
    """`vidsr script.vpy` follows the script's cut marks as vsvidsr does: a marked cut is a
    cut where the pictures show none, and a 0 mark is none where they show one."""
    from clipgen import decoded_frames, shot_frames

    def upscaled(name, frames, marks="{}"):
        npz = tmp_path / f"{name}.npz"
        np.savez(npz, **{k: np.stack([f[p] for f in frames]) for p, k in enumerate("yuv")})
        src = script(tmp_path, FRAMES_SCRIPT.format(npz=str(npz), marks=marks), f"{name}.vpy")
        result = upscale_video(src, tmp_path / f"{name}.mkv", model=temporal_luma,
                               encode=EncodeOptions(codec="ffv1"),
                               control=RunControl(progress=False))
        return result.cuts, decoded_frames(tmp_path / f"{name}.mkv")

    def same(a, b):
        assert len(a) == len(b)
        for fa, fb in zip(a, b, strict=True):
            for pa, pb in zip(fa, fb, strict=True):
                np.testing.assert_array_equal(pa, pb)

    shot = shot_frames("square", 8)
    alone = upscaled("first", shot[:4])[1] + upscaled("second", shot[4:])[1]
    cuts, through = upscaled("through", shot)
    assert cuts == [] and np.abs(through[3][0].astype(int) - alone[3][0].astype(int)).max() > 2
    for name, marks in (("prev", "{'_SceneChangePrev': int(n == 4)}"),
                        ("next", "{'_SceneChangeNext': int(n == 3)}")):
        cuts, got = upscaled(name, shot, marks)
        assert cuts == [4], name
        same(got, alone)
    two_shots = shot_frames("square", 4) + shot_frames("bars", 4)
    found_cuts, found = upscaled("found", two_shots)
    assert found_cuts == [4]
    cuts, unmarked = upscaled("unmarked", two_shots, "{'_SceneChangePrev': 0}")
    assert cuts == []
    assert np.abs(unmarked[3][0].astype(int) - found[3][0].astype(int)).max() > 2
    same(unmarked[:2], found[:2])  # windows away from the cut
