"""Fetch weights once into a local cache, checked by sha256.

Nothing in vidsr downloads unless a model card names a URL and the file is not
cached yet; tests point URLs at a local server or a file:// path.
"""

from __future__ import annotations

import logging
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from vidsr.errors import WeightsError
from vidsr.io.atomic_write import atomic_write
from vidsr.io.file_digest import file_digest

log = logging.getLogger("vidsr")

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """``$VIDSR_CACHE_DIR``, else ``$XDG_CACHE_HOME/vidsr``, else ``~/.cache/vidsr``."""
    explicit = os.environ.get("VIDSR_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vidsr"


def fetch_weights(
    url: str, *, sha256: str | None = None, filename: str | None = None, timeout: float = 60.0
) -> Path:
    """Return the cached file for ``url``, downloading it first if needed.

    With ``sha256`` the file must match it (a cached file that does not is
    fetched again). Without one, the digest seen on first download is pinned
    beside the file, so a later change of the cached copy is noticed.
    """
    name = filename or url.rstrip("/").rsplit("/", 1)[-1]
    target = cache_dir() / name
    pin_file = target.with_name(target.name + ".sha256")
    expected = sha256 or (pin_file.read_text().strip() if pin_file.is_file() else None)
    if target.is_file():
        actual = file_digest(target)
        if expected is None or actual == expected:
            return target
        log.warning("cached %s does not match its sha256; fetching it again", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, target)
    try:
        # Shared: two processes may fetch the same weights at the same time.
        with atomic_write(target, shared=True) as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                shutil.copyfileobj(response, out, _CHUNK)
            actual = file_digest(tmp)
            if expected is not None and actual != expected:
                raise WeightsError(
                    f"{url}: downloaded file has sha256 {actual}, expected {expected}; not used"
                )
    except (urllib.error.URLError, OSError) as exc:
        raise WeightsError(
            f"could not download {url} ({exc}); download it yourself and pass --weights FILE,"
            f" or put it at {target}"
        ) from exc
    if sha256 is None:
        log.warning("%s has no pinned sha256; pinned %s on first download", name, actual)
        pin_file.write_text(actual + "\n")
    return target
