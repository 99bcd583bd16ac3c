"""The job file: what a batch has done to each file, kept in OUT_DIR so that a batch that
was stopped or killed continues where it was.

It is JSON, rewritten whole after every change into a temporary file beside it, flushed to
disk and renamed over the old one: a kill at any instant leaves either the old or the new
file, never a torn one. One batch at a time writes it: a batch holds a lock on OUT_DIR while
it runs, and a second one is refused. Each file's entry holds its state (pending, running,
done, failed), what a done file produced (output size and sha256, frames, seconds) or why
it failed, and a fingerprint of the resolved options that shape its output, so that a
changed option redoes the file instead of mixing outputs of two settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, Literal

from vidsr.errors import InputError, OutputError
from vidsr.io.atomic_write import atomic_write
from vidsr.io.file_digest import file_digest
from vidsr.models.zoo import SRModel
from vidsr.plan.run_plan import RunPlan

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so two batches on one OUT_DIR are not told
    fcntl = None  # apart

log = logging.getLogger("vidsr")

JOB_FILE_NAME = "vidsr-job.json"
LOCK_FILE_NAME = "vidsr-job.lock"
FORMAT_VERSION = 1

State = Literal["pending", "running", "done", "failed"]


class JobFile:
    """The entries of one OUT_DIR's job file, keyed by source path; every change is
    written through at once. Safe to use from several worker threads. Holds OUT_DIR
    until :meth:`close`."""

    def __init__(self, path: Path, entries: dict[str, dict[str, Any]],
                 held: IO[str] | None = None) -> None:
        self.path = path
        self._entries = entries
        self._lock = threading.Lock()
        self._held = held

    @classmethod
    def open(cls, out_dir: Path) -> JobFile:
        """The job file of ``out_dir`` (made with the folder when there is none yet), held
        for this batch: raises OutputError while another batch holds it."""
        out_dir = Path(out_dir)
        held = _hold(out_dir)
        path = out_dir / JOB_FILE_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path, {}, held)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            held.close()
            raise InputError(f"{path}: cannot read the job file ({exc}); move it away to"
                             " start the batch afresh") from exc
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            held.close()
            raise InputError(f"{path}: not a vidsr job file of version {FORMAT_VERSION};"
                             " move it away to start the batch afresh")
        return cls(path, dict(data.get("files", {})), held)

    def close(self) -> None:
        """Let another batch have OUT_DIR."""
        if self._held is not None:
            self._held.close()
            self._held = None

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(key)
            return dict(entry) if entry is not None else None

    def record(self, key: str, state: State, **fields: Any) -> None:
        """Set ``key``'s state, replacing its entry with ``fields`` (plus the time), and
        write the file."""
        entry = {"state": state, "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 **fields}
        with self._lock:
            self._entries[key] = entry
            self._write()

    def _write(self) -> None:
        data = {"version": FORMAT_VERSION, "files": self._entries}
        text = json.dumps(data, indent=1, sort_keys=True)
        try:
            with atomic_write(self.path, durable=True) as tmp:
                tmp.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write the job file ({exc.strerror})"
                              ) from exc


def _hold(out_dir: Path) -> IO[str]:
    """Make ``out_dir`` this batch's: an advisory lock on its lock file, which says who holds
    it. The system drops the lock when the process ends, however it ends, so a batch that
    crashed or was killed never leaves OUT_DIR held."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        held = open(out_dir / LOCK_FILE_NAME, "a+", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot write the batch's outputs and job file there"
                          f" ({exc.strerror})") from exc
    if fcntl is None:
        return held
    try:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held.seek(0)
        holder = held.read().strip() or "its process is starting"
        held.close()
        raise OutputError(f"{out_dir}: another vidsr batch is running on it ({holder}); wait"
                          " for it to end, or give another OUT_DIR") from None
    except OSError as exc:  # a filesystem without locks: the batch goes on, unprotected
        log.warning("%s: cannot lock it (%s); a second batch on it at the same time would"
                    " undo this one's records", out_dir, exc.strerror)
        return held
    held.truncate(0)
    held.write(f"pid {os.getpid()} on {socket.gethostname()}, since"
               f" {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
    held.flush()
    return held


def output_matches(out: Path, entry: Mapping[str, Any]) -> str | None:
    """None when the done ``entry``'s output is still there, byte for byte; else what
    changed."""
    try:
        size = out.stat().st_size
    except FileNotFoundError:
        return "its output is missing"
    if size != entry.get("size"):
        return "its output changed size"
    if file_digest(out) != entry.get("sha256"):
        return "its output's sha256 changed"
    return None


class WeightsDigests:
    """sha256 of each weights file a batch uses, read once."""

    def __init__(self) -> None:
        self._known: dict[Path, str] = {}
        self._lock = threading.Lock()

    def of(self, path: Path) -> str:
        path = path.absolute()
        with self._lock:
            if path not in self._known:
                self._known[path] = file_digest(path)
            return self._known[path]


def run_options(plan: RunPlan, model: SRModel, on_error: str,
                weights: WeightsDigests) -> dict[str, Any]:
    """The resolved options of ``plan`` that shape the output file's bytes, as plain data.

    Left out: what only changes the speed (devices, batch size, workers, threads, memory
    format). The source's size and modification time are in, so a replaced source is
    redone too.
    """
    assert plan.source is not None and plan.output is not None
    out = plan.output
    encode = {k: v for k, v in asdict(out.encode).items() if k not in ("threads", "quiet")}
    source = plan.source.path.stat()
    return {
        "source": {"size": source.st_size, "mtime_ns": source.st_mtime_ns},
        "model": {"name": plan.model.name, "arch": plan.model.spec.arch,
                  "scale": plan.model.scale,
                  "weights_sha256": (weights.of(model.weights_path)
                                     if model.weights_path is not None else None)},
        "runtime": plan.runtime.name,
        "precision": plan.precision.name,
        "tile": {"size": plan.tile.size, "overlap": plan.tile.overlap},
        # Only where there was a choice, so single-video files keep their fingerprints.
        **({"video_stream": plan.source.stream_index}
           if any(s.type == "video" for s in plan.source.other_streams) else {}),
        "deinterlace": (None if plan.deinterlace is None
                        else {"order": plan.deinterlace.order, "rate": plan.deinterlace.rate,
                              # Named only when not bwdif's, so earlier fingerprints hold.
                              **({"deinterlacer": plan.deinterlace.deinterlacer}
                                 if plan.deinterlace.deinterlacer != "bwdif" else {}),
                              **({"method": plan.deinterlace.method}
                                 if plan.deinterlace.method != "deinterlace" else {})}),
        "on_error": on_error,
        "output": {
            "container": out.container, "width": out.width, "height": out.height,
            "pix_fmt": out.codec_pix_fmt, "colour": asdict(out.colour),
            "turn": out.turn, "mirror": out.mirror, "sink": out.sink,
            "encode": encode, "codec_options": [list(kv) for kv in out.codec_options],
        },
    }


def fingerprint(options: Mapping[str, Any]) -> str:
    """A short digest of :func:`run_options`'s data, equal exactly when the data is."""
    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
