"""The input timestamps model on files whose timing is odd but valid: frames that share a
time, gaps, edit lists, rates that are no frame rate. Every frame is kept, in its place."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clipgen import content_planes

from vidsr.errors import EncodeError, OptionsError
from vidsr.io.decode import Decoder
from vidsr.io.pixfmt import planes_to_frame, source_format
from vidsr.io.probe import probe
from vidsr.run.transcode import TranscodeOptions, upscale_video

QUIET = TranscodeOptions(progress=False)
MS = Fraction(1, 1000)


def _moving(index: int) -> av.VideoFrame:
    planes = content_planes("moving", "yuv420p", 64, 48, index)
    return planes_to_frame(planes, source_format("yuv420p").layout)


def muxed_at(path: Path, pts: list[int], *, codec: str = "libx264",
             time_base: Fraction = MS) -> Path:
    """Frames of moving content (lossless x264, no B-frames: decode order is presentation
    order), encoded at 25 fps, then muxed with packet times ``pts`` (in ``time_base``),
    as a remuxing tool that rewrites timestamps leaves them."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = MS
        if codec == "libx264":
            stream.codec_context.options = {"bf": "0", "qp": "0"}
        stream.time_base = time_base
        packets = []
        for i in range(len(pts)):
            frame = _moving(i)
            frame.pts, frame.time_base = i * 40, MS
            packets += stream.encode(frame)
        packets += stream.encode(None)
        for packet, stamp in zip(packets, pts, strict=True):
            packet.pts = packet.dts = stamp
            packet.time_base = time_base
            out.mux(packet)
    return path


def _decode(path: Path, **kwargs) -> tuple[Decoder, list[int], np.ndarray]:
    with Decoder(path, batch_size=5, **kwargs) as dec:
        batches = list(dec)
    return dec, [p for b in batches for p in b.pts], np.concatenate(
        [b.planes[0] for b in batches])


def _is_frame(luma: np.ndarray, index: int) -> bool:
    return np.array_equal(luma, content_planes("moving", "yuv420p", 64, 48, index)[0])


def _nearest_frame(luma: np.ndarray) -> int:
    """Which frame of the moving content a lossy ``luma`` shows (the square comes back to
    its start every 16 frames)."""
    errors = [np.abs(luma.astype(int) - content_planes("moving", "yuv420p", 64, 48, i)[0]).sum()
              for i in range(16)]
    return int(np.argmin(errors))


@pytest.mark.parametrize("pts", [[0] * 12, [0, 40, 80, 80, 120, 160, 160, 160, 200, 240, 280,
                                              320]], ids=["all-zero", "repeated"])
def test_frames_sharing_a_time_are_retimed_at_the_stream_rate_not_dropped(tmp_path, caplog,
                                                                           pts):
    path = muxed_at(tmp_path / "same.mkv", pts)
    dec, stamps, luma = _decode(path)
    assert stamps == [i * 40 for i in range(12)]
    assert all(_is_frame(luma[i], i) for i in range(12))
    assert dec.skipped == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    first = pts.index(pts[-1]) if pts[-1] == 0 else 3
    assert warnings == [f"{path}: video frames repeat a timestamp (first at"
                        f" {pts[first] / 1000:.3f} s (pts {pts[first]})); each such frame is"
                        " retimed one frame (0.040 s) after the one before"]


def test_an_hour_long_gap_keeps_every_frame_and_its_40_ms(tmp_path):
    pts = [40 * k + (3_600_000 if k >= 6 else 0) for k in range(12)]
    src = muxed_at(tmp_path / "gap.mp4", pts)
    assert probe(src).duration == pytest.approx(3600.48)
    for name in ("out.mp4", "out.mkv"):
        dst = tmp_path / name
        upscale_video(src, dst, model="nearest", scale=2, options=QUIET)
        with av.open(str(dst)) as out:
            frames = list(out.decode(video=0))
            # The last frame lasts 40 ms, as in the source: not 3600.48 s / 12 frames.
            assert out.duration == 3_600_480_000  # microseconds
        assert [round(f.pts * f.time_base * 1000) for f in frames] == pts
    # AVI holds a gap as empty frame slots, at most 60,000 at once: refused at the gap, in
    # one line, and nothing is left (FFmpeg's own word was a bare "Invalid argument").
    dst = tmp_path / "out.avi"
    with pytest.raises(EncodeError) as caught:
        upscale_video(src, dst, model="nearest", scale=2, options=QUIET)
    assert str(caught.value) == (f"{dst}: AVI cannot hold the source's gap of 90000 frames"
                                 " (at most 60000) after 0.200 s; write .mkv or .mp4 instead")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gap.mp4", "out.mkv", "out.mp4"]


