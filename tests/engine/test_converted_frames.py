"""The converted frames a replica keeps for window models: each frame converted once, a
bound on how many are kept, and a failed conversion neither kept nor hanging others."""

from __future__ import annotations

import threading

import pytest
import torch

from vidsr.engine.converted_frames import ConvertedFrames


def _converter(values: list[float], calls: list[list[int]], fail: threading.Event | None = None):
    """A route's conversion of frames holding ``values``: each frame a (2, 1, 2, 2) picture
    pair (k = 2 pictures per frame), its rows recorded."""
    def convert(rows: torch.Tensor) -> list[torch.Tensor]:
        calls.append(rows.tolist())
        if fail is not None and fail.is_set():
            raise RuntimeError("conversion failed")
        frames = torch.tensor([values[i] for i in rows.tolist()])
        return [frames.repeat_interleave(2)[:, None, None, None].expand(-1, 1, 2, 2) * 1.0]
    return convert


def test_frames_kept_are_not_converted_again_and_come_back_in_the_batchs_order():
    kept = ConvertedFrames(capacity=8)
    calls: list[list[int]] = []
    first = kept.inputs([("s", 0), ("s", 1), ("s", 2)], _converter([10, 11, 12], calls))
    second = kept.inputs([("s", 1), ("s", 2), ("s", 3)], _converter([11, 12, 13], calls))
    assert calls == [[0, 1, 2], [2]]  # only frame 3, the batch's third, is new
    assert first[0][:, 0, 0, 0].tolist() == [10, 10, 11, 11, 12, 12]
    assert second[0][:, 0, 0, 0].tolist() == [11, 11, 12, 12, 13, 13]


def test_the_oldest_frames_go_past_the_bound_and_are_converted_again():
    kept = ConvertedFrames(capacity=2)
    calls: list[list[int]] = []
    kept.inputs([("s", 0), ("s", 1), ("s", 2)], _converter([0, 1, 2], calls))
    kept.inputs([("s", 0)], _converter([0], calls))
    assert calls == [[0, 1, 2], [0]]


def test_a_failed_conversion_is_not_kept():
    kept = ConvertedFrames(capacity=8)
    calls: list[list[int]] = []
    fail = threading.Event()
    fail.set()
    with pytest.raises(RuntimeError, match="conversion failed"):
        kept.inputs([("s", 0), ("s", 1)], _converter([5, 6], calls, fail))
    fail.clear()
    out = kept.inputs([("s", 0), ("s", 1)], _converter([5, 6], calls, fail))
    assert calls == [[0, 1], [0, 1]]
    assert out[0][:, 0, 0, 0].tolist() == [5, 5, 6, 6]
