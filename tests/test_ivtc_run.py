"""Inverse telecine in a whole run: telecined film (a DVD-like MPEG-2 with AAC audio, and a
progressive H.264 file) upscaled by the bundled ESPCN x2 with ``deinterlace="ivtc"``,
against the film frames themselves upscaled by the same model."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clipgen import FILM_RATE, film_frames, film_picture, make_video_clip, telecine

from vidsr.__main__ import main
from vidsr.io.encode_options import EncodeOptions
from vidsr.io.probe import probe
from vidsr.run.transcode import RunControl, TranscodeOptions, upscale_video

FILM = 48
LOSSLESS = EncodeOptions(codec="ffv1")


def upscale(src: Path, dst: Path, **options: object):
    return upscale_video(src, dst, model="espcn", scale=2, encode=LOSSLESS,
                         options=TranscodeOptions(**options),  # type: ignore[arg-type]
                         control=RunControl(progress=False))


def lumas(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="gray").astype(np.float64)
                for f in container.decode(video=0)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255 ** 2 / max(np.mean((a - b) ** 2), 1e-12)))


def stream_times(path: Path) -> dict[str, tuple[float, float]]:
    """Each stream's (start, duration) in seconds, as ffprobe would give them."""
    with av.open(str(path)) as container:
        times = {}
        for stream in container.streams:
            packets = [p for p in container.demux(stream) if p.size]
            container.seek(0)
            start = min(p.pts for p in packets) * stream.time_base
            end = max((p.pts + p.duration) for p in packets) * stream.time_base
            times[stream.type] = (float(start), float(end - start))
    return times


@pytest.fixture(scope="module")
def film_upscaled(tmp_path_factory) -> list[np.ndarray]:
    """The film frames as the model upscales them (a lossless 23.976p clip)."""
    folder = tmp_path_factory.mktemp("film")
    src = make_video_clip(folder / "film.mkv", film_frames([film_picture(i)
                                                            for i in range(FILM)]),
                          codec="ffv1", rate=FILM_RATE)
    upscale(src, folder / "film_x2.mkv", deinterlace="off")
    return lumas(folder / "film_x2.mkv")


@pytest.mark.parametrize("codec, name, audio", [("mpeg2video", "dvd.ts", True),
                                                ("libx264", "p.mkv", False)])
def test_telecined_film_comes_out_as_the_film(tmp_path, film_upscaled, codec, name, audio):
    pictures = [film_picture(i) for i in range(FILM)]
    src = make_video_clip(tmp_path / name, telecine(pictures), codec=codec, audio=audio)
    dst = tmp_path / "out.mkv"
    result = upscale(src, dst, deinterlace="ivtc")
    assert result.frames == FILM == len(telecine(pictures)) * 4 // 5
    out = probe(dst)
    assert out.average_rate == Fraction(24000, 1001)
    assert out.field_order == "progressive"
    frames = lumas(dst)
    assert len(frames) == FILM
    assert min(psnr(a, b) for a, b in zip(frames, film_upscaled, strict=True)) >= 35
    # The film lasts as long as the video it was telecined to, starts where it did, and the
    # audio keeps its place against it: as in a run that keeps the telecined frames.
    kept = upscale(src, tmp_path / "kept.mkv", deinterlace="off")
    assert kept.frames == len(telecine(pictures))
    film, video = stream_times(dst), stream_times(tmp_path / "kept.mkv")
    assert film["video"][0] == video["video"][0]
    assert film["video"][1] == pytest.approx(video["video"][1], abs=0.002)
    assert film["video"][1] == pytest.approx(stream_times(src)["video"][1], abs=0.002)
    if audio:
        assert film["audio"] == video["audio"]
        assert film["audio"][1] == pytest.approx(FILM / FILM_RATE, abs=0.03)


def test_dry_run_says_what_inverse_telecine_does(tmp_path, capsys):
    src = make_video_clip(tmp_path / "dvd.mpg", telecine([film_picture(i) for i in range(8)]),
                          codec="mpeg2video")
    args = [str(src), str(tmp_path / "out.mkv"), "--model", "nearest", "--scale", "2",
            "--dry-run", "--deinterlace", "ivtc"]
    assert main(args) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("deinterlace"))
    assert "inverse telecine, tff" in row and "flagged tt" in row
    assert "23.976 fps" in text
    assert main([*args, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["deinterlace"]["method"] == "ivtc"
    assert plan["output"]["rate"] == "24000/1001"
    assert main([*args, "--deinterlace-rate", "field"]) != 0
    assert "--deinterlace-rate field does not apply" in capsys.readouterr().err


def test_a_script_is_never_inverse_telecined(tmp_path, capsys):
    script = tmp_path / "in.vpy"
    script.write_text(
        "import vapoursynth as vs\n"
        "vs.core.std.BlankClip(width=32, height=24, format=vs.YUV420P8, length=2).set_output()\n")
    assert main([str(script), str(tmp_path / "out.mkv"), "--model", "nearest",
                 "--deinterlace", "ivtc", "--no-progress"]) != 0
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("vidsr: error: ") and "core.vivtc.VFM" in line
