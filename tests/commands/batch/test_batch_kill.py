"""A `vidsr batch` process killed or stopped with real signals: the job file stays readable,
and the same command finishes the batch with the outputs of an uninterrupted run."""

from __future__ import annotations

import json
import signal

from batch_helpers import FAST, batch, job, same_frames
from clipgen import make_clip
from vidsr_process import start_vidsr, wait_for

# Long enough (about half a second each with nearest x2 on a 2-core CPU) to be caught running.
FRAMES = 60


def _sources(root):
    root.mkdir()
    return [make_clip(root / f"{name}.mp4", width=64, height=48, frames=FRAMES,
                      content="moving") for name in ("a", "b", "c")]


def _running(out):
    """The job file's entries once one file runs after another is done; None before."""
    try:
        entries = json.loads((out / "vidsr-job.json").read_text())["files"]
    except FileNotFoundError:
        return None
    states = sorted(e["state"] for e in entries.values())
    return entries if "done" in states and "running" in states else None


def _kill_and_finish(tmp_path, capsys, signum, *, compare: bool):
    src, out = tmp_path / "src", tmp_path / "out"
    _sources(src)
    proc = start_vidsr("batch", src, out, *FAST)
    wait_for(proc, lambda: _running(out))
    proc.send_signal(signum)
    err = proc.communicate(timeout=60)[1]
    after = json.loads((out / "vidsr-job.json").read_text())["files"]  # valid JSON
    left = sorted(p.name for p in out.iterdir() if ".vidsr-" in p.name)
    # What the job file says once the process is gone: the signal may land a moment after
    # the file seen running has finished.
    done_before = {k for k, e in after.items() if e["state"] == "done"}
    stamps = {k: (out / after[k]["output"]).stat().st_mtime_ns for k in done_before}

    code, resumed = batch(capsys, src, out, *FAST)

    assert code == 0, resumed
    assert f"{3 - len(done_before)} done, {len(done_before)} skipped, 0 failed" in resumed
    # Done files were not encoded again; the rest equal an uninterrupted run's.
    assert {k: (out / after[k]["output"]).stat().st_mtime_ns for k in done_before} == stamps
    if compare:
        assert batch(capsys, src, tmp_path / "straight", *FAST)[0] == 0
        for name in ("a", "b", "c"):
            assert same_frames(out / f"{name}.mkv", tmp_path / "straight" / f"{name}.mkv"), name
    assert not [p for p in out.iterdir() if ".vidsr-" in p.name or ".tmp" in p.name]
    assert all(e["state"] == "done" for e in job(out).values())
    return proc, after, err, left


def test_sigkill_mid_file_leaves_a_readable_job_file_and_the_rerun_completes(tmp_path,
                                                                             capsys):
    proc, after, _, _ = _kill_and_finish(tmp_path, capsys, signal.SIGKILL,
                                        compare=True)
    assert proc.returncode == -signal.SIGKILL
    # Killed outright: the file being run is still marked running, and is redone.
    assert {e["state"] for e in after.values()} <= {"done", "running"}, after


def test_sigterm_stops_cleanly_and_records_the_file_as_not_done(tmp_path, capsys):
    proc, after, err, left = _kill_and_finish(tmp_path, capsys, signal.SIGTERM,
                                               compare=False)
    assert left == []  # the stopped file's temporary was removed at once
    assert proc.returncode == 128 + signal.SIGTERM, err
    # Stopped cleanly: nothing is left running; a file stopped halfway is recorded as not
    # done (when the signal lands between two files, none is).
    assert "running" not in {e["state"] for e in after.values()}, after
    stopped = [e for e in after.values() if e["state"] == "pending"]
    assert len(stopped) <= 1 and all("redone from its start" in e["reason"] for e in stopped)
    assert "batch stopped" in err
    assert err.rstrip().endswith("interrupted by SIGTERM; the files finished are kept; the same"
                                 " command continues the batch")
