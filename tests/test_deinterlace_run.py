"""Deinterlacing in a whole run: woven TFF/BFF clips (flagged and not) through
``upscale_video`` with the exact ``nearest`` x2 resizer, so every output frame's even
rows and columns are the deinterlaced frame itself and its comb can be measured."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clipgen import INTERLACED_FRAMES as FRAMES
from clipgen import damage_clip, field_picture, make_interlaced, woven

from vidsr.__main__ import main
from vidsr.errors import OptionsError
from vidsr.io.decode import Decoder
from vidsr.io.deinterlace import DeinterlacePlan, comb_score
from vidsr.io.encode_options import EncodeOptions
from vidsr.io.probe import probe
from vidsr.run.transcode import RunControl, TranscodeOptions, plan_upscale, upscale_video

FLAGS = {"tff": "tt", "bff": "bb"}
# The woven clip combs about half its pixels; bwdif's output none (tests/io/test_deinterlace.py).
COMBED, CLEAN = 0.3, 0.02


def upscale(src: Path, dst: Path, **options: object):
    return upscale_video(src, dst, model="nearest", scale=2, encode=EncodeOptions(codec="ffv1"),
                         options=TranscodeOptions(**options),  # type: ignore[arg-type]
                         control=RunControl(progress=False))


def decoded(path: Path) -> tuple[list[np.ndarray], list[Fraction]]:
    """The luma of every frame, back at the source's size, and its time in seconds."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return ([f.to_ndarray(format="gray")[::2, ::2] for f in frames],
            [f.pts * f.time_base for f in frames])


def mean_comb(lumas: list[np.ndarray]) -> float:
    return float(np.mean([comb_score(luma) for luma in lumas]))


def field_times_shown(lumas: list[np.ndarray]) -> list[int | None]:
    """For each frame, the field time (modulo the bars' period of 16 fields) whose picture
    it is; the bars are vertical, so bwdif rebuilds the missing rows exactly."""
    return [next((t for t in range(16)
                  if np.abs(luma.astype(int) - field_picture(t)).max() <= 1), None)
            for luma in lumas]


