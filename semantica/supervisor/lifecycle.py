"""Job state changes and what follows each: the store write, the log event, the wake-ups.

Every path that moves a job (a request, a worker's report, a worker's death, a
drain) goes through :class:`JobLifecycle`, so each change is committed first,
then logged once, then announced to waiters and the scheduler, in that order.
So does a change of a queue's settings (pause, resume, limit).

What a worker sends is held to the size caps here too (:mod:`semantica.limits`),
whatever the worker did: an older or misbehaving worker cannot store a huge
error, progress message or log line, nor a result over the cap.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog

from semantica.errors import BadInput, NoSuchJob, StoreError
from semantica.limits import (
    ERROR_MESSAGE_MAX,
    LOG_LINE_MAX,
    PROGRESS_MESSAGE_MAX,
    RESULT_MAX,
    cut,
    oversized_result,
)
from semantica.models import ErrorKind, Job, JobError, JobSpec, JobState, QueueInfo
from semantica.protocol import JobEvent, JobFinished
from semantica.supervisor.events import JobEvents
from semantica.supervisor.joblogs import Logs
from semantica.supervisor.log import info_many
from semantica.supervisor.metrics import Metrics
from semantica.supervisor.rates import RecentCounts
from semantica.supervisor.retry import next_attempt_at
from semantica.supervisor.schedule_writes import ScheduleWrites
from semantica.supervisor.scheduler import Scheduler
from semantica.supervisor.store import (
    EnqueueResult,
    JobStore,
    Lease,
    Prepared,
    StaleLease,
    check_queue_setting,
    plan,
    prepare,
)
from semantica.supervisor.tracing import NoTracer, Tracer

log = structlog.get_logger("semantica.jobs")
#: How many of the jobs a cascade cancelled are read from the store at a time.
CASCADE_READ = 500
#: The log event of an attempt that ended its job, by the job's state.
_END_EVENTS = {state: "job " + state.value.lower() for state in JobState}
#: A DONE job's state and end event, as plain strings (no enum lookups per job).
_DONE, _DONE_EVENT = JobState.DONE.value, _END_EVENTS[JobState.DONE]
#: Of the jobs one end cancelled by cascade, how many get a log line each; the rest one
#: line together (100,000 lines held the event loop for seconds).
CASCADE_LOGGED = 100


def within_caps(report: JobFinished) -> JobFinished:
    """``report`` held to the caps: its error message cut; a result over RESULT_MAX made a
    ``bad_result`` failure (a result is JSON and cannot be cut)."""
    error = report.error
    if error is not None:
        message = cut(error.message, ERROR_MESSAGE_MAX, "error message")
        if message != error.message:
            report = msgspec.structs.replace(report, error=JobError(error.kind, message))
    elif report.result is not None and len(report.result) > RESULT_MAX:
        error = JobError(ErrorKind.BAD_RESULT.value, oversized_result(len(report.result)))
        report = msgspec.structs.replace(report, result=None, error=error, permanent=True)
    return report


class JobLifecycle(ScheduleWrites):
    """Moves jobs through their states after they were leased or enqueued.

    The scheduler leases (QUEUED -> RUNNING) and the start-up recovery re-queues;
    every other write to the store comes through here (the schedules' too:
    :class:`~semantica.supervisor.schedule_writes.ScheduleWrites`).
    """

    def __init__(
        self,
        store: JobStore,
        logs: Logs,
        events: JobEvents,
        scheduler: Scheduler,
        rng: random.Random | None = None,
        on_conditional: Callable[[], None] = lambda: None,
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.store = store
        self.logs = logs
        self.events = events
        self.scheduler = scheduler
        self.rng = rng or random.Random()
        self._on_conditional = on_conditional
        self.metrics = metrics
        self.tracer: Tracer = tracer or NoTracer()
        #: For top: jobs enqueued, jobs that reached a finished state, jobs that ended FAILED
        #: (by the minute on the store's clock, as the times of the jobs themselves).
        self.enqueued_recently = RecentCounts(wall=store.clock.time)
        self.finished_recently = RecentCounts(wall=store.clock.time)
        self.failed_recently = RecentCounts(wall=store.clock.time)
        #: Job types the workers can run; None until the first worker said hello.
        self.known_types: frozenset[str] | None = None
        #: Info events held while a batch is recorded, logged together at its end.
        self._held_lines: list[tuple[str, dict[str, Any]]] | None = None

    def enqueue(self, specs: Sequence[JobSpec]) -> EnqueueResult:
        """Commit new jobs (all or none), settle what they supersede, wake the workers.

        :meth:`add` of :meth:`check`. The caller cancels ``running_older``
        (``--supersede-running``) itself: that waits for workers.

        Raises:
            BadInput: a spec is invalid or names a type no worker can run.
        """
        planned = plan(self.check(specs))
        result = self.add(planned.prepared)
        result.jobs = planned.in_request_order(result.jobs)
        return result

    def check(self, specs: Sequence[JobSpec]) -> list[Prepared]:
        """Check specs for :meth:`add` without writing anything.

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
        return prepare(specs)

    def add(self, prepared: Sequence[Prepared]) -> EnqueueResult:
        """Write checked jobs (all or none), settle what they supersede, wake the workers.

        Raises:
            BadInput: a subject has no generation left (nothing was written).
            NoSuchJob: a spec waits for a job that does not exist (nothing was written).
        """
        return self.settle_added(self.store.insert(prepared))

    def settle_added(self, result: EnqueueResult) -> EnqueueResult:
        """What follows jobs written: settle what they supersede (and what that ended
        down their dependency chains), count and announce them, wake the workers (or
        the timer, for jobs due later)."""
        self._settle_cascaded()
        for job_id in result.superseded:
            log.info("job superseded", job_id=job_id, state=JobState.SUPERSEDED.value)
            self._finished_unrun(job_id, JobState.SUPERSEDED, None)
            if self.events.watched:
                old = self.store.get(job_id)
                self._announce("superseded", job_id, old.type, JobState.SUPERSEDED, old.queue)
        new = [job for job in result.jobs if not job.deduplicated]
        self.enqueued_recently.add(len(new))
        if self.metrics is not None:
            self.metrics.enqueued(len(new))
        if self.events.watched:
            for job in new:
                self._announce("enqueued", job.id, job.type, job.state, job.queue)
        now = self.store.clock.time()
        # Each start time once: the jobs of a batch share a few.
        starts = [now if at is None else at.timestamp() for at in {job.run_after for job in new}]
        if any(at <= now for at in starts):
            self.scheduler.wake()
        later = [at for at in starts if at > now]
        if later:
            self.scheduler.reschedule(min(later))  # a new deadline
        if result.superseded:
            self.scheduler.deadline_gone()  # a superseded job may have been the next due
            self.scheduler.wake()  # a job waiting for its end (--after-end) may start
        if any(job.require_charging or job.require_idle for job in new):
            self._on_conditional()
        return result

    def cancel_queued(self, job_id: int) -> bool:
        """QUEUED -> CANCELLED at once; False if the job was not QUEUED."""
        if not self.store.cancel_queued(job_id, "cancelled before it started"):
            return False
        log.info("job cancelled", job_id=job_id, state=JobState.CANCELLED.value)
        self._finished_unrun(job_id, JobState.CANCELLED, None)
        self._settle_cascaded()
        self.scheduler.deadline_gone()  # it may have been the next one due
        self.scheduler.wake()  # a job waiting for its end (--after-end) may start
        if self.events.watched:
            job = self.store.get(job_id)
            self._announce("cancelled", job_id, job.type, job.state, job.queue, error=job.error)
        return True

    def request_stop(self, job_id: int, error: JobError) -> bool:
        """Ask the node that runs ``job_id`` to stop it, ending it with ``error`` (a
        cancel from another node); False if it is not running."""
        if not self.store.request_stop(job_id, error):
            return False
        log.info("asked the job's node to stop it", job_id=job_id, kind=error.kind)
        return True

    def retry(self, job_id: int, dependents: bool = False) -> Job:
        """FAILED or CANCELLED -> QUEUED with a fresh attempt budget; with ``dependents``,
        the jobs cancelled because of it come back too (one write).

        Raises:
            NoSuchJob, BadInput: see :meth:`JobStore.retry`.
        """
        back: list[int] = []
        if dependents:
            job, back = self.store.retry_with_dependents(job_id)
        else:
            job = self.store.retry(job_id)
        log.info("job retried", job_id=job_id, type=job.type, state=job.state.value)
        self._announce("retried", job_id, job.type, job.state, job.queue)
        for other in back:
            log.info("job retried", job_id=other, state=JobState.QUEUED.value, after=job_id)
            if self.events.watched:
                again = self.store.get(other)
                self._announce("retried", other, again.type, again.state, again.queue)
        self.scheduler.wake()
        if job.require_charging or job.require_idle:
            self._on_conditional()
        return job

    def set_queue(
        self, name: str, *, paused: bool | None = None, limit: int | None = None
    ) -> QueueInfo:
        """Pause, resume or limit a queue (made if new); the queue after. Settings survive
        restarts.

        Raises:
            BadInput: a bad queue name, or a limit outside 0..QUEUE_LIMIT_MAX
                (nothing changed).
        """
        check_queue_setting(name, limit)
        info = self.store.set_queue(name, paused=paused, limit=limit)
        log.info("queue changed", queue=info.name, paused=info.paused, limit=info.limit)
        self.scheduler.wake()  # a resumed or raised queue may start jobs now
        return info

    def log(self, lease: Lease, lines: list[str]) -> None:
        """A worker sent lines for the job's log: append them and pass them to followers."""
        lines = [cut(line, LOG_LINE_MAX, "log line") for line in lines]
        written = self.logs.append(lease.job_id, lines, lease.attempt)  # with a separator
        self.events.log_lines(lease.job_id, written)

    def progress(self, lease: Lease, fraction: float, message: str) -> None:
        """A handler reported progress: keep it with the job (best effort)."""
        message = cut(message, PROGRESS_MESSAGE_MAX, "progress message")
        try:
            self.store.set_progress(lease, fraction, message)
        except StoreError as exc:
            log.warning("cannot record progress", job_id=lease.job_id, error=exc.message)

    def started(self, lease: Lease, worker_pid: int) -> None:
        self.tracer.attempt_started(lease, worker_pid)
        if self.events.watched:  # (asked here: a drain starts thousands of jobs a second)
            self._announce(
                "started",
                lease.job_id,
                lease.type,
                JobState.RUNNING,
                lease.queue,
                attempt=lease.attempt,
                worker_pid=worker_pid,
            )
        self._info(
            "job started",
            {
                "job_id": lease.job_id,
                "type": lease.type,
                "queue": lease.queue,
                "state": "RUNNING",
                "attempt": lease.attempt,
                "worker_pid": worker_pid,
            },
        )

    def started_many(self, leases: Sequence[Lease], worker_pid: int) -> None:
        """Several jobs of one worker started, in this order (their log lines in one write)."""
        with self._log_together():
            for lease in leases:
                self.started(lease, worker_pid)

    @contextmanager
    def _log_together(self) -> Iterator[None]:
        """Hold the info events of a batch and log them at its end, in one write."""
        if self._held_lines is not None:
            yield
            return
        self._held_lines = []
        try:
            yield
        finally:
            lines, self._held_lines = self._held_lines, None
            info_many(log, lines)

    def _info(self, event: str, fields: dict[str, Any]) -> None:
        if self._held_lines is None:
            log.info(event, **fields)
        else:
            self._held_lines.append((event, fields))

    def finished(self, lease: Lease, report: JobFinished, duration_s: float) -> None:
        """A worker reported the end of an attempt."""
        report = within_caps(report)
        try:
            error = report.error
            if error is None:
                self.store.complete(lease, report.result, report.started_at)
                self._ended(lease, JobState.DONE, None, duration_s)
                return
            if error.kind == ErrorKind.CANCELLED:
                self.store.cancel_running(lease, error)
                self._ended(lease, JobState.CANCELLED, error, duration_s)
                return
            retry_at = next_attempt_at(
                self.store.clock.time(),
                lease.attempt,
                lease.max_attempts,
                lease.backoff,
                # A timeout is a failed attempt like any other: retried while attempts remain.
                report.permanent and error.kind != ErrorKind.TIMEOUT,
                self.rng,
            )
            state = self.store.fail(lease, error, retry_at)
            self._ended(lease, state, error, duration_s)
        except StaleLease as exc:
            log.warning("stale report ignored", job_id=lease.job_id, reason=str(exc))
        finally:
            self._settle_cascaded()

    def finished_many(
        self,
        ends: list[tuple[Lease, JobFinished, float]],
        started: Sequence[Lease] = (),
        worker_pid: int = 0,
    ) -> None:
        """Several reported ends: the successes in one write, the rest one by one.

        ``started`` are the jobs among them not yet announced as started (a
        worker runs a prefetched job and reports its end before the supervisor
        hears of its start): their start is announced and logged first.
        """
        ends = [(lease, within_caps(report), duration_s) for lease, report, duration_s in ends]
        done = [
            (lease, report.result, report.started_at)
            for lease, report, _ in ends
            if report.error is None
        ]
        stale = {lease.lease_id for lease in self.store.complete_many(done)} if done else set()
        ended_done: list[tuple[str, float]] = []  # (type, duration) of each ended DONE
        with self._log_together():
            for lease in started:
                self.started(lease, worker_pid)
            for lease, report, duration_s in ends:
                if report.error is not None:
                    self.finished(lease, report, duration_s)
                elif lease.lease_id in stale:
                    log.warning(
                        "stale report ignored", job_id=lease.job_id, reason="lease not current"
                    )
                else:
                    self._done(lease, duration_s)
                    ended_done.append((lease.type, duration_s))
            if ended_done:
                # What _ended does once per job, done once for the batch.
                if self.metrics is not None:
                    self.metrics.jobs_done(ended_done)
                self.finished_recently.add(len(ended_done))
                self.scheduler.wake()
            self._settle_cascaded()

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
        self.tracer.attempt_ended(lease, JobState.QUEUED, error)
        self._announce(
            "interrupted",
            lease.job_id,
            lease.type,
            JobState.QUEUED,
            attempt=lease.attempt,
            error=error,
        )
        log.info(
            "job interrupted",
            job_id=lease.job_id,
            type=lease.type,
            queue=lease.queue,
            state=JobState.QUEUED.value,
            attempt=lease.attempt,
            error_kind=error.kind,
        )

    def given_back(self, leases: list[Lease]) -> None:
        """Prefetched jobs their worker never started go back to the queue, attempt not spent.

        They were never announced as started, so nothing is announced now either.
        """
        moved = self.store.give_back(leases)
        log.debug("jobs given back", count=moved, job_ids=[lease.job_id for lease in leases])

    def _ended(
        self,
        lease: Lease,
        state: JobState,
        error: JobError | None,
        duration_s: float,
    ) -> None:
        """An attempt ended, its job now in ``state``: log, metrics, waiters, watchers,
        the scheduler. (Jobs ended DONE together take :meth:`_done`: a drain ends
        thousands of jobs a second, and what is per batch is not per job.)"""
        self.logs.close(lease.job_id)
        value = state.value
        fields = {
            "job_id": lease.job_id,
            "type": lease.type,
            "queue": lease.queue,
            "state": value,
            "attempt": lease.attempt,
            "duration_ms": round(duration_s * 1000, 3),
        }
        if error is not None:
            fields["error_kind"] = error.kind
            fields["error_message"] = error.message
        self.tracer.attempt_ended(lease, state, error)
        if self.metrics is not None:
            self.metrics.job_ended(lease.type, state, duration_s)
        retried = state == JobState.QUEUED
        if retried:
            self._info("job will retry", fields)
        else:
            self._info(_END_EVENTS[state], fields)
            self.finished_recently.add()
            if state == JobState.FAILED:
                self.failed_recently.add()
            self.events.job_finished(lease.job_id)
        if self.events.watched:
            self._announce(
                "retried" if retried else value.lower(),
                lease.job_id,
                lease.type,
                state,
                lease.queue,
                attempt=lease.attempt,
                error=error,
            )
        # A job that waited behind this one (its subject, its queue's limit) may
        # start now; a retry sets a deadline for the timer.
        self.scheduler.wake()
        if retried:
            self.scheduler.reschedule()

    def _done(self, lease: Lease, duration_s: float) -> None:
        """:meth:`_ended` of an attempt that ended its job DONE, one of a batch whose caller
        counts it (metrics, ``finished_recently``) and wakes the scheduler once for all:
        the same log line, waiters and watchers, without the branches for other ends."""
        job_id = lease.job_id
        self.logs.close(job_id)
        fields = {
            "job_id": job_id,
            "type": lease.type,
            "queue": lease.queue,
            "state": _DONE,
            "attempt": lease.attempt,
            "duration_ms": round(duration_s * 1000, 3),
        }
        self.tracer.attempt_ended(lease, JobState.DONE, None)
        self._info(_DONE_EVENT, fields)
        self.events.job_finished(job_id)
        if self.events.watched:
            self._announce(
                "done", job_id, lease.type, JobState.DONE, lease.queue, attempt=lease.attempt
            )

    def _settle_cascaded(self) -> None:
        """Tell of the jobs the store just cancelled because a job they waited for ended
        badly, as of any cancel: log, waiters, counters, watchers."""
        cascaded = self.store.take_cascaded()
        if not cascaded:
            return
        if self.metrics is not None:
            self.metrics.dependency_failed(len(cascaded))
        read = self.events.watched or self.metrics is not None
        for start in range(0, len(cascaded), CASCADE_READ):
            ids = cascaded[start : start + CASCADE_READ]
            jobs = self._jobs_or_none(ids) if read or start < CASCADE_LOGGED else [None] * len(ids)
            for n, (job_id, job) in enumerate(zip(ids, jobs, strict=True), start):
                self._settle_one_cascaded(job_id, job, read, logged=n < CASCADE_LOGGED)
        if len(cascaded) > CASCADE_LOGGED:
            self._info(
                "more jobs cancelled",
                {
                    "count": len(cascaded) - CASCADE_LOGGED,
                    "job_ids": f"{cascaded[CASCADE_LOGGED]}..{cascaded[-1]}",
                    "state": JobState.CANCELLED.value,
                    "error_kind": ErrorKind.DEPENDENCY_FAILED.value,
                },
            )

    def _jobs_or_none(self, job_ids: list[int]) -> list[Job | None]:
        """The jobs ``job_ids``, read in one go (a cascade may reach 100,000 jobs);
        None for one gone meanwhile (a shared store's retention)."""
        try:
            return list(self.store.get_many(job_ids))
        except NoSuchJob:
            found: list[Job | None] = []
            for job_id in job_ids:
                try:
                    found.append(self.store.get(job_id))
                except NoSuchJob:
                    found.append(None)
            return found

    def _settle_one_cascaded(
        self, job_id: int, job: Job | None, read: bool, *, logged: bool = True
    ) -> None:
        error = None if job is None else job.error
        if logged:
            self._info(
                "job cancelled",
                {
                    "job_id": job_id,
                    "state": JobState.CANCELLED.value,
                    "error_kind": ErrorKind.DEPENDENCY_FAILED.value,
                    "error_message": "" if error is None else error.message,
                },
            )
        # (A job read and gone has no type left to count it by: "".)
        type = job.type if job is not None else ("" if read else None)
        self._finished_unrun(job_id, JobState.CANCELLED, type)
        if job is not None:
            self._announce("cancelled", job_id, job.type, job.state, job.queue, error=error)

    def _finished_unrun(self, job_id: int, state: JobState, type: str | None) -> None:
        """A queued job was cancelled or superseded: waiters, counters."""
        self.events.job_finished(job_id)
        self.finished_recently.add()
        if self.metrics is not None:
            if type is None:
                type = self.store.get(job_id).type
            self.metrics.job_finished_unrun(type, state)

    def _announce(
        self,
        event: str,
        job_id: int,
        type: str,
        state: JobState,
        queue: str | None = None,
        *,
        attempt: int | None = None,
        worker_pid: int | None = None,
        error: JobError | None = None,
    ) -> None:
        """Publish a job event to watchers (``semctl tail``), if there are any."""
        if not self.events.watched:
            return
        self.events.publish(
            JobEvent(
                event=event,
                job_id=job_id,
                type=type,
                state=state,
                at=datetime.now(UTC),
                queue=queue,
                attempt=attempt,
                worker_pid=worker_pid,
                error=error,
            )
        )
