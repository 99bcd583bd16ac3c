"""Valid files of the kinds archives are full of: each comes out right, frames, timestamps
and streams checked against the source, not only the exit code.

The corpus is generated at test time, with PyAV where it can write the case and with the
system ffmpeg (the way such files are really made) where it cannot.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clipgen import content_planes

from vidsr.errors import DecodeError, InputError, OptionsError
from vidsr.io.decode import Decoder
from vidsr.io.encode_options import EncodeOptions
from vidsr.run.transcode import TranscodeOptions, upscale_video

QUIET = TranscodeOptions(progress=False)
needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="needs a system ffmpeg and ffprobe (apt-get install ffmpeg)")
TESTSRC = ["-f", "lavfi", "-i", "testsrc2=size=176x144:rate=25:duration=1"]


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def video_times(path: Path) -> list[float]:
    """Presentation times of the video frames, as FFmpeg decodes them."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return [float(f.pts * stream.time_base) for f in c.decode(stream)]


def luma(path: Path) -> np.ndarray:
    """Every frame's Y plane, in presentation order."""
    with Decoder(path, batch_size=64) as decoder:
        return np.concatenate([b.planes[0] for b in decoder])


def upscale(src: Path, dst: Path, **options) -> None:
    encode = options.pop("encode", EncodeOptions(codec="ffv1"))
    upscale_video(src, dst, model="nearest", scale=2, encode=encode,
                  options=options.pop("transcode", QUIET), **options)


# -- timestamps --------------------------------------------------------------------------------


def test_avi_with_h264_b_frames_comes_out_in_order_with_its_frame_times(clip, tmp_path):
    # AVI keeps no presentation times: with B-frames the packets are not in display order.
    src = clip("bframes.avi", width=64, height=48, frames=16, content="moving")
    with av.open(str(src)) as c:
        assert c.format.name == "avi"
        dts = [p.dts for p in c.demux(video=0) if p.size]
        assert c.streams.video[0].codec_context.has_b_frames and dts == sorted(dts)
    dst = tmp_path / "out.mkv"
    upscale(src, dst)
    assert video_times(dst) == pytest.approx([i / 25 for i in range(16)])
    # Each output frame shows the moving square where source frame k has it (lossy coding:
    # the nearest of the sixteen true frames, not an exact match).
    truth = np.stack([content_planes("moving", "yuv420p", 64, 48, i)[0] for i in range(16)])
    for k, frame in enumerate(luma(dst)[:, ::2, ::2].astype(int)):
        assert int(np.abs(truth - frame).sum(axis=(1, 2)).argmin()) == k


def test_raw_h264_without_timestamps_is_counted_at_its_rate(clip, tmp_path):
    src = clip("raw.h264", width=64, height=48, frames=10, container_format="h264")
    dst = tmp_path / "out.mkv"
    upscale(src, dst)
    assert video_times(dst) == pytest.approx([i / 25 for i in range(10)])


@needs_ffmpeg
def test_avi_from_ffmpeg_with_mp3_and_a_dropped_frame_chunk_is_complete(tmp_path):
    # ffmpeg writes a zero-size chunk for a frame it dropped; the header counts it.
    src = tmp_path / "a.avi"
    ffmpeg(*TESTSRC, "-f", "lavfi", "-i", "sine=frequency=300:duration=1", "-c:v", "mpeg4",
           "-q:v", "3", "-c:a", "libmp3lame", str(src))
    with av.open(str(src)) as c:
        assert c.streams.video[0].frames == 26  # a hint, not a fact: 25 frames are in it
    dst = tmp_path / "out.mkv"
    upscale(src, dst)
    assert len(video_times(dst)) == 25
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        assert [bytes(p) for p in a.demux(audio=0) if p.size] == [
            bytes(p) for p in b.demux(audio=0) if p.size]


@needs_ffmpeg
@pytest.mark.parametrize("sink", ["pyav", "ffmpeg"])
def test_mpeg_ts_starting_late_starts_at_zero_with_the_audio_still_in_sync(tmp_path, sink):
    src = tmp_path / "late.ts"
    ffmpeg(*TESTSRC, "-f", "lavfi", "-i", "sine=frequency=300:duration=1", "-c:v", "libx264",
           "-c:a", "aac", "-output_ts_offset", "1.44", str(src))
    dst = tmp_path / "out.mkv"
    upscale(src, dst, transcode=TranscodeOptions(progress=False,
                                                 ffmpeg="ffmpeg" if sink == "ffmpeg" else None))
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        offset = a.start_time / av.time_base
        assert offset > 1.4
        src_starts = [float(s.start_time * s.time_base) for s in (a.streams.video[0],
                                                                    a.streams.audio[0])]
        out_starts = [float(s.start_time * s.time_base) for s in (b.streams.video[0],
                                                                    b.streams.audio[0])]
        assert min(out_starts) == pytest.approx(0, abs=0.002)
        # Both streams moved by the same amount: their sync is the source's.
        assert out_starts[0] - out_starts[1] == pytest.approx(src_starts[0] - src_starts[1],
                                                              abs=0.002)
        assert b.duration / av.time_base == pytest.approx(1.0, abs=0.1)


