"""End to end: generated clips through ``vidsr`` and back, with exact expectations."""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clipgen import (
    bar_values,
    cover_jpeg,
    make_alpha_clip,
    make_captioned_h264,
    make_pgs,
    make_streams_clip,
)

from vidsr.errors import InputError, ModelError, OptionsError, OutputError
from vidsr.io.colour import ColourSpec, HdrMetadata
from vidsr.io.encode_options import EncodeOptions
from vidsr.io.probe import probe
from vidsr.plan.run_plan import EngineOptions
from vidsr.run.transcode import TranscodeOptions, upscale_video

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BT709 = ColourSpec("bt709", False, "bt709", "bt709")
BT601 = ColourSpec("smpte170m", False, "smpte170m", "smpte170m")
QUIET = TranscodeOptions(progress=False)


def decode_planes(path: Path) -> list[list[np.ndarray]]:
    """Every frame's planes as numpy arrays (visible area only)."""
    frames = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            dtype = np.uint16 if "10" in frame.format.name else np.uint8
            planes = []
            for plane in frame.planes:
                h, w = plane.height, plane.width
                stride = plane.line_size // np.dtype(dtype).itemsize
                planes.append(np.frombuffer(plane, dtype=dtype, count=h * stride)
                              .reshape(h, stride)[:, :w].copy())
            frames.append(planes)
    return frames


def video_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return sorted(float(f.pts * f.time_base) for f in c.decode(video=0))


@pytest.mark.parametrize("colour", [BT709, BT601], ids=["bt709", "bt601"])
def test_colour_bars_survive_nearest_x2_within_one_code_value(clip, tmp_path, colour):
    src = clip("bars.mkv", width=128, height=64, frames=3, colour=colour, lossless=True)
    dst = tmp_path / "out.mkv"
    upscale_video(src, dst, model="nearest", scale=2, options=QUIET)

    out = probe(dst)
    assert (out.width, out.height) == (256, 128)
    assert (out.colour.matrix, out.colour.full_range, out.colour.primaries,
            out.colour.transfer) == (colour.matrix, False, colour.primaries, colour.transfer)
    expected = bar_values(colour.matrix, 8)
    for planes in decode_planes(dst):
        for p, plane in enumerate(planes):
            width = plane.shape[1]
            for bar in range(8):
                # The middle of each bar, away from the chroma transition between bars.
                lo, hi = (bar * width) // 8 + width // 32, ((bar + 1) * width) // 8 - width // 32
                values = plane[:, lo:hi].astype(int)
                assert np.abs(values - expected[bar, p]).max() <= 1, (p, bar)


def test_rgb_model_keeps_bar_colours(clip, tmp_path):
    """An RGB network path: YUV -> RGB -> model -> YUV, same matrix both ways."""
    src = clip("bars.mkv", width=128, height=64, frames=2, colour=BT709, lossless=True)
    dst = tmp_path / "out.mkv"
    model = _zero_compact(2)
    upscale_video(src, dst, model=model, options=QUIET,
                  encode=_lossless_x264())
    expected = bar_values("bt709", 8)
    planes = decode_planes(dst)[0]
    y = planes[0]
    for bar in range(8):
        lo, hi = bar * 32 + 8, (bar + 1) * 32 - 8
        assert np.abs(y[:, lo:hi].astype(int) - expected[bar, 0]).max() <= 1, bar


def _lossless_x264():
    return EncodeOptions(codec="libx264", encoder_opts=(("qp", "0"),))


def test_ten_bit_gradient_stays_ten_bit_without_banding(clip, tmp_path):
    src = clip("grad.mkv", width=256, height=32, frames=2, pix_fmt="yuv420p10le",
               content="gradient", colour=BT709, lossless=True)
    dst = tmp_path / "out.mkv"
    upscale_video(src, dst, model="bicubic", scale=2, options=QUIET, encode=_lossless_x264())
    out = probe(dst)
    assert out.layout.bit_depth == 10
    assert out.layout.pix_fmt == "yuv420p10le"
    y_in = decode_planes(src)[0][0]
    y_out = decode_planes(dst)[0][0]
    levels_in = np.unique(y_in[:, 8:-8])
    levels_out = np.unique(y_out[:, 16:-16])
    # Not squeezed through 8 bits: most levels are not multiples of 4, and as many as the source's.
    assert (levels_out % 4 != 0).mean() > 0.5
    assert len(levels_out) >= len(levels_in)


