"""Job state changes and what follows each: the store write, the log event, the wake-ups.

Every path that moves a job (a request, a worker's report, a worker's death, a
drain) goes through :class:`JobLifecycle`, so each change is committed first,
then logged once, then announced to waiters and the scheduler, in that order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import structlog

from semantica.errors import BadInput
from semantica.models import ErrorKind, Job, JobError, JobSpec, JobState
from semantica.protocol import JobFinished
from semantica.supervisor.events import JobEvents
from semantica.supervisor.joblogs import JobLogs
from semantica.supervisor.retry import next_attempt_at
from semantica.supervisor.scheduler import Scheduler
from semantica.supervisor.store import Lease, SQLiteStore, StaleLease

log = structlog.get_logger("semantica.jobs")


class JobLifecycle:
    """Moves jobs through their states after they were leased or enqueued.

    The scheduler leases (QUEUED -> RUNNING) and the start-up recovery re-queues;
    every other write to the store comes through here.
    """

    def __init__(
        self,
        store: SQLiteStore,
        logs: JobLogs,
        events: JobEvents,
        scheduler: Scheduler,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.logs = logs
        self.events = events
        self.scheduler = scheduler
        self.rng = rng or random.Random()
        #: Job types the workers can run; None until the first worker said hello.
        self.known_types: frozenset[str] | None = None

    def enqueue(self, specs: Sequence[JobSpec]) -> list[Job]:
        """Commit new jobs (all or none) and wake the workers.

        Raises:
            BadInput: a spec is invalid or names a type no worker can run.
        """
        if self.known_types is not None:
            for spec in specs:
                if spec.type not in self.known_types:
                    raise BadInput(
                        f"unknown job type {spec.type!r}: workers know "
                        f"{', '.join(sorted(self.known_types))} "
                        "(SEMANTICA_HANDLERS names the modules that define handlers)"
                    )
        jobs = self.store.enqueue(specs)
        if any(job.waiting_for is None for job in jobs):
            self.scheduler.wake()
        else:  # all delayed: only the timer has something to learn
            self.scheduler.reschedule()
        return jobs

    def started(self, lease: Lease, worker_pid: int) -> None:
        log.info(
            "job started",
            job_id=lease.job_id,
            type=lease.type,
            state=JobState.RUNNING.value,
            attempt=lease.attempt,
            worker_pid=worker_pid,
        )

    def finished(self, lease: Lease, report: JobFinished, duration_s: float) -> None:
        """A worker reported the end of an attempt."""
        try:
            if report.error is None:
                self.store.complete(lease, report.result)
                self._ended(lease, JobState.DONE, None, duration_s)
                return
            retry_at = next_attempt_at(
                self.store.clock.time(),
                lease.attempt,
                lease.max_attempts,
                lease.backoff,
                report.permanent,
                self.rng,
            )
            state = self.store.fail(lease, report.error, retry_at)
            self._ended(lease, state, report.error, duration_s)
        except StaleLease as exc:
            log.warning("stale report ignored", job_id=lease.job_id, reason=str(exc))

    def worker_lost(
        self, lease: Lease, worker_pid: int, status: int | None, duration_s: float
    ) -> None:
        """The worker running ``lease`` died: the attempt is spent; retry while attempts remain."""
        how = (
            f"exit status {status}"
            if status is not None and status >= 0
            else (f"signal {-status}" if status is not None else "no answer")
        )
        error = JobError(
            ErrorKind.WORKER_LOST.value, f"worker {worker_pid} died ({how}) while running the job"
        )
        self.finished(lease, JobFinished(lease=lease.lease_id, error=error), duration_s)

    def interrupted(self, lease: Lease, reason: str) -> None:
        """A drain stopped the attempt: back to the queue, attempt not spent."""
        error = JobError(ErrorKind.INTERRUPTED.value, reason)
        try:
            self.store.requeue_interrupted(lease, error)
        except StaleLease:
            return
        self.logs.close(lease.job_id)
        log.info(
            "job interrupted",
            job_id=lease.job_id,
            type=lease.type,
            state=JobState.QUEUED.value,
            attempt=lease.attempt,
            error_kind=error.kind,
        )

    def _ended(
        self, lease: Lease, state: JobState, error: JobError | None, duration_s: float
    ) -> None:
        self.logs.close(lease.job_id)
        fields = {
            "job_id": lease.job_id,
            "type": lease.type,
            "state": state.value,
            "attempt": lease.attempt,
            "duration_ms": round(duration_s * 1000, 3),
        }
        if error is not None:
            fields["error_kind"] = error.kind
            fields["error_message"] = error.message
        if state == JobState.QUEUED:
            log.info("job will retry", **fields)
        else:
            log.info("job " + state.value.lower(), **fields)
            self.events.job_finished(lease.job_id)
        # A retry time for the timer to learn, or a job that waited behind this
        # one (its subject, its queue's limit) may start now.
        self.scheduler.wake()
