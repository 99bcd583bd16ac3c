"""Inverse telecine on generated film: 23.976p pictures with motion through FFmpeg's
``telecine`` (3:2 pulldown), encoded as a DVD would (MPEG-2, flagged top field first) or
as a progressive H.264 file, decoded back into film frames."""

from __future__ import annotations

import logging
from collections import deque
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from clipgen import film_frames, film_picture, make_video_clip, telecine

from vidsr.errors import OptionsError
from vidsr.io.decode import Decoder, Window
from vidsr.io.deinterlace import DeinterlacePlan, deinterlaced_info, plan_deinterlace
from vidsr.io.ivtc import Cadence, cycle_times
from vidsr.io.probe import probe

IVTC = DeinterlacePlan("tff", "frame", "asked", method="ivtc")
FILM = 48


def luma_psnr(planes: np.ndarray, picture: np.ndarray) -> float:
    """PSNR of a decoded limited-range luma plane against a full-range film picture."""
    full = (planes.astype(np.float64) - 16) * 255 / 219
    error = np.mean((full - picture) ** 2)
    return float("inf") if error == 0 else 10 * np.log10(255 ** 2 / error)


def film_shown(path: Path, pictures: list[np.ndarray]) -> tuple[list[int], list[float],
                                                                 list[Fraction]]:
    """For each frame inverse telecine gives: the nearest film picture, the PSNR against
    it, and the frame's time in seconds."""
    nearest, scores, times = [], [], []
    with Decoder(path, batch_size=8, deinterlace=IVTC) as decoder:
        for batch in decoder:
            for k, pts in enumerate(batch.pts):
                psnrs = [luma_psnr(batch.planes[0][k], p) for p in pictures]
                nearest.append(int(np.argmax(psnrs)))
                scores.append(max(psnrs))
                times.append(pts * batch.time_base)
    return nearest, scores, times


@pytest.fixture(scope="module")
def pictures() -> list[np.ndarray]:
    return [film_picture(i) for i in range(72)]


@pytest.mark.parametrize("codec, name", [("mpeg2video", "dvd.mpg"), ("libx264", "p.mkv")])
def test_steady_pulldown_gives_back_every_film_frame_at_film_rate(tmp_path, pictures, codec,
                                                                  name):
    src = make_video_clip(tmp_path / name, telecine(pictures[:FILM]), codec=codec)
    assert probe(src).frame_count in (None, 60)
    nearest, scores, times = film_shown(src, pictures[:FILM])
    assert nearest == list(range(FILM))
    assert min(scores) >= 35
    start = times[0]
    # 30000/1001 to exactly 24000/1001, in the MPEG-PS 1/90000 ticks and Matroska's ms.
    step = Fraction(1001, 24000)
    if codec == "mpeg2video":
        assert [t - start for t in times] == [i * step for i in range(FILM)]
    else:
        cycles = [t - start for t in times[::4]]
        assert all(abs(c - i * 5 * Fraction(1001, 30000)) <= Fraction(1, 1000)
                   for i, c in enumerate(cycles))
        assert len({b - a for a, b in zip(times[:3], times[1:4], strict=True)}) == 1


def slow_pan(count: int) -> list[np.ndarray]:
    """Film of a smooth texture panned 1 px right and 1 px down a frame: so little changes
    between film frames that x264 quantises the comb of the woven frames away."""
    texture = np.kron(film_picture(0), np.ones((4, 4)))
    kernel = np.ones(4) / 4
    for axis in (0, 1):
        texture = np.apply_along_axis(np.convolve, axis, texture, kernel, "same")
    return [texture[8 + i: 8 + i + 128, 8 + i: 8 + i + 192].round().astype(np.uint8)
            for i in range(count)]


def test_film_comes_back_from_h264_that_coded_away_the_comb(tmp_path):
    # x264 codes the two woven frames of each cycle as progressive pictures, and at CRF 23
    # their comb is gone: only the repeated fields tell where the film frames are.
    film = slow_pan(FILM)
    src = make_video_clip(tmp_path / "p.mkv", telecine(film), codec="libx264", crf=23)
    straight = make_video_clip(tmp_path / "film.mkv", film_frames(film), codec="libx264",
                               crf=23, rate=Fraction(24000, 1001))
    nearest, scores, _ = film_shown(src, film)
    assert nearest == list(range(FILM))
    # Within the codec's own noise: what the same film coded straight keeps, less 3 dB.
    with Decoder(straight, batch_size=8) as decoder:
        coded = [luma_psnr(plane, film[i]) for i, plane in
                 enumerate(p for batch in decoder for p in batch.planes[0])]
    assert min(scores) >= min(35.0, min(coded) - 3)


def test_film_that_holds_still_keeps_its_cadence(tmp_path):
    # The film holds a picture for 10 frames (still cycles show no repeat) and moves on:
    # the phase learnt before the still stretch places the woven pairs after it.
    pan = slow_pan(FILM)
    film = pan[:20] + [pan[19]] * 10 + pan[20:FILM - 10]
    src = make_video_clip(tmp_path / "p.mkv", telecine(film), codec="libx264", crf=23)
    nearest, scores, _ = film_shown(src, film)
    first_alike = [next(j for j in range(FILM) if np.array_equal(film[j], film[i]))
                   for i in range(FILM)]
    assert nearest == first_alike
    assert min(scores) >= 35


