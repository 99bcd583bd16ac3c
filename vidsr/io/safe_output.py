"""The output file, written so that nothing is ever lost: a checked destination, a hidden
temporary name beside it, and a publish that replaces nothing by accident.

The output is written under a temporary name beside the target and renamed
only when complete, so a failed or cancelled run never leaves a half-written
file under the final name and never touches an existing one. A run holds a lock
on its temporary file; one that was killed outright leaves it unlocked, and the
next run for the same output removes it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vidsr.errors import OutputError, VidsrError, option
from vidsr.io.input_file import check_input_path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so no telling a live temporary from a dead one
    fcntl = None

log = logging.getLogger("vidsr")

_TEMPORARY_MARK = ".vidsr-"
_TOKEN_HEX = 8  # hex digits of the random part of a temporary name
_NAME_MAX = 255  # bytes in one file name, on Linux, macOS and Windows filesystems


def check_paths(src: Path, dst: Path, overwrite: bool) -> None:
    """Refuse what would lose data before any work starts."""
    check_input_path(src)
    if dst.exists() and dst.resolve() == src.resolve():
        raise OutputError(f"{dst}: output is the input file; choose another output name")
    check_output_path(dst, overwrite)


def check_output_path(dst: Path, overwrite: bool) -> None:
    """Refuse an output name that would replace a file without ``overwrite``, or cannot be
    written."""
    if dst.is_dir():
        raise OutputError(f"{dst}: is a directory; give an output file name")
    if dst.exists() and not stat.S_ISREG(dst.stat().st_mode):
        # --overwrite renames a finished file over it: a device or a pipe would be replaced.
        raise OutputError(f"{dst}: is not a regular file (a device or a pipe); vidsr writes"
                          " a file and renames it into place, so give a file name")
    if dst.exists() and not overwrite:
        raise OutputError(f"{dst}: already exists (use {option('overwrite')} to replace it)")
    if not dst.parent.is_dir():
        raise OutputError(f"{dst.parent}: output folder does not exist")
    if not os.access(dst.parent, os.W_OK):
        raise OutputError(f"{dst.parent}: output folder is not writable")


def temporary_output_path(dst: Path) -> Path:
    """A fresh hidden name beside ``dst``, ``.{name}.vidsr-{token}{suffix}``, of at most 255
    bytes; the same extension makes the muxer pick the same container.

    Absolute, so that FFmpeg never takes a name such as ``.rtmp:x.mkv...`` for a URL.
    """
    token = secrets.token_hex(_TOKEN_HEX // 2)
    return dst.absolute().with_name(
        f"{_temporary_prefix(dst)}{_TEMPORARY_MARK}{token}{dst.suffix}")


def _temporary_prefix(dst: Path) -> str:
    """``.{name}``, how every temporary name of ``dst`` starts. A name too long to take the
    rest keeps its start and a digest of the whole, so the prefix is still ``dst``'s alone."""
    room = _NAME_MAX - len(os.fsencode(f"{_TEMPORARY_MARK}{'0' * _TOKEN_HEX}{dst.suffix}"))
    prefix = f".{dst.name}"
    if len(os.fsencode(prefix)) <= room:
        return prefix
    digest = "~" + hashlib.sha256(os.fsencode(dst.name)).hexdigest()[:_TOKEN_HEX]
    while len(os.fsencode(prefix + digest)) > room and len(prefix) > 1:
        prefix = prefix[:-1]  # whole characters, so a UTF-8 name stays valid UTF-8
    return prefix + digest


@contextmanager
def claimed_temporary(dst: Path) -> Iterator[Path]:
    """A new, empty temporary file for ``dst``, locked while the block runs so that no other
    run takes it for an orphan. The block publishes or deletes it; leaving only unlocks it."""
    while True:
        tmp = temporary_output_path(dst)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"{dst}: cannot create a temporary file beside it"
                              f" ({exc.strerror})") from exc
        try:
            if _lock_new_file(fd, tmp):
                break
        except BaseException:
            tmp.unlink(missing_ok=True)
            os.close(fd)
            raise
        os.close(fd)  # a sweeping run removed it before we held it: take another name
    try:
        yield tmp
    finally:
        os.close(fd)


