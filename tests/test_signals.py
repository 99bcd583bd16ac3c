"""Every way a run can be stopped leaves nothing behind: real processes, real signals.

SIGTERM and SIGHUP stop a run as Ctrl-C does (exit 128 + the signal's number); after a
SIGKILL, which nothing can catch, the next run for the same output removes the orphaned
temporary file, and the ``--ffmpeg`` child dies with vidsr.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from vidsr_process import SLOW_RUN, start_vidsr, temporaries, wait_for

from vidsr.__main__ import main
from vidsr.io.safe_output import (
    claimed_temporary,
    remove_orphaned_temporaries,
    temporary_output_path,
)


@pytest.fixture
def long_clip(clip):
    return clip("long.mkv", width=96, height=64, frames=40, content="noise")


def _stop(proc: subprocess.Popen[str], signum: int) -> str:
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    return err


# --- signals a run can catch -------------------------------------------------------------

@pytest.mark.skipif(signal.getsignal(signal.SIGHUP) == signal.SIG_IGN,
                    reason="SIGHUP is ignored here (tests run under nohup), and vidsr keeps it so")
def test_sighup_stops_the_run_and_deletes_the_temporary_output(long_clip, tmp_path):
    dst = tmp_path / "o.mkv"
    proc = start_vidsr(long_clip, dst, *SLOW_RUN)
    wait_for(proc, lambda: temporaries(dst))
    time.sleep(0.5)  # into the pipeline
    err = _stop(proc, signal.SIGHUP)
    assert proc.returncode == 128 + signal.SIGHUP, err
    assert err.strip() == "vidsr: interrupted by SIGHUP; no output written"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mkv"]


@pytest.mark.skipif(shutil.which("nohup") is None, reason="needs nohup")
def test_sighup_stays_ignored_under_nohup(long_clip, tmp_path):
    dst = tmp_path / "o.mkv"
    proc = start_vidsr(long_clip, dst, *SLOW_RUN, prefix=("nohup",))
    wait_for(proc, lambda: temporaries(dst))
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert proc.poll() is None, "SIGHUP stopped a run started under nohup"
    err = _stop(proc, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mkv"]


def test_main_restores_the_signal_handlers(clip, tmp_path, capsys):
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    src = clip("in.mkv", frames=2)
    assert main([str(src), str(tmp_path / "o.mkv"), "--model", "nearest", "--no-progress"]) == 0
    assert {s: signal.getsignal(s) for s in before} == before


# --- SIGKILL: the next run removes what it left ------------------------------------------

def test_sigkill_leaves_a_temporary_the_next_run_removes(long_clip, tmp_path, capsys):
    dst = tmp_path / "o.mkv"
    proc = start_vidsr(long_clip, dst, *SLOW_RUN)
    wait_for(proc, lambda: temporaries(dst))
    _stop(proc, signal.SIGKILL)
    [orphan] = temporaries(dst)
    assert not dst.exists()

    code = main([str(long_clip), str(dst), "--model", "nearest", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert dst.is_file() and temporaries(dst) == []
    assert f"removed {orphan}: the unfinished output of a vidsr run that was killed" in err


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ffmpeg") is None,
                    reason="needs Linux (/proc, PR_SET_PDEATHSIG) and a system ffmpeg")
def test_sigkill_takes_the_ffmpeg_child_with_it(long_clip, tmp_path):
    dst = tmp_path / "o.mkv"
    proc = start_vidsr(long_clip, dst, *SLOW_RUN, "--ffmpeg")
    # The encoding ffmpeg, which reads NUT from vidsr on stdin (not a short capability probe).
    ffmpeg = wait_for(proc, lambda: _child(proc.pid, "pipe:0"))
    try:
        # Stopped, ffmpeg cannot end by itself when its input closes; only the kernel's
        # parent-death signal ends it (SIGKILL also ends a stopped process).
        os.kill(ffmpeg, signal.SIGSTOP)
        _stop(proc, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(ffmpeg) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(ffmpeg), "ffmpeg outlived a killed vidsr"
    finally:
        if _alive(ffmpeg):
            os.kill(ffmpeg, signal.SIGKILL)


def _child(parent: int, argument: str) -> int | None:
    """A child process of ``parent`` that has ``argument`` on its command line."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                arguments = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:  # ended meanwhile
                continue
            ppid = int(stat.rpartition(") ")[2].split()[1])
            if ppid == parent and os.fsencode(argument) in arguments:
                return int(entry.name)
    return None