def test_vfr_timestamps_survive_to_the_millisecond(clip, tmp_path):
    pts = [0, 40, 80, 200, 230, 400, 433, 600]  # milliseconds, irregular
    src = clip("vfr.mkv", pts=pts, time_base=Fraction(1, 1000))
    dst = tmp_path / "out.mp4"
    result = upscale_video(src, dst, model="nearest", scale=2, options=QUIET)
    assert result.frames == len(pts)
    times = video_times(dst)
    assert [round(t * 1000) for t in times] == pts


@pytest.mark.parametrize(("codec", "kept"), [("libx264", True), ("libvpx-vp9", False),
                                             ("ffv1", False)])
def test_a_pixel_aspect_the_output_cannot_keep_is_warned_about(clip, tmp_path, caplog, codec,
                                                               kept):
    # x264 stores the SAR in its bitstream; VP9 and FFV1 only in the container, where the
    # bundled FFmpeg's Matroska muxer, as PyAV drives it, does not write it.
    src = clip("anamorphic.mkv", width=32, height=24, frames=2, sar=Fraction(16, 11))
    dst = tmp_path / "out.mkv"
    upscale_video(src, dst, model="nearest", scale=2, encode=EncodeOptions(codec=codec),
                  options=QUIET)
    assert (probe(dst).sar == Fraction(16, 11)) is kept
    assert ("cannot store the pixel aspect ratio 16:11" in caplog.text) is not kept


def test_sar_chapters_metadata_and_audio_packets_survive(clip, tmp_path):
    src = clip("rich.mkv", frames=25, sar=Fraction(4, 3), audio="flac",
               chapters=[(0.0, 0.5, "Opening"), (0.5, 1.0, "Ending")],
               metadata={"title": "Test title", "artist": "vidsr"})
    dst = tmp_path / "out.mkv"
    upscale_video(src, dst, model="nearest", scale=2, options=QUIET)

    out = probe(dst)
    assert out.sar == Fraction(4, 3)
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        tags = {k.lower(): v for k, v in b.metadata.items()}  # Matroska upper-cases tag names
        assert tags["title"] == "Test title"
        assert tags["artist"] == "vidsr"
        assert [c["metadata"].get("title") for c in b.chapters()] == ["Opening", "Ending"]
        assert [float(c["start"] * c["time_base"]) for c in b.chapters()] == [0.0, 0.5]
        audio_in = [bytes(p) for p in a.demux(audio=0) if p.size]
        audio_out = [bytes(p) for p in b.demux(audio=0) if p.size]
    assert audio_in and audio_in == audio_out


def test_subtitles_are_copied(clip, tmp_path):
    src = clip("subs.mkv", frames=10, subtitles=True)
    dst = tmp_path / "out.mkv"
    upscale_video(src, dst, model="nearest", scale=2, options=QUIET)
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        subs_in = [bytes(p) for p in a.demux(subtitles=0) if p.size]
        subs_out = [bytes(p) for p in b.demux(subtitles=0) if p.size]
    assert subs_in and subs_in == subs_out


def test_stream_the_container_cannot_hold_is_named(clip, tmp_path, caplog):
    src = clip("subs.mkv", frames=10, subtitles=True)  # srt subtitles
    dst = tmp_path / "out.mp4"  # mp4 cannot hold srt
    with caplog.at_level("WARNING", logger="vidsr"):
        upscale_video(src, dst, model="nearest", scale=2, options=QUIET)
    assert any("subtitle" in r.getMessage() and "#" in r.getMessage() for r in caplog.records)


