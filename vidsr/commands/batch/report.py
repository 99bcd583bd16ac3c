"""What a batch did: one row per file, the totals, the summary table people read and the
JSON report scripts read."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from vidsr.commands.batch.sources import SourceFile
from vidsr.io.safe_output import write_small_output

Outcome = Literal["done", "skipped", "failed"]


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file in this run. ``frames`` and ``wall_s`` are this run's (0
    when it was skipped); ``video_seconds`` is the source's duration."""

    source: str
    output: str | None
    outcome: Outcome
    reason: str = ""
    frames: int = 0
    video_seconds: float = 0.0
    wall_s: float = 0.0
    size: int | None = None
    sha256: str | None = None
    fingerprint: str | None = None
    segments: int = 0  # 0: run whole
    segments_reused: int = 0  # finished by an earlier, stopped run
    retries: int = 0  # segments run again because the worker running them died

    @classmethod
    def done(cls, f: SourceFile, *, frames: int, wall_s: float, size: int, sha256: str,
             fingerprint: str, segments: int = 0, segments_reused: int = 0,
             retries: int = 0) -> FileOutcome:
        return cls(f.key, str(f.output), "done", "", frames, f.seconds or 0.0,
                   round(wall_s, 3), size, sha256, fingerprint, segments, segments_reused,
                   retries)

    @classmethod
    def skipped(cls, f: SourceFile, reason: str,
                entry: Mapping[str, Any] | None = None) -> FileOutcome:
        """A file left alone: not a video, or done before (``entry``, its job record)."""
        if entry is None:
            return cls(f.key, None, "skipped", reason)
        return cls(f.key, str(f.output), "skipped", reason, 0, f.seconds or 0.0, 0.0,
                   entry.get("size"), entry.get("sha256"), entry.get("fingerprint"))

    @classmethod
    def failed(cls, f: SourceFile, reason: str) -> FileOutcome:
        return cls(f.key, str(f.output), "failed", reason, 0, f.seconds or 0.0)


@dataclass(frozen=True)
class BatchResult:
    """Every file's outcome, in source order, and the batch's wall time."""

    source: Path
    out_dir: Path
    job_file: Path
    files: list[FileOutcome]
    wall_s: float

    def count(self, outcome: Outcome) -> int:
        return sum(f.outcome == outcome for f in self.files)

    @property
    def frames(self) -> int:
        return sum(f.frames for f in self.files)

    @property
    def video_hours(self) -> float:
        """Hours of video upscaled in this run."""
        return sum(f.video_seconds for f in self.files if f.outcome == "done") / 3600

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0

    def totals(self) -> dict[str, Any]:
        return {
            "done": self.count("done"), "skipped": self.count("skipped"),
            "failed": self.count("failed"), "frames": self.frames,
            "video_hours": round(self.video_hours, 6), "wall_s": round(self.wall_s, 3),
            "fps": round(self.fps, 3),
        }

    def summary_line(self) -> str:
        t = self.totals()
        return (f"{t['done']} done, {t['skipped']} skipped, {t['failed']} failed;"
                f" {t['frames']} frames, {self.video_hours:.3f} h of video in"
                f" {self.wall_s:.1f} s ({self.fps:.2f} fps)")

    def summary_table(self) -> str:
        """The totals as a small table, then each failed file with its reason."""
        t = self.totals()
        rows = [
            ("files", f"{t['done']} done, {t['skipped']} skipped, {t['failed']} failed"),
            ("frames", str(t["frames"])),
            ("video", f"{self.video_hours:.3f} h"),
            ("wall time", f"{self.wall_s:.1f} s"),
            ("speed", f"{self.fps:.2f} fps"),
            ("job file", str(self.job_file)),
        ]
        lines = [f"  {name:<10} {value}" for name, value in rows]
        lines += [f"  resumed    {f.source}: {f.segments_reused} of {f.segments} segments"
                  " kept from the stopped run" for f in self.files if f.segments_reused]
        lines += [f"  failed     {f.source}: {f.reason}" for f in self.files
                  if f.outcome == "failed"]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"source": str(self.source), "out_dir": str(self.out_dir),
                "job_file": str(self.job_file),
                "totals": self.totals(), "files": [asdict(f) for f in self.files]}


def write_report(result: BatchResult, path: Path) -> Path:
    """Write ``result`` as JSON to ``path`` in one step (the previous report is replaced)."""
    text = json.dumps(result.to_dict(), indent=2)
    return write_small_output(Path(path), True,
                              lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))