def _copy_cut(src: Path, cut: Path) -> Path:
    """What `ffmpeg -ss 0.52 -i src.mp4 -c copy cut.mp4` writes: the lead-in before the
    cut stays in the file for what follows to decode (the GOP's frames, the audio before),
    and an edit list hides it."""
    with av.open(str(src)) as source, av.open(str(cut), "w") as out:
        copies = {s.index: out.add_stream_from_template(s) for s in source.streams}
        for packet in source.demux():
            if packet.dts is None:
                continue
            lead = round(Fraction(13, 25) / packet.time_base)
            packet.pts, packet.dts = packet.pts - lead, packet.dts - lead
            packet.stream = copies[packet.stream.index]
            out.mux(packet)
    return cut


def test_a_copy_cut_mp4_starts_at_its_edit_list_in_sync_with_its_audio(clip, tmp_path):
    src = clip("src.mp4", frames=30, gop=25, content="moving", audio=True)
    cut = _copy_cut(src, tmp_path / "cut.mp4")
    dec, stamps, luma = _decode(cut)
    assert stamps == [512 * i for i in range(17)]  # 1/12800: 40 ms frames from 0
    assert [_nearest_frame(y) for y in luma] == [i % 16 for i in range(13, 30)]
    dst = tmp_path / "out.mp4"
    upscale_video(cut, dst, model="nearest", scale=2, options=QUIET)
    with av.open(str(dst)) as out:
        video, audio = out.streams.video[0], out.streams.audio[0]
        assert (video.frames, video.start_time, audio.start_time) == (17, 0, 0)
    # Matroska has no edit list: the audio hidden before the cut is left out, but for the
    # packet the decoder primes itself with (AAC: 1024 samples, 21 ms), as for any AAC.
    for source, first in ((cut, -29), (src, -21)):
        dst = tmp_path / "out.mkv"
        upscale_video(source, dst, model="nearest", scale=2,
                      options=TranscodeOptions(progress=False, overwrite=True))
        with av.open(str(dst)) as out:
            assert min(p.pts for p in out.demux(audio=0) if p.size) == first  # ms


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs a system ffmpeg")
def test_a_copy_cut_mp4_is_refused_up_front_for_ffmpeg_into_matroska(clip, tmp_path):
    # ffmpeg would copy the 0.52 s of sound the edit list hides; MP4 keeps it hidden.
    src = clip("src.mp4", frames=30, gop=25, audio=True)
    cut = _copy_cut(src, tmp_path / "cut.mp4")
    ffmpeg = TranscodeOptions(progress=False, ffmpeg="ffmpeg")
    with pytest.raises(OptionsError, match=r"cut\.mp4: stream #1 starts before the edit list"
                                           r" .* into the \.mkv file"):
        upscale_video(cut, tmp_path / "out.mkv", model="nearest", scale=2, options=ffmpeg)
    assert not (tmp_path / "out.mkv").exists()
    for source, name in ((cut, "out.mp4"), (src, "src.mkv")):  # an AAC's one primer is fine
        assert upscale_video(source, tmp_path / name, model="nearest", scale=2,
                             options=ffmpeg).frames == (17 if source == cut else 30)