def test_odd_sizes_work(clip, tmp_path):
    src = clip("odd.mkv", width=353, height=289, frames=3, codec="ffv1")
    dst = tmp_path / "out.mkv"
    result = upscale_video(src, dst, model="bicubic", scale=2, options=QUIET)
    assert (result.width, result.height) == (706, 578)
    assert (probe(dst).width, probe(dst).height) == (706, 578)


def test_odd_output_size_in_420_is_refused_before_any_work(clip, tmp_path):
    src = clip("odd.mkv", width=353, height=289, frames=2, codec="ffv1")
    with pytest.raises(OptionsError, match="cannot encode 1059x867 in yuv420p"):
        upscale_video(src, tmp_path / "out.mp4", model="nearest", scale=3, options=QUIET)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.mkv"]
    # A codec that takes odd 4:2:0 sizes does it.
    from vidsr.io.encode_options import EncodeOptions

    upscale_video(src, tmp_path / "out.mkv", model="nearest", scale=3, options=QUIET,
                  encode=EncodeOptions(codec="ffv1"))
    assert (probe(tmp_path / "out.mkv").width, probe(tmp_path / "out.mkv").height) == (1059, 867)


def test_luma_model_keeps_frame_count_and_size(clip, tmp_path):
    src = clip("in.mp4", width=48, height=32, frames=5)
    dst = tmp_path / "out.mp4"
    result = upscale_video(src, dst, model="espcn", scale=3, options=QUIET)
    assert result.frames == 5
    assert (probe(dst).width, probe(dst).height) == (144, 96)


# -- safety: nothing is lost -------------------------------------------------------------


def test_existing_output_is_never_clobbered_without_overwrite(clip, tmp_path):
    src = clip("in.mkv", frames=2)
    dst = tmp_path / "out.mkv"
    dst.write_bytes(b"precious")
    with pytest.raises(OutputError) as caught:
        upscale_video(src, dst, model="nearest", scale=2, options=QUIET)
    # Python's spelling here; the vidsr command says --overwrite (test_cli).
    assert str(caught.value) == f"{dst}: already exists (use overwrite=True to replace it)"
    assert dst.read_bytes() == b"precious"
    upscale_video(src, dst, model="nearest", scale=2,
                  options=TranscodeOptions(progress=False, overwrite=True))
    assert probe(dst).width == 128


def test_output_that_appears_during_the_run_is_not_replaced(tmp_path):
    dst = tmp_path / "out.mkv"
    from vidsr.io.safe_output import publish

    tmp = tmp_path / ".out.mkv.vidsr-test.mkv"
    tmp.write_bytes(b"new")
    dst.write_bytes(b"someone else's")
    with pytest.raises(OutputError, match="appeared while upscaling"):
        publish(tmp, dst, overwrite=False)
    assert dst.read_bytes() == b"someone else's"
    publish(tmp, dst, overwrite=True)
    assert dst.read_bytes() == b"new" and not tmp.exists()


def test_output_equal_to_input_is_refused(clip):
    src = clip("in.mkv", frames=2)
    before = src.read_bytes()
    with pytest.raises(OutputError, match="is the input"):
        upscale_video(src, src, model="nearest", scale=2,
                      options=TranscodeOptions(progress=False, overwrite=True))
    assert src.read_bytes() == before


