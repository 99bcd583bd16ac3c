"""Run the benchmark from a checkout: ``python benchmarks/run_bench.py CLIP [flags]``.

The same as ``vidsr bench CLIP [flags]``; see ``vidsr bench --help`` and
benchmarks/RESULTS.md for the recorded figures and the commands behind them.
"""

from __future__ import annotations

import subprocess
import sys

if __name__ == "__main__":
    # The command itself, so its flags, messages and exit status are exactly vidsr bench's.
    sys.exit(subprocess.run([sys.executable, "-m", "vidsr", "bench", *sys.argv[1:]],
                            check=False).returncode)
