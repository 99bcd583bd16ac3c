"""Inverse telecine on real footage: how many film frames come back, once each, and how sharp.

    python benchmarks/ivtc.py [--clips DIR] [--count 16] [--film 56] [--json out.json]

Each of ``--count`` clips of ``--clips`` (default: the shared training videos, which have
real motion) gives ``--film`` consecutive frames (after the first ``--skip``), scaled to
320x240 (every clip), 720x480 and 176x144 (a spread of four each), and treated as film
frames at 24000/1001. They go through FFmpeg's ``telecine`` (the tests' generator), with
the pattern (23 or 32), the first field (top or bottom) and the starting phase (0 to 4
video frames cut from the start) turning with the clip, and are coded as a DVD would be
(MPEG-2, flagged) and as progressive H.264 (unflagged, CRF 18, 23 and 28). Four more
clips are cut into three telecined pieces joined at edits (cadence breaks).

A film frame belongs in the output when a top and a bottom field of it lie in the same or
neighbouring video frames (at a cut some lose one). Each output frame is matched to the
nearest film frame (Y PSNR); printed per case: film frames expected, frames out, how
many expected film frames appear exactly once / are missing / doubled, mean and worst
PSNR against the expected film frame (the n-th output against the n-th expected, where
the counts agree; else against the nearest), the worst timing error of a steady case
against n x 1001/24000 s (from the first full cycle on: a first cycle that starts with an
orphan field shows it, deinterlaced, as a fifth frame: counted as "extra"), the seconds
per input frame of decoding with inverse telecine, and whether the film repeats a frame
itself (then two film frames are alike
and one of them may fairly be missing). Then a summary per coding and the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from clipgen import make_video_clip, telecine  # noqa: E402

from vidsr.io.decode import Decoder  # noqa: E402
from vidsr.io.deinterlace import IVTC_KEPT, DeinterlacePlan  # noqa: E402
from vidsr.plan.machine import this_machine  # noqa: E402

TRAIN_CLIPS = REPO.parent / "shared" / "data" / "videos" / "train"
CODINGS = [("mpeg2", None), ("h264", 18), ("h264", 23), ("h264", 28)]
FILM_STEP = Fraction(1001, 24000)
# An output frame matches the film frame it should show within this of its nearest.
NOISE_DB = 1.0
# Two neighbouring film frames this alike are the film repeating itself.
FILM_REPEAT_DB = 50.0


@dataclass
class Case:
    clip: str
    size: str
    kind: str  # "steady 23 tff +2" or "breaks"
    coding: str
    expected: int
    out: int
    once: int
    extra: int
    missing: int
    doubled: int
    mean_db: float
    worst_db: float
    timing_ms: float | None
    seconds_per_frame: float
    film_repeats: int


def film_of(path: Path, skip: int, count: int, size: tuple[int, int]) -> list[av.VideoFrame]:
    """``count`` frames of ``path`` from frame ``skip`` (earlier in a short clip) as yuv420p
    frames of ``size``."""
    frames: list[av.VideoFrame] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            frames.append(frame.reformat(width=size[0], height=size[1], format="yuv420p"))
            if len(frames) == skip + count:
                break
    return frames[-count:]


def luma(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray()[:frame.height]


def present_film(video: list[av.VideoFrame], film: list[np.ndarray]) -> list[int]:
    """The film frames a top and a bottom field of which lie in the same or neighbouring
    video frames: what inverse telecine can give back."""
    tops = {f[0::2].tobytes(): j for j, f in enumerate(film)}
    bottoms = {f[1::2].tobytes(): j for j, f in enumerate(film)}
    top_at: dict[int, list[int]] = {}
    bottom_at: dict[int, list[int]] = {}
    for v, frame in enumerate(video):
        y = luma(frame)
        if (j := tops.get(y[0::2].tobytes())) is not None:
            top_at.setdefault(j, []).append(v)
        if (j := bottoms.get(y[1::2].tobytes())) is not None:
            bottom_at.setdefault(j, []).append(v)
    return sorted(j for j in top_at.keys() & bottom_at.keys()
                  if any(abs(a - b) <= 1 for a in top_at[j] for b in bottom_at[j]))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / mse) if mse else 99.0


def inverse_telecined(path: Path, order: str) -> tuple[list[np.ndarray], list[Fraction], float]:
    """The film frames vidsr's decoder gives (luma), their times, and the seconds taken."""
    plan = DeinterlacePlan(order, "frame", "asked", method="ivtc")
    started = time.perf_counter()
    lumas, times = [], []
    with Decoder(path, batch_size=8, deinterlace=plan) as decoder:
        for batch in decoder:
            lumas += list(batch.planes[0])
            times += [pts * batch.time_base for pts in batch.pts]
    return lumas, times, time.perf_counter() - started