def test_failure_midway_leaves_no_file(clip, tmp_path):
    src = clip("in.mkv", frames=12)
    dst = tmp_path / "out.mkv"
    from vidsr.models.zoo import load_model

    model = load_model("nearest", scale=2)
    calls = 0
    real_forward = model.module.forward

    def failing_forward(x):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("simulated failure in the model")
        return real_forward(x)

    model.module.forward = failing_forward
    with pytest.raises(RuntimeError, match="simulated failure"):
        upscale_video(src, dst, model=model, engine=EngineOptions(batch_size=2),
                      options=TranscodeOptions(progress=False))
    assert list(tmp_path.iterdir()) == [src]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_weights_that_give_no_picture_fail_naming_the_frame_and_write_nothing(clip, tmp_path,
                                                                              precision):
    # D13: compact's weights times 1e30 load (every tensor finite) and give NaN frames,
    # which were written as flat green, exit 0.
    from vidsr.models.weights_file import save_state_dict
    from vidsr.models.zoo import load_model

    src = clip("in.mkv", width=32, height=24, frames=3)
    weights = tmp_path / "huge_vals.safetensors"
    state = load_model("compact", scale=2).module.state_dict()
    save_state_dict(weights, {key: value * 1e30 for key, value in state.items()})
    with pytest.raises(ModelError) as caught:
        upscale_video(src, tmp_path / "out.mkv", model=str(weights),
                      engine=EngineOptions(device="cpu", precision=precision, batch_size=1),
                      options=QUIET)
    assert str(caught.value) == (
        "the model gave non-finite or out-of-range values (NaN, Inf or past ±16) on frame 0"
        + (", in fp32 too" if precision == "bf16" else "") + "; the weights look damaged")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge_vals.safetensors", "in.mkv"]


