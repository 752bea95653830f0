"""top's queue counts: QUEUED and RUNNING read on every call, the finished ones at most
every few seconds (supervisor/queue_counts.py)."""

from __future__ import annotations

from typing import Any, cast

from semantica.models import JobState, QueueInfo
from semantica.supervisor.queue_counts import QueueCounts
from semantica.supervisor.store import StoreReads

ZERO = {state.value: 0 for state in JobState}


class _Store:
    """queues() as a store answers it, from counts the test sets; what it was asked."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}
        self.asked: list[bool] = []

    def queues(self, finished: bool = True) -> list[QueueInfo]:
        self.asked.append(finished)
        keep = list(ZERO) if finished else ["QUEUED", "RUNNING"]
        return [
            QueueInfo(name=name, counts={s: counts.get(s, 0) for s in keep})
            for name, counts in sorted(self.counts.items())
        ]


def _reads(store: _Store) -> StoreReads:
    return cast(StoreReads, store)


def test_finished_counts_are_read_again_only_after_their_time() -> None:
    """The first call reads every count; the next ones, within the time, the live ones
    only, with the finished ones of that read; after it, every count again."""
    now = [100.0]
    counts = QueueCounts(every=10.0, clock=lambda: now[0])
    store = _Store()
    store.counts = {"mail": {"QUEUED": 2, "DONE": 5, "FAILED": 1}}
    first = counts.read(_reads(store))
    assert first == [QueueInfo(name="mail", counts=ZERO | {"QUEUED": 2, "DONE": 5, "FAILED": 1})]
    store.counts = {
        "mail": {"QUEUED": 1, "RUNNING": 1, "DONE": 6, "FAILED": 1},
        "new": {"QUEUED": 3, "DONE": 1},
    }
    now[0] = 109.9
    assert counts.read(_reads(store)) == [
        QueueInfo(name="mail", counts=ZERO | {"QUEUED": 1, "RUNNING": 1, "DONE": 5, "FAILED": 1}),
        QueueInfo(name="new", counts=ZERO | {"QUEUED": 3}),
    ]
    now[0] = 110.0
    assert counts.read(_reads(store)) == [
        QueueInfo(name="mail", counts=ZERO | {"QUEUED": 1, "RUNNING": 1, "DONE": 6, "FAILED": 1}),
        QueueInfo(name="new", counts=ZERO | {"QUEUED": 3, "DONE": 1}),
    ]
    assert store.asked == [True, False, True]


def test_counts_list_every_state_in_order() -> None:
    """A queue's counts hold every state, in the states' order, as queues() gives them."""
    counts = QueueCounts(clock=lambda: 0.0)
    store = _Store()
    store.counts = {"q": {"FAILED": 1}}
    counts.read(_reads(store))
    [queue] = counts.read(_reads(store))
    assert list(queue.counts) == [state.value for state in JobState]


def test_a_clock_that_goes_back_reads_every_count() -> None:
    """A time before the last full read (it cannot happen with a monotonic clock, but a
    wrong answer must not last): every count is read again."""
    now = [50.0]
    counts = QueueCounts(every=10.0, clock=lambda: now[0])
    store = _Store()
    counts.read(_reads(store))
    now[0] = 40.0
    counts.read(_reads(store))
    assert store.asked == [True, True]


def test_a_store_error_is_the_callers_and_the_next_call_reads_again() -> None:
    """A read that fails changes nothing: the next call reads every count."""
    counts = QueueCounts(clock=lambda: 0.0)
    broken: Any = _Store()

    def fail(finished: bool = True) -> list[QueueInfo]:
        raise RuntimeError("store down")

    broken.queues = fail
    try:
        counts.read(_reads(broken))
    except RuntimeError:
        pass
    store = _Store()
    counts.read(_reads(store))
    assert store.asked == [True]
