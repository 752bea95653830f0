"""Retrying a store call that fails: the one loop every writer and reader of the supervisor uses.

The store runs on the event loop and fails fast: a full disk or an I/O error
(``StoreError``, ``StoreFull``), another process's write lock (``StoreBusy``,
after a wait of a few milliseconds: ``JobStore.fail_fast_when_busy``).
Whoever meets such an error and must get through waits *off* the loop and
tries again, so every other task runs meanwhile. :func:`retry_store` is that
wait, and :class:`Backoff` the delays between the tries; each caller says:

* which errors are worth another try (others pass through at once);
* the delays: the first, then twice the last, at most a maximum (a
  :class:`Backoff`, which a caller may keep across calls, as the scheduler
  does, so that the delay goes on growing while the fault lasts);
* when to give up: after a number of tries, or when the next try would come
  at or after a deadline (trio time); the last error is then raised, and
  nothing more is tried;
* an optional ``before_each`` await before every try (the maintenance gate:
  no write while a VACUUM holds the store);
* how to wait out a delay (a plain sleep by default; the scheduler also stops
  waiting when it is woken);
* the log line of each retry, if it has one (``on_retry``).

It promises one try at a time, ``before_each`` before each, and a wait of
exactly the backoff's next delay between two (no jitter: the store is local,
and the supervisor is its only writer on the loop).

Cancellation: safe. The helper holds nothing of its own: a cancel during
``before_each`` or a wait ends it with nothing more tried, and one inside the
attempt is the attempt's to handle (a write that waits for its commit may
still be committed after it).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from semantica.errors import StoreError

T = TypeVar("T")


class Backoff:
    """Delays between tries: ``first``, then twice the last one, at most ``most``.

    ``Backoff(d, d)`` waits ``d`` every time. :meth:`reset` starts over from
    ``first`` (the store took a write again).
    """

    def __init__(self, first: float, most: float) -> None:
        self.first = first
        self.most = most
        self._delay = 0.0  # the last delay handed out; 0: none yet

    def next(self) -> float:
        """The delay before the next try (and the one after it doubles)."""
        self._delay = min(max(self._delay * 2, self.first), self.most)
        return self._delay

    def reset(self) -> None:
        self._delay = 0.0


async def retry_store(
    attempt: Callable[[], Awaitable[T]],
    delays: Backoff,
    *,
    errors: tuple[type[StoreError], ...] = (StoreError,),
    tries: float = math.inf,
    deadline: float = math.inf,
    before_each: Callable[[], Awaitable[None]] | None = None,
    wait: Callable[[float], Awaitable[None]] = trio.sleep,
    on_retry: Callable[[StoreError, float], None] | None = None,
) -> T:
    """Await ``attempt`` until it returns; between tries that fail with one of ``errors``,
    wait the next delay of ``delays``.

    Before each try, ``before_each`` is awaited. After a failure the next delay
    is taken; if that was the ``tries``-th failure, or the next try would come
    at or after ``deadline`` (trio time), the error is raised as it is, with
    neither log nor wait. Otherwise ``on_retry(error, delay)`` is called (to log
    the retry) and ``wait(delay)`` awaited. Errors not in ``errors`` pass
    through at once.

    Raises:
        StoreError: the last failure, once ``tries`` or ``deadline`` is reached.

    Cancellation: safe; see the module docstring.
    """
    failures = 0
    while True:
        if before_each is not None:
            await before_each()
        try:
            return await attempt()
        except errors as exc:
            failures += 1
            delay = delays.next()
            if failures >= tries or trio.current_time() + delay >= deadline:
                raise
            if on_retry is not None:
                on_retry(exc, delay)
        await wait(delay)
