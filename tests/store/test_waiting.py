"""Why a queued job has not started: waiting_for, its order of reasons, and store.blockers()."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from storekit import enqueue

from semantica.clock import FakeClock
from semantica.models import ErrorKind, Job, JobError, JobSpec, JobState, WaitReason
from semantica.supervisor.store import Blockers, JobStore, Lease
from semantica.supervisor.waiting import explain, waiting_for

BOOM = JobError(kind=ErrorKind.EXCEPTION.value, message="ValueError: boom")
Spec = Callable[..., JobSpec]
NOW = 1_800_000_000.0

#: The documented order: the first reason that applies is the one given.
ORDER = [
    WaitReason.RUN_AFTER,
    WaitReason.RETRY_BACKOFF,
    WaitReason.QUEUE_PAUSED,
    WaitReason.QUEUE_LIMIT,
    WaitReason.SUBJECT_BUSY,
    WaitReason.CHARGING,
    WaitReason.IDLE,
]


def _lease(store: JobStore) -> Lease:
    lease = store.lease(worker_pid=1)
    assert lease is not None
    return lease


def _why(
    store: JobStore, job_id: int, *, on_ac: bool = True, idle: bool = True
) -> WaitReason | None:
    return waiting_for(store.get(job_id), store.blockers(), store.clock.time(), on_ac, idle)


# ---------------------------------------------------------------- each reason from the store


def test_ready_job_waits_for_nothing(store: JobStore, spec: Spec) -> None:
    """A queued job that could start now is waiting for nothing."""
    [job] = enqueue(store, [spec(subject="s", queue="q")]).jobs
    store.set_queue("q", limit=1)
    assert _why(store, job.id) is None


def test_jobs_not_queued_wait_for_nothing(store: JobStore, spec: Spec) -> None:
    """Running and finished jobs are not waiting, whatever holds their queue."""
    running, done = enqueue(store, [spec(require_charging=True), spec(delay=0.0)]).jobs
    _lease(store)
    store.complete(_lease(store), None)
    store.set_queue("default", paused=True)
    for job in (running, done):
        assert _why(store, job.id, on_ac=False, idle=False) is None


def test_delayed_job_waits_for_its_start_time(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """A job with a delay waits for run_after until the clock reaches it."""
    [job] = enqueue(store, [spec(delay=10.0)]).jobs
    assert _why(store, job.id) == WaitReason.RUN_AFTER
    clock.advance(9.5)
    assert _why(store, job.id) == WaitReason.RUN_AFTER
    clock.advance(0.5)
    assert _why(store, job.id) is None


def test_failed_attempt_waits_for_retry_backoff(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """A job that failed and waits for its retry time shows retry_backoff, then nothing."""
    [job] = enqueue(store, [spec()]).jobs
    store.fail(_lease(store), BOOM, clock.time() + 4)
    assert _why(store, job.id) == WaitReason.RETRY_BACKOFF
    clock.advance(4)
    assert _why(store, job.id) is None


def test_retried_and_interrupted_jobs_wait_for_nothing(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """A job retried by hand or put back by a drain keeps its error but is not backing off."""
    retried, interrupted = enqueue(store, [spec(), spec()]).jobs
    store.fail(_lease(store), BOOM, None)
    store.retry(retried.id)
    lease = _lease(store)
    assert lease.job_id == retried.id
    store.requeue_interrupted(lease, JobError(ErrorKind.INTERRUPTED.value, "drain"))
    clock.advance(1)
    for job_id in (retried.id, interrupted.id):
        assert _why(store, job_id) is None


def test_paused_queue(store: JobStore, spec: Spec) -> None:
    """A job of a paused queue waits for queue_paused, and for nothing once resumed."""
    [job] = enqueue(store, [spec(queue="q")]).jobs
    store.set_queue("q", paused=True)
    assert _why(store, job.id) == WaitReason.QUEUE_PAUSED
    store.set_queue("q", paused=False)
    assert _why(store, job.id) is None


def test_queue_at_its_limit(store: JobStore, spec: Spec) -> None:
    """A job of a queue running as many jobs as its limit waits for queue_limit."""
    store.set_queue("q", limit=2)
    jobs = enqueue(store, [spec(queue="q") for _ in range(3)]).jobs
    first = _lease(store)
    assert _why(store, jobs[2].id) is None
    _lease(store)
    assert _why(store, jobs[2].id) == WaitReason.QUEUE_LIMIT
    store.complete(first, None)
    assert _why(store, jobs[2].id) is None


def test_subject_busy(store: JobStore, spec: Spec) -> None:
    """A job whose subject has a running job waits for subject_busy; other types do not."""
    enqueue(store, [spec(subject="f")])
    lease = _lease(store)
    newer, other_type = enqueue(store, [spec(subject="f"), spec("U", subject="f")]).jobs
    assert _why(store, newer.id) == WaitReason.SUBJECT_BUSY
    assert _why(store, other_type.id) is None
    store.fail(lease, BOOM, None)
    assert _why(store, newer.id) is None


def test_conditions(store: JobStore, spec: Spec) -> None:
    """A job that requires charging or idle waits for that condition only while it does not hold."""
    charging, idle = enqueue(store, [spec(require_charging=True), spec(require_idle=True)]).jobs
    assert _why(store, charging.id, on_ac=False) == WaitReason.CHARGING
    assert _why(store, charging.id, on_ac=True, idle=False) is None
    assert _why(store, idle.id, idle=False) == WaitReason.IDLE
    assert _why(store, idle.id, on_ac=False, idle=True) is None


# ---------------------------------------------------------------- precedence from the store


def test_delayed_job_in_paused_queue_waits_for_run_after(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """A delayed job in a paused queue reports its start time first, then the pause."""
    [job] = enqueue(store, [spec(queue="q", delay=5.0)]).jobs
    store.set_queue("q", paused=True)
    assert _why(store, job.id) == WaitReason.RUN_AFTER
    clock.advance(5)
    assert _why(store, job.id) == WaitReason.QUEUE_PAUSED


def test_backing_off_job_in_paused_queue_waits_for_retry_backoff(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """A job waiting to retry in a paused queue reports retry_backoff before the pause."""
    [job] = enqueue(store, [spec(queue="q")]).jobs
    store.fail(_lease(store), BOOM, clock.time() + 3)
    store.set_queue("q", paused=True)
    assert _why(store, job.id) == WaitReason.RETRY_BACKOFF
    clock.advance(3)
    assert _why(store, job.id) == WaitReason.QUEUE_PAUSED


def test_everything_at_once_peels_off_in_order(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """With every reason true at once, lifting them one by one shows the next reason each time."""
    store.set_queue("q", limit=1)
    [holder] = enqueue(store, [spec(queue="q", subject="s")]).jobs
    holding = _lease(store)
    assert holding.job_id == holder.id
    [job] = enqueue(
        store, [spec(queue="q", subject="s", delay=5.0, require_charging=True, require_idle=True)]
    ).jobs
    store.set_queue("q", paused=True)

    def why() -> WaitReason | None:
        return _why(store, job.id, on_ac=on_ac, idle=idle)

    on_ac, idle = False, False
    assert why() == WaitReason.RUN_AFTER
    clock.advance(5)
    assert why() == WaitReason.QUEUE_PAUSED
    store.set_queue("q", paused=False)
    assert why() == WaitReason.QUEUE_LIMIT
    store.set_queue("q", limit=0)
    assert why() == WaitReason.SUBJECT_BUSY
    store.complete(holding, None)
    assert why() == WaitReason.CHARGING
    on_ac = True
    assert why() == WaitReason.IDLE
    idle = True
    assert why() is None
    assert _lease(store).job_id == job.id


# ---------------------------------------------------------------- precedence, every combination


def _job(**fields: object) -> Job:
    base: dict[str, object] = {
        "id": 1,
        "type": "T",
        "queue": "q",
        "subject": "s",
        "generation": 1,
        "priority": 0,
        "state": JobState.QUEUED,
        "attempts": 0,
        "max_attempts": 3,
        "created_at": datetime.fromtimestamp(NOW - 100, UTC),
        "started_at": None,
        "finished_at": None,
        "run_after": datetime.fromtimestamp(NOW - 1, UTC),
    }
    return Job(**(base | fields))  # type: ignore[arg-type]


@given(active=st.sets(st.sampled_from(ORDER)), state=st.sampled_from(JobState))
def test_first_applicable_reason_wins(active: set[WaitReason], state: JobState) -> None:
    """Whatever set of reasons holds a queued job back, the earliest in the documented order is
    given (run_after and retry_backoff being one future start time told apart by a past failure).
    """
    future = WaitReason.RUN_AFTER in active or WaitReason.RETRY_BACKOFF in active
    failed = WaitReason.RETRY_BACKOFF in active and WaitReason.RUN_AFTER not in active
    job = _job(
        state=state,
        run_after=datetime.fromtimestamp(NOW + 30 if future else NOW, UTC),
        attempts=1 if failed else 0,
        error=BOOM if failed else None,
        require_charging=WaitReason.CHARGING in active,
        require_idle=WaitReason.IDLE in active,
    )
    blockers = Blockers(
        paused={"q"} if WaitReason.QUEUE_PAUSED in active else {"other"},
        limits={"q": 2, "other": 1},
        running_per_queue={"q": 2 if WaitReason.QUEUE_LIMIT in active else 1, "other": 5},
        busy_subjects={("T", "s")} if WaitReason.SUBJECT_BUSY in active else {("U", "s")},
    )
    on_ac = WaitReason.CHARGING not in active
    idle = WaitReason.IDLE not in active
    expected = next((r for r in ORDER if r in active), None)
    if state != JobState.QUEUED:
        expected = None
    assert waiting_for(job, blockers, NOW, on_ac, idle) == expected


def test_job_without_subject_is_never_subject_busy() -> None:
    """A job with no subject is not held back by running jobs that have subjects."""
    job = _job(subject=None, generation=None)
    blockers = Blockers(busy_subjects={("T", "s"), ("T", "")})
    assert waiting_for(job, blockers, NOW, True, True) is None


def test_limit_zero_and_unknown_queue_are_no_cap() -> None:
    """A queue with no limit entry is never at its limit, however many of its jobs run."""
    job = _job()
    assert waiting_for(job, Blockers(running_per_queue={"q": 50}), NOW, True, True) is None


def test_failed_job_with_delay_to_now_is_not_backing_off() -> None:
    """A failed job whose retry time has come waits for nothing."""
    job = _job(attempts=2, error=BOOM, run_after=datetime.fromtimestamp(NOW, UTC))
    assert waiting_for(job, Blockers(), NOW, True, True) is None


def test_explain_fills_waiting_for_of_each_job() -> None:
    """explain writes each job's reason as its string value, and None for jobs not held back."""
    jobs = [
        _job(id=1, run_after=datetime.fromtimestamp(NOW + 5, UTC)),
        _job(id=2, queue="paused"),
        _job(id=3, state=JobState.RUNNING, waiting_for="stale"),
        _job(id=4, require_idle=True),
        _job(id=5),
    ]
    explain(jobs, Blockers(paused={"paused"}), NOW, True, False)
    assert [job.waiting_for for job in jobs] == ["run_after", "queue_paused", None, "idle", None]