def _lock_new_file(fd: int, path: Path) -> bool:
    """Lock the file just created at ``path``; False when another run removed it first."""
    if fcntl is None:
        return True
    try:
        # Blocking: a run that sweeps holds a file's lock only while it unlinks it.
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:  # a filesystem without locks: the run goes on, unprotected
        log.debug("%s: cannot lock (%s); other runs may take it for an orphan", path, exc)
        return True
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def remove_orphaned_temporaries(dst: Path) -> list[Path]:
    """Delete the temporary files of ``dst`` that no live run holds: those left by a run that
    was killed outright (SIGKILL, a crash, power loss). Returns the files removed.

    Only names made by :func:`temporary_output_path` for this very ``dst`` are considered,
    and only regular files whose lock can be taken, that is, that no process holds.
    """
    if fcntl is None:
        return []
    name = re.compile(re.escape(_temporary_prefix(dst) + _TEMPORARY_MARK)
                      + f"[0-9a-f]{{{_TOKEN_HEX}}}" + re.escape(dst.suffix))
    try:
        with os.scandir(dst.absolute().parent) as entries:
            candidates = [Path(e.path) for e in entries
                          if name.fullmatch(e.name) and e.is_file(follow_symlinks=False)]
    except OSError:  # an unreadable folder: the run itself will say what is wrong
        return []
    removed = []
    for path in sorted(candidates):
        if _remove_unheld(path):
            log.warning("removed %s: the unfinished output of a vidsr run that was killed", path)
            removed.append(path)
    return removed


def _remove_unheld(path: Path) -> bool:
    assert fcntl is not None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:  # gone meanwhile, or not ours to read
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink()
    except OSError:  # held by a live run (or unlockable, or not ours to delete): keep it
        return False
    finally:
        os.close(fd)
    return True


@contextmanager
def output_written(dst: Path, overwrite: bool) -> Iterator[Path]:
    """A claimed temporary beside ``dst`` for the block to write, published under ``dst``
    when the block ends normally and deleted when it raises. Temporaries of ``dst`` left by
    killed runs are removed first."""
    remove_orphaned_temporaries(dst)
    with claimed_temporary(dst) as tmp:
        try:
            yield tmp
            publish(tmp, dst, overwrite)
        except VidsrError as exc:
            tmp.unlink(missing_ok=True)
            # Users know the output by its final name, not the temporary one.
            raise type(exc)(str(exc).replace(str(tmp), str(dst))) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def write_small_output(dst: Path, overwrite: bool, write: Callable[[Path], object]) -> Path:
    """Write a picture or a report as videos are written: ``write(tmp)`` fills a claimed
    temporary beside ``dst``, which then takes the final name in one step (or is deleted)."""
    dst = Path(dst)
    check_output_path(dst, overwrite)
    with output_written(dst, overwrite) as tmp:
        write(tmp)
    return dst


def publish(tmp: Path, dst: Path, overwrite: bool) -> None:
    """Give the finished file its final name in one step.

    Without ``overwrite`` a hard link is used, which fails if ``dst`` appeared
    while we worked, so a file created meanwhile is never replaced.
    """
    if overwrite:
        os.replace(tmp, dst)
        return
    appeared = OutputError(f"{dst}: appeared while upscaling; not replaced (use --overwrite)")
    try:
        os.link(tmp, dst)
    except FileExistsError:
        raise appeared from None
    except OSError:  # filesystems without hard links: the check at the start must do
        if dst.exists():
            raise appeared from None
        os.replace(tmp, dst)
        return
    tmp.unlink()