def test_corrupt_bytes_mid_stream_with_skip_keep_every_slot_and_never_go_back(clip, tmp_path):
    src = clip("damaged.mp4", width=64, height=48, frames=30, content="noise")
    data = bytearray(src.read_bytes())
    with av.open(str(src)) as c:
        packets = [(p.pos, p.size) for p in c.demux(video=0) if p.size]
    for index in (8, 9):  # damage two packets' payloads (MP4 samples have no block header)
        pos, size = packets[index]
        data[pos + 4: pos + size] = np.random.default_rng(index).integers(
            0, 256, size - 4, dtype=np.uint8).tobytes()
    src.write_bytes(bytes(data))
    with pytest.raises(DecodeError):
        upscale(src, tmp_path / "fail.mkv")
    dst = tmp_path / "out.mkv"
    upscale(src, dst, transcode=TranscodeOptions(progress=False, on_error="skip"))
    times = video_times(dst)
    assert times == sorted(times) and len(set(times)) == len(times) == 30


@needs_ffmpeg
def test_a_cut_mp4_is_truncated(tmp_path):
    src = tmp_path / "cut.mp4"  # the index first, so a cut file still opens
    ffmpeg(*TESTSRC, "-c:v", "libx264", "-movflags", "+faststart", str(src))
    data = src.read_bytes()
    src.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DecodeError, match="truncated"):
        upscale(src, tmp_path / "out.mkv")
    assert list(tmp_path.iterdir()) == [src]


# -- rotation, timecode, fields -----------------------------------------------------------------


def _display_matrix(path: Path) -> tuple[int, ...] | None:
    with av.open(str(path)) as c:
        raw = c.streams.video[0].codec_context.coded_side_data.get("display_matrix")
    return struct.unpack("<9i", raw) if raw else None


@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv"])
def test_a_rotated_phone_clip_keeps_its_display_matrix(clip, tmp_path, ext):
    src = clip("phone.mp4", width=64, height=48, frames=4, rotation=90, content="moving")
    dst = tmp_path / f"out.{ext}"
    upscale(src, dst, encode=EncodeOptions(codec="libx264"))
    assert _display_matrix(dst) == _display_matrix(src) is not None
    with av.open(str(dst)) as c:
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height, frame.rotation) == (128, 96, 90)


@pytest.mark.parametrize("mirror", [False, True], ids=["turned", "turned+mirrored"])
def test_autorotate_turns_the_pixels_as_a_player_shows_them(clip, tmp_path, mirror):
    src = clip("phone.mkv", width=64, height=48, frames=3, rotation=90, mirror=mirror,
               content="moving", codec="ffv1")
    dst = tmp_path / "out.mkv"
    upscale(src, dst, transcode=TranscodeOptions(progress=False, autorotate=True))
    assert _display_matrix(dst) is None
    out = luma(dst)
    assert out.shape == (3, 128, 96)
    source = content_planes("moving", "yuv420p", 64, 48, 0)[0]
    # Shown turned 90 degrees counter-clockwise; mirrored, the turn goes the other way (as
    # ffmpeg's autorotation does: the test below checks against ffmpeg itself).
    upright = np.rot90(source[:, ::-1], k=-1) if mirror else np.rot90(source, k=1)
    np.testing.assert_array_equal(out[0, ::2, ::2], upright)


@needs_ffmpeg
@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("mirror", [False, True], ids=["turned", "turned+mirrored"])
def test_autorotate_matches_ffmpeg_own_autorotation(clip, tmp_path, rotation, mirror):
    src = clip("phone.mp4", width=64, height=48, frames=3, rotation=rotation, mirror=mirror,
               content="moving", lossless=True)
    dst = tmp_path / "out.mkv"
    upscale(src, dst, transcode=TranscodeOptions(progress=False, autorotate=True))
    reference = tmp_path / "ffmpeg.mkv"  # ffmpeg turns rotated input upright by default
    ffmpeg("-i", str(src), "-c:v", "ffv1", str(reference))
    np.testing.assert_array_equal(luma(dst)[:, ::2, ::2], luma(reference))


