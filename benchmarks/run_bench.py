"""Run the benchmark from a checkout: ``python benchmarks/run_bench.py CLIP [flags]``.

The same as ``vidsr bench CLIP [flags]``; see ``vidsr bench --help`` and
benchmarks/RESULTS.md for the recorded figures and the commands behind them.
"""

from __future__ import annotations

import sys

from vidsr.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
