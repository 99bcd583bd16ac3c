"""Which match FFmpeg's ``fieldmatch`` makes per frame, against the right one.

    python benchmarks/ivtc_matches.py [--crf 28] [--frames] CLIP NUMBER [CLIP NUMBER ...]

Each CLIP (a file of the shared training videos) with its NUMBER is telecined as
``benchmarks/ivtc.py`` does for that case (NUMBER sets the pattern, first field and phase;
``--breaks`` builds its cadence-break case instead) and coded as progressive H.264 at
``--crf``. ``fieldmatch`` does not export its choice, so it is read from its output: each
field of an output frame is the same field of the input frame (c), the one before (p) or
the one after (n). The right choices are known from the telecine: a match is right when
both fields come from the same film frame.

Printed per case: the frames fieldmatch rebuilt wrongly (``--frames``: every frame, its
film fields and both answers), and how many film frames come back (nearest in Y PSNR)
when the woven pair of each cycle is rebuilt from the second field of its first frame and
the first field of its second, which is what a right match gives.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from clipgen import make_video_clip  # noqa: E402
from ivtc import TRAIN_CLIPS, broken_video, film_of, luma, psnr, steady_video  # noqa: E402

from vidsr.io.deinterlace import filter_chain, pull_all  # noqa: E402

NEIGHBOURS = ((0, "c"), (-1, "p"), (1, "n"))


def film_fields(video: list[av.VideoFrame], film: list[np.ndarray]) -> list[tuple]:
    """Per video frame: the film frames its top and bottom field come from (None: neither)."""
    tops = {f[0::2].tobytes(): j for j, f in enumerate(film)}
    bottoms = {f[1::2].tobytes(): j for j, f in enumerate(film)}
    return [(tops.get(luma(v)[0::2].tobytes()), bottoms.get(luma(v)[1::2].tobytes()))
            for v in video]


def source_of(field: np.ndarray, parity: int, index: int, decoded: list[np.ndarray]) -> str:
    """Which input frame (c, p or n) an output field was taken from."""
    for step, name in NEIGHBOURS:
        if 0 <= index + step < len(decoded) and np.array_equal(
                field, decoded[index + step][parity::2]):
            return name
    return "?"


def right_matches(truth: list[tuple], index: int, kept: int) -> set[str]:
    """The matches that rebuild frame ``index`` keeping field ``kept`` from one film frame."""
    film = truth[index][kept]
    return {name for step, name in NEIGHBOURS
            if film is not None and 0 <= index + step < len(truth)
            and truth[index + step][1 - kept] == film}


def fieldmatch_frames(path: Path, order: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The decoded frames' and fieldmatch's (as vidsr runs it) luma."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded, time_base = list(container.decode(stream)), stream.time_base
    graph = filter_chain(decoded[0], time_base,
                         [("fieldmatch", f"order={order}:combmatch=full")])
    matched = []
    for frame in [*decoded, None]:
        graph.push(frame)
        matched += pull_all(graph)
    return [luma(f) for f in decoded], [luma(f) for f in matched]


def rebuilt_by_pairs(decoded: list[np.ndarray], truth: list[tuple],
                     first: int) -> tuple[list[np.ndarray], list[int]]:
    """The film frames rebuilt with the right matches: clean frames as they are (once), each
    woven pair from its first frame's second field and its second frame's first field."""
    second = 1 - first
    out: list[np.ndarray] = []
    wanted: list[int] = []
    for index, (picture, fields) in enumerate(zip(decoded, truth, strict=True)):
        if fields[0] == fields[1]:
            if not wanted or wanted[-1] != fields[0]:
                out.append(picture)
                wanted.append(fields[0])
        elif index + 1 < len(decoded) and fields[second] == truth[index + 1][first]:
            woven = picture.copy()
            woven[first::2] = decoded[index + 1][first::2]
            out.append(woven)
            wanted.append(fields[second])
    return out, wanted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="+")
    parser.add_argument("--crf", type=int, default=28)
    parser.add_argument("--breaks", action="store_true")
    parser.add_argument("--frames", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for clip, number in zip(args.cases[::2], map(int, args.cases[1::2]), strict=True):
            frames = film_of(TRAIN_CLIPS / clip, 24, 56, (320, 240))
            film = [luma(f) for f in frames]
            if args.breaks:
                video, kind, order = broken_video(frames, number), "breaks", "tff"
            else:
                video, kind, order = steady_video(frames, number)
            truth = film_fields(video, film)
            path = make_video_clip(Path(folder) / "case.mkv", video, codec="libx264",
                                   crf=args.crf)
            decoded, matched = fieldmatch_frames(path, order)
            wrong = []
            for index, picture in enumerate(matched):
                top = source_of(picture[0::2], 0, index, decoded)
                bottom = source_of(picture[1::2], 1, index, decoded)
                kept = 1 if top != "c" else 0
                made = bottom if kept == 0 else top
                right = right_matches(truth, index, kept)
                if made == "c" and top == bottom == "c":
                    right |= right_matches(truth, index, 1 - kept)
                line = (f"  frame {index:3d} film fields {truth[index]}: fieldmatch {made}"
                        f", right {'/'.join(sorted(right)) or '-'}")
                if made not in right:
                    wrong.append(line)
                if args.frames:
                    print(line)
            first = 0 if order == "tff" else 1
            rebuilt, wanted = rebuilt_by_pairs(decoded, truth, first)
            found = 0
            for picture, j in zip(rebuilt, wanted, strict=True):
                near = range(max(0, j - 8), min(len(film), j + 9))
                nearest = max(near, key=lambda i: psnr(picture, film[i]))
                found += psnr(picture, film[j]) >= psnr(picture, film[nearest]) - 1.0
            print(f"{clip} {kind} crf {args.crf}: fieldmatch wrong on {len(wrong)} of"
                  f" {len(matched)} frames; right matches give back {found} of"
                  f" {len(rebuilt)} film frames")
            if not args.frames:
                print("\n".join(wrong[:10]))


if __name__ == "__main__":
    main()
