"""FFmpeg's own words for why it refused something.

PyAV keeps FFmpeg's log switched off, so an error carries only its code ("Invalid
argument", "'<none>' returned 22"), while the reason ("vp9 only supported in MP4.") is a
log line. The checks that run before any work ask FFmpeg inside :func:`ffmpeg_reasons`
and quote :func:`reason` in their messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import av
import av.logging


@contextmanager
def ffmpeg_reasons() -> Iterator[None]:
    """While the block runs, FFmpeg's error lines on this thread reach the errors PyAV
    raises (``FFmpegError.log``) instead of nowhere; they are quoted, never printed."""
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
