"""``python -m vidsr`` is the ``vidsr`` command.

``main`` is exposed here for Python callers (tests, scripts) that run the command in
process: the command-line module itself is imported by nothing else.
"""

import sys

from vidsr.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