def measure(folder: Path, name: str, video: list[av.VideoFrame], film: list[np.ndarray],
            order: str, coding: tuple[str, int | None], steady: bool) -> dict:
    codec, crf = coding
    expected = present_film(video, film)
    path = make_video_clip(folder / (f"{name}.mpg" if codec == "mpeg2" else f"{name}.mkv"),
                           video, codec="mpeg2video" if codec == "mpeg2" else "libx264",
                           crf=crf or 12)
    lumas, times, seconds = inverse_telecined(path, order)
    # An orphan field at the start (a phase cut) is shown deinterlaced: one frame more.
    offset = max(0, len(lumas) - len(expected))
    shown, scores = [], []
    for n, y in enumerate(lumas):
        guess = expected[min(max(0, n - offset), len(expected) - 1)]
        near = range(max(0, guess - 8), min(len(film), guess + 9))
        nearest = max(near, key=lambda j: psnr(y, film[j]))
        # Neighbouring film frames alike within the codec's noise: the expected one, when
        # the counts agree and it matches as well as the nearest, is the one shown.
        if (len(lumas) - offset == len(expected) and n >= offset
                and psnr(y, film[guess]) >= psnr(y, film[nearest]) - NOISE_DB):
            nearest = guess
        shown.append(nearest)
        scores.append(psnr(y, film[nearest]))
    counts = [shown.count(j) for j in expected]
    # From the first full cycle on (the first may hold an orphan field's frame).
    later = times[IVTC_KEPT + offset:]
    timing = (max(abs(t - later[0] - n * FILM_STEP) for n, t in enumerate(later)) * 1000
              if steady and later else None)
    repeats = sum(psnr(film[j], film[j + 1]) >= FILM_REPEAT_DB
                  for j in range(len(expected) and expected[0], expected[-1]))
    return dict(expected=len(expected), out=len(lumas), once=counts.count(1),
                extra=sum(j not in expected for j in shown),
                missing=counts.count(0), doubled=sum(c > 1 for c in counts),
                mean_db=float(np.mean(scores)), worst_db=min(scores),
                timing_ms=None if timing is None else float(timing),
                seconds_per_frame=seconds / len(video), film_repeats=int(repeats))


