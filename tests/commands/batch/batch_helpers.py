"""What the batch tests share: a small source tree of real clips, running `vidsr batch`
in this process, and reading back outputs, the job file and the report."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from clipgen import make_clip

from vidsr.__main__ import main

FAST = ("--model", "nearest", "--scale", "2", "--no-progress")
needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None,
                                   reason="needs ffprobe (apt-get install ffmpeg)")


def make_tree(root: Path, frames: int = 4) -> dict[str, Path]:
    """src/a.mp4, src/sub/b.mkv, src/sub/deeper/c.mov (real clips) and src/notes.txt."""
    (root / "sub" / "deeper").mkdir(parents=True)
    clips = {
        "a.mp4": make_clip(root / "a.mp4", width=32, height=24, frames=frames),
        "sub/b.mkv": make_clip(root / "sub" / "b.mkv", width=32, height=24, frames=frames,
                               content="moving"),
        "sub/deeper/c.mov": make_clip(root / "sub" / "deeper" / "c.mov", width=16,
                                      height=16, frames=frames, content="gradient"),
    }
    (root / "notes.txt").write_text("not a video\n")
    return clips


def write_truncated(path: Path, clip: Path) -> Path:
    """The first third of a real clip: a download that stopped."""
    data = clip.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def batch(capsys, *args: str | Path) -> tuple[int, str]:
    """``vidsr batch ARGS`` in this process: the exit code and stderr."""
    capsys.readouterr()
    code = main(["batch", *map(str, args)])
    return code, capsys.readouterr().err


def job(out: Path) -> dict:
    return json.loads((out / "vidsr-job.json").read_text())["files"]


def report(out: Path) -> dict:
    return json.loads((out / "vidsr-report.json").read_text())


def outcomes(out: Path) -> dict[str, str]:
    """Report rows as {source file name: outcome}."""
    return {Path(row["source"]).name: row["outcome"] for row in report(out)["files"]}


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]


def identity(path: Path) -> tuple[int, int]:
    """Inode and modification time: unchanged exactly when the file was not rewritten."""
    status = path.stat()
    return status.st_ino, status.st_mtime_ns


def same_frames(a: Path, b: Path) -> bool:
    """Whether two videos decode to the same frames, code value for code value. A
    difference is described on stdout (pytest shows it with the failure): which frames,
    by how much, and whether a frame is another of the other file's (order, not values)."""
    x, y = decoded(a), decoded(b)
    if len(x) == len(y) and all(np.array_equal(p, q) for p, q in zip(x, y, strict=True)):
        return True
    print(f"{a} has {len(x)} frames, {b} has {len(y)}")
    for i, (p, q) in enumerate(zip(x, y, strict=False)):
        if not np.array_equal(p, q):
            twins = [j for j, r in enumerate(y) if np.array_equal(p, r)]
            print(f"  frame {i}: max difference {np.abs(p.astype(int) - q).max()},"
                  f" {np.count_nonzero(p != q)} of {p.size} values; equal to the other's"
                  f" frames {twins}")
    return False


def probe_streams(path: Path) -> dict:
    """ffprobe's view of the file, less what depends on the video's encoded bytes."""
    out = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-show_chapters",
         "-of", "json", str(path)], capture_output=True, text=True, check=True).stdout)
    for key in ("filename", "size", "bit_rate"):
        out["format"].pop(key)
    return out


def packet_times(path: Path) -> list[str]:
    """Every packet's stream, pts and duration (the order and the sizes aside)."""
    lines = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,pts,duration",
         "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout
    return sorted(lines.split())


def check_window_segments(tmp_path: Path, capsys, model: Path, *engine: str) -> None:
    """A window model's batch run in 4 segments (cuts at frames 5, 10 and 15 of a clip whose
    shots change at frame 10) gives ``vidsr``'s whole-file frames: each segment decodes its
    context and judges a cut at its edge as a whole run does. ``engine``: more batch
    arguments (``--engine ray ...``)."""
    from clipgen import shot_frames, write_ffv1

    from vidsr.io.encode_options import EncodeOptions
    from vidsr.run.transcode import RunControl, upscale_video

    src = tmp_path / "src"
    src.mkdir()
    clip = write_ffv1(src / "in.mkv", shot_frames("square", 10) + shot_frames("bars", 10),
                      gop=5)
    code, err = batch(capsys, src, tmp_path / "out", "--model", str(model), "--no-progress",
                      "--codec", "ffv1", "--segment-seconds", "0.2", *engine)
    assert code == 0, err
    assert report(tmp_path / "out")["files"][0]["segments"] == 4
    single = tmp_path / "single.mkv"
    whole = upscale_video(clip, single, model=model, encode=EncodeOptions(codec="ffv1"),
                          control=RunControl(progress=False))
    assert whole.cuts == [10]
    assert same_frames(tmp_path / "out" / "in.mkv", single)
