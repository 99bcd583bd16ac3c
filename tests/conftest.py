"""Shared fixtures: generated clips live in pytest's per-test tmp_path."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

# clipgen.py sits beside this file; tests import it as a top-level module.
sys.path.insert(0, str(Path(__file__).parent))

from clipgen import make_clip  # noqa: E402


@pytest.fixture(autouse=True)
def _vidsr_logger_as_found():
    """The CLI points the "vidsr" logger at the stderr of the test that ran it and stops it
    propagating; put it back after each test, so that no test hears another's set-up
    (a later test's log lines went to a finished test's stderr, or to none)."""
    logger = logging.getLogger("vidsr")
    saved = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture
def clip(tmp_path):
    """``clip(name, **make_clip_args)`` writes a small clip into tmp_path."""

    def make(name: str = "clip.mkv", **kwargs):
        kwargs.setdefault("width", 64)
        kwargs.setdefault("height", 48)
        return make_clip(tmp_path / name, **kwargs)

    return make


def _temporal_weights(path: Path, channels: int) -> Path:
    """A tiny temporal network (3-frame windows, x2) with fixed random weights, as a
    safetensors file: what ``--model FILE`` loads."""
    import torch
    from safetensors.torch import save_file

    from vidsr.archs.temporal import WindowCompact

    torch.manual_seed(7)
    net = WindowCompact(num_in_ch=channels, num_feat=8, num_conv=2, num_refine=1, radius=1,
                        scale=2)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


@pytest.fixture
def temporal(tmp_path) -> Path:
    """An RGB temporal network's weights file (see :func:`_temporal_weights`)."""
    return _temporal_weights(tmp_path / "temporal.safetensors", 3)


@pytest.fixture
def temporal_luma(tmp_path) -> Path:
    """A luma temporal network's weights file: one that runs on Y, as vsvidsr and the
    transcoder both take YUV for it."""
    return _temporal_weights(tmp_path / "temporal_luma.safetensors", 1)