@needs_ffmpeg
@pytest.mark.parametrize("ext", ["mov", "mkv"])
@pytest.mark.parametrize("sink", ["pyav", "ffmpeg"])
def test_a_mov_timecode_survives(tmp_path, ext, sink):
    src = tmp_path / "tc.mov"
    ffmpeg(*TESTSRC, "-c:v", "libx264", "-timecode", "01:02:03:04", str(src))
    dst = tmp_path / f"out.{ext}"
    upscale(src, dst, encode=EncodeOptions(codec="libx264"),
            transcode=TranscodeOptions(progress=False,
                                       ffmpeg="ffmpeg" if sink == "ffmpeg" else None))
    tags = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                           "stream=codec_type,codec_tag_string:stream_tags=timecode", "-of",
                           "csv", str(dst)], check=True, capture_output=True, text=True).stdout
    assert "01:02:03:04" in tags
    if ext == "mov":
        assert "tmcd" in tags  # the muxer rebuilt the timecode track


@needs_ffmpeg
@pytest.mark.parametrize("ext", ["mkv", "mov"])
def test_interlaced_input_is_warned_about_and_never_tagged_progressive(tmp_path, caplog, ext):
    src = tmp_path / "tff.mkv"
    ffmpeg(*TESTSRC, "-vf", "setfield=tff", "-c:v", "libx264", "-flags", "+ildct+ilme",
           str(src))
    dst = tmp_path / f"out.{ext}"
    with caplog.at_level("WARNING", logger="vidsr"):
        # Kept interlaced: by default the fields are deinterlaced first
        # (tests/test_deinterlace_run.py).
        upscale(src, dst, encode=EncodeOptions(codec="libx264"),
                transcode=TranscodeOptions(progress=False, deinterlace="off"))
    assert "interlaced" in caplog.text and "mixed" in caplog.text
    order = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                            "stream=field_order", "-of", "csv=p=0", str(dst)], check=True,
                           capture_output=True, text=True).stdout.strip()
    assert order not in ("progressive", "")


# -- encoders and containers ----------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["libx264", "libx265", "libsvtav1", "libvpx-vp9", "ffv1",
                                   "prores_ks", "mpeg2video", "mpeg4"])
def test_every_listed_encoder_opens_with_its_defaults(clip, tmp_path, codec):
    src = clip("in.mp4", width=64, height=48, frames=6, rate=25, content="moving")
    dst = tmp_path / ("out.mov" if codec == "prores_ks" else "out.mkv")
    upscale(src, dst, encode=EncodeOptions(codec=codec))
    assert video_times(dst) == pytest.approx([i / 25 for i in range(6)], abs=1e-3)


@pytest.mark.parametrize(("ext", "codec"), [("mpg", "mpeg2video"), ("avi", "mpeg4")])
def test_crf_sets_the_quantiser_of_the_mpeg_encoders(clip, tmp_path, ext, codec):
    # Through PyAV these encoders ignored global_quality and coded everything at q 2.
    src = clip("in.mkv", width=64, height=48, frames=6, content="noise")
    sizes = {}
    for q in (2, 20):
        dst = tmp_path / f"q{q}.{ext}"
        upscale(src, dst, encode=EncodeOptions(codec=codec, crf=q))
        sizes[q] = dst.stat().st_size
    assert sizes[20] < 0.6 * sizes[2]


@pytest.mark.parametrize(("ext", "codec"), [("webm", "vp9"), ("avi", "mpeg4"),
                                            ("mpg", "mpeg2video"), ("mp4", "h264")])
def test_the_default_codec_follows_the_container(clip, tmp_path, ext, codec):
    src = clip("in.mkv", width=64, height=48, frames=3)
    dst = tmp_path / f"out.{ext}"
    upscale(src, dst, encode=EncodeOptions())
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.name == codec


