"""The sha256 of a file's bytes: how a cached download, a finished batch output or a
weights file is recognised later."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20  # read a megabyte at a time: a video need not fit in memory


def file_digest(path: Path) -> str:
    """The sha256 of ``path``'s bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
