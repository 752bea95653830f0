"""The supervisor's pub/sub hub: who waits for a job, who follows its log, who watches events.

* ``all_finished(job_ids)``: a trio.Event set once every one of the jobs has
  reached a finished state (``wait`` uses it). One event for the lot: a wait
  for 10,000 jobs costs a counter step per job, not a task wake-up.
* ``follow(job_id)``: a bounded queue of the job's new log lines, ended by
  :data:`FINISHED` when the job finishes (``semctl tail ID``).
* ``watch()``: a bounded queue of every :class:`JobEvent` (``semctl tail``).
* ``tick()``: a :class:`Ticker`, woken by any job event and counting them, without
  a queue: a live view asks "did anything change?" at a cost per event of a
  counter step, whatever the rate (the web view's pages).

Publishing never blocks: a reader whose queue is full is dropped (its queue is
closed and marked ``dropped``), so a slow reader cannot slow the supervisor.
Checking a job's state and subscribing happen with no checkpoint in between
(trio runs one task at a time), so nothing can slip between them.
"""

from __future__ import annotations

from typing import Any, Final

import trio

from semantica.protocol import JobEvent

#: Sent to a log follower after the job's last lines.
FINISHED: Final = object()

#: How many items a reader may fall behind before it is dropped.
FOLLOW_BUFFER = 1_000
WATCH_BUFFER = 10_000


class Subscription:
    """One reader's bounded queue."""

    def __init__(self, size: int) -> None:
        self.send, self.receive = trio.open_memory_channel[Any](size)
        self.dropped = False

    def offer(self, item: object) -> None:
        """Queue ``item`` without waiting; a full queue drops the reader."""
        if self.dropped:
            return
        try:
            self.send.send_nowait(item)
        except trio.WouldBlock:
            self.dropped = True
            self.send.close()
        except trio.ClosedResourceError:
            pass

    def close(self) -> None:
        self.send.close()


class Ticker:
    """Woken by every job event; ``seq`` counts them."""

    __slots__ = ("seq", "woken")

    def __init__(self) -> None:
        self.seq = 0
        self.woken = trio.Event()

    def rearm(self) -> None:
        """Wait for the next event from now on (``woken`` is a new, unset event)."""
        if self.woken.is_set():
            self.woken = trio.Event()


class _Countdown:
    """An event set after ``left`` of the jobs it waits for have finished."""

    __slots__ = ("event", "left")

    def __init__(self, left: int) -> None:
        self.left = left
        self.event = trio.Event()

    def step(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.event.set()


class JobEvents:
    """Everything the supervisor announces about jobs, to whoever listens."""

    def __init__(self) -> None:
        self._finished: dict[int, list[_Countdown]] = {}
        self._followers: dict[int, set[Subscription]] = {}
        self._watchers: set[Subscription] = set()
        self._tickers: set[Ticker] = set()

    def all_finished(self, job_ids: set[int]) -> trio.Event:
        """The event set once every job of ``job_ids`` has reached a finished state.

        The caller has just read that none of them is finished, with no
        checkpoint since: each of them is still to come.
        """
        countdown = _Countdown(len(job_ids))
        if not job_ids:
            countdown.event.set()
        for job_id in job_ids:
            self._finished.setdefault(job_id, []).append(countdown)
        return countdown.event

    def follow(self, job_id: int) -> Subscription:
        """Subscribe to the job's new log lines (lists of lines), then FINISHED."""
        sub = Subscription(FOLLOW_BUFFER)
        self._followers.setdefault(job_id, set()).add(sub)
        return sub

    def unfollow(self, job_id: int, sub: Subscription) -> None:
        followers = self._followers.get(job_id)
        if followers is not None:
            followers.discard(sub)
            if not followers:
                del self._followers[job_id]
        sub.close()

    def log_lines(self, job_id: int, lines: list[str]) -> None:
        """Lines were appended to the job's log."""
        for sub in self._followers.get(job_id, ()):
            sub.offer(lines)

    def watch(self) -> Subscription:
        """Subscribe to every job event."""
        sub = Subscription(WATCH_BUFFER)
        self._watchers.add(sub)
        return sub

    def unwatch(self, sub: Subscription) -> None:
        self._watchers.discard(sub)
        sub.close()

    def tick(self) -> Ticker:
        """Be woken by every job event (and count them)."""
        ticker = Ticker()
        self._tickers.add(ticker)
        return ticker

    def untick(self, ticker: Ticker) -> None:
        """Stop waking ``ticker``."""
        self._tickers.discard(ticker)

    def touch(self) -> None:
        """Jobs changed where no event is published here (on another node of a shared
        store): wake the tickers, as an event would."""
        for ticker in self._tickers:
            ticker.seq += 1
            ticker.woken.set()

    @property
    def watched(self) -> bool:
        """Whether anyone watches job events (building one costs a little)."""
        return bool(self._watchers or self._tickers)

    def publish(self, event: JobEvent) -> None:
        for sub in self._watchers:
            sub.offer(event)
        for ticker in self._tickers:
            ticker.seq += 1
            ticker.woken.set()

    def pending(self) -> set[int]:
        """The jobs someone waits for or follows (to look at when jobs may have finished
        where this supervisor did not see it: on another node)."""
        return set(self._finished) | set(self._followers)

    def job_finished(self, job_id: int) -> None:
        """Wake everyone waiting for ``job_id`` and end its log followers."""
        for countdown in self._finished.pop(job_id, ()):
            countdown.step()
        for sub in self._followers.pop(job_id, ()):
            sub.offer(FINISHED)
            sub.close()
