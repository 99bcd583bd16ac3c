"""OpenVINO's Python module is imported before any VapourSynth core exists: vs-mlrt's
OpenVINO plugin (vapoursynth-mlrt-ov), where installed, brings its own build of OpenVINO's
library, which a core loads and the Python module then refuses
(:func:`vidsr.plan.machine.openvino_unusable`).

A filter's engine lives until its clip is collected, and a clip caught in a reference cycle
waits for the collector: after each test the collector runs and the filters' threads are
given time to end, so no engine outlives the test that made it (later tests count vidsr's
threads)."""

import gc
import importlib.util
import threading
import time

import pytest

if importlib.util.find_spec("openvino") is not None:
    import openvino  # noqa: F401

_ENGINE_THREADS = ("vsvidsr-dispatch", "vidsr-cpu-worker")


def _engine_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(_ENGINE_THREADS)}


@pytest.fixture(autouse=True)
def _filters_end_with_their_test():
    before = _engine_threads()
    yield
    gc.collect()
    deadline = time.monotonic() + 5.0
    while _engine_threads() - before and time.monotonic() < deadline:
        time.sleep(0.02)
    left = _engine_threads() - before
    assert not left, f"a filter's engine outlived its test: {sorted(t.name for t in left)}"