def video_title(count: int) -> list[np.ndarray]:
    """Video-rate pictures (a title shot on video): bars moving 3 px a field, each frame's
    fields 1/60 s apart, top field first."""
    _, x = np.mgrid[0:128, 0:192]
    frames = []
    for i in range(count):
        frame = np.empty((128, 192), np.uint8)
        for row, t in ((0, 2 * i), (1, 2 * i + 1)):
            frame[row::2] = (((x + 3 * t) // 8) % 2 * 200 + 28)[row::2]
        frames.append(frame)
    return frames


def comb(picture: np.ndarray) -> float:
    """How far the odd rows lie from the mean of the even rows around them."""
    rows = picture.astype(np.float64)
    return float(np.abs(rows[1:-1:2] - (rows[0:-2:2] + rows[2::2]) / 2).mean())


def test_a_video_rate_title_between_film_is_deinterlaced(tmp_path):
    # No field repeats in the title: the cadence is lost there, and fieldmatch + bwdif
    # deinterlace it, while the film around it comes back frame for frame.
    film, title = slow_pan(40), video_title(15)
    frames = telecine(film[:20]) + film_frames(title) + telecine(film[20:])
    src = make_video_clip(tmp_path / "p.mkv", frames, codec="libx264", crf=18)
    shown: list[int] = []
    combs: list[float] = []
    with Decoder(src, batch_size=8, deinterlace=IVTC) as decoder:
        for batch in decoder:
            for plane in batch.planes[0]:
                psnrs = [luma_psnr(plane, picture) for picture in film]
                if max(psnrs) >= 35:
                    shown.append(int(np.argmax(psnrs)))
                else:
                    combs.append(comb(plane))
    assert shown == list(range(40))
    # Within two frames of its ends the title may still be taken for film (the cadence is
    # judged on whole cycles); inside, every frame is deinterlaced.
    assert len(combs) >= 10
    assert sum(c < comb(title[0]) / 4 for c in combs) >= len(combs) - 4 >= 8


def test_cadence_breaks_keep_every_film_frame_once(tmp_path, pictures):
    # Three telecined pieces joined at edits: the first cut after a repeat (two repeats in
    # one cycle, then a new phase), the third starting mid-pattern (a cycle with none).
    # Film frames 14, 15 and 36 to 38 lose fields at the cuts and are not in the video.
    frames = (telecine(pictures[0:16])[:18] + telecine(pictures[16:36], "32")
              + telecine(pictures[36:56])[4:])
    src = make_video_clip(tmp_path / "cuts.mpg", frames, codec="mpeg2video")
    expected = [*range(0, 14), *range(16, 36), *range(39, 56)]
    nearest, scores, _ = film_shown(src, pictures[:56])
    assert nearest == expected
    assert min(scores) >= 35
    # A fixed 1 in 5 would have kept 51 of the 64 frames only by chance of the cuts.
    assert len(frames) == 64 and len(nearest) == 51


def test_timing_rule_is_exact_for_any_cycle_length():
    # A cycle of 5 MPEG frames (3003 ticks of 1/90000 each) split into k frames, k = 1..6.
    for kept in range(1, 7):
        times = cycle_times(0, 5 * 3003, kept)
        assert [Fraction(t, 60) for t in times] == [Fraction(i * 5 * 3003, kept)
                                                   for i in range(kept)]
    # Cycle after cycle of a steady cadence: frame n at exactly n * 1001/24000 s.
    base = Fraction(1, 90000) / 60
    shown = [t * base for c in range(1000) for t in cycle_times(c * 15015, (c + 1) * 15015, 4)]
    assert shown == [n * Fraction(1001, 24000) for n in range(4000)]
    # Matroska's millisecond times: each cycle spans what it spans, no error carried on.
    assert cycle_times(167, 334, 4) == [10020, 12525, 15030, 17535]
    assert cycle_times(0, 167, 5)[-1] == 8016


def test_cadence_decisions():
    steady = Cadence()
    assert steady.drops([float("inf"), 20.0, 1.0, 18.0, 25.0]) == (2,)
    assert steady.drops([19.0, 22.0, 0.8, 30.0, 21.0]) == (2,)
    assert (steady.phase, steady.noise) == (2, 0.9)
    # A still scene shows no repeat: the phase decides.
    assert steady.drops([1.0, 0.9, 1.1, 1.0, 0.8]) == (2,)
    # Film that repeats a frame itself: two repeats, not confirmed by the next cycle.
    assert steady.drops([20.0, 22.0, 0.8, 25.0, 0.7], [20.0, 21.0, 0.9, 24.0, 22.0]) == (2,)
    # The cadence moved back at an edit: two repeats, the next cycle's at the new place.
    assert steady.drops([20.0, 22.0, 0.8, 25.0, 0.7], [20.0, 21.0, 23.0, 24.0, 0.9]) == (2, 4)
    assert steady.phase == 4
    # The cadence moved on: every frame a new picture.
    assert steady.drops([20.0, 22.0, 18.0, 25.0, 19.0]) == ()
    assert steady.phase is None
    # Before any noise is known, a break is never believed.
    fresh = Cadence()
    assert fresh.drops([float("inf"), 20.0, 18.0, 25.0, 19.0]) == (2,)
    # The last, short cycle: a repeat only where the phase falls in it.
    assert steady.drops([20.0, 0.9, 19.0]) == (1,)
    still = Cadence(phase=4, repeats=deque([0.9]))
    assert still.drops([1.0, 0.9]) == ()
    assert still.drops([1.0, 0.9, 1.1, 1.0, 0.8]) == (4,)


def test_plan_finds_the_field_order_flagged_or_measured(tmp_path, pictures):
    dvd = make_video_clip(tmp_path / "dvd.mpg", telecine(pictures[:24]), codec="mpeg2video")
    plan = plan_deinterlace(probe(dvd), "ivtc", "auto", "frame")
    assert plan == DeinterlacePlan("tff", "frame", "the stream is flagged tt", method="ivtc")
    assert "inverse telecine, tff" in plan.to_text()
    flat = make_video_clip(tmp_path / "p.mkv", telecine(pictures[:24]), codec="libx264")
    info = probe(flat)
    assert info.field_order == "progressive"
    measured = plan_deinterlace(info, "ivtc", "auto", "frame")
    assert measured is not None and measured.order == "tff" and "measured" in measured.reason
    assert plan_deinterlace(info, "ivtc", "bff", "frame").order == "bff"
    film = deinterlaced_info(probe(dvd), plan)
    assert film.average_rate == Fraction(24000, 1001) and film.frame_count in (None, 24)
    assert film.time_base == Fraction(1, 90000 * 60) and film.field_order == "progressive"


def test_field_rate_and_stretches_are_refused(tmp_path, pictures):
    dvd = make_video_clip(tmp_path / "dvd.mpg", telecine(pictures[:8]), codec="mpeg2video")
    with pytest.raises(OptionsError, match="--deinterlace-rate field does not apply"):
        plan_deinterlace(probe(dvd), "ivtc", "auto", "field")
    with pytest.raises(OptionsError, match="reads the whole stream"):
        Decoder(dvd, batch_size=1, deinterlace=IVTC, window=Window(start=3003))
    with Decoder(dvd, batch_size=4, deinterlace=IVTC, window=Window()) as whole:
        assert sum(len(b.pts) for b in whole) == 8


def test_cadence_follows_its_phase_through_codec_noise():
    # Changes measured on real footage in H.264 at CRF 28, the repeat at place 2.
    steady = Cadence(phase=2, repeats=deque([1.5]))
    # Slow motion: no frame clearly a repeat, another one least changed.
    assert steady.drops([8.14, 8.15, 5.0, 8.0, 3.49]) == (2,)
    # Faster motion lifts the repeat's noise beyond the one learnt: still the phase.
    assert steady.drops([8.55, 7.95, 4.93, 9.59, 5.55]) == (2,)
    assert steady.phase == 2
    # The last, short cycle holds no repeat where the phase falls outside it.
    assert steady.drops([2.97, 9.68]) == ()
    # The stream starts with an orphan field: five pictures, the next cycle's repeat tells
    # the noise, nothing is dropped.
    start = Cadence()
    assert start.drops([float("inf"), 10.7, 22.8, 12.9, 7.7], [0.7, 10.5, 7.0, 7.1, 5.8]) == ()
    # Heavy noise and no clear repeat yet: the place least changed over two cycles.
    noisy = Cadence()
    assert noisy.drops([3.64, 1.76, 2.18, 1.99, 3.07], [3.53, 1.92, 2.28, 2.05, 3.21]) == (1,)
    assert noisy.drops([2.67, 2.42, 3.55, 1.24, 9.11], [16.3, 2.36, 9.88, 3.08, 5.25]) == (1,)


def test_auto_finds_film_flagged_progressive_only_at_pulldown_rates(tmp_path, pictures,
                                                                     caplog):
    frames = telecine(pictures[:40])
    ntsc = make_video_clip(tmp_path / "ntsc.mkv", frames, codec="libx264")
    plan = plan_deinterlace(probe(ntsc), "auto", "auto", "frame")
    assert plan is not None and plan.method == "ivtc" and plan.order == "tff"
    # The same pictures at 25 fps: no pulldown makes that rate, so the flag stands unmeasured.
    pal = make_video_clip(tmp_path / "pal.mkv", telecine(pictures[:40]), codec="libx264",
                          rate=Fraction(25))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vidsr"):
        assert plan_deinterlace(probe(pal), "auto", "auto", "frame") is None
    assert "flagged progressive" not in caplog.text  # what a measurement logs
