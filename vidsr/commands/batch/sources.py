"""What a batch works on: the files of a folder, a manifest's lines, or one file, each with
its output path under OUT_DIR and what probing made of it.

A file is recognised as a video by probing it, not by its name: a file that holds no video
is listed as skipped; a file that is named like a video but cannot be read is failed, with
the reason, so that a broken or truncated recording is never passed over in silence.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import av

from vidsr.errors import InputError, OptionsError, VidsrError
from vidsr.io.probe import describe, open_input
from vidsr.io.script_source import is_script

log = logging.getLogger("vidsr")

# Names that say "video": such a file that cannot be probed is broken, not something else.
VIDEO_SUFFIXES = frozenset({
    ".3g2", ".3gp", ".asf", ".avi", ".dv", ".f4v", ".flv", ".h264", ".h265", ".hevc",
    ".m2t", ".m2ts", ".m2v", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".mts", ".mxf",
    ".nut", ".ogv", ".qt", ".rm", ".rmvb", ".ts", ".vob", ".webm", ".wmv", ".y4m",
})
# A manifest is told from a video by its name: .csv with a header, the others one path a line.
MANIFEST_SUFFIXES = frozenset({".csv", ".txt", ".lst", ".list"})
# Per-file overrides a CSV manifest may carry; each is the run option of the same name
# (`scale` is --scale, `encoder_preset` is --encoder-preset).
OVERRIDE_COLUMNS = (
    "model", "scale", "weights", "precision", "tile", "codec", "crf", "encoder_preset",
    "pix_fmt", "deinterlace", "field_order", "deinterlace_rate", "deinterlacer",
    "video_stream",
)
# FFmpeg reads a lone picture as a one-frame video; a folder's photos are not what a batch
# of videos means.
_STILL_FORMATS = ("image2", "_pipe")

# "conflict": a row whose output another row of the batch writes; it fails in this run's
# report, but the job file is not told, since it keeps that other row's state.
Verdict = Literal["video", "skip", "fail", "conflict"]
# (source, output relative to OUT_DIR, overrides, manifest line or None) of each listed file
Entry = tuple[Path, Path, dict[str, str], int | None]


@dataclass(frozen=True)
class SourceFile:
    """One file of the batch: where it is, where its output goes (relative to OUT_DIR),
    the manifest's overrides for it, and what probing found."""

    path: Path  # absolute
    output: Path  # relative to OUT_DIR
    verdict: Verdict
    reason: str = ""  # why skipped or failed
    frames: int | None = None  # the probe's count or estimate, for the progress bar
    seconds: float | None = None  # the video's duration
    overrides: Mapping[str, str] = field(default_factory=dict)
    line: int | None = None  # the manifest's line that lists it

    @property
    def key(self) -> str:
        """How the job file names it."""
        return str(self.path)


def scan_sources(src: Path, out_dir: Path, container: str) -> list[SourceFile]:
    """The files of ``src`` (a folder, walked recursively; a manifest; or one video), in a
    stable order, each with its output under ``out_dir`` mirroring the source tree."""
    src = Path(src)
    out_dir = Path(out_dir).resolve()
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    entries: list[Entry]
    if src.is_dir():
        root = src.absolute()
        entries = [(path, path.relative_to(root), {}, None) for path in _walk(root, out_dir)]
    elif src.suffix.lower() in MANIFEST_SUFFIXES:
        entries = _manifest_entries(src)
    else:
        path = src.absolute()
        entries = [(path, Path(path.name), {}, None)]
    files = [replace(_classify(path, rel.with_suffix(f".{container}"), overrides), line=line)
             for path, rel, overrides, line in _listed_once(entries)]
    return _refuse_shared_outputs(files)


def _listed_once(entries: Iterable[Entry]) -> Iterable[Entry]:
    """``entries`` less the lines that list a file again with the same overrides (``a.mp4``
    and ``./a.mp4``): one job, one row in the report."""
    seen: dict[tuple[Path, tuple[tuple[str, str], ...]], int | None] = {}
    for entry in entries:
        path, _, overrides, line = entry
        first = seen.setdefault((path, tuple(sorted(overrides.items()))), line)
        if first != line:
            log.info("%s: listed again on line %s, as on line %s; run once", path, line, first)
            continue
        yield entry


def _walk(root: Path, out_dir: Path) -> Iterable[Path]:
    """Every file under ``root``, sorted, leaving out OUT_DIR when it lies inside.

    Links to folders are followed, as links to files are, each folder once: a link to a
    folder inside ``root`` is not (that folder is walked under its own name), nor one to a
    folder holding ``root`` (a loop).
    """
    top = root.resolve()
    walked = {top, out_dir}
    for folder, subfolders, names in os.walk(root, followlinks=True):
        here = Path(folder)
        kept = []
        for name in sorted(subfolders):
            real = (here / name).resolve()
            if (here / name).is_symlink() and (real.is_relative_to(top)
                                               or top.is_relative_to(real)):
                log.info("%s: a link to %s, inside or above the folder walked; not followed",
                         here / name, real)
            elif real not in walked:
                walked.add(real)
                kept.append(name)
        subfolders[:] = kept
        for name in sorted(names):
            path = here / name
            if is_script(path):
                # Running every script found in a folder would run code nobody chose to run.
                log.info("%s: a VapourSynth script; give it in a manifest to upscale it", path)
                continue
            yield path


