import logging
from fractions import Fraction

import av
import numpy as np
import pytest

from vidsr.errors import OptionsError
from vidsr.io.colour import ColourSpec
from vidsr.io.decode import Decoder
from vidsr.io.encode import Encoder
from vidsr.io.encode_options import (
    EncodeOptions,
    choose_output_layout,
    codec_options,
    encoder_formats,
)
from vidsr.io.frames import FrameBatch, PlaneLayout
from vidsr.io.output_plan import plan_output
from vidsr.io.pixfmt import nearest_format, source_format
from vidsr.io.probe import probe

FAST = EncodeOptions(codec="libx264", crf=30, preset="ultrafast")


def _output_plan(src, dst, *, options=FAST, scale=1):
    with Decoder(src, batch_size=4) as dec:
        info = dec.info
        return plan_output(info, dec.container, dst, width=info.width * scale,
                           height=info.height * scale, encode=options)


def _transcode(src, dst, *, options=FAST, scale=1):
    plan = _output_plan(src, dst, options=options, scale=scale)
    with Decoder(src, batch_size=4) as dec, Encoder(dst, plan, src) as enc:
        for batch in dec:
            planes = [p.repeat(scale, axis=1).repeat(scale, axis=2) for p in batch.planes]
            enc.write(FrameBatch(planes, batch.pts, batch.time_base, batch.first_index,
                                 plan.layout))
    return probe(dst)


