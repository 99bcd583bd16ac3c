"""Manifests: one path a line, or CSV with per-file overrides; and what probing skips."""

from __future__ import annotations

import av
import pytest
from batch_helpers import FAST, batch, decoded, job, make_tree, outcomes
from clipgen import make_streams_clip
from PIL import Image

from vidsr.batch.sources import scan_sources
from vidsr.errors import OptionsError


def _size(path):
    with av.open(str(path)) as c:
        return c.streams.video[0].width, c.streams.video[0].height


def test_a_plain_manifest_lists_files_relative_to_itself(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    make_tree(src)
    manifest = tmp_path / "list.txt"
    manifest.write_text("# today's files\nsrc/a.mp4\n\n" + f"{src / 'sub' / 'b.mkv'}\n")

    code, err = batch(capsys, manifest, out, *FAST)

    assert code == 0, err
    # Outputs mirror the tree under the deepest folder holding every listed file (src).
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mkv")) == [
        "a.mkv", "sub/b.mkv"]
    assert outcomes(out) == {"a.mp4": "done", "b.mkv": "done"}


def test_a_csv_manifest_overrides_options_per_file(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    make_tree(src)
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("path,scale,codec\nsrc/a.mp4,3,\nsrc/sub/b.mkv,,mpeg4\n")

    code, err = batch(capsys, manifest, out, *FAST)

    assert code == 0, err
    assert _size(out / "a.mkv") == (96, 72)  # its own scale
    assert _size(out / "sub" / "b.mkv") == (64, 48)  # the command's
    with av.open(str(out / "sub" / "b.mkv")) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4"
    assert len(decoded(out / "a.mkv")) == 4
    entries = job(out)
    assert entries[str(src / "a.mp4")]["options"]["model"]["scale"] == 3
    assert entries[str(src / "sub" / "b.mkv")]["options"]["model"]["scale"] == 2


def test_a_bad_override_fails_only_its_file(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    make_tree(src)
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("path,scale\nsrc/a.mp4,three\nsrc/sub/b.mkv,\n")
    code, err = batch(capsys, manifest, out, *FAST)
    assert code == 1
    assert outcomes(out) == {"a.mp4": "failed", "b.mkv": "done"}
    assert "--scale: expected a whole number, got 'three'" in err


def test_an_unknown_column_is_an_error_naming_it_and_the_manifest(tmp_path, capsys):
    make_tree(tmp_path / "src")
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("path,scale,colour\nsrc/a.mp4,3,red\n")
    with pytest.raises(OptionsError, match=r"jobs\.csv: unknown column 'colour'"):
        scan_sources(manifest, tmp_path / "out", "mkv")
    code, err = batch(capsys, manifest, tmp_path / "out", *FAST)
    assert code == 2 and f"vidsr: error: {manifest}: unknown column 'colour'" in err


def test_probing_decides_what_is_a_video(tmp_path, clip):
    src = tmp_path / "src"
    src.mkdir()
    # A video without a video extension is found; a picture and a text file are skipped;
    # OUT_DIR inside SRC is not walked.
    clip("src/recording.bin", width=32, height=24, frames=2, container_format="matroska")
    Image.new("RGB", (8, 8)).save(src / "photo.png")
    (src / "readme.md").write_text("# hello\n")
    (src / "out").mkdir()
    clip("src/out/old.mkv", width=32, height=24, frames=2)
    files = {f.path.name: (f.verdict, f.output.as_posix(), f.frames)
             for f in scan_sources(src, src / "out", "mkv")}
    assert files["recording.bin"] == ("video", "recording.mkv", 2)
    assert files["photo.png"][0] == "skip"
    assert files["readme.md"][0] == "skip"
    assert "old.mkv" not in files


def test_two_sources_with_one_output_name_fail_the_second(tmp_path, clip):
    (tmp_path / "src").mkdir()
    clip("src/x.mp4", width=32, height=24, frames=2)
    clip("src/x.mov", width=32, height=24, frames=2)
    verdicts = [(f.path.name, f.verdict, f.reason)
                for f in scan_sources(tmp_path / "src", tmp_path / "out", "mkv")]
    assert verdicts[0] == ("x.mov", "video", "")
    assert verdicts[1][:2] == ("x.mp4", "fail")
    assert "x.mkv is also that of" in verdicts[1][2]



def test_a_csv_manifest_chooses_the_video_stream(tmp_path, capsys):
    two = make_streams_clip(tmp_path / "two.mp4", videos=[(64, 48, False), (96, 72, True)])
    other = make_streams_clip(tmp_path / "other.mkv", videos=[(64, 48, False), (96, 72, True)])
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("path,video_stream\ntwo.mp4,0\nother.mkv,\n")
    out = tmp_path / "out"

    code, err = batch(capsys, manifest, out, *FAST)

    assert code == 0, err
    assert _size(out / "two.mkv") == (128, 96)  # stream #0, as the row says
    assert _size(out / "other.mkv") == (192, 144)  # the default stream
    assert job(out)[str(two)]["options"]["video_stream"] == 0
    assert job(out)[str(other)]["options"]["video_stream"] == 1