def test_missing_input(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        upscale_video(tmp_path / "nope.mp4", tmp_path / "out.mp4", model="nearest", scale=2)


def test_unknown_model_suggests_the_closest_name(clip, tmp_path):
    src = clip("in.mkv", frames=2)
    with pytest.raises(ModelError, match="did you mean .*bicubic"):
        upscale_video(src, tmp_path / "out.mkv", model="bicubc", scale=2, options=QUIET)
    assert not (tmp_path / "out.mkv").exists()


def test_unsupported_scale_is_refused(clip, tmp_path):
    src = clip("in.mkv", frames=2)
    with pytest.raises(ModelError, match="x2, x3, x4, not x5"):
        upscale_video(src, tmp_path / "out.mkv", model="espcn", scale=5, options=QUIET)


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data (real clips)")
def test_real_foreman_clip(tmp_path):
    # The first 10 frames of the real CIF clip through the luma model.
    src = SHARED / "videos" / "foreman_cif.mp4"
    short = tmp_path / "foreman10.mp4"
    with av.open(str(src)) as inp, av.open(str(short), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for n, packet in enumerate(inp.demux(video=0)):
            if n >= 10 or packet.dts is None:
                break
            packet.stream = stream
            out.mux(packet)
    dst = tmp_path / "foreman_x2.mkv"
    result = upscale_video(short, dst, model="espcn", scale=2, options=QUIET)
    info = probe(dst)
    assert (info.width, info.height) == (704, 576)
    assert result.frames == len(video_times(short))
    assert video_times(dst) == video_times(short)


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="needs a system ffmpeg (apt-get install ffmpeg)")
def test_ffmpeg_backend_keeps_timestamps_colour_and_audio(clip, tmp_path):
    pts = [0, 40, 120, 160, 300, 340]
    src = clip("vfr.mkv", pts=pts, time_base=Fraction(1, 1000), colour=BT601, audio="flac",
               sar=Fraction(16, 15), metadata={"title": "via ffmpeg"},
               chapters=[(0.0, 0.2, "A"), (0.2, 0.4, "B")])
    dst = tmp_path / "out.mkv"
    upscale_video(src, dst, model="nearest", scale=2,
                  options=TranscodeOptions(progress=False, ffmpeg="ffmpeg"))
    out = probe(dst)
    assert (out.width, out.height) == (128, 96)
    assert (out.colour.matrix, out.colour.primaries, out.colour.transfer) == (
        "smpte170m", "smpte170m", "smpte170m")
    assert out.colour.tagged
    assert out.sar == Fraction(16, 15)
    assert [round(t * 1000) for t in video_times(dst)] == pts
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        assert b.metadata.get("title") == "via ffmpeg"
        assert [c["metadata"].get("title") for c in b.chapters()] == ["A", "B"]
        assert [bytes(p) for p in a.demux(audio=0) if p.size] == [
            bytes(p) for p in b.demux(audio=0) if p.size]


def _zero_compact(scale: int):
    """A compact network whose output is exactly its nearest-upsampled input: the RGB path."""
    from vidsr.archs import create_arch
    from vidsr.models.zoo import SRModel

    net = create_arch("compact", num_in_ch=3, num_out_ch=3, num_feat=4, num_conv=1, scale=scale)
    for p in net.parameters():
        p.data.zero_()
    return SRModel(name="zero-compact", module=net.eval(), spec=net.spec, scale=scale)


@pytest.mark.parametrize("pix_fmt", ["yuv422p", "yuv444p", "gray", "yuv420p10le",
                                     "yuv422p10le", "gray10le"])
@pytest.mark.parametrize("model", ["nearest", "espcn", "rgb"])
def test_every_plane_layout_through_every_model_path(clip, tmp_path, pix_fmt, model):
    src = clip("in.mkv", width=64, height=32, frames=3, pix_fmt=pix_fmt, codec="ffv1",
               content="bars", colour=BT709)
    dst = tmp_path / "out.mkv"
    from vidsr.io.encode_options import EncodeOptions

    chosen = _zero_compact(2) if model == "rgb" else model
    result = upscale_video(src, dst, model=chosen, scale=2, options=QUIET,
                           encode=EncodeOptions(codec="ffv1"))
    out = probe(dst)
    assert result.frames == 3
    assert (out.width, out.height, out.layout.pix_fmt) == (128, 64, pix_fmt)
    # The bars' luma survives every path (espcn only approximately: it is a learned model).
    y_in = decode_planes(src)[0][0].astype(int)
    y_out = decode_planes(dst)[0][0].astype(int)
    tolerance = 6 << (out.layout.bit_depth - 8) if model == "espcn" else 1 << (
        out.layout.bit_depth - 8)
    for bar in range(8):
        mid_in = y_in[8:24, bar * 8 + 3]
        mid_out = y_out[16:48, bar * 16 + 6 : bar * 16 + 10]
        assert np.abs(mid_out - mid_in[0]).max() <= tolerance, (bar, mid_in[0], mid_out.max())


@pytest.mark.parametrize(("codec", "suffix", "crf", "preset"), [
    ("libx264", ".mp4", 23, "veryfast"),
    ("libx265", ".mkv", 28, "ultrafast"),
    ("libsvtav1", ".mkv", 40, "12"),
    ("libvpx-vp9", ".webm", 40, "8"),
    ("ffv1", ".mkv", None, None),
    ("prores_ks", ".mov", None, None),
])
def test_each_bundled_encoder_writes_a_playable_file(clip, tmp_path, codec, suffix, crf, preset):
    from vidsr.io.encode_options import EncodeOptions

    pts = [0, 40, 80, 160, 200, 240]
    src = clip("in.mkv", pts=pts, time_base=Fraction(1, 1000), colour=BT709,
               audio="flac" if suffix != ".webm" else False)
    dst = tmp_path / f"out{suffix}"
    result = upscale_video(src, dst, model="nearest", scale=2, options=QUIET,
                           encode=EncodeOptions(codec=codec, crf=crf, preset=preset))
    info = probe(dst)
    assert result.frames == len(pts)
    assert (info.width, info.height) == (128, 96)
    assert info.colour.matrix == "bt709"
    assert [round(t * 1000) for t in video_times(dst)] == pts


def test_an_output_that_is_a_device_is_never_replaced(clip, tmp_path):
    src = clip("in.mkv", frames=2)
    with pytest.raises(OutputError, match="is not a regular file"):
        upscale_video(src, Path("/dev/null"), model="nearest", scale=2,
                      options=TranscodeOptions(progress=False, overwrite=True))
    assert Path("/dev/null").is_char_device()


def _pictures(path: Path) -> list[tuple[int, bytes]]:
    """(stream index, picture) of every attached picture of ``path``, as FFmpeg reads it."""
    with av.open(str(path)) as c:
        pictures = [s for s in c.streams.video
                    if s.disposition & av.stream.Disposition.attached_pic]
        if not pictures:
            return []  # demux([]) would read every stream
        return [(p.stream.index, bytes(p)) for p in c.demux(pictures) if p.size]


@pytest.mark.parametrize(("source", "output"), [("mp4", "mp4"), ("mkv", "mkv"),
                                                 ("mp4", "mkv"), ("mkv", "mp4")])
def test_cover_art_is_copied_as_cover_art_and_the_default_stream_upscaled(tmp_path, source,
                                                                          output):
    # D17: the small first stream was upscaled, the cover dropped as "only one video stream".
    src = make_streams_clip(tmp_path / f"in.{source}", cover=True,
                            videos=[(64, 48, False), (96, 72, True)])
    dst = tmp_path / f"out.{output}"
    upscale_video(src, dst, model="nearest", scale=2, options=QUIET)
    out = probe(dst)
    assert (out.width, out.height, out.stream_index) == (192, 144, 0)
    assert _pictures(dst) == [(1, cover_jpeg())]
    luma = decode_planes(dst)[0][0]
    assert luma.min() == luma.max() == 64  # the second stream's grey (56 full range)


def test_cover_art_a_container_cannot_keep_is_named(tmp_path, caplog):
    src = make_streams_clip(tmp_path / "in.mp4", cover=True, videos=[(64, 48, True)])
    upscale_video(src, tmp_path / "out.mov", model="nearest", scale=2, options=QUIET)
    assert "dropping stream #1 (video, mjpeg): mov files keep no cover art" in caplog.text
    assert _pictures(tmp_path / "out.mov") == []


def test_video_stream_chooses_the_stream(tmp_path):
    src = make_streams_clip(tmp_path / "in.mp4", videos=[(64, 48, False), (96, 72, True)])
    dst = tmp_path / "out.mkv"
    upscale_video(src, dst, model="nearest", scale=2,
                  options=TranscodeOptions(progress=False, video_stream=0))
    assert (probe(dst).width, probe(dst).height) == (128, 96)
    luma = decode_planes(dst)[0][0]
    assert luma.min() == luma.max() == 50  # the first stream's grey (40 full range)


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="needs a system ffmpeg for --ffmpeg")
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_cover_art_survives_the_ffmpeg_sink_unencoded(tmp_path, ext):
    # -c:v once re-encoded every video stream, the copied cover too; Matroska gets it as an
    # attachment (-attach), not as a one-frame video track.
    src = make_streams_clip(tmp_path / "in.mp4", cover=True, videos=[(64, 48, True)])
    dst = tmp_path / f"out.{ext}"
    upscale_video(src, dst, model="nearest", scale=2,
                  options=TranscodeOptions(progress=False, ffmpeg="ffmpeg"))
    assert (probe(dst).width, probe(dst).codec) == (128, "h264")
    assert _pictures(dst) == [(1, cover_jpeg())]


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="needs a system ffmpeg to write DVB subtitles")
@pytest.mark.parametrize("ext", ["ts", "mkv"])
def test_subtitle_packets_whose_decode_times_go_back_are_copied(clip, tmp_path, caplog, ext):
    # D21: ffmpeg writes a DVB page's clearing packet 1 ms before the page (1.480 s, 1.479 s);
    # the muxer refused the file after the whole upscale ("cannot finish the file").
    src = clip("av.mp4", frames=12, audio=True)
    sup = make_pgs(tmp_path / "sub.sup", [(0.1, 0.3), (0.4, 0.45)])
    dvb = tmp_path / "dvb.ts"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-i", str(sup), "-map", "0",
                    "-map", "1", "-c:v", "copy", "-c:a", "copy", "-c:s", "dvbsub", str(dvb)],
                   check=True)
    dst = tmp_path / f"out.{ext}"
    upscale_video(dvb, dst, model="nearest", scale=2, options=QUIET)

    def subtitles(path: Path) -> list[tuple[int, int]]:
        with av.open(str(path)) as c:
            return [(p.size, p.dts) for p in c.demux(subtitles=0) if p.size]

    copied, source = subtitles(dst), subtitles(dvb)
    assert [size for size, _ in copied] == [size for size, _ in source]
    assert [dts for _, dts in source] != sorted(dts for _, dts in source)
    assert [dts for _, dts in copied] == sorted(dts for _, dts in copied)
    assert ("dvb.ts: stream #2 (subtitle, dvbsub): its decode times go back (1.479 s after"
            " 1.480 s); moved forward to keep them rising") in caplog.text


