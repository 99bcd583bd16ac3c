"""The staged pipeline: order, back-pressure, failures and Ctrl-C, with real threads."""

from __future__ import annotations

import threading
import time

import pytest

from vidsr.errors import Cancelled
from vidsr.run.pipeline import run_pipeline


def _vidsr_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vidsr-")]


def test_items_arrive_in_order_through_every_stage():
    seen = []
    timing = run_pipeline(range(50), [("double", lambda x: 2 * x), ("inc", lambda x: x + 1)],
                          seen.append, depth=2)
    assert seen == [2 * i + 1 for i in range(50)]
    assert timing.items == 50
    assert set(timing.busy_s) == {"source", "double", "inc", "sink"}
    assert not _vidsr_threads()


def test_bounded_queues_hold_back_the_source():
    produced = 0
    max_ahead = 0
    consumed = 0

    def source():
        nonlocal produced
        for i in range(40):
            produced += 1
            yield i

    def sink(_item):
        nonlocal consumed, max_ahead
        max_ahead = max(max_ahead, produced - consumed)
        consumed += 1
        time.sleep(0.002)

    run_pipeline(source(), [("id", lambda x: x)], sink, depth=2)
    # Two queues of depth 2, plus one item held by each of source, transform and sink.
    assert max_ahead <= 2 * 2 + 3


def test_failure_in_a_stage_reaches_the_caller_unchanged_and_stops_the_rest():
    produced = []

    def source():
        for i in range(10_000):
            produced.append(i)
            yield i

    def explode(x):
        if x == 5:
            raise ZeroDivisionError("stage 5 broke")
        return x

    with pytest.raises(ZeroDivisionError, match="stage 5 broke"):
        run_pipeline(source(), [("explode", explode)], lambda _: None, depth=2)
    assert len(produced) < 100  # the source stopped promptly
    assert not _vidsr_threads()


def test_failure_in_the_source_is_raised():
    def source():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        run_pipeline(source(), [("id", lambda x: x)], lambda _: None)
    assert not _vidsr_threads()


def test_failure_in_the_sink_stops_the_stages():
    def sink(x):
        if x == 3:
            raise ValueError("encoder full")

    with pytest.raises(ValueError, match="encoder full"):
        run_pipeline(iter(range(10_000)), [("id", lambda x: x)], sink, depth=2)
    assert not _vidsr_threads()


def test_ctrl_c_in_the_caller_becomes_cancelled_and_ends_every_thread():
    def sink(x):
        if x == 2:
            raise KeyboardInterrupt

    with pytest.raises(Cancelled):
        run_pipeline(iter(range(10_000)), [("id", lambda x: x)], sink, depth=2)
    assert not _vidsr_threads()


def test_ctrl_c_while_the_stages_start_still_ends_those_already_running(monkeypatch):
    # The run's decoder closes as soon as the pipeline returns: a source thread left
    # reading it crashed the process at exit.
    start = threading.Thread.start

    def start_then_interrupt(thread):
        start(thread)
        if thread.name == "vidsr-source":
            raise KeyboardInterrupt  # as a stop signal landing between two starts

    monkeypatch.setattr(threading.Thread, "start", start_then_interrupt)
    with pytest.raises(Cancelled):
        run_pipeline(iter(range(10_000)), [("id", lambda x: x)], lambda x: None, depth=2)
    assert not _vidsr_threads()


def test_ctrl_c_before_a_stage_thread_exists_ends_the_others_without_waiting(monkeypatch):
    start = threading.Thread.start

    def interrupt_the_second(thread):
        if thread.name != "vidsr-source":
            raise KeyboardInterrupt  # inside start, before the thread was created
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", interrupt_the_second)
    began = time.monotonic()
    with pytest.raises(Cancelled):
        run_pipeline(iter(range(10_000)), [("id", lambda x: x)], lambda x: None, depth=2)
    assert time.monotonic() - began < 5
    assert not _vidsr_threads()
