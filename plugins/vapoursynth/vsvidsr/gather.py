"""Frame requests from VapourSynth's threads gathered into batches for one engine.

VapourSynth asks for frames from several threads at once, one frame per call.
A :class:`Gatherer` turns those calls into batches: every caller hands in its
frame and waits; one dispatcher thread owns the engine, takes the waiting
frames as a batch, submits it, keeps up to ``in_flight`` batches submitted
(so CPU workers or CUDA slots stay busy) and hands every caller its own result.

A frame is never held back for a batch that cannot fill. A batch goes when it
is full, when it holds the clip's last frame, when every VapourSynth thread is
already waiting in it (nobody is left to add a frame), or ``wait_s`` after its
first frame arrived. Every request gets exactly one answer: its result or the
error of its batch; when the dispatcher itself fails, every waiting and later
caller gets that error, so nothing hangs.

Nothing here knows VapourSynth or torch: the work is the ``submit`` callable.
"""

from __future__ import annotations

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


@dataclass(eq=False)
class Request:
    """One frame a VapourSynth thread waits for."""

    index: int
    item: Any
    key: Hashable  # only requests with equal keys share a batch
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    def answer(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
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
        return req.result

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
        outstanding: deque[tuple[Handle | None, list[Request], BaseException | None]] = deque()
        try:
            while True:
                while outstanding and (outstanding[0][0] is None or outstanding[0][0].ready()):
                    self._deliver(*outstanding.popleft())
                if len(outstanding) >= self.in_flight:
                    self._deliver(*outstanding.popleft())  # waits for the oldest
                    continue
                batch = self._gather(block=not outstanding)
                if batch is None:
                    if not outstanding and self._closing_and_empty():
                        return
                    continue
                try:
                    outstanding.append((self._submit(batch), batch, None))
                except BaseException as exc:  # answered to the batch's callers, not lost
                    outstanding.append((None, batch, exc))
        except BaseException as exc:
            with self._cond:
                self._fatal = exc
                waiting = list(self._queue)
                self._queue.clear()
            for _, batch, _ in outstanding:
                waiting += batch
            for req in waiting:
                req.answer(error=exc)
            raise
        finally:
            if self._on_close is not None:
                self._on_close()

    def _closing_and_empty(self) -> bool:
        with self._cond:
            return self._closing and not self._queue

    def _deliver(self, handle: Handle | None, batch: list[Request],
                 error: BaseException | None) -> None:
        if error is None and handle is not None:
            try:
                results = handle.result()
            except BaseException as exc:  # the batch's callers raise it
                error = exc
            else:
                for req, result in zip(batch, results, strict=True):
                    req.answer(result)
                return
        for req in batch:
            req.answer(error=error)

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


def _now() -> float:
    return time.monotonic()
