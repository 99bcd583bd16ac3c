"""Frame requests from VapourSynth's threads gathered into batches for one engine.

VapourSynth asks for frames from several threads at once, one frame per call.
A :class:`Gatherer` turns those calls into batches: every caller hands in its
frame and waits; one dispatcher thread owns the engine, takes the waiting
frames as a batch, submits it and keeps up to ``in_flight`` batches submitted
(so CPU workers or CUDA slots stay busy). Each caller then waits for its batch
itself and takes its own result, so a frame returns the moment its batch is done
rather than when the dispatcher next looks (every 2 ms while frames arrive).

A frame is never held back for a batch that cannot fill. A batch goes when it
is full, when it holds the clip's last frame, when every VapourSynth thread is
already waiting in it (nobody is left to add a frame), or ``wait_s`` after its
first frame arrived. Every request gets exactly one answer: its result or the
error of its batch; when the dispatcher itself fails, every waiting and later
caller gets that error, so nothing hangs.

Nothing here knows VapourSynth or torch: the work is the ``submit`` callable.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

_POLL_S = 0.002  # how often the dispatcher looks at submitted batches while frames arrive


class Handle(Protocol):
    """A submitted batch."""

    def ready(self) -> bool: ...

    def result(self) -> Sequence[Any]:
        """One result per request of the batch, in the batch's order."""
        ...


class Submitted:
    """A batch handed to ``submit``, whose results its callers and the dispatcher may all
    wait for: taken from the handle once and kept (or the error, raised to each)."""

    def __init__(self, handle: Handle | None, error: BaseException | None = None) -> None:
        self._handle = handle
        self._error = error
        self._results: Sequence[Any] | None = None
        self._lock = threading.Lock()

    def ready(self) -> bool:
        return self._handle is None or self._results is not None or self._handle.ready()

    def results(self) -> Sequence[Any]:
        with self._lock:
            if self._results is None and self._error is None:
                assert self._handle is not None
                try:
                    self._results = self._handle.result()
                except BaseException as exc:  # the batch's callers raise it
                    self._error = exc
        if self._error is not None:
            raise self._error
        assert self._results is not None
        return self._results


@dataclass(eq=False)
class Request:
    """One frame a VapourSynth thread waits for: first for its batch to be submitted
    (``done``), then for the batch's results."""

    index: int
    item: Any
    key: Hashable  # only requests with equal keys share a batch
    done: threading.Event = field(default_factory=threading.Event)
    batch: Submitted | None = None
    position: int = 0  # in the batch
    error: BaseException | None = None

    def hand(self, batch: Submitted, position: int) -> None:
        self.batch, self.position = batch, position
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


Submit = Callable[[list[Request]], Handle]


class Gatherer:
    """Batches requests for ``submit``; see the module's docstring.

    ``threads``: how many threads may be calling at once (VapourSynth's
    ``core.num_threads``); ``last_index``: the clip's last frame;
    ``on_close``: run by the dispatcher when it ends (closes the engine).
    """

    def __init__(self, submit: Submit, *, batch_size: int, in_flight: int, threads: int,
                 last_index: int, wait_s: float = 0.005,
                 on_close: Callable[[], None] | None = None) -> None:
        self._submit = submit
        self.batch_size = batch_size
        self.in_flight = max(1, in_flight)
        self.threads = max(1, threads)
        self.last_index = last_index
        self.wait_s = wait_s
        self._on_close = on_close
        self._queue: deque[Request] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._fatal: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- the callers' side --------------------------------------------------------------

    def request(self, index: int, item: Any, key: Hashable = None) -> Any:
        """Hand in frame ``index`` and wait for its result (re-raises its batch's error)."""
        req = Request(index, item, key)
        with self._cond:
            if self._fatal is not None:
                raise self._fatal
            if self._closing:
                raise RuntimeError("vsvidsr: the filter was closed")
            self._queue.append(req)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="vsvidsr-dispatch",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()
        while not req.done.wait(0.5):
            thread = self._thread
            if thread is not None and not thread.is_alive() and not req.done.is_set():
                # The dispatcher is gone without answering: never wait forever.
                raise self._fatal or RuntimeError("vsvidsr: the dispatcher stopped")
        if req.error is not None:
            raise req.error
        assert req.batch is not None
        return req.batch.results()[req.position]

    def close(self) -> None:
        """Finish what was submitted, then end the dispatcher (which runs ``on_close``).
        Returns at once; safe to call twice."""
        with self._cond:
            self._closing = True
            started = self._thread is not None
            self._cond.notify_all()
        if not started and self._on_close is not None:
            self._on_close()

    # -- the dispatcher -------------------------------------------------------------------

    def _run(self) -> None:
        outstanding: deque[Submitted] = deque()
        try:
            while True:
                while outstanding and outstanding[0].ready():
                    _settle(outstanding.popleft())
                if len(outstanding) >= self.in_flight:
                    _settle(outstanding.popleft())  # waits for the oldest
                    continue
                if not self._submit_next(outstanding):
                    if not outstanding and self._closing_and_empty():
                        return
        except BaseException as exc:
            with self._cond:
                self._fatal = exc
                waiting = list(self._queue)
                self._queue.clear()
            for req in waiting:
                req.fail(exc)
            raise
        finally:
            # Every batch is finished before the engine closes: its callers may not have
            # taken their results yet.
            for submitted in outstanding:
                _settle(submitted)
            if self._on_close is not None:
                self._on_close()

    def _submit_next(self, outstanding: deque[Submitted]) -> bool:
        """Gather the next batch and submit it; False if there was none. (A method of its
        own: a batch left in the dispatcher's locals while it waits would keep its frames,
        its error's traceback and through them the filter alive.)"""
        batch = self._gather(block=not outstanding)
        if batch is None:
            return False
        try:
            submitted = Submitted(self._submit(batch))
        except BaseException as exc:  # raised to the batch's callers, not lost
            submitted = Submitted(None, exc)
        for position, req in enumerate(batch):
            req.hand(submitted, position)
        outstanding.append(submitted)
        return True

    def _closing_and_empty(self) -> bool:
        with self._cond:
            return self._closing and not self._queue

    def _gather(self, *, block: bool) -> list[Request] | None:
        """The next batch, or None: nothing came within a poll (``block`` False) or the
        gatherer is closing with nothing queued."""
        with self._cond:
            if block:
                while not self._queue and not self._closing:
                    self._cond.wait()
            elif not self._queue:
                self._cond.wait(_POLL_S)
            if not self._queue:
                return None
            key = self._queue[0].key
            deadline = None
            while True:
                batch = [r for r in self._queue if r.key == key][: self.batch_size]
                if self._batch_goes(batch):
                    break
                if deadline is None:
                    deadline = _now() + self.wait_s
                left = deadline - _now()
                if left <= 0 or self._closing:
                    break
                self._cond.wait(left)
            for req in batch:
                self._queue.remove(req)
            return batch

    def _batch_goes(self, batch: list[Request]) -> bool:
        return (len(batch) >= self.batch_size
                or any(r.index == self.last_index for r in batch)
                or len(self._queue) >= self.threads)


def _settle(submitted: Submitted) -> None:
    """Wait for ``submitted``'s results and keep them; its callers raise its error."""
    with contextlib.suppress(BaseException):
        submitted.results()


def _now() -> float:
    return time.monotonic()