HDR10 = HdrMetadata((13250, 34500, 7500, 3000, 34000, 16000, 15635, 16450, 10000000, 1),
                    (1000, 400))
PQ = ColourSpec("bt2020nc", False, "bt2020", "smpte2084")


def _hdr10_clip(clip) -> Path:
    params = ":".join(["log-level=error", *HDR10.x265_params()])
    return clip("hdr.mkv", codec="libx265", pix_fmt="yuv420p10le", colour=PQ, frames=3,
                codec_options={"x265-params": params})


def test_hdr10_metadata_is_written_by_x265_and_its_loss_is_named(clip, tmp_path, caplog):
    # D9: mastering display and content light level were dropped in every path, silently.
    src = _hdr10_clip(clip)
    assert probe(src).hdr == HDR10
    kept = tmp_path / "kept.mp4"
    upscale_video(src, kept, model="nearest", scale=2, options=QUIET,
                  encode=EncodeOptions(codec="libx265", quiet=True,
                                       encoder_opts=(("x265-params", "aq-mode=1"),)))
    assert (probe(kept).hdr, probe(kept).colour, probe(kept).pix_fmt) == (
        HDR10, PQ, "yuv420p10le")
    lost = tmp_path / "lost.mkv"
    upscale_video(src, lost, model="nearest", scale=2, options=QUIET)
    assert probe(lost).hdr is None
    assert ("lost.mkv: libx264 cannot store the source's HDR10 metadata (mastering display"
            " 0.0001-1000 cd/m2, MaxCLL 1000, MaxFALL 400 cd/m2); the output will not have"
            " it: use --codec libx265") in caplog.text


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="needs a system ffmpeg for --ffmpeg")
def test_hdr10_metadata_survives_the_ffmpeg_sink(clip, tmp_path):
    dst = tmp_path / "out.mkv"
    upscale_video(_hdr10_clip(clip), dst, model="nearest", scale=2,
                  options=TranscodeOptions(progress=False, ffmpeg="ffmpeg"),
                  encode=EncodeOptions(codec="libx265", quiet=True))
    assert (probe(dst).hdr, probe(dst).colour) == (HDR10, PQ)