@pytest.mark.parametrize(("name", "codec", "words"), [
    ("out.avi", "libx265", r"out\.avi: avi files cannot hold libx265"),
    ("out.png", None, "still-image format"),
    ("out.mkv", "libx264", "option 'nonsense'"),
    # MPEG-TS wrote FFV1 as a data stream no reader decodes.
    ("out.ts", "ffv1", r"out\.ts: mpegts files cannot hold ffv1 video"),
    ("out.y4m", "libx264", r"out\.y4m: yuv4mpegpipe files cannot hold h264 video"),
    # The muxer's own reason, not a bare "Invalid argument".
    ("out.mov", "libvpx-vp9", r"out\.mov: mov files cannot take libvpx-vp9 video: vp9 only"
                              " supported in MP4"),
])
@pytest.mark.parametrize("sink", ["pyav", "ffmpeg"])
def test_what_cannot_be_written_is_refused_before_any_work(clip, tmp_path, name, codec, words,
                                                           sink):
    if sink == "ffmpeg" and shutil.which("ffmpeg") is None:
        pytest.skip("needs a system ffmpeg (apt-get install ffmpeg)")
    src = clip("in.mkv", width=64, height=48, frames=3)
    opts = (("nonsense", "1"),) if "nonsense" in words else ()
    with pytest.raises(OptionsError, match=words):
        upscale(src, tmp_path / name, encode=EncodeOptions(codec=codec, encoder_opts=opts),
                transcode=TranscodeOptions(progress=False,
                                           ffmpeg="ffmpeg" if sink == "ffmpeg" else None))
    assert list(tmp_path.iterdir()) == [src]


def test_a_stream_the_container_refuses_is_dropped_with_the_muxers_reason(clip, tmp_path,
                                                                          caplog):
    # MOV lists FLAC, then refuses it in its header; the reason was "muxer returned 22".
    src = clip("in.mkv", width=64, height=48, frames=3, audio="flac")
    level = av.logging.get_level()
    upscale(src, tmp_path / "out.mov", encode=EncodeOptions(codec="libx264"))
    assert av.logging.get_level() == level  # FFmpeg's log is back as it was
    assert ("dropping stream #1 (audio, flac): mov cannot hold it: flac only supported in MP4"
            in caplog.text)
    with av.open(str(tmp_path / "out.mov")) as c:
        assert [s.type for s in c.streams] == ["video"]


