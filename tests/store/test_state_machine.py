"""Random sequences of job events against a real store, checked step by step against a model.

The model is a plain dict of the jobs as the job rules say they must be (state,
attempts, generation, run_after...), kept with its own reading of the rules:
order, queues, delays, retries, subjects and generations, conditions. After
every step the store must agree with it, and the invariants of the one state
machine must hold.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from backends import open_backend
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from storekit import enqueue

from semantica.clock import FakeClock
from semantica.errors import BadInput
from semantica.models import (
    TERMINAL_STATES,
    TRANSITIONS,
    ErrorKind,
    Job,
    JobError,
    JobSpec,
    JobState,
    WaitReason,
)
from semantica.supervisor.retry import next_attempt_at
from semantica.supervisor.store import Blockers, JobStore, Lease, StaleLease
from semantica.supervisor.waiting import waiting_for

TYPES = ("A", "B")
SUBJECTS = ("x", "y")
QUEUES = ("default", "q2")
BOOM = JobError(kind=ErrorKind.EXCEPTION.value, message="boom")
QUEUED, RUNNING = JobState.QUEUED, JobState.RUNNING
RETRYABLE = (JobState.FAILED, JobState.CANCELLED)
SOMETIMES = st.sampled_from((False, False, False, True))  # conditions: one job in four


@st.composite
def job_specs(draw: st.DrawFn) -> JobSpec:
    """A spec from a small world of types, subjects and queues, so that jobs meet often."""
    subject = draw(st.sampled_from((None, *SUBJECTS)))
    return JobSpec(
        type=draw(st.sampled_from(TYPES)),
        queue=draw(st.sampled_from(QUEUES)),
        subject=subject,
        generation=None if subject is None else draw(st.none() | st.integers(0, 3)),
        priority=draw(st.integers(-1, 1)),
        max_attempts=draw(st.integers(1, 3)),
        delay=draw(st.sampled_from((None, None, None, 0.0, 1.0, 5.0))),
        backoff=draw(st.none() | st.sampled_from((0.0, 1.0))),
        require_charging=draw(SOMETIMES),
        require_idle=draw(SOMETIMES),
        supersede_running=subject is not None and draw(st.booleans()),
    )


@dataclass
class ModelJob:
    """What the rules say one job must be."""

    id: int
    type: str
    queue: str
    subject: str | None
    generation: int | None
    priority: int
    max_attempts: int
    backoff: float | None
    require_charging: bool
    require_idle: bool
    run_after: float
    state: JobState = QUEUED
    attempts: int = 0
    lease: Lease | None = None
    backing_off: bool = False  # QUEUED after a failed attempt, until its retry time
    superseded_by: int | None = None

    @property
    def line(self) -> tuple[str, str] | None:
        return None if self.subject is None else (self.type, self.subject)


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class JobStoreMachine(RuleBasedStateMachine):
    """Enqueue, lease, end attempts, cancel, retry, restart and reconfigure queues at random."""

    def __init__(self, backend: str) -> None:
        super().__init__()
        self.backend = backend
        self.dir = Path(tempfile.mkdtemp(prefix="semantica-machine-"))
        self.clock = FakeClock()
        self.store: JobStore = open_backend(backend, self.dir, self.clock)
        self.rng = random.Random(0)
        self.jobs: dict[int, ModelJob] = {}
        self.paused: set[str] = set()
        self.limits: dict[str, int] = {}
        self.configured: set[str] = set()  # queues given a setting
        self.stale: list[Lease] = []
        # What the store showed after the previous step, to see which moves a step made.
        self.seen: dict[int, Job] = {}
        self.retried: int | None = None

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------ the model's reading of the rules

    def _running(self) -> list[ModelJob]:
        return [job for job in self.jobs.values() if job.state == RUNNING]

    def _reason(self, job: ModelJob, on_ac: bool, idle: bool) -> WaitReason | None:
        """Why the rules keep ``job`` from starting now, the first reason in their order."""
        if job.state != QUEUED:
            return None
        if job.run_after > self.clock.time():
            return WaitReason.RETRY_BACKOFF if job.backing_off else WaitReason.RUN_AFTER
        if job.queue in self.paused:
            return WaitReason.QUEUE_PAUSED
        running = self._running()
        limit = self.limits.get(job.queue, 0)
        if limit and sum(r.queue == job.queue for r in running) >= limit:
            return WaitReason.QUEUE_LIMIT
        if job.line is not None and any(r.line == job.line for r in running):
            return WaitReason.SUBJECT_BUSY
        if job.require_charging and not on_ac:
            return WaitReason.CHARGING
        if job.require_idle and not idle:
            return WaitReason.IDLE
        return None

    def _check_waiting_for(
        self,
        on_ac: bool,
        idle: bool,
        queued: list[Job] | None = None,
        blockers: Blockers | None = None,
    ) -> None:
        """waiting_for, from the store's own facts, gives the model's reason for each queued job."""
        if queued is None:
            queued = self.store.list(state=QUEUED.value, limit=10_000)
        if blockers is None:
            blockers = self.store.blockers()
        for job in queued:
            reason = waiting_for(job, blockers, self.clock.time(), on_ac, idle)
            assert reason == self._reason(self.jobs[job.id], on_ac, idle), job

    def _end(self, job: ModelJob, state: JobState) -> Lease:
        lease = job.lease
        assert lease is not None
        self.stale.append(lease)
        job.lease = None
        job.state = state
        return lease

    def _pick(self, data: st.DataObject, jobs: list[ModelJob]) -> ModelJob:
        return data.draw(st.sampled_from(sorted(jobs, key=lambda job: job.id)))

    # ------------------------------------------------------------ rules

    @initialize(
        default=st.integers(0, 2),
        q2=st.integers(0, 2),
        batch=st.lists(job_specs(), min_size=2, max_size=6),
    )
    def start(self, default: int, q2: int, batch: list[JobSpec]) -> None:
        """Most runs begin with queue limits and some jobs, so that queues fill up early."""
        self.set_queue("default", None, default)
        self.set_queue("q2", None, q2)
        self.enqueue(batch)

    @rule(batch=st.lists(job_specs(), min_size=1, max_size=3))
    def enqueue(self, batch: list[JobSpec]) -> None:
        now = self.clock.time()
        result = enqueue(self.store, batch)
        assert len(result.jobs) == len(batch)
        superseded: list[int] = []
        running_older: list[tuple[int, int]] = []
        for spec, got in zip(batch, result.jobs, strict=True):
            generation = spec.generation
            line = [
                job
                for job in self.jobs.values()
                if spec.subject is not None and job.line == (spec.type, spec.subject)
            ]
            if spec.subject is not None:
                if generation is not None:
                    live = [
                        job
                        for job in line
                        if job.state in (QUEUED, RUNNING)
                        and job.generation is not None
                        and job.generation >= generation
                    ]
                    if live:
                        newest = max(live, key=lambda job: (job.generation or 0, job.id))
                        assert got.deduplicated and got.id == newest.id
                        continue
                else:
                    generation = max((job.generation or 0 for job in line), default=0) + 1
            assert not got.deduplicated
            assert got.id not in self.jobs and got.id > max(self.jobs, default=0)
            assert got.generation == generation
            new = ModelJob(
                id=got.id,
                type=spec.type,
                queue=spec.queue,
                subject=spec.subject,
                generation=generation,
                priority=spec.priority,
                max_attempts=spec.max_attempts,
                backoff=spec.backoff,
                require_charging=spec.require_charging,
                require_idle=spec.require_idle,
                run_after=now + (spec.delay or 0.0),
            )
            for old in line:
                assert old.generation is not None and generation is not None
                if old.generation < generation and old.state == QUEUED:
                    old.state = JobState.SUPERSEDED
                    old.superseded_by = new.id
                    superseded.append(old.id)
                if spec.supersede_running and old.generation < generation and old.state == RUNNING:
                    running_older.append((old.id, new.id))
            self.jobs[new.id] = new
        assert sorted(result.superseded) == sorted(superseded)
        assert sorted(result.running_older) == sorted(running_older)
        # Each job comes back as it is after the whole batch (superseded later in it or not).
        for got in result.jobs:
            assert msgspec.structs.replace(got, deduplicated=False) == self.store.get(got.id)

    @precondition(lambda self: any(job.line is not None for job in self._running()))
    @rule(data=st.data())
    def enqueue_for_a_running_subject(self, data: st.DataObject) -> None:
        """A newer (or not newer) job of a subject that is running: it waits, or is that job."""
        running = self._pick(data, [job for job in self._running() if job.line is not None])
        spec = data.draw(job_specs())
        spec.type, spec.subject = running.type, running.subject
        self.enqueue([spec])

    @rule(on_ac=st.booleans(), idle=st.booleans())
    def lease(self, on_ac: bool, idle: bool) -> None:
        self._lease(on_ac, idle)

    @rule(on_ac=st.booleans(), idle=st.booleans())
    def lease_until_none_starts(self, on_ac: bool, idle: bool) -> None:
        """Idle workers take jobs until nothing more may start (queues fill to their limits)."""
        while self._lease(on_ac, idle):
            pass

    def _lease(self, on_ac: bool, idle: bool) -> bool:
        """Lease one job, checking it is the one the rules pick; False if none may start."""
        self._check_waiting_for(on_ac, idle)
        queued = [job for job in self.jobs.values() if job.state == QUEUED]
        ready = sorted(
            (job for job in queued if self._reason(job, on_ac, idle) is None),
            key=lambda job: (-job.priority, job.id),
        )
        lease = self.store.lease(worker_pid=4242, on_ac=on_ac, idle=idle)
        if not ready:
            assert lease is None
            return False
        job = ready[0]
        assert lease is not None
        assert lease.job_id == job.id, "the highest-priority, oldest ready job starts first"
        assert lease.attempt == job.attempts + 1
        assert lease.max_attempts == job.max_attempts and lease.backoff == job.backoff
        assert all(lease.lease_id > old.lease_id for old in self.stale)
        job.state, job.attempts, job.lease, job.backing_off = RUNNING, lease.attempt, lease, False
        limit = self.limits.get(job.queue, 0)
        [info] = [info for info in self.store.queues() if info.name == job.queue]
        assert not limit or info.counts[RUNNING.value] <= limit, "a lease went over the limit"
        return True

    # One rule for every way a running attempt ends, so that it is drawn as often as a lease.
    @precondition(lambda self: bool(self._running()))
    @rule(
        data=st.data(),
        how=st.sampled_from(
            ("complete", "fail", "fail_permanent", "worker_dies", "cancel_running", "requeue")
        ),
    )
    def end_attempt(self, data: st.DataObject, how: str) -> None:
        job = self._pick(data, self._running())
        if how == "complete":
            self.store.complete(self._end(job, JobState.DONE), b'"ok"')
        elif how in ("fail", "fail_permanent"):
            self._fail(job, BOOM, permanent=how == "fail_permanent")
        elif how == "worker_dies":
            # As JobLifecycle.worker_lost: the attempt is spent, retried while attempts remain.
            self._fail(job, JobError(ErrorKind.WORKER_LOST.value, "worker died"), permanent=False)
        elif how == "cancel_running":
            lease = self._end(job, JobState.CANCELLED)
            self.store.cancel_running(lease, JobError(ErrorKind.CANCELLED.value, "stopped"))
        else:  # a drain stops it: back to the queue, the attempt not spent
            lease = self._end(job, QUEUED)
            self.store.requeue_interrupted(lease, JobError(ErrorKind.INTERRUPTED.value, "drain"))
            job.attempts -= 1
            job.run_after, job.backing_off = self.clock.time(), False

    def _fail(self, job: ModelJob, error: JobError, permanent: bool) -> None:
        lease = job.lease
        assert lease is not None
        retry_at = next_attempt_at(
            self.clock.time(), lease.attempt, lease.max_attempts, lease.backoff, permanent, self.rng
        )
        state = self.store.fail(lease, error, retry_at)
        if retry_at is None:
            assert state == JobState.FAILED
            self._end(job, JobState.FAILED)
        else:
            assert state == QUEUED
            assert job.attempts < job.max_attempts
            self._end(job, QUEUED)
            job.run_after, job.backing_off = retry_at, True

    @precondition(lambda self: bool(self.jobs))
    @rule(data=st.data())
    def cancel_queued(self, data: st.DataObject) -> None:
        job = self._pick(data, list(self.jobs.values()))
        before = self.store.get(job.id)
        cancelled = self.store.cancel_queued(job.id, "cancelled before it started")
        assert cancelled == (job.state == QUEUED)
        if cancelled:
            job.state = JobState.CANCELLED
        else:
            assert self.store.get(job.id) == before

    def _newer_stands(self, job: ModelJob) -> bool:
        """A newer generation of the job's subject is queued, running or DONE."""
        return job.line is not None and any(
            other.line == job.line
            and (other.generation or 0) > (job.generation or 0)
            and other.state in (QUEUED, JobState.RUNNING, JobState.DONE)
            for other in self.jobs.values()
        )

    def _retryable(self) -> list[ModelJob]:
        return [
            job
            for job in self.jobs.values()
            if job.state in RETRYABLE and not self._newer_stands(job)
        ]

    @precondition(lambda self: bool(self._retryable()))
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        """A FAILED or CANCELLED job goes back to the queue now with a fresh attempt budget."""
        job = self._pick(data, self._retryable())
        retried = self.store.retry(job.id)
        assert (retried.state, retried.attempts) == (QUEUED, 0)
        job.state, job.attempts, job.backing_off = QUEUED, 0, False
        job.run_after = self.clock.time()
        self.retried = job.id

    @precondition(lambda self: len(self._retryable()) < len(self.jobs))
    @rule(data=st.data())
    def retry_refused(self, data: st.DataObject) -> None:
        """Retrying a QUEUED, RUNNING, DONE or SUPERSEDED job, or one whose subject has a
        newer generation queued, running or DONE, is refused and changes nothing."""
        retryable = self._retryable()
        job = self._pick(data, [job for job in self.jobs.values() if job not in retryable])
        before = self.store.get(job.id)
        with pytest.raises(BadInput):
            self.store.retry(job.id)
        assert self.store.get(job.id) == before

    @precondition(lambda self: bool(self.stale))
    @rule(data=st.data(), how=st.sampled_from(("complete", "fail", "cancel", "requeue")))
    def stale_report(self, data: st.DataObject, how: str) -> None:
        """A report about an attempt that already ended is refused and changes nothing."""
        lease = data.draw(st.sampled_from(self.stale))
        before = self.store.get(lease.job_id)
        with pytest.raises(StaleLease):
            if how == "complete":
                self.store.complete(lease, b"1")
            elif how == "fail":
                self.store.fail(lease, BOOM, data.draw(st.sampled_from((None, 0.0))))
            elif how == "cancel":
                self.store.cancel_running(lease, BOOM)
            else:
                self.store.requeue_interrupted(lease, BOOM)
        assert self.store.get(lease.job_id) == before

    @precondition(lambda self: bool(self._running()))
    @rule()
    def restart(self) -> None:
        """The supervisor dies with jobs running and starts again: they requeue, settings stay."""
        self.store.close()
        self.store = open_backend(self.backend, self.dir, self.clock)
        running = self._running()
        assert self.store.recover_running() == len(running)
        for job in running:
            self._end(job, QUEUED)
            job.attempts -= 1
            job.run_after, job.backing_off = self.clock.time(), False

    @rule(
        queue=st.sampled_from(QUEUES),
        paused=st.none() | st.booleans(),
        limit=st.none() | st.integers(0, 2),
    )
    def set_queue(self, queue: str, paused: bool | None, limit: int | None) -> None:
        """Pause, resume or limit a queue: only what is given changes."""
        info = self.store.set_queue(queue, paused=paused, limit=limit)
        self.configured.add(queue)
        if paused is not None:
            (self.paused.add if paused else self.paused.discard)(queue)
        if limit is not None:
            self.limits[queue] = limit
        assert (info.paused, info.limit) == (queue in self.paused, self.limits.get(queue, 0))

    @rule(seconds=st.sampled_from((0.5, 1.0, 3.0, 30.0)))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # ------------------------------------------------------------ invariants

    @invariant()
    def store_keeps_the_rules(self) -> None:
        """After every step: one read of the store, checked against the model and the rules."""
        jobs = {job.id: job for job in self.store.list(limit=10_000)}
        blockers = self.store.blockers()
        self._store_agrees_with_the_model(jobs)
        self._only_allowed_moves_and_finished_jobs_stay_finished(jobs)
        self._one_running_job_per_subject(jobs)
        queued = [job for job in jobs.values() if job.state == QUEUED]
        for on_ac, idle in ((True, True), (False, False)):
            self._check_waiting_for(on_ac, idle, queued, blockers)
        self._queues_blockers_and_conditions_agree(blockers)

    def _store_agrees_with_the_model(self, jobs: dict[int, Job]) -> None:
        assert set(jobs) == set(self.jobs)
        for job_id, job in jobs.items():
            model = self.jobs[job_id]
            assert (job.state, job.attempts) == (model.state, model.attempts), job
            assert job.attempts <= job.max_attempts == model.max_attempts
            assert (job.generation, job.superseded_by) == (model.generation, model.superseded_by)
            if job.state == QUEUED:
                assert job.run_after == _ts(model.run_after)
            assert (job.finished_at is not None) == (job.state in TERMINAL_STATES), job
            assert (job.worker_pid is not None) == (job.state == RUNNING), job
        counts = self.store.counts()
        assert sum(counts.values()) == len(jobs), "every job is in exactly one state"
        assert counts == {s.value: 0 for s in JobState} | dict(
            Counter(job.state.value for job in self.jobs.values())
        )

    def _only_allowed_moves_and_finished_jobs_stay_finished(self, jobs: dict[int, Job]) -> None:
        for job_id, job in jobs.items():
            before = self.seen.get(job_id)
            if before is None:
                # A new job: queued, or already replaced by a later job of its batch.
                assert job.state in (QUEUED, JobState.SUPERSEDED)
                continue
            if before.state != job.state:
                assert (before.state, job.state) in TRANSITIONS
            if before.state in TERMINAL_STATES and job_id != self.retried:
                assert job == before, "a finished job changes only by retry"
        self.seen, self.retried = jobs, None

    def _one_running_job_per_subject(self, jobs: dict[int, Job]) -> None:
        lines = [
            (job.type, job.subject)
            for job in jobs.values()
            if job.state == RUNNING and job.subject is not None
        ]
        assert len(lines) == len(set(lines))

    def _queues_blockers_and_conditions_agree(self, blockers: Blockers) -> None:
        queued = [job for job in self.jobs.values() if job.state == QUEUED]
        assert self.store.conditions_wanted() == (
            any(job.require_charging for job in queued),
            any(job.require_idle for job in queued),
        )
        running = self._running()
        assert blockers == Blockers(
            paused=set(self.paused),
            limits={name: n for name, n in self.limits.items() if n},
            running_per_queue=dict(Counter(job.queue for job in running)),
            busy_subjects={job.line for job in running if job.line is not None},
        )
        infos = {info.name: info for info in self.store.queues()}
        names = self.configured | {job.queue for job in self.jobs.values()}
        assert set(infos) == names
        for name, info in infos.items():
            assert (info.paused, info.limit) == (name in self.paused, self.limits.get(name, 0))
            expected = Counter(job.state.value for job in self.jobs.values() if job.queue == name)
            assert info.counts == {s.value: 0 for s in JobState} | dict(expected)


@pytest.mark.slow
def test_job_store_machine(backend: str) -> None:
    """The machine above, run on each backend."""
    run_state_machine_as_test(
        lambda: JobStoreMachine(backend),
        settings=settings(max_examples=60, stateful_step_count=30),
    )
