import os
from fractions import Fraction
from pathlib import Path

import pytest
from clipgen import make_audio_only, make_clip, make_streams_clip

from vidsr.errors import InputError
from vidsr.io.colour import ColourSpec
from vidsr.io.frames import PlaneLayout
from vidsr.io.pixfmt import source_format
from vidsr.io.probe import probe


def test_tagged_hd_colour_sar_and_timing(clip):
    spec = ColourSpec("bt709", True, "bt709", "bt709")
    info = probe(clip("hd.mp4", width=64, height=48, colour=spec, sar=Fraction(4, 3),
                      frames=6, rate=25, audio=True))
    assert (info.width, info.height, info.codec) == (64, 48, "h264")
    assert info.colour == spec
    assert info.sar == Fraction(4, 3)
    assert info.average_rate == 25 and info.frame_count == 6
    assert info.duration == pytest.approx(0.24, abs=0.001)
    assert [(s.index, s.type, s.codec) for s in info.other_streams] == [(1, "audio", "aac")]


@pytest.mark.parametrize(("height", "rate", "matrix"), [
    (48, 25, "bt470bg"), (48, Fraction(30000, 1001), "smpte170m"), (720, 25, "bt709")])
def test_untagged_guesses_like_players(clip, height, rate, matrix):
    info = probe(clip(width=64 if height < 720 else 1280, height=height, rate=rate, frames=1,
                      codec="ffv1"))
    assert info.colour.matrix == matrix and info.colour.primaries == matrix
    assert not info.colour.tagged and not info.colour.full_range
    assert info.sar == 1


def test_mkv_has_no_nb_frames_but_an_estimate(clip):
    info = probe(clip("a.mkv", frames=10))
    assert info.frame_count is None
    assert info.duration == pytest.approx(0.4, abs=0.001)
    assert info.frame_count_estimate == 10


def test_raw_h264_has_neither(tmp_path):
    info = probe(make_clip(tmp_path / "a.h264", width=64, height=48, frames=4,
                           container_format="h264"))
    assert info.frame_count is None and info.duration is None
    assert info.frame_count_estimate is None and info.average_rate == 25


def test_yuvj_is_full_range(clip):
    info = probe(clip(pix_fmt="yuvj420p", frames=1))
    assert info.colour.full_range and info.layout.pix_fmt == "yuv420p"


@pytest.mark.parametrize(("pix_fmt", "layout"), [
    ("yuv420p", PlaneLayout("yuv", 8, 1, 1, "yuv420p")),
    ("yuv422p10le", PlaneLayout("yuv", 10, 1, 0, "yuv422p10le")),
    ("yuv444p12le", PlaneLayout("yuv", 12, 0, 0, "yuv444p12le")),
    ("yuv420p16le", PlaneLayout("yuv", 16, 1, 1, "yuv420p16le")),
    ("gray10le", PlaneLayout("gray", 10, 0, 0, "gray10le")),
    ("yuvj444p", PlaneLayout("yuv", 8, 0, 0, "yuv444p")),
    ("nv12", PlaneLayout("yuv", 8, 1, 1, "yuv420p")),
    ("p010le", PlaneLayout("yuv", 10, 1, 1, "yuv420p10le")),
    ("nv16", PlaneLayout("yuv", 8, 1, 0, "yuv422p")),
    ("rgb24", PlaneLayout("rgb", 8, 0, 0, "gbrp")),
    ("bgr24", PlaneLayout("rgb", 8, 0, 0, "gbrp")),
    ("rgba", PlaneLayout("rgb", 8, 0, 0, "gbrp")),
    ("rgb48le", PlaneLayout("rgb", 16, 0, 0, "gbrp16le")),
    ("pal8", PlaneLayout("rgb", 8, 0, 0, "gbrp")),
    ("gbrp10le", PlaneLayout("rgb", 10, 0, 0, "gbrp10le")),
    ("yuv411p", PlaneLayout("yuv", 8, 0, 0, "yuv444p")),
    ("yuva420p", PlaneLayout("yuv", 8, 1, 1, "yuv420p")),
])
def test_layout_of_every_format(pix_fmt, layout):
    assert source_format(pix_fmt).layout == layout


def test_errors_name_the_file(tmp_path, clip):
    with pytest.raises(InputError, match=r"nothere\.mkv: no such file"):
        probe(tmp_path / "nothere.mkv")
    with pytest.raises(InputError, match="is a directory"):
        probe(tmp_path)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.mp4: file is empty"):
        probe(tmp_path / "empty.mp4")
    (tmp_path / "notes.txt").write_text("just some text, not a video\n" * 20)
    with pytest.raises(InputError, match=r"notes\.txt: not a video file FFmpeg can read"):
        probe(tmp_path / "notes.txt")
    (tmp_path / "junk.mkv").write_bytes(bytes(range(256)) * 40)
    with pytest.raises(InputError, match=r"junk\.mkv: not a video file FFmpeg can read"):
        probe(tmp_path / "junk.mkv")