def test_an_average_rate_of_one_per_tick_is_not_a_frame_rate(tmp_path):
    # PyAV's Matroska remux has no frame count: FFmpeg averages 1000 fps (1/time base).
    path = muxed_at(tmp_path / "remuxed.mkv", [40 * k for k in range(12)])
    info = probe(path)
    assert (info.average_rate, info.base_rate, info.duration) == (25, 25, 0.48)
    _, stamps, _ = _decode(path)  # not "video ends at 0.441 s ... (file truncated?)"
    assert stamps == [40 * k for k in range(12)]
    dst = tmp_path / "out.mkv"
    upscale_video(path, dst, model="nearest", scale=2, options=QUIET)
    with av.open(str(dst)) as out:
        assert (out.streams.video[0].guessed_rate, out.duration) == (25, 480_000)


def test_raw_dv_is_read_whole(tmp_path):
    # A DV file counts in 1/60000 s and FFmpeg averages it at 60000 fps.
    path = tmp_path / "pal.dv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("dvvideo", rate=25)
        stream.width, stream.height, stream.pix_fmt = 720, 576, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((576, 720, 3), 40 * i, np.uint8),
                                               format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    info = probe(path)
    assert (info.time_base, info.average_rate, info.duration) == (Fraction(1, 60000), 25, 0.2)
    _, stamps, _ = _decode(path)
    assert stamps == [2400 * i for i in range(5)]


def test_an_avi_in_600ths_with_a_frame_every_24_is_read_back(tmp_path):
    # What vidsr once wrote for a 25 fps source: slots of 1/600 s, 23 empty ones a frame.
    path = muxed_at(tmp_path / "slots.avi", [24 * k for k in range(10)], codec="mpeg4",
                    time_base=Fraction(1, 600))
    assert probe(path).duration == pytest.approx(0.4)
    _, stamps, _ = _decode(path)  # not "video ends at 0.362 s ... (file truncated?)"
    assert stamps == [24 * k for k in range(10)]


def _joined_ts(clip, tmp_path: Path) -> Path:
    """Two MPEG-TS recordings (moving content, then bars; x264 with B-frames, mp2 audio)
    joined with ``cat``: the second's times start again where the first's did."""
    first = clip("a.ts", frames=12, audio="mp2", content="moving")
    second = clip("b.ts", frames=12, audio="mp2", content="bars")
    joined = tmp_path / "joined.ts"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    return joined


def test_joined_mpeg_ts_follows_on_in_sync(clip, tmp_path, caplog):
    joined = _joined_ts(clip, tmp_path)
    _, stamps, luma = _decode(joined)
    # 1/90000: the second part's frames follow the first's, 40 ms apart.
    assert stamps == [7200 + 3600 * i for i in range(24)]
    assert [_nearest_frame(y) for y in luma[:12]] == list(range(12))
    assert np.abs(luma[12:].astype(int) - content_planes("bars", "yuv420p", 64, 48, 0)[0]
                  ).max() < 8
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{joined}: the video's time restarts at packet #13 (0.000 s where"
                        " 0.480 s was due: recordings joined into one file?); what follows"
                        " is moved to follow on"]
    dst = tmp_path / "out.mkv"
    upscale_video(joined, dst, model="nearest", scale=2, options=QUIET)
    with av.open(str(dst)) as out:
        audio = [p.pts for p in out.demux(audio=0) if p.size]
    with av.open(str(dst)) as out:
        video = sorted(f.pts for f in out.decode(video=0))
    # The output starts at the source's start (0.07 s, its first audio): 40 ms frames on
    # from 0.01 s, and the audio's 24 ms frames from 0, on through the join.
    assert video == [10 + 40 * i for i in range(24)]
    assert audio == [24 * i for i in range(len(audio))] and len(audio) == 2 * 20


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs a system ffmpeg")
def test_joined_mpeg_ts_is_refused_up_front_for_ffmpeg(clip, tmp_path):
    joined = _joined_ts(clip, tmp_path)
    dst = tmp_path / "out.mkv"
    with pytest.raises(OptionsError, match=r"^\S+joined\.ts: its time restarts at 0\.000 s"
                                           r" where 0\.480 s was due .* drop --ffmpeg"):
        upscale_video(joined, dst, model="nearest", scale=2,
                      options=TranscodeOptions(progress=False, ffmpeg="ffmpeg"))
    assert not dst.exists()
