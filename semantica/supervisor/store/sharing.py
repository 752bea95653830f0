"""What a store shared by several nodes offers beyond the jobs: news of what the
other nodes changed (:class:`ChangeFeed`), and job logs every node can read
(:class:`LogBook`).

A single-writer store (SQLite) has neither: :meth:`JobStore.changes` and
:meth:`JobStore.log_book` return None there, and the supervisor keeps what it
needs itself (its own wake-ups, log files).
"""

from __future__ import annotations

from typing import Protocol


class ChangeFeed(Protocol):
    """What other nodes changed in a shared store, for wake-ups (:meth:`JobStore.changes`)."""

    def wait(self, timeout: float) -> set[str]:
        """Block (in a thread of the caller's) until changes arrive or ``timeout``
        passes; the kinds seen (``{"jobs", "queues", "ends", "stops", "schedules"}``; empty on
        timeout).
        Raises StoreUnavailable when its connection is lost: the caller then treats it
        as 'everything changed' and calls wait again, which reconnects."""
        ...

    def close(self) -> None:
        """Let go of the feed's connection."""
        ...


class LogBook(Protocol):
    """Job logs in the store: lines numbered in the order they were added (numbers
    grow, across jobs), kept with their job and deleted with it.

    Writes join the store's open batch (group commit) like any other; a write that
    fails raises StoreError and added nothing.
    """

    def append_log(self, job_id: int, lines: list[str]) -> None:
        """Add ``lines`` to the end of the job's log."""
        ...

    def read_log(
        self, job_id: int, last: int | None = None, after: int = 0
    ) -> tuple[list[str], int]:
        """The job's lines numbered above ``after`` (0: all), only the ``last`` of them
        if given, oldest first; and the number of the newest line read (``after`` when
        there is none)."""
        ...

    def has_log(self, job_id: int) -> bool:
        """Whether the job's log holds any line."""
        ...

    def trim_log(self, job_id: int, keep_bytes: int) -> None:
        """Drop the job's oldest lines until the rest take at most ``keep_bytes`` (each
        line counts its UTF-8 bytes and a newline); the newest line stays, however long."""
        ...
