"""How many things happened lately (jobs enqueued, finished, failed), for ``semctl top``.

:class:`RecentCounts` answers "how many in the last N seconds" (N up to a minute) in
fixed memory, whatever the rate: one counter per second of the last minute, in a
ring, on trio's clock. A count is exact to the second: "the last 10 s" is the
current second and the nine before it.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

#: The longest window asked about, in seconds.
WINDOW_S = 60


class RecentCounts:
    """Events counted by the second, for the last :data:`WINDOW_S` seconds.

    Args:
        now: the clock, in seconds (trio's by default, so a suspended machine
            does not count its sleep as quiet time).
    """

    def __init__(self, now: Callable[[], float] = trio.current_time) -> None:
        self._now = now
        size = WINDOW_S + 1  # the current, partial second and the full minute before it
        self._counts = [0] * size
        self._seconds = [-1] * size  # which second each slot counts

    def add(self, n: int = 1) -> None:
        second = int(self._now())
        slot = second % len(self._counts)
        if self._seconds[slot] != second:  # a slot of a minute ago: start it again
            self._seconds[slot] = second
            self._counts[slot] = 0
        self._counts[slot] += n

    def within(self, seconds: int) -> int:
        """How many in the last ``seconds`` seconds (this one included), at most a minute."""
        now = int(self._now())
        since = now - min(seconds, WINDOW_S) + 1
        return sum(
            count
            for second, count in zip(self._seconds, self._counts, strict=True)
            if since <= second <= now
        )