def ffprobe_video(path: Path) -> dict[str, str]:
    """What Debian's ffprobe sees of the first video stream (frames decoded and counted)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                          "-show_entries", "stream=codec_name,r_frame_rate,nb_read_frames",
                          "-of", "default=noprint_wrappers=1", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


@needs_ffmpeg
@pytest.mark.parametrize("sink", ["pyav", "ffmpeg"])
@pytest.mark.parametrize(("name", "codec", "written"), [
    ("out.avi", None, "mpeg4"),  # AVI: one slot a frame, the rate in its header
    ("out.h264", None, "h264"),  # a raw stream: the VUI's tick is all the timing there is
    ("out.y4m", None, "rawvideo"),  # the rate in the y4m header
    ("out.mxf", None, "mpeg2video"),  # MXF's edit rate
    ("out.ogv", "libtheora", "theora"),  # Theora counts frames in its granule positions
])
def test_outputs_that_count_in_frames_get_one_tick_a_frame(clip, tmp_path, sink, name, codec,
                                                           written):
    # The source counts in 1/12800 s, as x264 in MP4 does; written as is, readers saw 12800
    # or 600 fps, and Ogg/Theora kept one frame of ten.
    if codec == "libtheora" and sink == "pyav":
        pytest.skip("the bundled FFmpeg has no Theora encoder")
    src = clip("in.mp4", width=64, height=48, frames=10, time_base=Fraction(1, 12800),
               content="moving")
    dst = tmp_path / name
    upscale(src, dst, encode=EncodeOptions(codec=codec),
            transcode=TranscodeOptions(progress=False,
                                       ffmpeg="ffmpeg" if sink == "ffmpeg" else None))
    assert ffprobe_video(dst) == {"codec_name": written, "r_frame_rate": "25/1",
                                  "nb_read_frames": "10"}
    if name == "out.avi":  # one slot a frame: vidsr reads its own AVI back, every frame
        with av.open(str(dst)) as c:
            assert c.streams.video[0].frames == 10
        again = tmp_path / "again.mkv"
        upscale(dst, again)
        assert video_times(again) == pytest.approx([i / 25 for i in range(10)], abs=1e-3)


@pytest.mark.parametrize("sink", ["pyav", "ffmpeg"])
def test_a_variable_rate_source_keeps_every_frame_in_a_fixed_rate_output(clip, tmp_path, sink,
                                                                         caplog):
    if sink == "ffmpeg" and shutil.which("ffmpeg") is None:
        pytest.skip("needs a system ffmpeg (apt-get install ffmpeg)")
    # 10 and 5 ms apart in places: at the output's one tick a frame they would share a tick,
    # which the encoder refuses in the middle of the run.
    pts = [0, 40, 50, 60, 100, 140, 150, 200, 240, 245, 300, 340]
    src = clip("vfr.mp4", width=64, height=48, pts=pts, content="moving")
    dst = tmp_path / "out.avi"
    upscale(src, dst, encode=EncodeOptions(codec="mpeg4"),
            transcode=TranscodeOptions(progress=False,
                                       ffmpeg="ffmpeg" if sink == "ffmpeg" else None))
    with av.open(str(dst)) as c:
        stream = c.streams.video[0]
        tick = stream.time_base
        slots = [f.pts for f in c.decode(stream)]
    assert len(slots) == len(pts)
    assert slots == sorted(set(slots))
    # Each frame in the slot its time rounds to, or the first free one after.
    expected, last = [], -1
    for t in pts:
        last = max(round(Fraction(t, 1000) / tick), last + 1)
        expected.append(last)
    assert slots == expected
    assert "later ones move to the next frame slot" in caplog.text


def test_a_source_without_frames_is_refused_and_nothing_is_written(tmp_path):
    src = tmp_path / "zero.y4m"
    src.write_bytes(b"YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg\n")
    for name in ("out.mp4", "out.mkv"):
        with pytest.raises(InputError, match=r"zero\.y4m: has no frames"):
            upscale(src, tmp_path / name, encode=EncodeOptions())
    assert list(tmp_path.iterdir()) == [src]


@pytest.mark.parametrize(("codec", "crf", "words"), [
    ("libx264", 99, "--crf 99 is out of range for libx264: it takes 0 \\(best\\) to 51"),
    ("mpeg4", 40, "--crf 40 is out of range for mpeg4: it takes 1 \\(best\\) to 31"),
    ("libvpx-vp9", 64, "it takes 0 \\(best\\) to 63"),
])
def test_a_crf_out_of_the_encoders_range_is_refused(clip, tmp_path, codec, crf, words):
    src = clip("in.mkv", width=64, height=48, frames=3)
    with pytest.raises(OptionsError, match=words):
        upscale(src, tmp_path / "out.mkv", encode=EncodeOptions(codec=codec, crf=crf))
    assert list(tmp_path.iterdir()) == [src]


@needs_ffmpeg
@pytest.mark.parametrize("pts", [None, [0, 40, 100, 120, 200]], ids=["cfr", "vfr"])
def test_ffmpeg_sink_takes_a_video_only_file(clip, tmp_path, pts):
    src = clip("only.mp4", width=64, height=48, frames=5, pts=pts)
    dst = tmp_path / "out.mkv"
    upscale(src, dst, encode=EncodeOptions(codec="libx264"),
            transcode=TranscodeOptions(progress=False, ffmpeg="ffmpeg"))
    assert video_times(dst) == pytest.approx(video_times(src), abs=1e-3)


@needs_ffmpeg
def test_ffmpeg_sink_asks_the_system_ffmpeg_for_its_encoders(clip, tmp_path):
    src = clip("in.mkv", width=64, height=48, frames=3)
    with pytest.raises(OptionsError, match="has no video encoder 'libnothing'"):
        upscale(src, tmp_path / "a.mkv", encode=EncodeOptions(codec="libnothing"),
                transcode=TranscodeOptions(progress=False, ffmpeg="ffmpeg"))
    with pytest.raises(OptionsError, match="avi files cannot hold"):
        upscale(src, tmp_path / "b.avi", encode=EncodeOptions(codec="libx265"),
                transcode=TranscodeOptions(progress=False, ffmpeg="ffmpeg"))
    assert list(tmp_path.iterdir()) == [src]
    encoders = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True,
                              text=True).stdout
    if " libxvid " in encoders:  # an encoder only the system ffmpeg has
        upscale(src, tmp_path / "x.avi", encode=EncodeOptions(codec="libxvid"),
                transcode=TranscodeOptions(progress=False, ffmpeg="ffmpeg"))
        with av.open(str(tmp_path / "x.avi")) as c:
            assert c.streams.video[0].codec_context.name == "mpeg4"


@needs_ffmpeg
def test_ffmpeg_sink_reads_a_local_file_named_like_a_url(clip, tmp_path, monkeypatch):
    clip("http:in.mkv", width=64, height=48, frames=3, audio=True)
    monkeypatch.chdir(tmp_path)
    upscale(Path("http:in.mkv"), Path("rtmp:out.mkv"), encode=EncodeOptions(codec="libx264"),
            transcode=TranscodeOptions(progress=False, ffmpeg="ffmpeg"))
    with av.open(f"file:{tmp_path / 'rtmp:out.mkv'}") as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
