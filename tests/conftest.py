"""Shared fixtures: generated clips live in pytest's per-test tmp_path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# clipgen.py sits beside this file; tests import it as a top-level module.
sys.path.insert(0, str(Path(__file__).parent))

from clipgen import make_clip  # noqa: E402


@pytest.fixture
def clip(tmp_path):
    """``clip(name, **make_clip_args)`` writes a small clip into tmp_path."""

    def make(name: str = "clip.mkv", **kwargs):
        kwargs.setdefault("width", 64)
        kwargs.setdefault("height", 48)
        return make_clip(tmp_path / name, **kwargs)

    return make