def _manifest_entries(manifest: Path) -> list[Entry]:
    """(source, output relative to OUT_DIR, overrides, line) of each line of a manifest. Relative
    paths are read from the manifest's folder; outputs mirror the tree under the deepest
    folder that holds every source."""
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{manifest}: cannot read the manifest ({exc})") from exc
    base = manifest.absolute().parent
    if manifest.suffix.lower() == ".csv":
        rows = _csv_rows(manifest, text, base)
    else:
        rows = [(entry.strip(), {}, line) for line, entry in enumerate(text.splitlines(), 1)
                if entry.strip() and not entry.lstrip().startswith("#")]
    if not rows:
        raise InputError(f"{manifest}: the manifest lists no files")
    paths = [Path(os.path.normpath(base / Path(p).expanduser())) for p, _, _ in rows]
    root = Path(os.path.commonpath([p.parent for p in paths]))
    return [(path, path.relative_to(root), overrides, line)
            for path, (_, overrides, line) in zip(paths, rows, strict=True)]


def _csv_rows(manifest: Path, text: str,
              base: Path) -> list[tuple[str, dict[str, str], int]]:
    # Strict: a quote left open would otherwise swallow the lines after it into one path.
    reader = csv.DictReader(text.splitlines(), strict=True)
    columns = [c.strip() for c in _csv_read(manifest, reader, lambda: reader.fieldnames) or []]
    if "path" not in columns:
        raise OptionsError(f"{manifest}: a CSV manifest needs a header with a 'path' column"
                           f" (found: {', '.join(columns) or 'no header'})")
    unknown = [c for c in columns if c != "path" and c not in OVERRIDE_COLUMNS]
    if unknown:
        raise OptionsError(f"{manifest}: unknown column {', '.join(map(repr, unknown))}"
                           f" (known: path, {', '.join(OVERRIDE_COLUMNS)})")
    rows = []
    while (row := _csv_read(manifest, reader, lambda: next(reader, None))) is not None:
        line = reader.line_num  # the row's last line: its only one unless a quote spans lines
        if None in row:  # DictReader keeps the cells past the header as a list under None
            raise OptionsError(f"{manifest}:{line}: {len(columns) + len(row[None])} values"
                               f" for {len(columns)} columns ({', '.join(columns)})")
        values = {k.strip(): (v or "").strip() for k, v in row.items()}
        path = values.pop("path")
        if not path:
            if any(values.values()):
                raise OptionsError(f"{manifest}:{line}: no path")
            continue
        if values.get("weights"):  # read from the manifest's folder, as the paths are
            values["weights"] = str(base / Path(values["weights"]).expanduser())
        # An empty cell keeps the command's own option.
        rows.append((path, {k: v for k, v in values.items() if v}, line))
    return rows


def _csv_read[T](manifest: Path, reader: csv.DictReader[str], read: Callable[[], T]) -> T:
    """``read()`` from ``reader``, a malformed line raised as an error naming it."""
    try:
        return read()
    except csv.Error as exc:
        # The reader has not counted the line it failed on.
        raise OptionsError(f"{manifest}:{reader.line_num + 1}: not valid CSV ({exc});"
                           " check the quotes from this line on") from exc


def _classify(path: Path, output: Path, overrides: Mapping[str, str]) -> SourceFile:
    """Probe ``path``: a video, something to skip, or a video file that is broken."""
    looks_like_video = path.suffix.lower() in VIDEO_SUFFIXES or is_script(path)
    try:
        if is_script(path):
            from vidsr.io.probe import probe
            info = probe(path)
        else:
            with open_input(path) as container:
                chosen = overrides.get("video_stream", "")
                info = describe(container, path, int(chosen) if chosen.isdigit() else None)
                if _is_still(container):
                    return SourceFile(path, output, "skip", "a still picture, not a video",
                                      overrides=overrides)
    except InputError as exc:
        # A path that leads to no file (a manifest's line, a link) was meant to be one: it
        # fails whatever its name, as a missing video does; a file that is there and is not
        # a video is skipped.
        missing = not path.exists()
        reason = one_line(exc, path)
        if missing and path.is_symlink():
            reason = f"a broken link (to {os.readlink(path)})"
        return SourceFile(path, output, "fail" if looks_like_video or missing else "skip",
                          reason, overrides=overrides)
    return SourceFile(path, output, "video", frames=info.frame_count_estimate,
                      seconds=info.duration, overrides=overrides)


def _is_still(container: av.container.InputContainer) -> bool:
    # Cover art of an audio file is no video stream to describe() ("only cover art").
    name = container.format.name
    return any(name == f or (f.startswith("_") and name.endswith(f)) for f in _STILL_FORMATS)


def _refuse_shared_outputs(files: list[SourceFile]) -> list[SourceFile]:
    """Refuse the later of two rows that would write the same output, one silently replacing
    the other: two sources (clip.mp4 and clip.mov in one folder both become clip.mkv), or
    one file listed again with other options."""
    taken: dict[Path, SourceFile] = {}
    checked = []
    for f in files:
        if f.verdict == "video":
            first = taken.setdefault(f.output, f)
            if first.path != f.path:
                f = replace(f, verdict="conflict",
                            reason=f"its output {f.output} is also that of {first.path};"
                                   " rename one")
            elif first is not f:
                f = replace(f, verdict="conflict", reason=(
                    f"listed again with other options ({_options(f.overrides)}) than on line"
                    f" {first.line} ({_options(first.overrides)}); both would write"
                    f" {f.output}: list it once, or run the other in another OUT_DIR"))
        checked.append(f)
    return checked


def _options(overrides: Mapping[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in overrides.items()) or "the command's"


def one_line(exc: BaseException, path: Path | None = None) -> str:
    """``exc`` as one line for a job file or a report, without ``path``'s name in front (the
    row names the file); the error's type joins messages that are not vidsr's own, which
    may not say what kind of failure they are."""
    text = " ".join(str(exc).split())
    if path is not None:
        text = text.removeprefix(f"{path}: ")
    if isinstance(exc, VidsrError | OSError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
