"""The supervisor's pub/sub hub: who waits for a job, who follows its log, who watches events.

* ``finished(job_id)``: a trio.Event set when the job reaches a finished state
  (``wait`` and ``cancel`` use it).
* ``follow(job_id)``: a bounded queue of the job's new log lines, ended by
  :data:`FINISHED` when the job finishes (``semctl tail ID``).
* ``watch()``: a bounded queue of every :class:`JobEvent` (``semctl tail``).

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


class JobEvents:
    """Everything the supervisor announces about jobs, to whoever listens."""

    def __init__(self) -> None:
        self._finished: dict[int, trio.Event] = {}
        self._followers: dict[int, set[Subscription]] = {}
        self._watchers: set[Subscription] = set()

    def finished(self, job_id: int) -> trio.Event:
        """The event set when ``job_id`` reaches a finished state."""
        event = self._finished.get(job_id)
        if event is None:
            event = self._finished[job_id] = trio.Event()
        return event

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

    @property
    def watched(self) -> bool:
        """Whether anyone watches job events (building one costs a little)."""
        return bool(self._watchers)

    def publish(self, event: JobEvent) -> None:
        for sub in self._watchers:
            sub.offer(event)

    def job_finished(self, job_id: int) -> None:
        """Wake everyone waiting for ``job_id`` and end its log followers."""
        event = self._finished.pop(job_id, None)
        if event is not None:
            event.set()
        for sub in self._followers.pop(job_id, ()):
            sub.offer(FINISHED)
            sub.close()
