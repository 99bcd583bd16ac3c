"""FFmpeg's own words for why it refused something.

PyAV keeps FFmpeg's log switched off, so an error carries only its code ("Invalid
argument", "'<none>' returned 22"), while the reason ("vp9 only supported in MP4.") is a
log line. The checks that run before any work ask FFmpeg inside :func:`ffmpeg_reasons`
and quote :func:`reason` in their messages.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import av
import av.logging

# FFmpeg's log level is one for the process: checks in several threads (batch workers) take
# turns, so each puts back the level it found and none leaves the log switched on.
_LEVEL_LOCK = threading.RLock()


@contextmanager
def ffmpeg_reasons() -> Iterator[None]:
    """While the block runs, FFmpeg's error lines on this thread reach the errors PyAV
    raises (``FFmpegError.log``) instead of nowhere; they are quoted, never printed."""
    with _LEVEL_LOCK:
        level = av.logging.get_level()
        av.logging.set_level(av.logging.ERROR)
        try:
            with av.logging.Capture(local=True):
                yield
        finally:
            av.logging.set_level(level)


def reason(exc: av.FFmpegError) -> str:
    """The line FFmpeg logged for ``exc`` (inside :func:`ffmpeg_reasons`), else its error
    text ("Invalid argument")."""
    logged = exc.log[2].strip().rstrip(".") if exc.log else ""
    return logged or exc.strerror or str(exc)
