"""Files and folders that appear whole or not at all: written under a temporary name beside
the final one, then renamed over it in one step.

A reader (another run, a resumed batch, a user's file browser) never sees a half-written
cache entry, checkpoint, job file or plot, and an interrupted write leaves the old file
as it was. The videos a user asks for are written with more care still (a lock, and no
replacing without ``overwrite``): :mod:`vidsr.io.safe_output`.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: Path, *, shared: bool = False, durable: bool = False,
                 companions: Sequence[str] = ()) -> Iterator[Path]:
    """A temporary name beside ``path`` for the block to write (a file, or a folder it
    makes); when the block ends normally it takes ``path``'s name, replacing what was there,
    and when it raises it is deleted and ``path`` is untouched.

    ``shared``: other processes may write the same ``path`` at the same time (a cache), so
    each writer gets a name of its own. Otherwise the name is fixed, and one left behind by
    a writer that was killed is cleared first.
    ``durable``: the file and its rename reach the disk before this returns, so a power cut
    afterwards keeps the new content.
    ``companions``: suffixes of files the writer puts beside the temporary one under its
    own stem (OpenVINO's ``.bin`` beside its ``.xml``); each is renamed before ``path``, so
    ``path`` appears last.

    The temporary name keeps ``path``'s extension last, as writers that pick a format by
    the extension (Pillow, OpenVINO) want.
    """
    path = Path(path)
    mark = f".{os.getpid()}-{secrets.token_hex(4)}" if shared else ""
    tmp = path.with_name(f".{path.stem}{mark}.tmp{path.suffix}")
    written = [(tmp.with_suffix(suffix), path.with_suffix(suffix)) for suffix in companions]
    written.append((tmp, path))
    if not shared:
        for stale, _ in written:
            _remove(stale)
    try:
        yield tmp
        if durable:
            for done, _ in written:
                _sync_file(done)
        for done, final in written:
            if done.is_dir() and final.is_dir():
                shutil.rmtree(final)  # a folder cannot be renamed over a folder with files
            os.replace(done, final)
        if durable:
            _sync_folder(path.parent)
    except BaseException:
        for done, _ in written:
            _remove(done)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a power cut after it keeps the new file)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder: its rename is durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