def _alive(pid: int) -> bool:
    """Running or stopped; a zombie (killed, not yet reaped by whoever adopted it) is dead."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


# --- which temporaries a run removes -----------------------------------------------------

def test_only_unheld_temporaries_of_that_very_output_are_removed(tmp_path):
    dst = tmp_path / "o.mkv"
    orphan = temporary_output_path(dst)
    orphan.write_bytes(b"left by a killed run")
    others = [tmp_path / name for name in (
        ".o.mkv.vidsr-0123456z.mkv",   # not a token vidsr makes
        ".o.mkv.vidsr-01234567.mp4",   # another extension: another output's
        ".oo.mkv.vidsr-01234567.mkv",  # another output's
        "o.mkv.vidsr-01234567.mkv",    # not hidden
        ".o.mkv.vidsr-01234567.mkv.part",
    )]
    for path in others:
        path.write_bytes(b"not ours")
    (tmp_path / ".o.mkv.vidsr-89abcdef.mkv").mkdir()  # not a regular file
    (tmp_path / ".o.mkv.vidsr-fedcba98.mkv").symlink_to(others[0])
    with claimed_temporary(dst) as live:
        # The live run's lock is a real flock: a second open file description of it conflicts.
        assert remove_orphaned_temporaries(dst) == [orphan]
        assert live.is_file() and not orphan.exists()
        assert all(p.is_file() for p in others)
    assert live.is_file()  # leaving the block unlocks; publishing or deleting is the run's
    assert remove_orphaned_temporaries(dst) == [live]
    assert (tmp_path / ".o.mkv.vidsr-89abcdef.mkv").is_dir()
    assert (tmp_path / ".o.mkv.vidsr-fedcba98.mkv").is_symlink()


# --- names near the 255-byte limit -------------------------------------------------------

@pytest.mark.parametrize("name", [
    "a" * 251 + ".mkv",            # 255 bytes
    "é" * 125 + ".mkv",            # 254 bytes, two per character
    "b" * 231 + ".mkv",            # the longest kept whole
    "b" * 232 + ".mkv",            # one byte more: shortened
    "short.mkv",
])
def test_temporary_names_fit_in_255_bytes(tmp_path, name):
    dst = tmp_path / name
    tmp = temporary_output_path(dst)
    encoded = os.fsencode(tmp.name)
    assert len(encoded) <= 255 and tmp.parent == tmp_path
    assert tmp.name.startswith(".") and tmp.name.endswith(".mkv") and ".vidsr-" in tmp.name
    encoded.decode("utf-8")  # cut between characters, never inside one
    whole = len(os.fsencode(f".{name}.vidsr-01234567.mkv")) <= 255
    assert tmp.name.startswith(f".{name}.vidsr-") == whole


def test_shortened_names_of_two_outputs_differ(tmp_path):
    a, b = tmp_path / ("x" * 240 + "a.mkv"), tmp_path / ("x" * 240 + "b.mkv")
    prefix = os.path.commonprefix([temporary_output_path(a).name, temporary_output_path(b).name])
    assert ".vidsr-" not in prefix


def test_an_output_name_of_255_bytes_is_written(clip, tmp_path, capsys):
    src = clip("in.mkv", frames=3)
    dst = tmp_path / ("é" * 125 + ".mkv")
    orphan = temporary_output_path(dst)
    orphan.write_bytes(b"left by a killed run")
    code = main([str(src), str(dst), "--model", "nearest", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.mkv", dst.name])
