"""The gatherer's rules, with real threads: when a batch goes, who gets which answer."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

gather = pytest.importorskip("vsvidsr.gather", reason="vsvidsr is installed by pip install -e .")
Gatherer = gather.Gatherer


class Done:
    """A batch computed at once: each request's item doubled."""

    def __init__(self, batch, fail: BaseException | None = None) -> None:
        self.results = [req.item * 2 for req in batch]
        self.fail = fail

    def ready(self) -> bool:
        return True

    def result(self):
        if self.fail is not None:
            raise self.fail
        return self.results


def recorder(batches: list[list[int]], fail_on: int | None = None,
             submit_error: int | None = None):
    lock = threading.Lock()

    def submit(batch):
        indices = sorted(req.index for req in batch)
        with lock:
            batches.append(indices)
        if submit_error in indices:
            raise ValueError(f"cannot submit frame {submit_error}")
        return Done(batch, RuntimeError("out of luck") if fail_on in indices else None)

    return submit


def ask_all(gatherer, indices, keys=None, last_after_s=0.0):
    """Every index requested at once from its own thread; each answer or error.
    ``last_after_s``: the last index is asked that much later than the others."""
    barrier = threading.Barrier(len(indices))

    def ask(i):
        barrier.wait()
        if i == indices[-1]:
            time.sleep(last_after_s)
        try:
            return gatherer.request(i, i, None if keys is None else keys[i])
        except Exception as exc:  # noqa: BLE001 - the test looks at which error came back
            return exc

    with ThreadPoolExecutor(len(indices)) as pool:
        return list(pool.map(ask, indices))


# Below the 5 s timeout these tests give (plus the 0.2 s the last caller sleeps) by a
# margin that a loaded 2-core machine's scheduling cannot eat.
NO_TIMEOUT_WAITED = 4.0

def test_full_batches_go_at_once_and_every_caller_gets_its_own_result():
    batches: list[list[int]] = []
    g = Gatherer(recorder(batches), batch_size=4, in_flight=2, threads=8, last_index=99,
                 wait_s=5.0)
    started = time.perf_counter()
    assert ask_all(g, list(range(8))) == [2 * i for i in range(8)]
    assert time.perf_counter() - started < NO_TIMEOUT_WAITED  # no batch waited for its timeout
    assert sorted(len(b) for b in batches) == [4, 4]
    assert sorted(i for b in batches for i in b) == list(range(8))
    g.close()


@pytest.mark.parametrize(("threads", "last", "wait_s", "asked"), [
    (8, 2, 5.0, [0, 1, 2]),  # the clip ends: nothing more will come
    (3, 99, 5.0, [5, 6, 7]),  # every thread is already waiting in the batch
    (8, 99, 0.05, [5]),  # nobody else asks: the timeout
])
def test_a_batch_that_cannot_fill_goes_without_waiting_long(threads, last, wait_s, asked):
    # The last frame is asked for 0.2 s after the others, so that they are already waiting
    # in the batch it completes (a last frame asked for first would go alone, at once).
    batches: list[list[int]] = []
    g = Gatherer(recorder(batches), batch_size=8, in_flight=1, threads=threads,
                 last_index=last, wait_s=wait_s)
    started = time.perf_counter()
    assert ask_all(g, asked, last_after_s=0.2) == [2 * i for i in asked]
    assert time.perf_counter() - started < NO_TIMEOUT_WAITED
    assert batches == [asked]
    g.close()


def test_requests_with_different_keys_never_share_a_batch():
    batches: list[list[int]] = []
    g = Gatherer(recorder(batches), batch_size=8, in_flight=2, threads=4, last_index=99,
                 wait_s=0.05)
    keys = {0: "limited", 1: "full", 2: "limited", 3: "full"}
    assert ask_all(g, [0, 1, 2, 3], keys) == [0, 2, 4, 6]
    assert sorted(batches) == [[0, 2], [1, 3]]
    g.close()


def test_a_failing_batch_fails_only_its_callers_and_the_next_ones_run():
    batches: list[list[int]] = []
    g = Gatherer(recorder(batches, fail_on=1, submit_error=6), batch_size=2, in_flight=2,
                 threads=2, last_index=99, wait_s=0.2)
    first = ask_all(g, [0, 1])
    assert [str(e) for e in first] == ["out of luck"] * 2
    assert ask_all(g, [2, 3]) == [4, 6]
    refused = ask_all(g, [6, 7])
    assert [str(e) for e in refused] == ["cannot submit frame 6"] * 2
    assert g.request(8, 8) == 16
    g.close()


def test_close_ends_the_dispatcher_once_and_refuses_later_requests():
    closed: list[bool] = []
    g = Gatherer(recorder([]), batch_size=1, in_flight=1, threads=1, last_index=9,
                 on_close=lambda: closed.append(True))
    assert g.request(0, 21) == 42
    g.close()
    g.close()
    deadline = time.monotonic() + 2.0
    while not closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert closed == [True]
    with pytest.raises(RuntimeError, match="closed"):
        g.request(1, 1)


class Later:
    """A batch that finishes when ``finished`` is set, and never says it is ready (only
    ``result()`` would tell): whoever waits, waits in ``result()``."""

    def __init__(self, batch, finished: threading.Event) -> None:
        self.results = [req.item * 2 for req in batch]
        self.finished = finished

    def ready(self) -> bool:
        return False

    def result(self):
        self.finished.wait()
        return self.results


def test_a_caller_takes_its_result_when_its_batch_finishes_not_when_the_dispatcher_looks():
    finished = threading.Event()
    g = Gatherer(lambda batch: Later(batch, finished), batch_size=1, in_flight=4, threads=4,
                 last_index=99)
    threading.Timer(0.05, finished.set).start()
    answers: list[int] = []
    # The dispatcher, below its in-flight limit, never waits for the batch itself.
    caller = threading.Thread(target=lambda: answers.append(g.request(3, 3)), daemon=True)
    caller.start()
    caller.join(NO_TIMEOUT_WAITED)
    assert answers == [6]
    g.close()