def test_audio_only_file(tmp_path):
    path = make_audio_only(tmp_path / "tone.flac")
    with pytest.raises(InputError, match=r"tone\.flac: has no video stream \(found: audio flac\)"):
        probe(path)


_NEEDS_A_REGULAR_FILE = ("vidsr needs a regular file (it reads its input twice: to decode it"
                         " and to copy its other streams)")


def test_a_named_pipe_is_named_not_called_empty(tmp_path):
    fifo = tmp_path / "live.mkv"
    os.mkfifo(fifo)
    with pytest.raises(InputError) as error:
        probe(fifo)  # never opened: opening a FIFO with no writer would block
    assert str(error.value) == f"{fifo}: is a named pipe (FIFO); {_NEEDS_A_REGULAR_FILE}"


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_a_device_is_named_not_called_empty():
    with pytest.raises(InputError) as error:
        probe("/dev/null")
    assert str(error.value) == f"/dev/null: is a device file; {_NEEDS_A_REGULAR_FILE}"


@pytest.mark.parametrize("name", ["http:clip.mkv", "rtmp:x.mkv", "file:clip.mkv",
                                  "clip #1?%20.mkv"])
def test_local_names_that_look_like_urls_are_read_as_local_files(tmp_path, monkeypatch, name):
    make_clip(tmp_path / "made.mkv", width=64, height=48, frames=3).rename(tmp_path / name)
    # A different file under the name FFmpeg would read for "file:clip.mkv" without care.
    make_clip(tmp_path / "clip.mkv", width=32, height=32, frames=1)
    monkeypatch.chdir(tmp_path)
    info = probe(name)
    assert (info.width, info.height, info.path) == (64, 48, Path(name))


def test_errors_name_the_users_path_not_a_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("http:junk.mkv").write_bytes(bytes(range(256)) * 40)
    with pytest.raises(InputError) as error:
        probe("http:junk.mkv")
    assert str(error.value).startswith("http:junk.mkv: not a video file FFmpeg can read (")
    assert "file:" not in str(error.value)


def test_the_nominal_rate_is_the_base_rate_unless_the_stream_really_varies():
    from vidsr.io.probe import nominal_rate

    # 48 frames at 24 fps whose MP4 averages 1152/49 (its last sample is long): 24 it is.
    assert nominal_rate(Fraction(1152, 49), Fraction(24)) == 24
    assert nominal_rate(Fraction(30000, 1001), Fraction(30000, 1001)) == Fraction(30000, 1001)
    # A phone's variable-rate clip averaging 25 against a base of 30 stays at its average.
    assert nominal_rate(Fraction(25), Fraction(30)) == 25
    assert nominal_rate(None, Fraction(30)) == 30 and nominal_rate(None, None) is None
    # FFmpeg's average of raw DV or a frame-count-less Matroska file is 1/time base.
    assert nominal_rate(Fraction(60000), Fraction(25)) == 25
    assert nominal_rate(Fraction(1000), Fraction(25)) == 25


def test_the_bundled_sample_is_24_fps():
    sample = Path(__file__).resolve().parents[2] / "vidsr" / "samples" / "bbb_2s.mp4"
    assert probe(sample).average_rate == 24


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_the_default_or_largest_video_stream_is_upscaled_never_cover_art(tmp_path, suffix):
    # D17: the first stream (small, not default) was taken, and cover art could be.
    two = make_streams_clip(tmp_path / f"two{suffix}", cover=True,
                            videos=[(64, 48, False), (96, 72, True)])
    info = probe(two)
    assert (info.stream_index, info.width, info.height) == (1, 96, 72)
    assert (probe(two, 0).width, probe(two, 0).height) == (64, 48)
    # MP4 readers mark the first track default when none is; Matroska keeps the marks.
    unmarked = make_streams_clip(tmp_path / "unmarked.mkv", cover=True,
                                 videos=[(64, 48, False), (96, 72, False), (80, 60, False)])
    assert probe(unmarked).stream_index == 1
    with pytest.raises(InputError, match=rf"two{suffix}: stream #2 \(video, mjpeg\) is cover"
                                         r" art, not a video; choose another --video-stream"):
        probe(two, 2)
    with pytest.raises(InputError, match=rf"two{suffix}: has no stream #7 \(it has 3"):
        probe(two, 7)


def test_a_song_with_cover_art_has_no_video(tmp_path):
    # D25: its picture was decoded as a 0-second video, "file truncated?".
    song = make_streams_clip(tmp_path / "song.m4a", videos=[], cover=True, audio=True)
    with pytest.raises(InputError, match=r"song\.m4a: has no video stream \(only cover art\)$"):
        probe(song)