def _video_times(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sorted(round(float(p.pts * s.time_base), 3) for p in c.demux(s) if p.size)


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_vfr_pts_sar_colour_survive(clip, tmp_path, ext):
    pts = [0, 40, 100, 120, 200, 333, 340, 500]
    spec = ColourSpec("bt709", True, "bt709", "bt709")
    src = clip("vfr.mkv", pts=pts, sar=Fraction(8, 9), colour=spec, content="moving")
    out = _transcode(src, tmp_path / f"out.{ext}", scale=2)
    assert _video_times(tmp_path / f"out.{ext}") == [p / 1000 for p in pts]
    assert (out.width, out.height, out.sar) == (128, 96, Fraction(8, 9))
    assert out.colour == spec
    assert out.duration == pytest.approx(probe(src).duration, abs=0.001)
    assert len(_video_times(tmp_path / f"out.{ext}")) == 8


def test_untagged_sd_source_is_tagged_explicitly(clip, tmp_path):
    out = _transcode(clip("sd.mkv", rate=25), tmp_path / "out.mp4", scale=2)
    assert out.colour == ColourSpec("bt470bg", False, "bt470bg", "smpte170m", tagged=True)


def test_streams_chapters_metadata_copied(clip, tmp_path, caplog):
    chapters = [(0.0, 0.12, "Intro"), (0.12, 0.32, "Main")]
    src = clip("full.mkv", audio="flac", subtitles=True, chapters=chapters,
               metadata={"title": "Test clip", "comment": "vidsr"})
    dst = tmp_path / "out.mkv"
    _transcode(src, dst)
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        assert [(s.type, s.codec_context.name) for s in b.streams] == [
            ("video", "h264"), ("audio", "flac"), ("subtitle", "srt")]
        tags = {k.lower(): v for k, v in b.metadata.items()}  # Matroska upper-cases tags
        assert tags["title"] == "Test clip" and tags["comment"] == "vidsr"
        assert b.streams.audio[0].metadata["language"] == "eng"
        assert b.streams.audio[0].metadata["title"] == "Tone"
        assert b.streams.subtitles[0].metadata["language"] == "fra"
        assert [(c["metadata"]["title"], float(c["start"] * c["time_base"]))
                for c in b.chapters()] == [("Intro", 0.0), ("Main", 0.12)]
        audio_in = [bytes(p) for p in a.demux(a.streams.audio[0]) if p.size]
        audio_out = [bytes(p) for p in b.demux(b.streams.audio[0]) if p.size]
        assert audio_out == audio_in and len(audio_in) > 1
    with av.open(str(dst)) as b:
        cues = [(p.pts, bytes(p)) for p in b.demux(b.streams.subtitles[0]) if p.size]
    assert cues == [(0, b"Hello"), (120, b"World")]
    assert "dropping" not in caplog.text


def test_subtitle_the_container_cannot_hold_is_named(clip, tmp_path):
    src = clip("subs.mkv", audio="aac", subtitles=True)
    plan = _output_plan(src, tmp_path / "out.mp4")
    assert [str(copy) for copy in plan.streams][0] == "#1 (audio, aac): copied"
    assert str(plan.streams[1]).startswith("#2 (subtitle, srt): dropped (mp4 cannot hold it")
    _transcode(src, tmp_path / "out.mp4")
    with av.open(str(tmp_path / "out.mp4")) as b:
        assert [s.type for s in b.streams] == ["video", "audio"]


def test_mp4_chapters_and_mov_text_to_mp4(clip, tmp_path):
    src = clip("c.mp4", subtitles=True, chapters=[(0.0, 0.1, "A"), (0.1, 0.32, "B")])
    dst = tmp_path / "out.mp4"
    _transcode(src, dst)
    with av.open(str(dst)) as b:
        assert [c["metadata"]["title"] for c in b.chapters()] == ["A", "B"]
        assert sum(s.type == "subtitle" for s in b.streams) == 1


def test_ten_bit_lossless_round_trip(clip, tmp_path):
    src = clip("g10.mkv", pix_fmt="yuv420p10le", codec="ffv1", content="gradient", frames=3)
    out = _transcode(src, tmp_path / "out.mkv", options=EncodeOptions(codec="ffv1", crf=20))
    assert out.layout == PlaneLayout("yuv", 10, 1, 1, "yuv420p10le")
    with Decoder(src, batch_size=3) as a, Decoder(tmp_path / "out.mkv", batch_size=3) as b:
        for pa, pb in zip(next(iter(a)).planes, next(iter(b)).planes, strict=True):
            np.testing.assert_array_equal(pa, pb)


def test_output_layout_choice(caplog):
    ten = PlaneLayout("yuv", 10, 1, 1, "yuv420p10le")
    assert choose_output_layout("libx264", ten) == ten
    with caplog.at_level(logging.WARNING, logger="vidsr"):
        got = choose_output_layout("libsvtav1", PlaneLayout("yuv", 8, 0, 0, "yuv444p"))
    assert got.pix_fmt == "yuv420p"
    assert "libsvtav1 cannot encode yuv444p; writing yuv420p instead" in caplog.text
    assert choose_output_layout("libx264", PlaneLayout("rgb", 8, pix_fmt="gbrp")).pix_fmt == (
        "yuv444p")
    with pytest.raises(OptionsError, match="libsvtav1 cannot encode pixel format yuv444p; "
                                           "it takes: yuv420p, yuv420p10le"):
        choose_output_layout("libsvtav1", ten, "yuv444p")
    with pytest.raises(OptionsError, match="unknown video encoder 'nosuch'"):
        choose_output_layout("nosuch", ten)


def test_codec_option_mapping():
    assert codec_options(EncodeOptions("libx265", crf=22, preset="slow")) == {
        "crf": "22", "preset": "slow"}
    assert codec_options(EncodeOptions("libsvtav1", crf=30, preset="fast")) == {
        "crf": "30", "preset": "8"}
    assert codec_options(EncodeOptions("libvpx-vp9", crf=31, preset="3")) == {
        "crf": "31", "b": "0", "cpu-used": "3"}
    assert codec_options(EncodeOptions("hevc_nvenc", crf=24, preset="p5")) == {
        "rc": "vbr", "cq": "24", "preset": "p5"}
    assert codec_options(EncodeOptions("ffv1", crf=10, encoder_opts=(("level", "3"),))) == {
        "level": "3"}


def test_exception_inside_block_closes_without_finishing(clip, tmp_path):
    src = clip("a.mkv", frames=4)
    plan = _output_plan(src, tmp_path / "x.mkv")
    with pytest.raises(RuntimeError, match="engine failed"):
        with Encoder(tmp_path / "x.mkv", plan, src):
            raise RuntimeError("engine failed")
    assert (tmp_path / "x.mkv").exists()  # left for the caller to delete


@pytest.mark.parametrize(("codec", "source", "chosen"), [
    ("png", "yuv420p", "rgb24"), ("png", "yuv420p10le", "rgb48be"),
    ("qtrle", "yuv420p", "rgb24"), ("png", "gray", "gray"),
])
def test_colour_is_never_written_as_gray_or_palette(codec, source, chosen):
    # png and qtrle list gray beside rgb24; gray's planes once won as "planar" (D7).
    layout = source_format(source).layout
    assert nearest_format(layout, encoder_formats(codec)) == chosen
    assert choose_output_layout(codec, layout) == source_format(chosen).layout
