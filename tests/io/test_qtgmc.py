"""QTGMC as the deinterlacer (``--deinterlacer qtgmc``): woven clips of moving bars through
the transcoder with the exact ``nearest`` x2 resizer, compared with the progressive fields
they were woven from and with bwdif's timestamps; a span of the stream (what ``vidsr compare``
decodes) against the whole run, and a variable-rate clip's times. The missing-extra message is
checked in a Python where vsjetpack cannot be imported, so it runs without the extra too."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clipgen import INTERLACED_FRAMES as FRAMES
from clipgen import field_picture, make_interlaced, woven

from vidsr.errors import OptionsError
from vidsr.io import qtgmc
from vidsr.io.decode import Decoder, Window
from vidsr.io.deinterlace import DeinterlacePlan, plan_deinterlace, qtgmc_missing
from vidsr.io.encode_options import EncodeOptions
from vidsr.io.probe import probe
from vidsr.io.qtgmc import QtgmcSource, frame_times
from vidsr.run.transcode import RunControl, TranscodeOptions, upscale_video

ROOT = Path(__file__).resolve().parents[2]
needs_qtgmc = pytest.mark.skipif(qtgmc_missing() is not None,
                                 reason=f"the qtgmc extra is not installed ({qtgmc_missing()}"
                                        " missing): pip install 'vidsr[qtgmc]'")
FLAGS = {"tff": "tt", "bff": "bb"}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / mse) if mse else float("inf")


def upscale(src: Path, dst: Path, **options: object):
    return upscale_video(src, dst, model="nearest", scale=2, encode=EncodeOptions(codec="ffv1"),
                         options=TranscodeOptions(deinterlacer="qtgmc",  # type: ignore[arg-type]
                                                  **options),
                         control=RunControl(progress=False))


@needs_qtgmc
@pytest.mark.parametrize("order", ["tff", "bff"])
@pytest.mark.parametrize("rate", ["frame", "field"])
def test_qtgmc_run_keeps_bwdifs_times_and_the_audio_and_restores_the_fields(
        tmp_path, order, rate):
    src = make_interlaced(tmp_path / "in.mkv", order, FLAGS[order], first_frame=3,
                          audio_start=0)
    dst = tmp_path / "out.mkv"
    result = upscale(src, dst, deinterlace_rate=rate)
    per_frame = 2 if rate == "field" else 1
    assert result.plan.deinterlace is not None
    assert result.plan.deinterlace.deinterlacer == "qtgmc"
    assert "QTGMC" in result.plan.to_text()
    assert result.frames == FRAMES * per_frame
    with av.open(str(dst)) as container:
        frames = list(container.decode(video=0))
    with av.open(str(dst)) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    assert samples == 48000 * FRAMES // 25
    times = [f.pts * f.time_base for f in frames]
    # The same times bwdif gives the same clip: the video starts 3 frames in.
    with Decoder(src, batch_size=4,
                 deinterlace=DeinterlacePlan(order, rate, "bwdif's")) as bwdif:
        expected = [p * bwdif.info.time_base for batch in bwdif for p in batch.pts]
    assert times == expected
    assert times[:2] == [Fraction(3, 25), Fraction(3, 25) + Fraction(1, 25 * per_frame)]
    assert probe(dst).field_order == "progressive"
    # Each output frame against the progressive field picture it stands for.
    lumas = [f.to_ndarray(format="gray")[::2, ::2] for f in frames]
    fields = [field_picture(k * (2 // per_frame)) for k in range(len(lumas))]
    ours = np.mean([psnr(luma, field) for luma, field in zip(lumas, fields, strict=True)])
    woven_psnr = np.mean([psnr(woven(i, order), field_picture(2 * i)) for i in range(FRAMES)])
    assert ours > woven_psnr + 10, (ours, woven_psnr)


def frames_of(source: QtgmcSource) -> list[tuple[int, list[np.ndarray]]]:
    """(time, planes) of every frame ``source`` yields."""
    with source:
        return [(batch.pts[k], [plane[k] for plane in batch.planes])
                for batch in source for k in range(len(batch))]


@needs_qtgmc
@pytest.mark.parametrize("rate", ["frame", "field"])
def test_a_span_renders_only_its_frames_and_they_are_the_whole_runs(tmp_path, monkeypatch,
                                                                    rate):
    src = make_interlaced(tmp_path / "in.mkv", "tff", "tt")
    plan = DeinterlacePlan("tff", rate, "asked", deinterlacer="qtgmc")
    whole = frames_of(QtgmcSource(src, plan, batch_size=4))
    times = frame_times(src, probe(src))
    rendered: list[int] = []
    render = qtgmc.render_frames

    def counting(clip, *args, **kwargs):
        rendered.append(clip.num_frames)
        return render(clip, *args, **kwargs)

    monkeypatch.setattr(qtgmc, "render_frames", counting)
    span = Window(start=times[5], end=times[8])
    part = frames_of(QtgmcSource(src, plan, batch_size=4, window=span))
    per_frame = 2 if rate == "field" else 1
    # Frames 5, 6 and 7 (and their second fields), rendered alone, bit for bit the same.
    assert rendered == [3 * per_frame]
    assert [t for t, _ in part] == [t for t, _ in whole[5 * per_frame:8 * per_frame]]
    for (_, got), (_, expected) in zip(part, whole[5 * per_frame:], strict=False):
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)
    # One frame's span, as vidsr compare asks; a span past the end has no frames.
    one = frames_of(QtgmcSource(src, plan, batch_size=1, window=Window(times[11],
                                                                       times[11] + 1)))
    assert [t for t, _ in one] == [whole[11 * per_frame][0]]
    after = frames_of(QtgmcSource(src, plan, batch_size=1, window=Window(times[11] + 1, None)))
    assert [t for t, _ in after] == ([] if rate == "frame" else [whole[-1][0]])
    # A window model's span: two frames of context on each side, named so.
    source = QtgmcSource(src, plan, batch_size=4, window=Window(times[5], times[8], context=2))
    around = frames_of(source)
    assert [t for t, _ in around] == [t for t, _ in whole[5 * per_frame - 2:8 * per_frame + 2]]
    assert [source.is_context(t) for t, _ in around] == (
        [True] * 2 + [False] * 3 * per_frame + [True] * 2)


@needs_qtgmc
@pytest.mark.parametrize("rate", ["frame", "field"])
def test_a_variable_rate_interlaced_clip_keeps_its_times(tmp_path, rate):
    # Frames 40, 80 and 120 ms apart: each output frame at its frame's time (and its second
    # field half way to the next frame), as bwdif times them.
    pts = [0, 1, 2, 4, 5, 6, 9, 10, 11, 12, 14, 15]
    src = make_interlaced(tmp_path / "vfr.mkv", "bff", "bb", pts=pts)
    dst = tmp_path / "out.mkv"
    result = upscale(src, dst, deinterlace_rate=rate)
    assert result.frames == len(pts) * (2 if rate == "field" else 1)
    with av.open(str(dst)) as container:
        times = [f.pts * f.time_base for f in container.decode(video=0)]
    with Decoder(src, batch_size=4, deinterlace=DeinterlacePlan("bff", rate, "bwdif's")) as bwdif:
        expected = [p * bwdif.info.time_base for batch in bwdif for p in batch.pts]
    assert times == expected
    if rate == "frame":
        assert times == [Fraction(p, 25) for p in pts]
    else:
        assert times[6:8] == [Fraction(4, 25), Fraction(9, 50)]  # 160 ms, then half way to 200


@needs_qtgmc
def test_qtgmc_refuses_skipping_damaged_frames_at_plan_time(tmp_path):
    src = make_interlaced(tmp_path / "in.mkv", "tff", "tt")
    with pytest.raises(OptionsError, match="--on-error skip.*--deinterlacer bwdif"):
        upscale(src, tmp_path / "out.mkv", on_error="skip")


def test_an_unknown_deinterlacer_is_refused(tmp_path):
    info = probe(make_interlaced(tmp_path / "in.mkv", "tff", "tt"))
    with pytest.raises(OptionsError, match="--deinterlacer must be bwdif or qtgmc"):
        plan_deinterlace(info, "auto", "auto", "frame", "yadif")  # type: ignore[arg-type]


def test_without_the_extra_qtgmc_is_one_line_at_plan_time_and_progressive_files_need_none(
        tmp_path):
    interlaced = make_interlaced(tmp_path / "in.mkv", "tff", "tt")
    progressive = make_interlaced(tmp_path / "p.mkv", "tff", "progressive")
    # vsjetpack made unimportable in a fresh Python: what a user without the extra sees.
    code = ("import sys; sys.modules['vsdeinterlace'] = None;"
            " from vidsr.__main__ import main; sys.exit(main(sys.argv[1:]))")

    def dry_run(src: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, str(src), str(tmp_path / "out.mkv"), "--model",
             "nearest", "--scale", "2", "--deinterlacer", "qtgmc", "--dry-run"],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
            env={"PYTHONPATH": f"{ROOT}:{ROOT / 'plugins' / 'vapoursynth'}",
                 "PATH": "/usr/bin:/bin"})

    refused = dry_run(interlaced)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        "vidsr: error: --deinterlacer qtgmc needs vsjetpack: pip install 'vidsr[qtgmc]'"]
    kept = dry_run(progressive)
    assert kept.returncode == 0, kept.stderr
    assert "deinterlace" not in kept.stdout
