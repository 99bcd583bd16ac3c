"""The input file: what a path must be before anything opens it."""

from __future__ import annotations

import stat
from pathlib import Path

from vidsr.errors import InputError


def check_input_path(path: Path) -> None:
    """Raise InputError for a path that cannot be a media file at all.

    Only a regular file will do: vidsr reads its input twice (once to decode
    the video, once to copy the other streams), which a pipe or a device
    cannot replay.
    """
    try:
        status = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror})") from exc
    if stat.S_ISDIR(status.st_mode):
        raise InputError(f"{path}: is a directory, not a video file")
    if not stat.S_ISREG(status.st_mode):
        raise InputError(f"{path}: {_special_file_kind(status.st_mode)}; vidsr needs a regular"
                         " file (it reads its input twice: to decode it and to copy its other"
                         " streams)")
    if status.st_size == 0:
        raise InputError(f"{path}: file is empty")


def _special_file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device file"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    return "is not a regular file"
