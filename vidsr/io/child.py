"""Child processes that do not outlive vidsr, even when vidsr is killed outright.

A child that vidsr feeds through a pipe usually stops at the end of its input,
but not while it is stuck or still encoding what it has buffered; after a
SIGKILL nothing in vidsr runs to stop it. On Linux the kernel can: a child
that asked for PR_SET_PDEATHSIG gets that signal when its parent dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def killed_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen` that has the kernel SIGKILL the child
    when this process dies; None where the platform has no such request (not Linux).

    The kernel ties the request to the thread that starts the child, so start it from
    a thread that lives as long as the child is needed (vidsr starts ffmpeg from the
    thread that writes the frames to it).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # a libc without prctl: run the child unprotected
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def request() -> None:  # runs in the child between fork and exec: nothing but syscalls
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took hold
            os.kill(os.getpid(), signal.SIGKILL)

    return request
