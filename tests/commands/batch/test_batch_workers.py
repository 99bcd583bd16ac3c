"""Dealing files to several workers, stopping them, the progress bars, and which workers a
command gets."""

from __future__ import annotations

import _thread
import json
import threading

import pytest
from batch_helpers import FAST, batch, make_tree, outcomes, same_frames
from clipgen import make_clip

from vidsr.commands.batch import BatchOptions, FileRun, run_batch
from vidsr.commands.batch.runner import worker_devices
from vidsr.io.encode_options import EncodeOptions
from vidsr.plan.run_plan import EngineOptions

# Lossless output: two runs compare by their frames, which are vidsr's own, not a lossy
# encoder's (whose choices may follow its threads).
NEAREST_X2 = FileRun(model="nearest", scale=2, encode=EncodeOptions(codec="ffv1"))


def _nearest(overrides):
    assert not overrides
    return NEAREST_X2


def test_two_workers_run_every_file_as_one_does(tmp_path, capsys):
    src = tmp_path / "src"
    make_tree(src, frames=6)
    result = run_batch(src, tmp_path / "two", _nearest,
                       BatchOptions(progress=False, devices=("cpu", "cpu")))
    assert [(f.source.rsplit("/", 1)[-1], f.outcome) for f in result.files] == [
        ("a.mp4", "done"), ("notes.txt", "skipped"), ("b.mkv", "done"), ("c.mov", "done")]
    assert result.frames == 18 and result.ok
    assert batch(capsys, src, tmp_path / "one", *FAST, "--codec", "ffv1")[0] == 0
    for name in ("a.mkv", "sub/b.mkv", "sub/deeper/c.mkv"):
        assert same_frames(tmp_path / "two" / name, tmp_path / "one" / name), name


def test_ctrl_c_stops_every_worker_and_records_their_files_as_not_done(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for name in ("a", "b", "c", "d"):
        make_clip(src / f"{name}.mp4", width=64, height=48, frames=300, content="moving")
    started_in_workers = []

    def resolve_then_interrupt(overrides):
        # Ctrl-C as the second file starts: the first is running in the other worker, and
        # each has 300 frames to go. (A thread that watched the job file for "running" came
        # too late on a loaded machine: the batch had ended before its interrupt landed.)
        if threading.current_thread() is not threading.main_thread():
            started_in_workers.append(overrides)
            if len(started_in_workers) == 2:
                _thread.interrupt_main()
        return _nearest(overrides)

    with pytest.raises(KeyboardInterrupt):
        run_batch(src, out, resolve_then_interrupt,
                  BatchOptions(progress=False, devices=("cpu", "cpu")))
    states = [e["state"] for e in json.loads((out / "vidsr-job.json").read_text())["files"]
              .values()]
    assert "pending" in states and "running" not in states, states
    assert len(started_in_workers) == 2  # no worker took another file after the stop
    assert not [p for p in out.iterdir() if ".vidsr-" in p.name]
    done = states.count("done")
    result = run_batch(src, out, _nearest, BatchOptions(progress=False))
    assert (result.count("done"), result.count("skipped")) == (4 - done, done)


def test_a_replaced_source_is_redone(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    make_tree(src)
    assert batch(capsys, src, out, *FAST)[0] == 0
    make_clip(src / "a.mp4", width=32, height=24, frames=5)
    code, err = batch(capsys, src, out, *FAST)
    assert code == 0 and "1 done, 3 skipped" in err
    assert outcomes(out)["a.mp4"] == "done"


def test_the_batch_bar_counts_files_and_frames(tmp_path, capsys):
    src = tmp_path / "src"
    make_tree(src)
    capsys.readouterr()
    run_batch(src, tmp_path / "out", _nearest, BatchOptions(progress=True))
    err = capsys.readouterr().err
    assert "batch: 100%" in err and "12/12" in err and "files 3/3" in err


def test_workers_follow_the_device_option():
    assert worker_devices(EngineOptions(device="cuda:0,cuda:1")) == ["cuda:0", "cuda:1"]
    assert worker_devices(EngineOptions(device="cpu")) == [None]
    assert worker_devices(EngineOptions(device="cuda:1")) == [None]  # the plan's device
