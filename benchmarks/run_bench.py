"""Run ``vidsr bench`` from a checkout without the CLI: ``python benchmarks/run_bench.py CLIP ...``.

Prints the text report and writes the JSON next to it with ``--json PATH``.
The flags are the ones ``vidsr bench`` takes (see ``vidsr.bench``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from vidsr.bench import BenchOptions, run_bench
from vidsr.engine import EngineOptions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("clip", type=Path)
    p.add_argument("--model", default="espcn")
    p.add_argument("--scale", type=int)
    p.add_argument("--weights", type=Path)
    p.add_argument("--random-init", action="store_true")
    p.add_argument("--codec", default="libx264")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--in-flight", type=int, default=2)
    p.add_argument("--tile", type=int, default=0)
    p.add_argument("--tile-overlap", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: the engine's plan)")
    p.add_argument("--frames", type=int)
    p.add_argument("--crop", type=int)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--no-serial", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="vidsr: %(levelname)s: %(message)s")
    report = run_bench(
        args.clip,
        BenchOptions(model=args.model, scale=args.scale, weights=args.weights,
                     random_init=args.random_init, codec=args.codec,
                     batch_size=args.batch_size, frames=args.frames, crop=args.crop,
                     repeats=args.repeats, serial=not args.no_serial),
        EngineOptions(device=args.device, precision=args.precision,
                      channels_last=not args.no_channels_last, compile=args.compile,
                      in_flight=args.in_flight, tile=args.tile, tile_overlap=args.tile_overlap,
                      cpu_threads=args.threads),
    )
    sys.stdout.write(report.to_text() + "\n")
    if args.json:
        args.json.write_text(report.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
