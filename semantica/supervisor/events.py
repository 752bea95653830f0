"""Job events inside the supervisor: who is waiting for which job to finish.

A waiter asks for :meth:`JobEvents.finished` and awaits it; whatever moves a job
to a finished state calls :meth:`JobEvents.job_finished`. Checking a job's
state and subscribing happen with no checkpoint in between (trio runs one task
at a time), so a finish cannot slip between them.
"""

from __future__ import annotations

import trio


class JobEvents:
    """One :class:`trio.Event` per job somebody waits for, set when the job finishes."""

    def __init__(self) -> None:
        self._finished: dict[int, trio.Event] = {}

    def finished(self, job_id: int) -> trio.Event:
        """The event set when ``job_id`` reaches a finished state."""
        event = self._finished.get(job_id)
        if event is None:
            event = self._finished[job_id] = trio.Event()
        return event

    def job_finished(self, job_id: int) -> None:
        """Wake everyone waiting for ``job_id``."""
        event = self._finished.pop(job_id, None)
        if event is not None:
            event.set()
