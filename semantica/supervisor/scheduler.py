"""Deciding when a worker gets a job: event driven, with a timer only for real deadlines.

Idle workers wait in :meth:`Scheduler.next_lease`. Anything that may make a
job runnable (an enqueue, a retry, a job ending) calls :meth:`wake`; the
timer task sleeps until the earliest future ``run_after`` and wakes them then.
Nothing polls.
"""

from __future__ import annotations

import trio

from semantica.supervisor.store import Lease, SQLiteStore


class Scheduler:
    """Hands queued jobs to idle workers, and stops doing so when draining."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.draining = False
        self._changed = trio.Event()

    def wake(self) -> None:
        """Something changed: idle workers and the timer look again."""
        self._changed.set()
        self._changed = trio.Event()

    def stop_leasing(self) -> None:
        """From now on no job starts (a drain)."""
        self.draining = True
        self.wake()

    async def next_lease(self, worker_pid: int) -> Lease:
        """Wait until a job can start on this worker and lease it.

        Cancellation: safe; no job is leased unless this returns. While
        draining it never returns.
        """
        while True:
            changed = self._changed
            if self.draining:
                await trio.sleep_forever()
            lease = self.store.lease(worker_pid)
            if lease is not None:
                return lease
            await changed.wait()

    async def run_timer(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Wake the workers when the earliest delayed or backed-off job comes due."""
        task_status.started()
        while True:
            changed = self._changed
            due = self.store.next_run_after()
            if due is None:
                await changed.wait()
                continue
            with trio.move_on_after(max(due - self.store.clock.time(), 0.0)) as timer:
                await changed.wait()
            if timer.cancelled_caught:
                self.wake()
