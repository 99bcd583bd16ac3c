import av
import numpy as np
import pytest
from clipgen import bar_values, content_planes, damage_clip

from vidsr.commands.bench import make_bench_clip
from vidsr.errors import DecodeError
from vidsr.io.decode import Decoder
from vidsr.io.probe import probe


def _decode(path, **kwargs):
    with Decoder(path, **kwargs) as dec:
        return dec, list(dec)


def test_batches_counts_pts_shapes(clip):
    dec, batches = _decode(clip("m.mkv", frames=10, content="moving", codec="ffv1"),
                           batch_size=4)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [b.first_index for b in batches] == [0, 4, 8]
    assert [p for b in batches for p in b.pts] == [i * 40 for i in range(10)]
    shapes = [p.shape for p in batches[-1].planes]
    assert shapes == [(2, 48, 64), (2, 24, 32), (2, 24, 32)]
    assert all(p.dtype == np.uint8 and p.flags.c_contiguous for p in batches[0].planes)
    expected = content_planes("moving", "yuv420p", 64, 48, 9)
    for got, want in zip(batches[-1].planes, expected, strict=True):
        np.testing.assert_array_equal(got[1], want)  # ffv1 is lossless
    assert dec.skipped == 0


def test_odd_size_10bit_stays_10bit(clip):
    path = clip("odd.mkv", width=353, height=289, pix_fmt="yuv420p10le", codec="ffv1",
                content="gradient", frames=2)
    dec, (batch,) = _decode(path, batch_size=8)
    assert dec.info.layout.bit_depth == 10 and batch.planes[0].dtype == np.uint16
    assert [p.shape for p in batch.planes] == [(2, 289, 353), (2, 145, 177), (2, 145, 177)]
    want = content_planes("gradient", "yuv420p10le", 353, 289, 0)
    for got, exp in zip(batch.planes, want, strict=True):
        np.testing.assert_array_equal(got[0], exp)
    assert batch.planes[0].max() == 1023


def test_bars_code_values_survive_lossless_x264(clip):
    _, (batch,) = _decode(clip("bars.mkv", lossless=True, frames=1), batch_size=2)
    centres = np.arange(8) * 8 + 4
    values = bar_values("bt709", 8)
    np.testing.assert_array_equal(batch.planes[0][0, 10, centres], values[:, 0])
    np.testing.assert_array_equal(batch.planes[1][0, 5, centres // 2], values[:, 1])


@pytest.mark.parametrize(("pix_fmt", "family"), [("nv12", "yuv"), ("rgb24", "rgb"),
                                                   ("pal8", "rgb")])
def test_converted_formats_give_planar_bars(clip, pix_fmt, family):
    dec, (batch,) = _decode(clip("raw.nut", pix_fmt=pix_fmt, codec="rawvideo", frames=1),
                            batch_size=1)
    assert dec.info.layout.family == family
    centres = np.arange(8) * 8 + 4
    if family == "rgb":  # G plane of white, yellow, cyan, green, magenta, red, blue, black
        assert batch.planes[0][0, 0, centres].tolist() == [255] * 4 + [0] * 4
    else:
        assert batch.planes[0][0, 0, centres].tolist() == bar_values("bt709", 8)[:, 0].tolist()


def test_raw_h264_without_timestamps_counts_at_nominal_rate(clip):
    _, batches = _decode(clip("a.h264", frames=5, container_format="h264"), batch_size=8)
    assert batches[0].pts == [i * 48000 for i in range(5)]  # 1/1200000 time base, 25 fps


def test_truncated_fails_then_skip_warns(clip, caplog):
    path = damage_clip(clip("t.mkv", frames=12, content="noise"), cut=True)
    with pytest.raises(DecodeError, match=r"t\.mkv: video ends at .* header says 0\.480 s"):
        _decode(path, batch_size=4)
    dec, batches = _decode(path, batch_size=4, on_error="skip")
    assert 0 < sum(len(b) for b in batches) < 12
    assert "file truncated?" in caplog.text


def test_audio_outlasting_the_video_is_not_truncation(clip, tmp_path):
    # Two seconds of audio beside three frames: the container's duration is the audio's,
    # the video's own is in Matroska's DURATION tag.
    src = clip("long.mkv", frames=50, audio=True)
    short = make_bench_clip(src, tmp_path / "short.mkv", frames=3, crop=None)
    with av.open(str(short)) as container:
        assert container.duration / av.time_base > 1.5
    assert probe(short).duration == pytest.approx(3 / 25, abs=0.005)
    _, batches = _decode(short, batch_size=4)
    assert sum(len(b) for b in batches) == 3


def test_video_starting_after_its_audio_is_not_truncation(clip):
    # Matroska's DURATION tag is the time a stream ends at, from the file's start: 0.52 s
    # for ten frames starting at 0.12 s. The video is complete; cut, it is not.
    path = clip("late.mkv", pts=[120 + 40 * i for i in range(10)], audio=True)
    assert probe(path).duration == pytest.approx(0.52)
    _, batches = _decode(path, batch_size=4)
    assert sum(len(b) for b in batches) == 10
    with pytest.raises(DecodeError, match=r"late\.mkv: video ends at .* header says 0\.520 s"):
        _decode(damage_clip(path, cut=True), batch_size=4)


def test_corrupt_fails_with_position_and_skip_replaces(clip):
    path = damage_clip(clip("c.mkv", frames=12, content="noise"))
    with pytest.raises(DecodeError, match=r"c\.mkv: .*(frame at|packet #)\S* "):
        _decode(path, batch_size=4)
    dec, batches = _decode(path, batch_size=4, on_error="skip")
    pts = [p for b in batches for p in b.pts]
    assert dec.skipped > 0
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
    # A replacement repeats the frame before it exactly.
    planes = np.concatenate([b.planes[0] for b in batches])
    repeats = sum(np.array_equal(planes[i], planes[i - 1]) for i in range(1, len(planes)))
    assert repeats == dec.skipped


def test_a_size_change_midstream_keeps_every_frame_and_is_said_once(clip, tmp_path, caplog):
    # Two raw H.264 streams of other sizes one after the other, as a capture that changed
    # mode: the decoder meets a new SPS at frame 4.
    parts = [clip("small.h264", width=32, height=24, frames=4, container_format="h264"),
             clip("large.h264", width=48, height=32, frames=5, container_format="h264")]
    joined = tmp_path / "joined.h264"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    with caplog.at_level("WARNING", logger="vidsr"):
        dec, batches = _decode(joined, batch_size=4)
    assert sum(len(b) for b in batches) == 9
    assert {b.planes[0].shape[1:] for b in batches} == {(dec.info.height, dec.info.width)}
    scaled = [r.message for r in caplog.records if "each such frame is scaled" in r.message]
    assert len(scaled) == 1, caplog.text
