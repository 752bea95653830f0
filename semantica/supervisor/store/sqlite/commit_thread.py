"""The one long-lived thread the SQLite store commits its batches in.

What it owns: running a batch's ``COMMIT`` (the fsync, some 0.3 ms to several
ms at ``synchronous=FULL``) away from the event loop, so that the supervisor
goes on reading, decoding and answering while the disk works. Started on the
first commit and kept for the store's life, parked on a lock between commits:
waking it costs one thread wake-up, where ``trio.to_thread`` per commit costs
about three times as much (a capacity limiter, the thread cache's hand-off, an
outcome and a report back through the loop).

What it promises: one commit at a time, in the order given (the store starts
one only once the one before has ended: :meth:`CommitThread.start` is called
with the connection closed to everything else, see
``SQLiteConnection.commit_in_thread``); ``work`` never raises out of the
thread: it reports its own outcome. The thread is a daemon and never joined;
the store waits for the commit under way before it closes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class CommitThread:
    """Runs one piece of work at a time in a thread of its own."""

    def __init__(self) -> None:
        self._go = threading.Lock()
        self._go.acquire()  # released once per commit: the thread takes it to start
        self._work: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None

    def start(self, work: Callable[[], None]) -> None:
        """Run ``work`` in the thread; return at once. The work before must have ended."""
        self._work = work
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._serve, name="semantica-commit", daemon=True
            )
            self._thread.start()
        self._go.release()

    def _serve(self) -> None:
        while True:
            self._go.acquire()
            work, self._work = self._work, None
            if work is not None:
                work()
