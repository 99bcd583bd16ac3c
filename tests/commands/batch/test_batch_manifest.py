"""Manifests: one path a line, or CSV with per-file overrides; and what probing skips."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from batch_helpers import FAST, batch, decoded, identity, job, make_tree, outcomes, report
from clipgen import make_streams_clip
from PIL import Image

from vidsr.commands.batch.sources import scan_sources
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
    assert verdicts == [
        ("x.mov", "video", ""),
        ("x.mp4", "conflict", f"its output x.mkv is also that of {tmp_path / 'src' / 'x.mov'};"
                              " rename one")]


def test_a_refusal_for_another_files_sake_is_not_remembered_as_a_failure(tmp_path, capsys,
                                                                       clip):
    (tmp_path / "src").mkdir()
    clip("src/x.mp4", width=32, height=24, frames=2)
    clip("src/x.mov", width=32, height=24, frames=2)
    out = tmp_path / "out"
    assert batch(capsys, tmp_path / "src", out, *FAST)[0] == 1
    assert outcomes(out) == {"x.mov": "done", "x.mp4": "failed"}
    assert list(job(out)) == [str(tmp_path / "src" / "x.mov")]
    # The clash is gone: x.mp4 runs, not "failed before".
    (tmp_path / "src" / "x.mov").unlink()
    (out / "x.mkv").unlink()
    code, err = batch(capsys, tmp_path / "src", out, *FAST)
    assert code == 0, err
    assert outcomes(out) == {"x.mp4": "done"}



def test_a_csv_row_with_more_cells_than_the_header_names_the_manifest_and_line(tmp_path,
                                                                               capsys):
    make_tree(tmp_path / "src")
    manifest = tmp_path / "extra.csv"
    manifest.write_text("path,model,scale\nsrc/a.mp4,nearest,2\nsrc/a.mp4,nearest,2,extra\n")
    with pytest.raises(OptionsError) as caught:
        scan_sources(manifest, tmp_path / "out", "mkv")
    assert str(caught.value) == (f"{manifest}:3: 4 values for 3 columns (path, model, scale)")
    code, err = batch(capsys, manifest, tmp_path / "out", *FAST)
    assert (code, err) == (2, f"vidsr: error: {caught.value}\n")
    assert not (tmp_path / "out").exists()


def test_a_quote_left_open_in_a_csv_is_an_error_not_a_path(tmp_path):
    make_tree(tmp_path / "src")
    manifest = tmp_path / "jobs.csv"
    # The open quote would take the lines after it into one path, "src/a.mp4,2\nsrc/...".
    manifest.write_text('path,scale\nsrc/sub/b.mkv,3\n"src/a.mp4,2\nsrc/sub/b.mkv,3\n')
    with pytest.raises(OptionsError) as caught:
        scan_sources(manifest, tmp_path / "out", "mkv")
    assert str(caught.value) == (f"{manifest}:3: not valid CSV (unexpected end of data);"
                                 " check the quotes from this line on")


def test_a_listed_path_that_leads_to_no_file_fails_whatever_its_name(tmp_path):
    make_tree(tmp_path / "src")
    (tmp_path / "src" / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    manifest = tmp_path / "list.txt"
    manifest.write_text("src/a.mp4\nsrc/missing.mp4\nsrc/missing\nsrc/notes.txt\n"
                        "src/gone.mp4\n")
    verdicts = {f.path.name: (f.verdict, f.reason)
                for f in scan_sources(manifest, tmp_path / "out", "mkv")}
    assert verdicts == {
        "a.mp4": ("video", ""),
        "missing.mp4": ("fail", "no such file"),
        "missing": ("fail", "no such file"),
        "notes.txt": ("skip", "not a video file FFmpeg can read (Invalid data found when"
                                " processing input)"),
        "gone.mp4": ("fail", f"a broken link (to {tmp_path / 'nowhere.mp4'})"),
    }


def test_a_walked_folder_follows_links_to_folders_once(tmp_path, clip):
    src, elsewhere = tmp_path / "src", tmp_path / "elsewhere"
    (src / "real").mkdir(parents=True)
    elsewhere.mkdir()
    clip("src/real/a.mp4", width=16, height=16, frames=2)
    clip("elsewhere/b.mp4", width=16, height=16, frames=2)
    (src / "linked").symlink_to(elsewhere)  # outside SRC: walked under the link's name
    (src / "linked2").symlink_to(elsewhere)  # the same folder again: walked once
    (src / "alias").symlink_to(src / "real")  # inside SRC: walked under its own name
    (src / "real" / "up").symlink_to(src)  # a loop
    (src / "gone").symlink_to(tmp_path / "nowhere")
    files = {f.output.as_posix(): (f.verdict, f.reason)
             for f in scan_sources(src, tmp_path / "out", "mkv")}
    assert files == {
        "gone.mkv": ("fail", f"a broken link (to {tmp_path / 'nowhere'})"),
        "linked/b.mkv": ("video", ""),
        "real/a.mkv": ("video", ""),
    }


def test_a_file_listed_more_than_once_is_one_job_and_counted_once(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    make_tree(src)
    manifest = tmp_path / "dup.txt"
    manifest.write_text("src/a.mp4\nsrc/a.mp4\n./src/a.mp4\n" f"{src / 'a.mp4'}\n")
    code, err = batch(capsys, manifest, out, *FAST)
    assert code == 0, err
    assert [(Path(r["source"]).name, r["outcome"], r["frames"])
            for r in report(out)["files"]] == [("a.mp4", "done", 4)]
    assert "vidsr: batch: 1 done, 0 skipped, 0 failed; 4 frames" in err
    assert job(out)[str(src / "a.mp4")]["state"] == "done"


def test_a_file_listed_again_with_other_options_is_refused_and_the_batch_converges(
        tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    make_tree(src)
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("path,scale,crf\nsrc/a.mp4,2,20\nsrc/a.mp4,3,\n")
    refused = ("listed again with other options (scale 3) than on line 2 (scale 2, crf 20);"
               " both would write a.mkv: list it once, or run the other in another OUT_DIR")
    code, err = batch(capsys, manifest, out, *FAST)
    assert code == 1
    assert [(r["outcome"], r["reason"], r["frames"]) for r in report(out)["files"]] == [
        ("done", "", 4), ("failed", refused, 0)]
    assert _size(out / "a.mkv") == (64, 48)  # the first line's, not replaced
    assert job(out)[str(src / "a.mp4")]["options"]["model"]["scale"] == 2
    written = identity(out / "a.mkv")

    code, err = batch(capsys, manifest, out, *FAST)
    assert code == 1
    assert [(r["outcome"], r["reason"]) for r in report(out)["files"]] == [
        ("skipped", "already done; output unchanged"), ("failed", refused)]
    assert identity(out / "a.mkv") == written


def test_each_row_gets_its_own_outcome_and_a_changed_row_is_not_blocked(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    make_tree(src)
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("path,scale,codec\nsrc/a.mp4,abc,\nsrc/a.mp4,,mpeg4\n"
                        "src/sub/b.mkv,,\n")
    code, err = batch(capsys, manifest, out, *FAST)
    assert code == 1
    assert [(r["outcome"], r["reason"]) for r in report(out)["files"]] == [
        ("failed", "argument --scale: expected a whole number, got 'abc'"),
        ("failed", "listed again with other options (codec mpeg4) than on line 2 (scale abc);"
                   " both would write a.mkv: list it once, or run the other in another"
                   " OUT_DIR"),
        ("done", "")]
    assert job(out)[str(src / "a.mp4")]["overrides"] == {"scale": "abc"}

    # The line put right is another job: run, not "failed before" with the old reason.
    manifest.write_text("path,scale,codec\nsrc/a.mp4,3,\nsrc/sub/b.mkv,,\n")
    code, err = batch(capsys, manifest, out, *FAST)
    assert code == 0, err
    assert outcomes(out) == {"a.mp4": "done", "b.mkv": "skipped"}
    assert _size(out / "a.mkv") == (96, 72)

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
