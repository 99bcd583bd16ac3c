"""Stages joined by bounded queues: the source, the transforms and the sink overlap.

Each stage but the sink runs in its own thread; the sink runs in the caller's
thread, so Ctrl-C arrives where it can stop everything. Queues are bounded, so
memory stays flat whatever the length of the video. The first failure in any
stage stops the others promptly and is re-raised in the caller, unchanged.

A transform may be a plain function or an :class:`InFlight`: work split into
``submit(item) -> handle`` and ``handle.result()``, so a device can hold several
items at once (a CUDA engine uploads one batch while computing another). The
stage keeps up to ``depth`` submitted and emits results in submission order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from vidsr.errors import Cancelled

log = logging.getLogger("vidsr")

_END = object()  # marks the end of the stream in a queue
_POLL_S = 0.05  # how often a blocked stage looks at the stop flag
_JOIN_S = 30.0  # how long to wait for a stage thread after a stop
_BOOT_S = 1.0  # how long a thread whose start was interrupted may take to run


class Handle(Protocol):
    """What ``InFlight.submit`` returns."""

    def ready(self) -> bool:
        """Whether ``result()`` would return without waiting."""
        ...

    def result(self) -> Any:
        """Wait for the work and return its output."""
        ...


@dataclass(frozen=True)
class InFlight:
    """A transform whose work runs asynchronously: ``submit(item)`` starts it and
    returns a :class:`Handle`; up to ``depth`` items are outstanding at once."""

    submit: Callable[[Any], Handle]
    depth: int = 2


Transform = Callable[[Any], Any] | InFlight


@dataclass
class StageTiming:
    """Seconds each stage spent working (not waiting on a queue)."""

    busy_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    items: int = 0

    def add(self, stage: str, seconds: float) -> None:
        self.busy_s[stage] = self.busy_s.get(stage, 0.0) + seconds


class _Stop:
    """The shared stop flag and the first error that raised it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def fail(self, error: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = error
        self.event.set()

    @property
    def stopped(self) -> bool:
        return self.event.is_set()


def _put(q: queue.Queue, item: Any, stop: _Stop) -> bool:
    """Put ``item``, waiting for room; False when the run was stopped meanwhile."""
    while not stop.stopped:
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: _Stop) -> Any:
    """Next item, or ``_END`` when the run was stopped meanwhile."""
    while not stop.stopped:
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return _END


def _timed(name: str, items: Iterable[Any], timing: StageTiming) -> Iterator[Any]:
    iterator = iter(items)
    while True:
        start = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        finally:
            timing.add(name, time.perf_counter() - start)
        yield item


def _source_thread(
    items: Iterable[Any], out: queue.Queue, stop: _Stop, timing: StageTiming
) -> None:
    try:
        for item in _timed("source", items, timing):
            if not _put(out, item, stop):
                return
        _put(out, _END, stop)
    except BaseException as exc:  # noqa: BLE001 - handed to the caller, never swallowed
        stop.fail(exc)


def _transform_thread(
    name: str, fn: Transform, inp: queue.Queue, out: queue.Queue,
    stop: _Stop, timing: StageTiming,
) -> None:
    try:
        if isinstance(fn, InFlight):
            _run_in_flight(name, fn, inp, out, stop, timing)
            return
        while (item := _get(inp, stop)) is not _END:
            start = time.perf_counter()
            result = fn(item)
            timing.add(name, time.perf_counter() - start)
            if not _put(out, result, stop):
                return
        _put(out, _END, stop)
    except BaseException as exc:  # noqa: BLE001 - handed to the caller, never swallowed
        stop.fail(exc)


def _run_in_flight(
    name: str, stage: InFlight, inp: queue.Queue, out: queue.Queue,
    stop: _Stop, timing: StageTiming,
) -> None:
    pending: deque[Handle] = deque()

    def emit_oldest() -> bool:
        start = time.perf_counter()
        result = pending.popleft().result()
        timing.add(name, time.perf_counter() - start)
        return _put(out, result, stop)

    while (item := _get(inp, stop)) is not _END:
        # A full window: the oldest must finish before its slot takes new work.
        if len(pending) >= stage.depth and not emit_oldest():
            return
        start = time.perf_counter()
        pending.append(stage.submit(item))
        timing.add(name, time.perf_counter() - start)
        # Pass on what is done already, so the sink never waits on a finished item.
        while pending and pending[0].ready():
            if not emit_oldest():
                return
    while pending:
        if not emit_oldest():
            return
    _put(out, _END, stop)


def start_all(threads: Sequence[threading.Thread], launched: list[threading.Thread]) -> None:
    """Start each thread, listing it in ``launched`` first.

    A stop signal raises KeyboardInterrupt wherever the caller is, between two starts
    or inside one; the caller's cleanup must still find every thread that may run (a
    run closed its decoder under a source thread still reading it: a crash at exit).
    """
    for thread in threads:
        launched.append(thread)
        thread.start()


def join_launched(launched: Sequence[threading.Thread],
                  timeout: float | None) -> list[threading.Thread]:
    """Join every thread of ``launched``, each for up to ``timeout`` seconds; return those
    still alive. One whose start was interrupted gets a moment to say it runs."""
    alive = []
    for thread in launched:
        deadline = time.monotonic() + _BOOT_S
        while True:
            try:
                thread.join(timeout)
                break
            except RuntimeError:  # not started yet, or never will be
                if time.monotonic() >= deadline:
                    break
                time.sleep(_POLL_S / 5)
        if thread.is_alive():
            alive.append(thread)
    return alive


def run_pipeline(
    source: Iterable[Any],
    transforms: Sequence[tuple[str, Transform]],
    sink: Callable[[Any], None],
    *,
    depth: int = 3,
) -> StageTiming:
    """Run ``source`` -> each transform in turn -> ``sink``, overlapped.

    ``transforms`` are (name, function or :class:`InFlight`) pairs; their
    names key the timing.
    Returns the busy time of each stage and the wall time. Raises the first
    error any stage raised; on Ctrl-C, stops the stages and raises ``Cancelled``.
    """
    timing = StageTiming()
    stop = _Stop()
    queues = [queue.Queue(maxsize=depth) for _ in range(len(transforms) + 1)]
    threads = [
        threading.Thread(
            target=_source_thread, args=(source, queues[0], stop, timing),
            name="vidsr-source", daemon=True,
        )
    ]
    for i, (name, fn) in enumerate(transforms):
        threads.append(
            threading.Thread(
                target=_transform_thread, args=(name, fn, queues[i], queues[i + 1], stop, timing),
                name=f"vidsr-{name}", daemon=True,
            )
        )
    launched: list[threading.Thread] = []
    start = time.perf_counter()
    try:
        start_all(threads, launched)
        while (item := _get(queues[-1], stop)) is not _END:
            t0 = time.perf_counter()
            sink(item)
            timing.add("sink", time.perf_counter() - t0)
            timing.items += 1
    except KeyboardInterrupt:
        stop.fail(Cancelled("interrupted"))
    except BaseException as exc:
        stop.fail(exc)
    finally:
        stop.event.set()  # end every stage whatever happened
        for t in join_launched(launched, _JOIN_S):
            log.warning("stage %s did not stop within %.0f s", t.name, _JOIN_S)
        timing.wall_s = time.perf_counter() - start
    if stop.error is not None:
        raise stop.error
    return timing
