"""Long files in segments: each segment decodes exactly its frames, the joined output is
the file a whole-file run writes, and a batch killed mid-file redoes only the segment it
was in."""

from __future__ import annotations

import json
import signal
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from batch_helpers import (
    FAST,
    batch,
    check_window_segments,
    decoded,
    job,
    needs_ffprobe,
    packet_times,
    probe_streams,
    report,
    same_frames,
)
from clipgen import (
    film_picture,
    make_clip,
    make_video_clip,
    shot_frames,
    telecine,
    woven,
    write_ffv1,
)
from vidsr_process import start_vidsr, wait_for

from vidsr.commands.batch.segments import plan_segments
from vidsr.errors import InputError
from vidsr.io.decode import Decoder
from vidsr.io.deinterlace import DeinterlacePlan, qtgmc_missing
from vidsr.io.encode_options import EncodeOptions
from vidsr.io.keyframes import scan_keyframes
from vidsr.io.packet_file import PacketWriter, read_packets
from vidsr.run.transcode import RunControl, TranscodeOptions, upscale_video


def _gop_clip(path, codec, options, *, interlaced=False, frames=40):
    """25 fps, a keyframe every 6 frames with B-frames between (MPEG-2: open GOPs)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = 6
        stream.codec_context.options = options
        for i in range(frames):
            if interlaced:
                picture = np.resize(woven(i, "tff"), (48, 64))
                frame = av.VideoFrame.from_ndarray(picture, format="gray")
            else:
                noise = np.random.default_rng(i).integers(0, 256, (48, 64, 3), np.uint8)
                frame = av.VideoFrame.from_ndarray(noise, format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def _frames(path, window=None, deinterlace=None):
    with Decoder(path, batch_size=4, window=window, deinterlace=deinterlace) as decoder:
        return [(b.pts[k], [p[k].copy() for p in b.planes]) for b in decoder
                for k in range(len(b))]


X264_GOP = {"bf": "2", "keyint_min": "6", "sc_threshold": "0"}


@pytest.mark.parametrize("name, codec, options, deinterlace", [
    ("closed.mp4", "libx264", X264_GOP, None),
    ("open.ts", "mpeg2video", {"bf": "2"}, None),
    ("fields.mkv", "libx264", {**X264_GOP, "flags": "+ildct+ilme"},
     DeinterlacePlan("tff", "field", "asked")),
    ("frames.mkv", "libx264", {**X264_GOP, "flags": "+ildct+ilme"},
     DeinterlacePlan("tff", "frame", "asked")),
])
def test_segment_windows_decode_exactly_the_whole_streams_frames(tmp_path, name, codec,
                                                                 options, deinterlace):
    path = _gop_clip(tmp_path / name, codec, options, interlaced=deinterlace is not None)
    segments = plan_segments(scan_keyframes(path), 0.4)
    assert len(segments) >= 3
    whole = _frames(path, deinterlace=deinterlace)
    parts = [f for s in segments for f in _frames(path, s.window, deinterlace)]
    assert [pts for pts, _ in parts] == [pts for pts, _ in whole]
    for (pts, a), (_, b) in zip(parts, whole, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), pts


def test_segments_are_cut_at_keyframes_and_the_last_is_not_a_sliver(tmp_path):
    path = _gop_clip(tmp_path / "c.mp4", "libx264", X264_GOP, frames=44)
    index = scan_keyframes(path)
    segments = plan_segments(index, 0.5)
    cuts = [s.window.start for s in segments[1:]]
    assert set(cuts) <= set(index.keyframes)
    assert segments[0].window.start is None and segments[-1].window.end is None
    assert all(a.window.end == b.window.start for a, b in zip(segments, segments[1:], strict=False))
    # 44 frames, keyframes every 6: cuts at 0.72 s and 1.44 s; a cut at 1.68 s (0.08 s
    # before the end) would leave a sliver.
    assert [index.seconds(c) for c in cuts] == pytest.approx([0.72, 1.44], abs=0.01)
    assert len(plan_segments(index, 0)) == 1


def test_a_cut_off_packet_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "s.pkt"
    with PacketWriter(path, Fraction(1, 25)) as writer:
        packet = av.Packet(b"\x00" * 100)
        packet.pts, packet.dts, packet.time_base = 0, 0, Fraction(1, 25)
        writer.write(packet)
    assert [bytes(p) for p in read_packets(path)] == [b"\x00" * 100]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(InputError, match="s.pkt: segment file cut off"):
        list(read_packets(path))


def _long_clip(root, name="a.mkv", frames=60):
    root.mkdir(exist_ok=True)
    return make_clip(root / name, width=64, height=48, frames=frames, content="moving",
                     gop=6, audio=True, subtitles=True, chapters=[(0, 1, "one"), (1, 2, "two")],
                     metadata={"title": "segments"})


@needs_ffprobe
def test_a_lossless_segmented_output_is_the_whole_file_runs(tmp_path, capsys):
    src = tmp_path / "src"
    _long_clip(src)
    for out, seconds in (("seg", "0.5"), ("whole", "0")):
        code, err = batch(capsys, src, tmp_path / out, *FAST, "--codec", "ffv1",
                          "--segment-seconds", seconds)
        assert code == 0, err
    assert report(tmp_path / "seg")["files"][0]["segments"] == 4
    a, b = tmp_path / "seg" / "a.mkv", tmp_path / "whole" / "a.mkv"
    assert same_frames(a, b)
    # Audio, subtitles, chapters, metadata, every timestamp: the same file but for the
    # video's packets (each segment starts FFV1's keyframe cycle afresh).
    assert probe_streams(a) == probe_streams(b)
    assert packet_times(a) == packet_times(b)
    assert not (tmp_path / "seg" / ".vidsr-segments").exists()


@needs_ffprobe
def test_a_lossy_segmented_output_keeps_every_timestamp_and_stream(tmp_path, capsys):
    src = tmp_path / "src"
    _long_clip(src)
    for out, seconds in (("seg", "0.5"), ("whole", "0")):
        assert batch(capsys, src, tmp_path / out, *FAST, "--container", "mp4",
                     "--segment-seconds", seconds)[0] == 0
    a, b = tmp_path / "seg" / "a.mp4", tmp_path / "whole" / "a.mp4"
    assert probe_streams(a)["streams"][1:] == probe_streams(b)["streams"][1:]
    assert packet_times(a) == packet_times(b)
    x, y = decoded(a), decoded(b)
    assert len(x) == len(y) == 60
    # New GOPs at the cuts: x264's own noise, no more.
    mse = np.mean([(p.astype(float) - q) ** 2 for p, q in zip(x, y, strict=True)])
    assert 10 * np.log10(255**2 / mse) > 40


def _segments_done(out):
    """The job entry once some of its segments, not all, are done; None before."""
    try:
        entries = json.loads((out / "vidsr-job.json").read_text())["files"]
    except FileNotFoundError:
        return None
    for entry in entries.values():
        segments = entry.get("segments")
        if segments and 0 < len(segments["done"]) < len(segments["cuts"]) - 1:
            return entry
    return None


# vdsr: slow enough (about 10 frames a second here) to be caught between two segments.
SLOW = ("--model", "vdsr", "--scale", "2", "--batch-size", "1", "--no-progress",
        "--segment-seconds", "0.4")


@needs_ffprobe
def test_sigkill_mid_file_redoes_only_the_unfinished_segment(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    _long_clip(src, frames=48)
    proc = start_vidsr("batch", src, out, *SLOW)
    wait_for(proc, lambda: _segments_done(out))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    entry = next(iter(job(out).values()))
    assert entry["state"] == "running"
    kept = entry["segments"]["done"]

    code, err = batch(capsys, src, out, *SLOW)

    assert code == 0, err
    row = report(out)["files"][0]
    assert (row["segments"], row["segments_reused"]) == (4, len(kept))
    assert f"{len(kept)} of 4 segments kept from the stopped run" in err
    assert not (out / ".vidsr-segments").exists()
    # Against a run that was never stopped: the same frames, packets and streams.
    assert batch(capsys, src, tmp_path / "straight", *SLOW)[0] == 0
    a, b = out / "a.mkv", tmp_path / "straight" / "a.mkv"
    assert same_frames(a, b)
    assert probe_streams(a) == probe_streams(b)
    assert packet_times(a) == packet_times(b)


def _joined_ts(path):
    """cat a.ts b.ts (written beside the source folder): both parts' times start at the
    same place."""
    parts = [make_clip(path.parent.parent / f"{n}.ts", width=64, height=48, frames=12, gop=6,
                       content=content) for n, content in (("a", "moving"), ("b", "bars"))]
    path.write_bytes(b"".join(p.read_bytes() for p in parts))


def _repeated_times(path):
    """12 frames at 25 fps (a keyframe every 4) muxed with repeated times, as a broken
    remux leaves them."""
    times = [0, 40, 80, 80, 120, 160, 160, 160, 200, 240, 280, 320]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = 4
        stream.codec_context.options = {"bf": "0", "keyint_min": "4", "sc_threshold": "0"}
        packets = []
        for i in range(len(times)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8),
                                               format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            packets += stream.encode(frame)
        packets += stream.encode(None)
        for packet, stamp in zip(packets, times, strict=True):
            packet.pts = packet.dts = stamp
            packet.time_base = Fraction(1, 1000)
            out.mux(packet)


@pytest.mark.parametrize("name, make", [("joined.ts", _joined_ts),
                                        ("repeated.mkv", _repeated_times)])
def test_a_file_whose_times_name_no_one_place_runs_whole(tmp_path, capsys, name, make):
    # Cut by time, segments would each take the frames of both parts of a joined file, or
    # end before a repeated time's retimed frames: the file runs whole, every frame kept.
    src = tmp_path / "src"
    src.mkdir()
    make(src / name)
    code, err = batch(capsys, src, tmp_path / "out", *FAST, "--segment-seconds", "0.1")
    assert code == 0, err
    assert report(tmp_path / "out")["files"][0]["segments"] == 0
    with av.open(str(tmp_path / "out" / Path(name).with_suffix(".mkv").name)) as out:
        times = sorted(f.pts for f in out.decode(video=0))
    assert times == [40 * i for i in range(24 if name == "joined.ts" else 12)]


@pytest.mark.skipif(qtgmc_missing() is not None,
                    reason="the qtgmc extra is not installed: pip install 'vidsr[qtgmc]'")
def test_a_qtgmc_job_runs_each_file_whole_as_the_transcoder_does(tmp_path, capsys):
    # About a second of interlaced H.264 with a keyframe every 6 frames and 0.2 s segments:
    # bwdif cuts it, QTGMC runs it whole (BestSource indexes the whole file) and writes the
    # single-file transcoder's frames.
    src = tmp_path / "src"
    src.mkdir()
    clip = _gop_clip(src / "in.mkv", "libx264", {**X264_GOP, "flags": "+ildct+ilme"},
                     interlaced=True, frames=24)
    fields = ("--deinterlace", "on", "--field-order", "tff", "--codec", "ffv1",
              "--segment-seconds", "0.2")
    code, err = batch(capsys, src, tmp_path / "bwdif", *FAST, *fields)
    assert code == 0, err
    assert report(tmp_path / "bwdif")["files"][0]["segments"] > 1
    code, err = batch(capsys, src, tmp_path / "out", *FAST, *fields, "--deinterlacer",
                      "qtgmc", "--debug")  # --debug: the info lines too
    assert code == 0, err
    assert report(tmp_path / "out")["files"][0]["segments"] == 0
    assert ("in.mkv: run whole, not in segments: QTGMC reads the file through BestSource,"
            " which indexes all of it on opening") in err
    single = tmp_path / "single.mkv"
    upscale_video(clip, single, model="nearest", scale=2, encode=EncodeOptions(codec="ffv1"),
                  options=TranscodeOptions(deinterlace="on", field_order="tff",
                                           deinterlacer="qtgmc"),
                  control=RunControl(progress=False))
    assert same_frames(tmp_path / "out" / "in.mkv", single)
    assert packet_times(tmp_path / "out" / "in.mkv") == packet_times(single)


def test_an_inverse_telecined_file_runs_whole_and_its_job_names_the_method(tmp_path, capsys):
    # Cycles of 5 count from the stream's first frame: a segment alone would drop others.
    src = tmp_path / "src"
    src.mkdir()
    make_video_clip(src / "film.mpg", telecine([film_picture(i) for i in range(24)]),
                    codec="mpeg2video")
    out = tmp_path / "out"
    code, err = batch(capsys, src, out, *FAST, "--deinterlace", "ivtc",
                      "--segment-seconds", "0.2")
    assert code == 0, err
    assert report(out)["files"][0]["segments"] == 0
    entry = next(iter(job(out).values()))
    assert entry["options"]["deinterlace"] == {"order": "tff", "rate": "frame",
                                               "method": "ivtc"}
    with av.open(str(out / "film.mkv")) as output:
        assert len(list(output.decode(video=0))) == 24


def test_a_window_models_segments_equal_a_whole_file_run_with_a_cut_at_a_boundary(
        tmp_path, capsys, temporal):
    """Each segment decodes its neighbours as context, and judges a cut at its edge as a
    whole run does: the segmented output is ``vidsr``'s on the whole file, frame for frame,
    a cut falling just on a segment boundary included."""
    check_window_segments(tmp_path, capsys, temporal)


@needs_ffprobe
def test_a_window_model_killed_mid_file_resumes_to_the_whole_file_runs_frames(tmp_path,
                                                                               capsys):
    """SIGKILL between segments of a temporal model's run; the rerun keeps the finished
    segments and its output is a whole-file ``vidsr`` run's, frame for frame."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from vidsr.archs.temporal import WindowCompact

    torch.manual_seed(3)
    # Slow enough (a few frames a second here) to be caught between two segments.
    net = WindowCompact(num_feat=48, num_conv=6, num_refine=1, radius=1, scale=2)
    weights = tmp_path / "temporal.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    clip = write_ffv1(src / "a.mkv", [[np.repeat(np.repeat(p, 2, 0), 2, 1) for p in f]
                                      for f in shot_frames("square", 20)
                                      + shot_frames("bars", 20)], gop=5)
    args = ("--model", str(weights), "--batch-size", "1", "--no-progress", "--codec", "ffv1",
            "--segment-seconds", "0.4")
    proc = start_vidsr("batch", src, out, *args)
    wait_for(proc, lambda: _segments_done(out))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    kept = next(iter(job(out).values()))["segments"]["done"]

    code, err = batch(capsys, src, out, *args)

    assert code == 0, err
    assert report(out)["files"][0]["segments_reused"] == len(kept) > 0
    single = tmp_path / "single.mkv"
    upscale_video(clip, single, model=weights, encode=EncodeOptions(codec="ffv1"),
                  control=RunControl(progress=False))
    assert same_frames(out / "a.mkv", single)
