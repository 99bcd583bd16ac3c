"""``python -m vidsr`` is the ``vidsr`` command."""

import sys

from vidsr.cli import main

sys.exit(main())
