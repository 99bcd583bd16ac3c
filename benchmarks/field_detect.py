"""The field-detection corpus judged: what ``detect_fields`` says about each clip of known
kind (tests/field_corpus.py), as a confusion table, with the seconds detection costs.

    python benchmarks/field_detect.py [--fast] [--clips] [--json out.json]

Builds the corpus into its cache folder where it is missing (the full one by default;
``--fast``: the subset the fast test uses). Printed: the machine, one markdown table (truth
progressive / interlaced / telecined x verdict progressive / interlaced / telecined / unsure,
and how many were found with the wrong field order), the mean and worst seconds per clip;
``--clips`` also prints every clip's verdict and evidence.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from field_corpus import CorpusClip, build_corpus, corpus_missing_reason  # noqa: E402

from vidsr.io.field_detect import FieldVerdict, detect_fields  # noqa: E402

TRUTHS = ("progressive", "interlaced", "telecined")
VERDICTS = ("progressive", "interlaced", "telecined", "unsure")


def judged(clips: list[CorpusClip]) -> list[tuple[CorpusClip, FieldVerdict, float]]:
    """Each clip with its verdict and the seconds detection took."""
    rows = []
    for clip in clips:
        start = time.perf_counter()
        verdict = detect_fields(clip.path)
        rows.append((clip, verdict, time.perf_counter() - start))
    return rows


def confusion(rows: list[tuple[CorpusClip, FieldVerdict, float]]) -> dict[str, dict[str, int]]:
    """truth -> verdict -> clips, plus ``wrong order``: the right kind, the wrong order."""
    table = {truth: dict.fromkeys([*VERDICTS, "wrong order"], 0) for truth in TRUTHS}
    for clip, verdict, _ in rows:
        table[clip.kind][verdict.kind] += 1
        if verdict.kind == clip.kind and clip.order is not None and verdict.order != clip.order:
            table[clip.kind]["wrong order"] += 1
    return table


def markdown(table: dict[str, dict[str, int]]) -> str:
    lines = ["| truth \\ verdict | clips | " + " | ".join(VERDICTS) + " | wrong order |",
             "|---|---:|" + "---:|" * (len(VERDICTS) + 1)]
    for truth, counts in table.items():
        total = sum(counts[v] for v in VERDICTS)
        lines.append(f"| {truth} | {total} | "
                     + " | ".join(str(counts[v]) for v in [*VERDICTS, "wrong order"]) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fast", action="store_true", help="the fast test's subset only")
    p.add_argument("--clips", action="store_true", help="print every clip's verdict")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    from vidsr.plan.machine import this_machine

    reason = corpus_missing_reason()
    if reason:
        sys.exit(f"field_detect: {reason}")
    print(f"machine: {this_machine().describe_cpu()}")
    clips = build_corpus(full=not args.fast)
    rows = judged(clips)
    if args.clips:
        for clip, verdict, seconds in rows:
            mark = "" if (verdict.kind, verdict.order) == (clip.kind, clip.order) else "  <--"
            print(f"{clip.name:48s} {clip.order or '-':4s} -> {verdict.kind:11s}"
                  f" {verdict.order or '-':4s} {seconds:5.2f}s  {verdict.evidence}{mark}")
    table = confusion(rows)
    print(markdown(table))
    seconds = [s for _, _, s in rows]
    print(f"{len(rows)} clips, detection {sum(seconds) / len(seconds):.2f} s per clip"
          f" (worst {max(seconds):.2f} s)")
    if args.json:
        args.json.write_text(json.dumps({"machine": this_machine().describe_cpu(),
                                         "confusion": table, "seconds": seconds}, indent=1))


if __name__ == "__main__":
    main()