def test_explain_of_many_alike_jobs_gives_each_its_own_reason() -> None:
    """Jobs alike but for what the rules look at (queue, start time, conditions, a subject,
    an error) each get the reason waiting_for gives them alone."""
    later = datetime.fromtimestamp(NOW + 5, UTC)
    kinds = [
        {},
        {"queue": "paused"},
        {"run_after": later},
        {"queue": "paused", "run_after": later},
        {"require_idle": True},
        {"require_charging": True},
        {"subject": "s"},
        {"attempts": 1, "error": BOOM, "run_after": later},
        {"queue": "full"},
    ]
    plain = {"subject": None, "generation": None}
    jobs = [_job(id=n, **(plain | kinds[n % len(kinds)])) for n in range(3 * len(kinds))]
    blockers = Blockers(
        paused={"paused"},
        limits={"full": 1},
        running_per_queue={"full": 1},
        busy_subjects={("T", "s")},
    )
    alone = [waiting_for(job, blockers, NOW, False, False) for job in jobs]
    explain(jobs, blockers, NOW, False, False)
    assert [job.waiting_for for job in jobs] == [None if r is None else r.value for r in alone]
    assert len({job.waiting_for for job in jobs}) == 8


# ---------------------------------------------------------------- store.blockers()


def test_blockers_of_an_empty_store(store: JobStore) -> None:
    """With no job and no queue setting nothing blocks anything."""
    assert store.blockers() == Blockers()