@pytest.mark.parametrize("order", ["tff", "bff"])
@pytest.mark.parametrize("flagged", [True, False])
@pytest.mark.parametrize("rate", ["frame", "field"])
def test_auto_deinterlaces_to_progressive_frames_at_exact_times(tmp_path, order, flagged, rate):
    src = make_interlaced(tmp_path / "in.mkv", order, FLAGS[order] if flagged else None)
    dst = tmp_path / "out.mkv"
    result = upscale(src, dst, deinterlace_rate=rate)
    per_frame = 2 if rate == "field" else 1
    assert result.frames == FRAMES * per_frame
    out = probe(dst)
    assert out.field_order == "progressive"
    assert out.average_rate == 25 * per_frame
    lumas, times = decoded(dst)
    assert times == [Fraction(k, 25 * per_frame) for k in range(FRAMES * per_frame)]
    assert mean_comb([woven(i, order) for i in range(FRAMES)]) > COMBED
    assert mean_comb(lumas) < CLEAN
    # Each frame is its first field's picture; at field rate each field's in turn.
    assert field_times_shown(lumas) == [t % 16 for t in range(0, 2 * FRAMES, 2 // per_frame)]


def test_off_keeps_the_fields_woven_and_flagged(tmp_path):
    src = make_interlaced(tmp_path / "in.mkv", "tff", "tt")
    dst = tmp_path / "out.mkv"
    assert upscale(src, dst, deinterlace="off").frames == FRAMES
    assert probe(dst).field_order == "tt"
    lumas, times = decoded(dst)
    assert times == [Fraction(k, 25) for k in range(FRAMES)]
    assert mean_comb(lumas) > COMBED


def test_field_order_given_overrides_the_flag(tmp_path):
    # TFF fields deinterlaced as BFF: each pair of fields is shown in the wrong order.
    src = make_interlaced(tmp_path / "in.mkv", "tff", "tt")
    plan = plan_upscale(src, tmp_path / "out.mkv", model="nearest", scale=2,
                        options=TranscodeOptions(field_order="bff"),
                        control=RunControl(progress=False))
    assert plan.deinterlace is not None
    assert (plan.deinterlace.order, plan.deinterlace.rate) == ("bff", "frame")
    assert plan.deinterlace.reason.startswith("asked; the stream is flagged tt; measured")
    upscale(src, tmp_path / "out.mkv", field_order="bff", deinterlace_rate="field")
    lumas, _ = decoded(tmp_path / "out.mkv")
    assert field_times_shown(lumas) == [(k ^ 1) % 16 for k in range(2 * FRAMES)]


def test_progressive_sources_are_planned_as_before(clip, tmp_path):
    src = clip("p.mkv", width=64, height=48, frames=4, content="moving", codec="ffv1")
    plan = plan_upscale(src, tmp_path / "out.mkv", model="nearest", scale=2,
                        control=RunControl(progress=False))
    assert plan.deinterlace is None and "deinterlace" not in plan.to_text()
    assert (plan.output.time_base, plan.output.rate) == (plan.source.time_base, 25)


@pytest.mark.parametrize("rate", ["frame", "field"])
def test_audio_stays_in_sync(tmp_path, rate):
    # Video from 0.04 s, audio from 0.02 s: the file starts at 0.02 s, so both move back
    # by 0.02 s (half a frame: one field) and the video still starts 0.02 s after the audio.
    src = make_interlaced(tmp_path / "in.mkv", "bff", "bb", first_frame=1, audio_start=960)
    dst = tmp_path / "out.mkv"
    upscale(src, dst, deinterlace_rate=rate)
    _, times = decoded(dst)
    per_frame = 2 if rate == "field" else 1
    assert times == [Fraction(1, 50) + Fraction(k, 25 * per_frame)
                     for k in range(FRAMES * per_frame)]
    with av.open(str(dst)) as container:
        packets = [packet for packet in container.demux(audio=0) if packet.size]
        samples = sum(frame.samples for packet in packets for frame in packet.decode())
    assert packets[0].pts * packets[0].time_base == 0
    assert samples == 48000 * FRAMES // 25


def test_dry_run_shows_the_deinterlacing(tmp_path, capsys):
    src = make_interlaced(tmp_path / "in.mkv", "bff", None)
    dst = tmp_path / "out.mkv"
    args = [str(src), str(dst), "--model", "nearest", "--scale", "2", "--dry-run",
            "--deinterlace-rate", "field"]
    assert main(args) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("deinterlace"))
    assert "bwdif, bff, a frame per field (double rate)" in row
    assert "measured 11 frame pairs" in row and "bottom field first" in row
    assert "50.000 fps, time base 1/2000" in text
    assert main([*args, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["deinterlace"]["order"] == "bff" and plan["deinterlace"]["rate"] == "field"
    assert plan["output"]["field_order"] == "progressive"
    assert plan["output"]["time_base"] == "1/2000" and plan["output"]["rate"] == "50/1"
    assert main([*args, "--deinterlace", "off", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["deinterlace"] is None
    assert not dst.exists()


def test_lost_frames_are_replaced_before_bwdif(clip):
    # A damaged H.264 clip deinterlaced at field rate: each lost frame's stand-in goes
    # through bwdif at its own time, so the fields keep their exact place.
    src = damage_clip(clip("c.mkv", frames=12, content="noise"))
    plan = DeinterlacePlan("tff", "field", "asked")
    with Decoder(src, batch_size=4, on_error="skip", deinterlace=plan) as decoder:
        batches = list(decoder)
        info, stream = decoder.info, decoder.source_info
    assert decoder.skipped > 0
    assert (info.time_base, info.average_rate, info.field_order) == (
        stream.time_base / 2, 2 * stream.average_rate, "progressive")
    assert info.frame_count_estimate == 2 * stream.frame_count_estimate == 24
    assert all(batch.time_base == info.time_base for batch in batches)
    pts = [p for batch in batches for p in batch.pts]
    assert pts == [k * 40 for k in range(24)]  # 1/2000 s ticks, one field each 1/50 s


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_a_script_is_deinterlaced_in_the_script(tmp_path, capsys, mode):
    pytest.importorskip("vapoursynth", reason="needs VapourSynth (pip install '.[vapoursynth]')")
    script = tmp_path / "clip.vpy"
    script.write_text(
        "import vapoursynth as vs\n"
        "clip = vs.core.std.BlankClip(width=32, height=24, format=vs.YUV420P8, length=2)\n"
        "vs.core.std.SetFrameProps(clip, _FieldBased=2).set_output()\n")
    options = TranscodeOptions(deinterlace=mode)  # type: ignore[arg-type]
    if mode == "on":
        with pytest.raises(OptionsError, match="deinterlace in the script"):
            plan_upscale(script, tmp_path / "out.mkv", model="nearest", scale=2,
                         options=options)
        assert main([str(script), str(tmp_path / "out.mkv"), "--model", "nearest",
                     "--deinterlace", "on", "--no-progress"]) != 0
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith("vidsr: error: ") and "deinterlace in the script" in line
        assert not (tmp_path / "out.mkv").exists()
        return
    plan = plan_upscale(script, tmp_path / "out.mkv", model="nearest", scale=2, options=options)
    assert plan.deinterlace is None and plan.output.field_order == "tt"


def test_bench_measures_the_deinterlaced_run(tmp_path):
    # The same decisions as `vidsr` with the same options: one frame per field here.
    from vidsr.commands.bench import BenchOptions, run_bench
    from vidsr.plan.run_plan import CpuOptions, EngineOptions

    src = make_interlaced(tmp_path / "in.mkv", "tff", "tt")
    report = run_bench(src, BenchOptions(model="nearest", scale=2, serial=False,
                                         run=TranscodeOptions(deinterlace_rate="field")),
                       EngineOptions(device="cpu", cpu=CpuOptions(threads=1)))
    assert report.frames == 2 * FRAMES
    assert report.plan["deinterlace"]["rate"] == "field"
    assert "deinterlace" in report.to_text()
