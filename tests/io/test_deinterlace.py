"""Field order detection and bwdif on synthetic interlaced clips: two fields of a moving
pattern, sampled half a frame apart, woven into each frame (TFF and BFF, flagged and not)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clipgen import INTERLACED_FRAMES as FRAMES
from clipgen import INTERLACED_HEIGHT as HEIGHT
from clipgen import INTERLACED_WIDTH as WIDTH
from clipgen import field_picture, make_interlaced, woven

from vidsr.errors import OptionsError
from vidsr.io.deinterlace import (
    DeinterlacePlan,
    Deinterlacer,
    comb_score,
    plan_deinterlace,
)
from vidsr.io.field_detect import detect_fields
from vidsr.io.probe import probe


def deinterlace_file(path: Path, plan: DeinterlacePlan) -> tuple[list[np.ndarray], list[int],
                                                                  Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        deinterlacer = Deinterlacer(plan, stream.time_base)
        frames = []
        for frame in container.decode(stream):
            frames += deinterlacer.push(frame)
        frames += deinterlacer.flush()
    lumas = [frame.to_ndarray(format="gray") for frame in frames]
    return lumas, [frame.pts for frame in frames], deinterlacer.time_base


@pytest.mark.parametrize("order", ["tff", "bff"])
@pytest.mark.parametrize("flagged", [True, False])
def test_auto_finds_the_field_order_flagged_or_measured(tmp_path: Path, order: str,
                                                        flagged: bool):
    flag = {"tff": "tt", "bff": "bb"}[order] if flagged else None
    path = make_interlaced(tmp_path / "clip.mkv", order, flag)
    info = probe(path)
    assert info.field_order == (flag or "unknown")
    plan = plan_deinterlace(info, "auto", "auto", "frame")
    assert plan is not None and plan.order == order
    assert ("flagged" in plan.reason) == flagged


def test_the_pictures_name_the_field_order(tmp_path: Path):
    verdict = detect_fields(make_interlaced(tmp_path / "b.mkv", "bff", None))
    assert (verdict.kind, verdict.order) == ("interlaced", "bff")
    assert verdict.evidence.startswith(f"measured {FRAMES - 1} frame pairs")


def test_progressive_sources_are_left_alone(tmp_path: Path):
    path = tmp_path / "p.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(field_picture(2 * index), format="gray")
            frame = frame.reformat(format="yuv420p")
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    info = probe(path)
    assert plan_deinterlace(info, "auto", "auto", "frame") is None  # measured progressive
    with pytest.raises(OptionsError, match="--field-order"):
        plan_deinterlace(info, "on", "auto", "frame")
    assert plan_deinterlace(info, "on", "bff", "frame").order == "bff"
    assert plan_deinterlace(info, "off", "auto", "frame") is None


def test_a_clip_flagged_progressive_is_deinterlaced_only_when_asked(tmp_path: Path):
    info = probe(make_interlaced(tmp_path / "c.mkv", "tff", "progressive"))
    assert plan_deinterlace(info, "auto", "auto", "frame") is None
    assert plan_deinterlace(info, "on", "auto", "frame").order == "tff"  # measured


@pytest.mark.parametrize("order", ["tff", "bff"])
@pytest.mark.parametrize("rate", ["frame", "field"])
def test_bwdif_output_is_progressive_with_exact_timestamps(tmp_path: Path, order: str,
                                                           rate: str):
    path = make_interlaced(tmp_path / "clip.mkv", order, {"tff": "tt", "bff": "bb"}[order])
    plan = plan_deinterlace(probe(path), "auto", "auto", rate)
    lumas, pts, time_base = deinterlace_file(path, plan)
    with av.open(str(path)) as container:
        source_tb = container.streams.video[0].time_base
    per_frame = round(Fraction(1, 25) / time_base)
    if rate == "frame":
        assert len(lumas) == FRAMES
        assert pts == [i * per_frame for i in range(FRAMES)]
    else:
        assert len(lumas) == 2 * FRAMES
        assert pts == [i * per_frame // 2 for i in range(2 * FRAMES)]
    assert time_base == source_tb / 2
    woven_comb = np.mean([comb_score(woven(i, order)) for i in range(FRAMES)])
    output_comb = np.mean([comb_score(luma) for luma in lumas])
    assert woven_comb > 0.3
    assert output_comb < 0.02, (woven_comb, output_comb)


def test_field_rate_follows_the_motion_of_each_field(tmp_path: Path):
    # At double rate, output frame k shows the picture at field time k: its even rows
    # (TFF: the first field's own rows) are the field itself, untouched by bwdif.
    path = make_interlaced(tmp_path / "clip.mkv", "tff", "tt")
    lumas, _, _ = deinterlace_file(path, plan_deinterlace(probe(path), "auto", "auto", "field"))
    for k in (2, 3, 8, 9):
        own_rows = slice(0, None, 2) if k % 2 == 0 else slice(1, None, 2)
        expected = field_picture(k)[own_rows]
        assert np.abs(lumas[k][own_rows].astype(int) - expected).max() <= 1


def test_bad_choices_are_refused(tmp_path: Path):
    info = probe(make_interlaced(tmp_path / "clip.mkv", "tff", "tt"))
    with pytest.raises(OptionsError, match="--deinterlace must be"):
        plan_deinterlace(info, "yes", "auto", "frame")
    with pytest.raises(OptionsError, match="--field-order must be"):
        plan_deinterlace(info, "auto", "top", "frame")
    with pytest.raises(OptionsError, match="--deinterlace-rate must be"):
        plan_deinterlace(info, "auto", "auto", "double")


@pytest.mark.parametrize(("order", "flag"), [("tff", "tb"), ("bff", "bt"), ("tff", "bt")])
def test_swapped_flags_are_read_as_ffmpeg_writes_them_and_checked_by_idet(tmp_path: Path,
                                                                          order: str,
                                                                          flag: str):
    # FFmpeg flags top-field-first encodes "tb"; a "bt" on top-field-first content (a flag
    # that disagrees with the pictures) is settled by measuring them.
    info = probe(make_interlaced(tmp_path / "clip.mkv", order, flag))
    assert info.field_order == flag
    plan = plan_deinterlace(info, "auto", "auto", "frame")
    assert plan is not None and plan.order == order
    assert plan.reason.startswith(f"the stream is flagged {flag}")
