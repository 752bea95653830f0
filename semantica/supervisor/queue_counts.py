"""Each queue's counts for ``top``: the live ones exact, the finished ones a few seconds old.

``top`` is asked once a second by ``semctl top`` and by every dashboard of the
web view, and shows each queue's jobs by state. Counting them all reads an
index entry of every job in the store (about 10 ms at 100,000 jobs), and all
but the queued and running ones are finished, whose counts change only as
jobs end. So :class:`QueueCounts` reads the QUEUED and RUNNING counts anew on
every call (``store.queues(finished=False)``: the entries of those jobs alone)
and the finished counts (DONE, FAILED, CANCELLED, SUPERSEDED) at most once
every :data:`FINISHED_EVERY_S` seconds, on the call that finds them older; in
between, a queue shows the finished counts of that read (a queue new since
shows none). ``semctl queues`` reads every count each time; top's own
``finished_10s`` / ``failed_10s`` figures are exact.

It never fails on its own: a store error of a read goes to the caller (the
request fails as it did before), and the next call reads again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from semantica.models import JobState, QueueInfo
from semantica.supervisor.store import StoreReads

#: The oldest a queue's finished counts in ``top`` may be, in seconds.
FINISHED_EVERY_S = 10.0

_FINISHED = tuple(
    state.value for state in JobState if state not in (JobState.QUEUED, JobState.RUNNING)
)


class QueueCounts:
    """The queues as ``top`` shows them (see the module's docstring)."""

    def __init__(
        self, every: float = FINISHED_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._every = every
        self._clock = clock
        #: Each queue's finished counts at the last full read, and when that was.
        self._finished: dict[str, dict[str, int]] = {}
        self._read_at: float | None = None

    def read(self, store: StoreReads) -> list[QueueInfo]:
        """Every queue, by name, with its counts by state (every state listed)."""
        now = self._clock()
        if self._read_at is None or not 0 <= now - self._read_at < self._every:
            queues = store.queues()
            self._finished = {q.name: {s: q.counts.get(s, 0) for s in _FINISHED} for q in queues}
            self._read_at = now
            return queues
        queues = store.queues(finished=False)
        for queue in queues:
            finished = self._finished.get(queue.name, {})
            queue.counts = {
                state.value: queue.counts.get(state.value, finished.get(state.value, 0))
                for state in JobState
            }
        return queues
