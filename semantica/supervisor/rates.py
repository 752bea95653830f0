"""How many things happened lately (jobs enqueued, finished, failed), for ``semctl top``
and the web view's chart.

:class:`RecentCounts` answers "how many in the last N seconds" (N up to a minute) in
fixed memory, whatever the rate: one counter per second of the last minute, in a
ring, on trio's clock. A count is exact to the second: "the last 10 s" is the
current second and the nine before it.

It also counts by the minute for the last hour (:meth:`RecentCounts.per_minute`),
in a second ring of one counter per minute: a chart of throughput needs every
minute of the hour, quiet ones as zeros. Those minutes are wall-clock minutes
(UTC, starting on the minute), so that a chart can label them and a laptop's
sleep shows as the quiet it was; a clock set back leaves the minutes "in the
future" out until it catches up, and never mixes two minutes in one counter.

The counts are this process's: on a PostgreSQL store shared by several nodes,
each node counts the jobs it enqueued, ran and ended, not the others'.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

#: The longest window asked about, in seconds.
WINDOW_S = 60
#: Minutes counted by :meth:`RecentCounts.per_minute`: an hour, the current one last.
HOUR_MINUTES = 60


class RecentCounts:
    """Events counted by the second, for the last :data:`WINDOW_S` seconds, and by the
    minute, for the last :data:`HOUR_MINUTES` minutes.

    Args:
        now: the clock of the seconds, in seconds (trio's by default, so a suspended
            machine does not count its sleep as quiet time).
        wall: the clock of the minutes, Unix epoch seconds (the system's by default).
    """

    def __init__(
        self,
        now: Callable[[], float] = trio.current_time,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._now = now
        self._wall = wall
        size = WINDOW_S + 1  # the current, partial second and the full minute before it
        self._counts = [0] * size
        self._seconds = [-1] * size  # which second each slot counts
        self._by_minute = [0] * HOUR_MINUTES
        self._minutes = [-1] * HOUR_MINUTES  # which minute (since the epoch) each slot counts

    def add(self, n: int = 1) -> None:
        second = int(self._now())
        slot = second % len(self._counts)
        if self._seconds[slot] != second:  # a slot of a minute ago: start it again
            self._seconds[slot] = second
            self._counts[slot] = 0
        self._counts[slot] += n
        minute = int(self._wall() // 60)
        slot = minute % HOUR_MINUTES
        if self._minutes[slot] != minute:  # a slot of an hour ago: start it again
            self._minutes[slot] = minute
            self._by_minute[slot] = 0
        self._by_minute[slot] += n

    def within(self, seconds: int) -> int:
        """How many in the last ``seconds`` seconds (this one included), at most a minute."""
        now = int(self._now())
        since = now - min(seconds, WINDOW_S) + 1
        return sum(
            count
            for second, count in zip(self._seconds, self._counts, strict=True)
            if since <= second <= now
        )

    def per_minute(self, minute: int) -> list[int]:
        """How many in each of the :data:`HOUR_MINUTES` minutes up to ``minute`` (minutes
        since the Unix epoch, :func:`this_minute`), oldest first; ``minute`` is the last.

        Several counters asked with the same ``minute`` give lists of the same minutes.
        """
        counts = []
        for m in range(minute - HOUR_MINUTES + 1, minute + 1):
            slot = m % HOUR_MINUTES
            counts.append(self._by_minute[slot] if self._minutes[slot] == m else 0)
        return counts


def this_minute(wall: Callable[[], float] = time.time) -> int:
    """The current minute, counted since the Unix epoch (for :meth:`RecentCounts.per_minute`)."""
    return int(wall() // 60)
