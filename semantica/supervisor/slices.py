"""Long work on the event loop, cut into slices with other tasks run in between.

The supervisor is one trio thread: a request that computes for a second holds
up every other client and every worker for that second. Work over many items
(the jobs of a big enqueue, the ids of a big wait) goes through :class:`Pace`,
which sizes each slice from the time per item of the slice before, so that a
slice takes about :data:`SLICE_S`, and lets the other tasks run between two
slices. A small request is one slice and costs no extra checkpoint.

Usage::

    pace = Pace(len(items))
    for start, stop in pace:
        work(items[start:stop])
        await pace.rest()
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import trio

#: The time one slice aims at. Other tasks wait at most about this long for one,
#: and several times less than the ~100 ms a person notices.
SLICE_S = 0.01
#: The first slice, before any time per item is known: small enough for any item.
FIRST_SLICE = 64
#: No slice is larger, however cheap its items.
MAX_SLICE = 1 << 16


class Pace:
    """Cuts ``range(total)`` into slices of about ``budget_s`` of work each."""

    def __init__(self, total: int, budget_s: float = SLICE_S, first: int = FIRST_SLICE) -> None:
        self.total = total
        self.budget_s = budget_s
        self._size = max(1, first)
        self._began = 0.0
        self._items = 0
        self._stop = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        start = 0
        while start < self.total:
            stop = min(self.total, start + self._size)
            self._began, self._items, self._stop = time.perf_counter(), stop - start, stop
            yield start, stop
            start = stop

    async def rest(self) -> None:
        """After a slice's work: size the next one by this one's time, and let others run.

        After the last slice it returns at once (no checkpoint: the caller's
        reply or commit wait follows).
        """
        spent = time.perf_counter() - self._began
        if spent > 0:
            self._size = max(1, min(MAX_SLICE, int(self._items * self.budget_s / spent)))
        else:
            self._size = MAX_SLICE
        if self._stop < self.total:
            await trio.lowlevel.checkpoint()
