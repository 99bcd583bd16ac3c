"""``python -m vidsr`` is the ``vidsr`` command.

``main`` is exposed here for Python callers (tests, scripts) that run the command in
process (``console_main`` is the process's own entry): the command-line module itself is
imported by nothing else.
"""

import sys

from vidsr.cli import console_main, main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(console_main())
