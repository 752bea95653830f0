"""Settling how a job ended, in the store, whatever became of its worker and however the
store fails.

A reported end is recorded as the worker reported it
(:func:`how_it_ended`): if the drain stopped the worker and the job did not
end DONE, it was interrupted (back to the queue, attempt not spent), unless
the supervisor had asked it to stop. The job a worker that is gone was
running ends as the supervisor asked, if it asked it to stop (a cancel, a
timeout: it was killed for not stopping in time); as interrupted, if the
drain stopped that worker; otherwise as lost with its worker
(:meth:`Settling._settle_orphan`). Jobs it held and never started go back to
the queue, attempt not spent.

:func:`settle` runs such a write until it is durable, backing off while the
store fails (store_retry.py). The reaper of a dead worker waits
``REAP_STORE_TRIES`` tries; then the slot spawns a replacement and the write
goes on in the background (:meth:`Settling._settle_dead`), so the job does
not stay RUNNING once the fault clears. Writing one end twice is harmless:
the second is refused as stale (the store fences each end on its lease id).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import structlog
import trio

from semantica.errors import StoreError
from semantica.models import ErrorKind, JobError
from semantica.protocol import JobFinished
from semantica.supervisor.pool.base import PoolBase, nothing_to_wait_for
from semantica.supervisor.pool.handle import WorkerHandle
from semantica.supervisor.store import Lease
from semantica.supervisor.store_retry import Backoff, retry_store

log = structlog.get_logger("semantica.pool")

#: How often the reaper tries to record a dead worker's job while the store is failing,
#: before the slot spawns a replacement and the write goes on in the background.
REAP_STORE_TRIES = 20
#: Delays between two tries of a write the store refused (settle): doubling from the
#: first to the second.
SETTLE_DELAY_MIN = 0.1
SETTLE_DELAY_MAX = 5.0


class Settling(PoolBase):
    """Records the ends of a worker's jobs, however the worker and the store fare."""

    async def _settle_dead(self, what: str, record: Callable[[], None]) -> None:
        """Record what became of a dead worker's job. The slot waits for a few tries
        (REAP_STORE_TRIES) before it spawns a replacement; if the store still fails (a
        disk that stays full), the write goes on in the background until the store
        takes it, so the job does not stay RUNNING until a restart once there is space
        (nor keep a place of its queue's limit, or its subject, meanwhile).
        """
        if await settle(what, record, self.durable, tries=REAP_STORE_TRIES):
            return
        log.warning("store fault; will keep trying in the background", what=what)
        assert self._background is not None
        self._background.start_soon(settle, what, record, self.durable)

    def _give_back_unstarted(self, leases: list[Lease]) -> None:
        self.jobs.given_back(leases)
        self.scheduler.wake()  # they may start now (whenever this write gets through)

    def _end(self, lease: Lease, report: JobFinished, elapsed: float) -> None:
        """Record a reported end (see how_it_ended): an interrupted job goes back to the
        queue, attempt not spent."""
        if interrupted(report):
            assert report.error is not None
            self.jobs.interrupted(lease, report.error.message)
        else:
            self.jobs.finished(lease, report, elapsed)

    def _settle_orphan(self, worker: WorkerHandle, lease: Lease, status: int | None) -> None:
        """Record how the job of a worker that is gone ended: as the supervisor asked if it
        asked it to stop (it was killed because it did not stop in time), as interrupted
        if the worker was stopped by the drain, else as lost with its worker."""
        elapsed = trio.current_time() - worker.started
        stop = worker.stops.get(lease.lease_id)
        if stop is not None:
            self.jobs.finished(lease, JobFinished(lease=lease.lease_id, error=stop), elapsed)
        elif worker.interrupt_reason is not None:
            self.jobs.interrupted(lease, worker.interrupt_reason)
        else:
            self.jobs.worker_lost(lease, worker.pid, status, elapsed)


def how_it_ended(worker: WorkerHandle, lease: Lease, report: JobFinished) -> JobFinished:
    """The end a worker reported, as it is to be recorded.

    A worker stopped by the drain (:meth:`WorkerPool.stop`) stops its job as a
    cancel would, and reports it: if that job did not end DONE, and the
    supervisor had not asked it to stop (a cancel, a timeout: it ends as
    asked), it was interrupted: back to the queue, attempt not spent, with the
    drain's reason. A worker stopped by another's SIGTERM says ``interrupted``
    itself. (A job that really ended in time is recorded as it ended.)
    """
    if report.error is None or worker.interrupt_reason is None or lease.lease_id in worker.stops:
        return report
    error = JobError(ErrorKind.INTERRUPTED.value, worker.interrupt_reason)
    return JobFinished(
        lease=report.lease,
        error=error,
        run_s=report.run_s,
        started_at=report.started_at,
        last=report.last,
    )


def interrupted(report: JobFinished) -> bool:
    return report.error is not None and report.error.kind == ErrorKind.INTERRUPTED


async def settle(
    what: str,
    record: Callable[[], None],
    durable: Callable[[], Awaitable[None]] = nothing_to_wait_for,
    tries: float = math.inf,
) -> bool:
    """Run a store write until it is durable, retrying with backoff while the store fails.

    Returns True once it is durable; False after ``tries`` failures (nothing
    of it happened: the caller decides what comes next).
    """

    async def write() -> None:
        record()
        await durable()

    def warn(exc: StoreError, delay: float) -> None:
        log.warning("store fault; will retry", what=what, error=exc.message, retry_in_s=delay)

    try:
        await retry_store(
            write, Backoff(SETTLE_DELAY_MIN, SETTLE_DELAY_MAX), tries=tries, on_retry=warn
        )
    except StoreError:
        return False
    return True
