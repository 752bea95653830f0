"""The one long-lived thread a worker runs its plain (``def``) handlers in.

A plain handler may block, so it never runs on the event loop. The worker
hands each run of plain jobs (see ``Worker._run_blocking``) to this thread,
started on the first plain job and kept for the worker's life, parked on a
lock between runs. Waking it costs one thread wake-up; ``trio.to_thread``
costs about three times as much here (a capacity limiter, the thread cache's
hand-off, an outcome, and a report back through the loop), and that is on
the path of every job that starts on an idle worker.

Promises: one run at a time, in the order given (the caller starts a run
only once the one before has told it, through the callback that follows
each run, that it ended); what a run raises (a bug of the worker's: handlers' own errors are
caught inside it) is kept in :attr:`HandlerThread.error` for the event loop
to raise. The thread is a daemon and never joined: a handler that ignores
its stop holds it, and the worker exits without waiting for it (the stuck
job is reported first; see ``Worker._run_blocking``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class HandlerThread:
    """Runs the work it is given, one run at a time, in a thread of its own."""

    def __init__(self) -> None:
        self._go = threading.Lock()
        self._go.acquire()  # released once per run: the thread takes it to start the run
        self._work: tuple[Callable[[], None], Callable[[], None]] | None = None
        self._thread: threading.Thread | None = None
        #: What a run raised, for the event loop to raise (None: nothing).
        self.error: BaseException | None = None

    def start(self, work: Callable[[], None], then: Callable[[], None]) -> None:
        """Run ``work`` in the thread, then ``then`` (there too, once :attr:`error` says
        what ``work`` raised, if anything); returns at once. The run before must have
        ended."""
        self._work = work, then
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._serve, name="semantica-handler", daemon=True
            )
            self._thread.start()
        self._go.release()

    def _serve(self) -> None:
        while True:
            self._go.acquire()
            run, self._work = self._work, None
            if run is None:  # pragma: no cover - start() always gives one
                continue
            work, then = run
            try:
                work()
            except BaseException as exc:  # noqa: BLE001  # a bug of ours: the loop raises it
                self.error = exc
            then()