def test_blockers_follow_settings_and_leases(store: JobStore, spec: Spec) -> None:
    """blockers() lists paused queues, non-zero limits, running jobs per queue and busy subjects."""
    store.set_queue("p", paused=True, limit=0)
    store.set_queue("l", limit=3)
    store.set_queue("resumed", paused=True)
    store.set_queue("resumed", paused=False)
    enqueue(
        store,
        [
            spec(queue="l", subject="a"),
            spec("U", queue="l", subject="a"),
            spec(queue="l"),
            spec(subject="b"),
            spec(queue="p", subject="c"),
        ],
    )
    leases = [_lease(store) for _ in range(4)]
    assert store.lease(worker_pid=1) is None
    assert store.blockers() == Blockers(
        paused={"p"},
        limits={"l": 3},
        running_per_queue={"l": 3, "default": 1},
        busy_subjects={("T", "a"), ("U", "a"), ("T", "b")},
    )
    store.complete(leases[0], None)
    store.fail(leases[3], BOOM, store.clock.time() + 10)
    blockers = store.blockers()
    assert blockers.running_per_queue == {"l": 2}
    assert blockers.busy_subjects == {("U", "a")}


@pytest.mark.parametrize("end", ["complete", "fail", "cancel", "requeue"])
def test_blockers_forget_a_job_however_it_stops_running(
    store: JobStore, spec: Spec, end: str
) -> None:
    """A job that stops running, by any path, no longer counts against its queue or subject."""
    enqueue(store, [spec(queue="q", subject="s")])
    lease = _lease(store)
    assert store.blockers().busy_subjects == {("T", "s")}
    error = JobError(ErrorKind.INTERRUPTED.value, "stopped")
    if end == "complete":
        store.complete(lease, None)
    elif end == "fail":
        store.fail(lease, BOOM, None)
    elif end == "cancel":
        store.cancel_running(lease, error)
    else:
        store.requeue_interrupted(lease, error)
    assert store.blockers() == Blockers()