def steady_video(frames: list[av.VideoFrame], number: int) -> tuple[list[av.VideoFrame],
                                                                    str, str]:
    """Steady pulldown, its pattern, first field and phase turning with ``number``."""
    pattern = ("23", "32")[number % 2]
    field = ("t", "b")[number // 2 % 2]
    phase = number % 5
    video = telecine(frames, pattern, field)[phase:]
    return video, f"steady {pattern} {field}ff +{phase}", f"{field}ff"


def broken_video(frames: list[av.VideoFrame], number: int) -> list[av.VideoFrame]:
    """Three telecined pieces joined at edits, the cut points turning with ``number``."""
    a, b = 14 + number % 3, 34 + number % 4
    return (telecine(frames[:a])[:a * 5 // 4 - number % 3]
            + telecine(frames[a:b], "32")
            + telecine(frames[b:])[1 + number % 4:])


def run(args: argparse.Namespace) -> list[Case]:
    clips = sorted(p for p in args.clips.iterdir() if p.suffix in (".mp4", ".mkv", ".webm"))
    step = max(1, len(clips) // args.count)
    chosen = clips[::step][:args.count]
    spread = chosen[::max(1, len(chosen) // 4)][:4]
    jobs: list[tuple[Path, int, tuple[int, int], bool]] = []
    for number, clip in enumerate(chosen):
        jobs.append((clip, number, (320, 240), True))
    for number, clip in enumerate(spread):
        jobs.append((clip, number + 1, (720, 480), True))
        jobs.append((clip, number + 2, (176, 144), True))
        jobs.append((clip, number, (320, 240), False))
    cases = []
    with tempfile.TemporaryDirectory() as folder:
        for clip, number, size, steady in jobs:
            frames = film_of(clip, args.skip, args.film, size)
            if len(frames) < args.film:
                print(f"skipping {clip.name}: fewer than {args.film} frames")
                continue
            film = [luma(f) for f in frames]
            if steady:
                video, kind, order = steady_video(frames, number)
            else:
                video, kind, order = broken_video(frames, number), "breaks", "tff"
            for coding in CODINGS:
                label = coding[0] if coding[1] is None else f"{coding[0]} crf {coding[1]}"
                figures = measure(Path(folder), "case", video, film, order, coding, steady)
                case = Case(clip.stem, f"{size[0]}x{size[1]}", kind, label, **figures)
                cases.append(case)
                print(row(case), flush=True)
    return cases


HEADER = ("| clip | size | cadence | coding | film | out | once | missing | doubled | extra"
          " | mean dB | worst dB | timing ms | s/frame | film repeats |")


def row(case: Case) -> str:
    timing = "-" if case.timing_ms is None else f"{case.timing_ms:.2f}"
    return (f"| {case.clip} | {case.size} | {case.kind} | {case.coding} | {case.expected}"
            f" | {case.out} | {case.once} | {case.missing} | {case.doubled} | {case.extra}"
            f" | {case.mean_db:.1f} | {case.worst_db:.1f} | {timing}"
            f" | {case.seconds_per_frame:.4f} | {case.film_repeats} |")


def summary(cases: list[Case]) -> None:
    print("\n| coding | cadence | cases | every film frame once | once, film without repeats"
          " | frames missing | frames doubled | orphans shown | worst dB | worst timing ms"
          " | s/frame |")
    print("|---" * 11 + "|")
    for coding in dict.fromkeys(c.coding for c in cases):
        for kind in ("steady", "breaks"):
            group = [c for c in cases if c.coding == coding and c.kind.startswith(kind)]
            if not group:
                continue
            exact = [c for c in group if c.once == c.expected]
            clean = [c for c in group if not c.film_repeats]
            clean_exact = [c for c in clean if c.once == c.expected]
            timings = [c.timing_ms for c in group if c.timing_ms is not None]
            timing = f"{max(timings):.2f}" if timings else "-"
            print(f"| {coding} | {kind} | {len(group)} | {len(exact)}"
                  f" | {len(clean_exact)} of {len(clean)}"
                  f" | {sum(c.missing for c in group)} | {sum(c.doubled for c in group)}"
                  f" | {sum(c.extra for c in group)} | {min(c.worst_db for c in group):.1f}"
                  f" | {timing}"
                  f" | {np.mean([c.seconds_per_frame for c in group]):.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=Path, default=TRAIN_CLIPS)
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--film", type=int, default=56, help="film frames per clip")
    parser.add_argument("--skip", type=int, default=24, help="frames skipped at the start")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(HEADER)
    print("|---" * (HEADER.count("|") - 1) + "|")
    cases = run(args)
    summary(cases)
    print(f"\nmachine: {this_machine().describe_cpu()}")
    if args.json:
        args.json.write_text(json.dumps([asdict(c) for c in cases], indent=1))


if __name__ == "__main__":
    main()
