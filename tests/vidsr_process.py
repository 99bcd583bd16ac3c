"""``vidsr`` as a real process, for the tests that stop it with real signals."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# About 3 frames a second on a 2-core CPU: the run is still going seconds after it starts writing.
SLOW_RUN = ("--model", "vdsr", "--scale", "4", "--batch-size", "1", "--no-progress")


def start_vidsr(*args: str | Path, prefix: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    """``python -m vidsr ARGS`` (after ``prefix``, a wrapper such as ``nohup``), stderr piped.

    No terminal on stdin or stdout, so that ``nohup`` writes no ``nohup.out``.
    """
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "vidsr", *map(str, args)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def temporaries(output: Path) -> list[Path]:
    """The hidden temporary files beside ``output`` (``.{name}.vidsr-...``)."""
    return sorted(p for p in output.parent.iterdir()
                  if p.name.startswith(f".{output.name}.vidsr-"))


def wait_for[T](proc: subprocess.Popen[str], found: Callable[[], T], timeout: float = 60) -> T:
    """Poll ``found()`` until it is truthy while ``proc`` runs; fail with its stderr if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if value := found():
            return value
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"not found while vidsr ran: {proc.communicate()[1]}")
