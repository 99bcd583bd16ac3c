"""vsvidsr with real files and real hosts: bestsource, vspipe, and ``vidsr script.vpy``."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

vs = pytest.importorskip("vapoursynth", reason="needs VapourSynth (pip install '.[vapoursynth]')")
vsvidsr = pytest.importorskip("vsvidsr", reason="vsvidsr is installed by pip install -e .")

from vidsr.io.colour import ColourSpec  # noqa: E402
from vidsr.io.encode_options import EncodeOptions  # noqa: E402
from vidsr.plan.run_plan import EngineOptions  # noqa: E402
from vidsr.run.transcode import RunControl, upscale_video  # noqa: E402

BIN = Path(sys.executable).parent
VSPIPE = BIN / "vspipe"
COLOUR = ColourSpec("smpte170m", False, "smpte170m", "smpte170m")
PTS_MS = [0, 40, 80, 150, 190, 260, 300, 340]  # VFR: 40 and 70 ms frames


def has_bestsource() -> bool:
    return hasattr(vs.core, "bs")


@pytest.fixture(scope="module")
def vspipe() -> Path:
    """vspipe, configured for this Python once (``vapoursynth config``), or a skip."""
    if not VSPIPE.exists():
        pytest.skip(f"no vspipe beside this Python at {VSPIPE} (the vapoursynth wheel installs"
                    " it: pip install '.[vapoursynth]')")
    probe = subprocess.run([str(VSPIPE), "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        subprocess.run([str(BIN / "vapoursynth"), "config"], capture_output=True, check=False)
        probe = subprocess.run([str(VSPIPE), "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"vspipe does not start: {probe.stderr.strip().splitlines()[-1:]}")
    return VSPIPE


@pytest.fixture
def vfr_file(clip):
    return clip("vfr.mkv", width=32, height=24, pts=PTS_MS, colour=COLOUR,
                sar=Fraction(4, 3), codec="libx264", lossless=True)


@pytest.mark.skipif(not has_bestsource(), reason="needs vapoursynth-bestsource")
def test_a_bestsource_file_keeps_frame_count_durations_and_colour(vfr_file):
    core = vs.core
    source = core.bs.VideoSource(str(vfr_file), cachemode=0)
    up = vsvidsr.upscale(source, "espcn", scale=2, device="cpu", precision="fp32")
    assert (up.num_frames, up.width, up.height) == (len(PTS_MS), 64, 48)
    kept = ("_DurationNum", "_DurationDen", "_Matrix", "_Primaries", "_Transfer", "_Range",
            "_SARNum", "_SARDen", "_FieldBased")
    durations = []
    for before, after in zip(source.frames(), up.frames(), strict=True):
        assert {k: after.props.get(k) for k in kept} == {k: before.props.get(k) for k in kept}
        if "_DurationNum" in after.props:  # bestsource cannot know the last frame's
            durations.append(Fraction(after.props["_DurationNum"],
                                      after.props["_DurationDen"]))
    # The file's own timing: each frame lasts until the next one starts.
    gaps = zip(PTS_MS[:-1], PTS_MS[1:], strict=True)
    assert durations == [Fraction(b - a, 1000) for a, b in gaps]
    frame = up.get_frame(0)
    assert (frame.props["_Matrix"], frame.props["_Range"]) == (6, 0)  # smpte170m, limited
    assert (frame.props["_SARNum"], frame.props["_SARDen"]) == (4, 3)


def _script(path: Path, body: str) -> Path:
    path.write_text("import vapoursynth as vs\nimport vsvidsr\ncore = vs.core\n" + body)
    return path


def _source_lines(vfr_file: Path) -> str:
    # A lossless file, so vspipe and vidsr start from the same planes.
    return f"clip = core.bs.VideoSource({str(vfr_file)!r}, cachemode=0)\n"


@pytest.mark.skipif(not has_bestsource(), reason="needs vapoursynth-bestsource")
def test_vspipe_runs_vsvidsr_and_vidsr_reads_the_same_script(vspipe, vfr_file, tmp_path):
    upscaled = _script(tmp_path / "up.vpy", _source_lines(vfr_file) + (
        "clip = vsvidsr.upscale(clip, 'espcn', scale=2, device='cpu', precision='fp32')\n"
        "clip.set_output()\n"))
    y4m = tmp_path / "out.y4m"
    run = subprocess.run([str(vspipe), "-c", "y4m", str(upscaled), "-"], capture_output=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    y4m.write_bytes(run.stdout)
    with av.open(str(y4m)) as piped:
        piped_frames = [f.to_ndarray() for f in piped.decode(video=0)]
    assert len(piped_frames) == len(PTS_MS)
    assert piped_frames[0].shape == (48 * 3 // 2, 64)  # yuv420p 64x48, planes stacked

    plain = _script(tmp_path / "plain.vpy", _source_lines(vfr_file) + "clip.set_output()\n")
    out = tmp_path / "out.mkv"
    # What `vidsr plain.vpy out.mkv --model espcn --scale 2 --precision fp32 --codec ffv1` runs.
    upscale_video(plain, out, model="espcn", scale=2,
                  engine=EngineOptions(device="cpu", precision="fp32"),
                  encode=EncodeOptions(codec="ffv1"), control=RunControl(progress=False))
    with av.open(str(out)) as written:
        stream = written.streams.video[0]
        frames = list(written.decode(stream))
        assert [round(f.pts * stream.time_base * 1000) for f in frames] == PTS_MS
        vidsr_frames = [f.to_ndarray() for f in frames]
        assert (stream.codec_context.colorspace, stream.codec_context.color_range) == (6, 1)
    assert len(vidsr_frames) == len(piped_frames)
    for a, b in zip(vidsr_frames, piped_frames, strict=True):
        assert np.array_equal(a, b)


def test_vspipe_survives_a_failing_frame(vspipe, tmp_path):
    """A fault inside a request ends vspipe with an error, not a crash or a hang."""
    script = _script(tmp_path / "nan.vpy", (
        "from vidsr.models.zoo import load_model\n"
        "model = load_model('compact', scale=2)\n"
        "model.module.body[0].weight.data.fill_(float('nan'))\n"
        "clip = core.std.BlankClip(width=32, height=24, format=vs.RGBS, length=4)\n"
        "vsvidsr.upscale(clip, model, device='cpu', precision='fp32').set_output()\n"))
    # Raw output: y4m cannot carry RGBS.
    run = subprocess.run([str(vspipe), str(script), "-"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1  # an error exit, not a signal
    assert ("the model gave non-finite or out-of-range values (NaN, Inf or past ±16) on frame"
            in run.stderr)


def test_vidsr_models_shows_the_vapoursynth_usage_next_to_the_cli(capsys):
    from vidsr.__main__ import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "  vidsr IN OUT --model NAME --scale N\n" in out
    assert '  clip = vsvidsr.upscale(clip, model="NAME", scale=N)\n' in out
