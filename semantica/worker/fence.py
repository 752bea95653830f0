"""The worker's own fence: a job runs only while its supervisor says its lease holds.

On a shared store a node's supervisor kills its running jobs once it cannot
renew its heartbeat (supervisor/cluster.py), so that when other nodes run
those jobs again no copy is left running. That needs the supervisor to run.
If it is frozen alone (SIGSTOP, a debugger) while its workers run on, it
cannot; so the workers keep the promise themselves: a job handed over with
``RunJob.lease_for`` runs only while the supervisor renews it (``Renew``) in
time. Past the deadline, :class:`Fence` kills everything the worker started and
ends the worker at once (exit status :data:`EXIT_FENCED`): a handler stuck in
C code or ignoring cancellation is stopped as surely as any other.

A thread of its own watches the deadline, so a job that blocks the worker's
event loop cannot hold the fence off. An idle worker is never fenced: with
no job there is nothing to stop, and the next job re-arms it.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable

#: How a fenced worker exits (the supervisor, when it runs again, finds it dead).
EXIT_FENCED = 75


class Fence:
    """Kill the job and exit once the lease's deadline passes without a renewal.

    Args:
        busy: whether a job runs or waits to (checked at the deadline).
        end_all: kill every process below the worker (blocks until done).
        exit: end the process with a status (``os._exit``; tests pass their own).
    """

    def __init__(
        self,
        busy: Callable[[], bool],
        end_all: Callable[[], object],
        exit: Callable[[int], object] = os._exit,
    ) -> None:
        self._busy = busy
        self._end_all = end_all
        self._exit = exit
        self._deadline = math.inf
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def hold_until(self, seconds: float) -> None:
        """The leases hold ``seconds`` more from now (a job handed over, or a renewal)."""
        with self._changed:
            self._deadline = time.monotonic() + seconds
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="fence", daemon=True)
                self._thread.start()
            self._changed.notify()

    def _watch(self) -> None:
        with self._changed:
            while True:
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._changed.wait(None if left == math.inf else left)
                    continue
                if self._busy():
                    break
                self._deadline = math.inf  # idle: nothing to stop until the next job
        print(
            f"semantica worker {os.getpid()}: the supervisor did not renew this job's lease "
            "in time (it may have run again elsewhere); killing the job and exiting",
            file=sys.stderr,
            flush=True,
        )
        self._end_all()
        self._exit(EXIT_FENCED)