def _captions(path: Path) -> list[bytes | None]:
    """Each frame's closed captions (ATSC A53 cc_data), as the decoder hands them out."""
    from av.sidedata.sidedata import Type

    with av.open(str(path)) as c:
        return [bytes(data) if (data := f.side_data.get(Type.A53_CC)) is not None else None
                for f in c.decode(video=0)]


@pytest.mark.parametrize(("ext", "codec"), [("mp4", "libx264"), ("mkv", "libx265")])
def test_closed_captions_are_written_with_their_frames(tmp_path, ext, codec):
    # D8: EIA-608 captions in the source's SEI were dropped, silently.
    src = make_captioned_h264(tmp_path / "cc.h264")
    assert probe(src).captions
    dst = tmp_path / f"out.{ext}"
    upscale_video(src, dst, model="nearest", scale=2, options=QUIET,
                  encode=EncodeOptions(codec=codec, quiet=True))
    assert _captions(dst) == _captions(src) == [
        b"\xfc\x94\x20", b"\xfc\x94\x20", b"\xfc\xc8\x49", b"\xfc\x94\x2f", b"\xfc\x94\x2f",
        *[b"\xfc\x80\x80"] * 7]


def test_closed_captions_an_encoder_cannot_store_are_named(tmp_path, caplog):
    src = make_captioned_h264(tmp_path / "cc.h264")
    dst = tmp_path / "out.mkv"
    upscale_video(src, dst, model="nearest", scale=2, options=QUIET,
                  encode=EncodeOptions(codec="ffv1"))
    assert _captions(dst) == [None] * 12
    assert ("out.mkv: the source's closed captions (ATSC A53) will be lost: ffv1 cannot store"
            " them; use --codec libx264 or libx265, without --ffmpeg") in caplog.text


