"""`vidsr batch` end to end on real clips: the tree mirrored, skipped and failed files,
resume, redo on changed options or outputs, --retry-failed, the report."""

from __future__ import annotations

import json
import sys

import av
from batch_helpers import (
    FAST,
    batch,
    decoded,
    identity,
    job,
    make_tree,
    outcomes,
    report,
    same_frames,
    write_truncated,
)
from clipgen import make_clip


def test_a_tree_is_mirrored_and_a_broken_file_fails_while_the_rest_finish(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    clips = make_tree(src)
    write_truncated(src / "sub" / "broken.mp4", clips["a.mp4"])
    (src / "garbage.mp4").write_bytes(b"\x00\x01 not a video at all" * 40)
    inputs = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}

    code, err = batch(capsys, src, out, *FAST)

    assert code == 1, err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mkv")) == [
        "a.mkv", "sub/b.mkv", "sub/deeper/c.mkv"]
    with av.open(str(out / "sub" / "deeper" / "c.mkv")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (32, 32)
    assert len(decoded(out / "sub" / "deeper" / "c.mkv")) == 4
    assert outcomes(out) == {"a.mp4": "done", "b.mkv": "done", "c.mov": "done",
                             "broken.mp4": "failed", "garbage.mp4": "failed",
                             "notes.txt": "skipped"}
    rows = {r["source"].split("/")[-1]: r for r in report(out)["files"]}
    for name in ("broken.mp4", "garbage.mp4"):
        assert "\n" not in rows[name]["reason"] and rows[name]["reason"], rows[name]
    assert "not a video file FFmpeg can read" in rows["garbage.mp4"]["reason"]
    assert report(out)["totals"] | {"video_hours": 0, "wall_s": 0, "fps": 0} == {
        "done": 3, "skipped": 1, "failed": 2, "frames": 12, "video_hours": 0, "wall_s": 0,
        "fps": 0}
    assert "vidsr: batch: 3 done, 1 skipped, 2 failed; 12 frames" in err
    entries = job(out)
    assert {k.split("/")[-1]: e["state"] for k, e in entries.items()} == {
        "a.mp4": "done", "b.mkv": "done", "c.mov": "done", "broken.mp4": "failed",
        "garbage.mp4": "failed"}
    done = entries[str(src / "a.mp4")]
    assert done["frames"] == 4 and done["size"] == (out / "a.mkv").stat().st_size
    assert len(done["sha256"]) == 64
    # Inputs are never modified, nothing is left behind.
    assert {p: p.read_bytes() for p in src.rglob("*")
            if p.is_file()} == inputs
    assert not [p for p in out.rglob("*") if ".vidsr-" in p.name]


def test_a_rerun_skips_done_files_and_retry_failed_retries(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    clips = make_tree(src)
    broken = write_truncated(src / "broken.mkv", clips["sub/b.mkv"])
    assert batch(capsys, src, out, *FAST)[0] == 1
    before = {p: identity(p) for p in out.rglob("*.mkv")}

    code, err = batch(capsys, src, out, *FAST)
    assert code == 1
    assert {p: identity(p) for p in out.rglob("*.mkv")} == before  # nothing re-encoded
    assert outcomes(out)["a.mp4"] == "skipped"
    assert "0 done, 4 skipped, 1 failed; 0 frames" in err

    broken.write_bytes(clips["sub/b.mkv"].read_bytes())  # the download completed
    code, err = batch(capsys, src, out, *FAST, "--retry-failed")
    assert code == 0, err
    assert outcomes(out)["broken.mkv"] == "done"
    assert same_frames(out / "broken.mkv", out / "sub" / "b.mkv")
    assert {p: identity(p) for p in before} == before


def test_a_file_failed_while_upscaling_waits_for_retry_failed(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    make_tree(src)
    # An output that the batch did not write is not clobbered: that file fails.
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "b.mkv").write_bytes(b"precious")
    code, err = batch(capsys, src, out, *FAST)
    assert code == 1
    assert "already exists and this batch did not write it" in err
    assert (out / "sub" / "b.mkv").read_bytes() == b"precious"

    code, err = batch(capsys, src, out, *FAST)
    assert code == 1 and "failed before; --retry-failed tries it again" in err
    assert (out / "sub" / "b.mkv").read_bytes() == b"precious"

    code, err = batch(capsys, src, out, *FAST, "--retry-failed", "--overwrite")
    assert code == 0, err
    assert len(decoded(out / "sub" / "b.mkv")) == 4


def test_a_changed_option_redoes_the_files(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    make_tree(src)
    assert batch(capsys, src, out, *FAST)[0] == 0
    first = job(out)[str(src / "a.mp4")]["fingerprint"]

    code, err = batch(capsys, src, out, "--model", "nearest", "--scale", "3", "--no-progress")
    assert code == 0, err
    assert "3 done, 1 skipped, 0 failed" in err
    with av.open(str(out / "a.mkv")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (96, 72)
    assert job(out)[str(src / "a.mp4")]["fingerprint"] != first

    code, err = batch(capsys, src, out, "--model", "nearest", "--scale", "3", "--no-progress",
                      "--codec", "mpeg4")
    assert code == 0 and "3 done" in err
    with av.open(str(out / "a.mkv")) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4"
    assert job(out)[str(src / "a.mp4")]["options"]["output"]["encode"]["codec"] == "mpeg4"


def test_a_deleted_or_modified_output_is_redone(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    make_tree(src)
    # Lossless, so the redone file's frames are vidsr's own, not a lossy encoder's choices.
    lossless = (*FAST, "--codec", "ffv1")
    assert batch(capsys, src, out, *lossless)[0] == 0
    good = tmp_path / "good.mkv"
    good.write_bytes((out / "a.mkv").read_bytes())
    untouched = identity(out / "sub" / "deeper" / "c.mkv")
    (out / "a.mkv").unlink()
    data = bytearray((out / "sub" / "b.mkv").read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    (out / "sub" / "b.mkv").write_bytes(bytes(data))

    code, err = batch(capsys, src, out, *lossless)

    assert code == 0, err
    assert outcomes(out) == {"a.mp4": "done", "b.mkv": "done", "c.mov": "skipped",
                             "notes.txt": "skipped"}
    assert same_frames(out / "a.mkv", good)
    assert identity(out / "sub" / "deeper" / "c.mkv") == untouched
    entry = job(out)[str(src / "sub" / "b.mkv")]
    assert entry["size"] == (out / "sub" / "b.mkv").stat().st_size
    assert entry["state"] == "done"


def test_the_report_goes_where_asked_and_a_single_file_works(tmp_path, capsys):
    clip = make_clip(tmp_path / "one.mp4", width=32, height=24, frames=3)
    out = tmp_path / "out"
    code, err = batch(capsys, clip, out, *FAST, "--container", "mp4", "--report",
                      tmp_path / "r.json")
    assert code == 0, err
    data = json.loads((tmp_path / "r.json").read_text())
    assert [(r["output"], r["outcome"], r["frames"]) for r in data["files"]] == [
        ("one.mp4", "done", 3)]
    assert data["totals"]["done"] == 1 and data["totals"]["frames"] == 3
    assert len(decoded(out / "one.mp4")) == 3


def test_a_wrong_model_is_one_error_before_any_file(tmp_path, capsys):
    make_tree(tmp_path / "src")
    code, err = batch(capsys, tmp_path / "src", tmp_path / "out", "--model", "no-such-model",
                      "--no-progress")
    assert code == 2  # a usage error, as any wrong option value
    assert err.startswith("vidsr: error: ") and err.count("\n") == 1, err
    assert "no-such-model" in err
    assert not (tmp_path / "out").exists()


def test_engine_ray_without_ray_is_one_line(tmp_path, capsys, monkeypatch):
    make_clip(tmp_path / "a.mp4", width=16, height=16, frames=2)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    code, err = batch(capsys, tmp_path / "a.mp4", tmp_path / "out", *FAST, "--engine", "ray")
    assert code != 0
    assert err.strip() == "vidsr: error: --engine ray needs Ray: pip install 'vidsr[ray]'"
    assert not (tmp_path / "out").exists()
    code, err = batch(capsys, tmp_path / "a.mp4", tmp_path / "out", *FAST, "--ray-actors", "2")
    assert code != 0 and "--ray-actors" in err and "--engine ray" in err
