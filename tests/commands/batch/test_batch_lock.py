"""OUT_DIR belongs to one batch at a time: a second batch is refused before it touches
anything, and a batch killed outright does not leave OUT_DIR held."""

from __future__ import annotations

import json
import signal
import socket

from batch_helpers import FAST, batch, job
from clipgen import make_clip
from vidsr_process import SLOW_RUN, start_vidsr, wait_for


def _running(out):
    try:
        entries = json.loads((out / "vidsr-job.json").read_text())["files"]
    except FileNotFoundError:
        return None
    return any(e["state"] == "running" for e in entries.values())


def test_a_second_batch_on_a_busy_out_dir_is_refused_and_a_killed_one_holds_nothing(
        tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    # 90 frames a file at about 3 a second: the first batch still runs however long the
    # second takes to start on a loaded machine (12 frames were not always enough).
    for name in ("a", "b"):
        make_clip(src / f"{name}.mp4", width=64, height=48, frames=90, content="moving")
    first = start_vidsr("batch", src, out, *SLOW_RUN)
    wait_for(first, lambda: _running(out))
    before = (out / "vidsr-job.json").read_bytes()

    code, err = batch(capsys, src, out, *SLOW_RUN)

    assert first.poll() is None, "the first batch ended before the second one was tried"
    assert code == 1, err
    assert err.startswith(f"vidsr: error: {out}: another vidsr batch is running on it (pid"
                          f" {first.pid} on {socket.gethostname()}, since ")
    assert err.endswith("); wait for it to end, or give another OUT_DIR\n")
    assert err.count("\n") == 1
    # Killed outright: the system let go of OUT_DIR with the process.
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert json.loads(before)  # the refused batch wrote nothing over the first one's
    code, err = batch(capsys, src, out, *FAST)
    assert code == 0, err
    assert {e["state"] for e in job(out).values()} == {"done"} and len(job(out)) == 2


def test_an_out_dir_that_cannot_be_written_is_one_line_naming_it(tmp_path, capsys):
    make_clip(tmp_path / "a.mp4", width=16, height=16, frames=2)
    (tmp_path / "file").write_text("not a folder\n")
    out = tmp_path / "file" / "out"
    code, err = batch(capsys, tmp_path / "a.mp4", out, *FAST)
    assert (code, err) == (1, f"vidsr: error: {out}: cannot write the batch's outputs and job"
                              " file there (Not a directory)\n")