def _alpha_planes(path: Path) -> list[np.ndarray]:
    """Each frame's alpha plane at 8 bits (VP9's through libvpx, which decodes it)."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        codec = (av.CodecContext.create("libvpx-vp9", "r") if stream.codec_context.name == "vp9"
                 else stream.codec_context)
        frames = [f for p in c.demux(stream) for f in codec.decode(p)]
    return [f.to_ndarray(format="rgba")[:, :, 3] for f in frames]


@pytest.mark.parametrize(("source", "codec", "pix_fmt", "ext", "written"), [
    ("webm", "libvpx-vp9", "yuva420p", "webm", "yuv420p"),  # alpha in VP9's side channel
    ("mkv", "ffv1", "yuva420p", "mkv", "yuva420p"),
    ("mov", "png", "rgba", "mov", "rgba"),
    ("mkv", "ffv1", "yuva420p", "mov", "yuva444p12le"),  # prores_ks --pix-fmt yuva444p10le
])
def test_alpha_is_kept_where_the_output_holds_it(tmp_path, source, codec, pix_fmt, ext,
                                                 written):
    # D6: alpha was dropped silently, and written as 255 when an alpha format was asked.
    src = make_alpha_clip(tmp_path / f"in.{source}", codec=codec, pix_fmt=pix_fmt)
    assert probe(src).alpha
    out_codec = "prores_ks" if ext == "mov" and source == "mkv" else codec
    dst = tmp_path / f"out.{ext}"
    upscale_video(src, dst, model="nearest", scale=2, options=QUIET,
                  encode=EncodeOptions(codec=out_codec,
                                       crf=0 if codec == "libvpx-vp9" else None,
                                       pix_fmt="yuva444p10le" if out_codec == "prores_ks"
                                       else None))
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.format.name == written
    alphas = _alpha_planes(dst)
    assert len(alphas) == 3
    for alpha in alphas:
        assert alpha.shape == (96, 128)
        # The step at x = 64 is resized bilinear: a pixel or two either side is in between.
        assert np.unique(alpha[:, :62]).tolist() == [255]
        assert np.unique(alpha[:, 66:]).tolist() == [64]


def test_alpha_an_output_cannot_hold_is_named(tmp_path, caplog):
    src = make_alpha_clip(tmp_path / "in.mkv", codec="ffv1")
    dst = tmp_path / "out.mp4"
    upscale_video(src, dst, model="nearest", scale=2, options=QUIET)
    assert ("out.mp4: the source's alpha channel (transparency) will be lost: libx264 cannot"
            " write it with yuv420p; use e.g. --codec ffv1, png, qtrle, libvpx-vp9 (.webm) or"
            " prores_ks --pix-fmt yuva444p10le") in caplog.text


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="needs a system ffmpeg for --ffmpeg")
def test_alpha_survives_the_ffmpeg_sink(tmp_path):
    src = make_alpha_clip(tmp_path / "in.mkv", codec="ffv1")
    dst = tmp_path / "out.mkv"
    upscale_video(src, dst, model="nearest", scale=2, encode=EncodeOptions(codec="ffv1"),
                  options=TranscodeOptions(progress=False, ffmpeg="ffmpeg"))
    for alpha in _alpha_planes(dst):
        assert np.unique(alpha[:, :62]).tolist() == [255]
        assert np.unique(alpha[:, 66:]).tolist() == [64]
