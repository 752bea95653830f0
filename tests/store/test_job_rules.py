"""Job rules at the store: order, queues, retry, cancel, subjects and generations, conditions."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import pytest
from storekit import enqueue

from semantica.clock import FakeClock
from semantica.errors import BadInput, NoSuchJob
from semantica.models import ErrorKind, Job, JobError, JobSpec, JobState, QueueInfo
from semantica.supervisor.retry import next_attempt_at
from semantica.supervisor.store import EnqueueResult, JobStore, Lease, StaleLease

BOOM = JobError(kind=ErrorKind.EXCEPTION.value, message="ValueError: boom")
STOPPED = JobError(kind=ErrorKind.CANCELLED.value, message="cancelled by the user")
Spec = Callable[..., JobSpec]


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _lease(store: JobStore, *, on_ac: bool = True, idle: bool = True) -> Lease:
    lease = store.lease(worker_pid=1, on_ac=on_ac, idle=idle)
    assert lease is not None
    return lease


def _drain(store: JobStore, *, on_ac: bool = True, idle: bool = True) -> list[int]:
    """Lease until nothing more may start; the job ids in the order they started."""
    order = []
    while (lease := store.lease(worker_pid=1, on_ac=on_ac, idle=idle)) is not None:
        order.append(lease.job_id)
    return order


def _queue(store: JobStore, name: str) -> QueueInfo:
    [info] = [q for q in store.queues() if q.name == name]
    return info


def _states(store: JobStore, jobs: list[Job]) -> list[JobState]:
    return [store.state(job.id) for job in jobs]


# ---------------------------------------------------------------- rule 2: order


def test_priority_orders_jobs_across_queues(store: JobStore, spec: Spec) -> None:
    """Jobs start highest priority first whatever their queue, FIFO within one priority."""
    jobs = enqueue(
        store,
        [
            spec(queue="a", priority=1),
            spec(queue="b", priority=3),
            spec(queue="a", priority=3),
            spec(queue="c", priority=-2),
            spec(queue="b", priority=1),
            spec(queue="c", priority=3),
        ],
    ).jobs
    ids = [job.id for job in jobs]
    assert _drain(store) == [ids[1], ids[2], ids[5], ids[0], ids[4], ids[3]]


def test_paused_queue_does_not_hold_back_other_queues(store: JobStore, spec: Spec) -> None:
    """A high-priority job in a paused queue lets lower-priority jobs of other queues start."""
    store.set_queue("slow", paused=True)
    _held, low, lower = enqueue(
        store,
        [spec(queue="slow", priority=100), spec(priority=5), spec(queue="other", priority=-5)],
    ).jobs
    assert _drain(store) == [low.id, lower.id]


def test_queue_at_its_limit_does_not_hold_back_other_queues(store: JobStore, spec: Spec) -> None:
    """A full queue's next job waits while lower-priority jobs of other queues start."""
    store.set_queue("one", limit=1)
    first, second, other = enqueue(
        store, [spec(queue="one", priority=9), spec(queue="one", priority=9), spec(priority=0)]
    ).jobs
    assert _drain(store) == [first.id, other.id]
    assert store.state(second.id) == JobState.QUEUED


# ---------------------------------------------------------------- rule 3: queues


def test_paused_queue_starts_nothing_but_running_jobs_go_on(store: JobStore, spec: Spec) -> None:
    """Pausing a queue stops new starts in it, its running job still finishes, resume restarts."""
    running, waiting = enqueue(store, [spec(queue="q"), spec(queue="q")]).jobs
    lease = _lease(store)
    assert lease.job_id == running.id
    info = store.set_queue("q", paused=True)
    assert info.paused is True
    assert store.lease(worker_pid=1) is None
    store.complete(lease, b"1")
    assert store.state(running.id) == JobState.DONE
    assert store.lease(worker_pid=1) is None
    assert store.state(waiting.id) == JobState.QUEUED
    assert store.set_queue("q", paused=False).paused is False
    assert _lease(store).job_id == waiting.id


def test_pause_before_any_job_applies_to_later_jobs(store: JobStore, spec: Spec) -> None:
    """A queue paused before it has jobs keeps its later jobs waiting."""
    store.set_queue("q", paused=True)
    enqueue(store, [spec(queue="q")])
    assert store.lease(worker_pid=1) is None


def test_queue_limit_caps_running_jobs(store: JobStore, spec: Spec) -> None:
    """A queue with limit 2 runs at most two of its jobs at once; a finished one frees a slot."""
    store.set_queue("q", limit=2)
    jobs = enqueue(store, [spec(queue="q") for _ in range(4)]).jobs
    first, second = _lease(store), _lease(store)
    assert [first.job_id, second.job_id] == [jobs[0].id, jobs[1].id]
    assert store.lease(worker_pid=1) is None
    store.fail(first, BOOM, None)
    assert _lease(store).job_id == jobs[2].id
    assert store.lease(worker_pid=1) is None
    assert _queue(store, "q").counts["RUNNING"] == 2


def test_queue_limit_zero_is_no_cap(store: JobStore, spec: Spec) -> None:
    """Setting a queue's limit back to 0 lets all of its jobs run at once."""
    store.set_queue("q", limit=1)
    enqueue(store, [spec(queue="q") for _ in range(3)])
    assert len(_drain(store)) == 1
    assert store.set_queue("q", limit=0).limit == 0
    assert len(_drain(store)) == 2


def test_lowering_a_limit_stops_no_running_job(store: JobStore, spec: Spec) -> None:
    """A limit lowered below the number running leaves those jobs running and starts no more."""
    jobs = enqueue(store, [spec(queue="q") for _ in range(4)]).jobs
    leases = [_lease(store), _lease(store), _lease(store)]
    store.set_queue("q", limit=1)
    assert store.lease(worker_pid=1) is None
    assert _states(store, jobs) == [JobState.RUNNING] * 3 + [JobState.QUEUED]
    store.complete(leases[0], None)
    store.complete(leases[1], None)
    assert store.lease(worker_pid=1) is None  # still one running: the limit is reached
    store.complete(leases[2], None)
    assert _lease(store).job_id == jobs[3].id


def test_limit_of_one_queue_leaves_others_alone(store: JobStore, spec: Spec) -> None:
    """A limit on one queue does not cap how many jobs of another queue run."""
    store.set_queue("small", limit=1)
    enqueue(store, [spec(queue="small"), spec(queue="small"), spec(), spec(), spec()])
    assert len(_drain(store)) == 4


def test_queues_lists_counts_paused_and_limit(store: JobStore, spec: Spec) -> None:
    """queues() shows every queue with a job or a setting, by name, with counts of every state."""
    store.set_queue("idle", limit=3)
    store.set_queue("work", paused=True)
    enqueue(store, [spec(queue="busy"), spec(queue="busy"), spec(queue="work")])
    running = _lease(store)
    enqueue(store, [spec(queue="busy")])
    assert store.cancel_queued(running.job_id + 1, "no") is True
    zero = {state.value: 0 for state in JobState}
    assert store.queues() == [
        QueueInfo(name="busy", counts=zero | {"RUNNING": 1, "CANCELLED": 1, "QUEUED": 1}),
        QueueInfo(name="idle", limit=3, counts=zero),
        QueueInfo(name="work", paused=True, counts=zero | {"QUEUED": 1}),
    ]


def test_queues_without_finished_counts_only_queued_and_running(
    store: JobStore, spec: Spec
) -> None:
    """queues(finished=False): the same queues, with their QUEUED and RUNNING counts
    alone (the finished jobs are not read)."""
    store.set_queue("idle", limit=3)
    enqueue(store, [spec(queue="busy"), spec(queue="busy"), spec(queue="busy"), spec(queue="b")])
    running = _lease(store)
    done = _lease(store)
    store.complete(done, None)
    assert store.cancel_queued(running.job_id + 2, "no") is True
    assert store.queues(finished=False) == [
        QueueInfo(name="b", counts={"QUEUED": 1, "RUNNING": 0}),
        QueueInfo(name="busy", counts={"QUEUED": 0, "RUNNING": 1}),
        QueueInfo(name="idle", limit=3, counts={"QUEUED": 0, "RUNNING": 0}),
    ]


def test_set_queue_changes_only_what_it_is_given(store: JobStore) -> None:
    """Changing a queue's limit keeps it paused, and resuming it keeps its limit."""
    store.set_queue("q", paused=True)
    assert store.set_queue("q", limit=4) == QueueInfo(
        name="q", paused=True, limit=4, counts={state.value: 0 for state in JobState}
    )
    info = store.set_queue("q", paused=False)
    assert (info.paused, info.limit) == (False, 4)


def test_queue_settings_survive_reopening(open_store: Callable[[], JobStore], spec: Spec) -> None:
    """A paused queue and a queue limit are still in force after the store is reopened."""
    first = open_store()
    first.set_queue("paused", paused=True)
    first.set_queue("capped", limit=1)
    enqueue(first, [spec(queue="paused"), spec(queue="capped"), spec(queue="capped")])
    first.close()
    store = open_store()
    try:
        infos = {q.name: q for q in store.queues()}
        assert (infos["paused"].paused, infos["paused"].limit) == (True, 0)
        assert (infos["capped"].paused, infos["capped"].limit) == (False, 1)
        assert len(_drain(store)) == 1
    finally:
        store.close()


# ---------------------------------------------------------------- rule 5: retries


def test_failed_attempts_retry_until_max_attempts(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """A job that keeps failing runs max_attempts times, backing off between runs, then FAILS."""
    [job] = enqueue(store, [spec(max_attempts=3, backoff=1.0)]).jobs
    rng = random.Random(7)
    for attempt in (1, 2, 3):
        lease = _lease(store)
        assert lease.attempt == attempt
        retry_at = next_attempt_at(clock.time(), attempt, 3, lease.backoff, False, rng)
        state = store.fail(lease, BOOM, retry_at)
        if attempt < 3:
            assert retry_at is not None and state == JobState.QUEUED
            assert store.lease(worker_pid=1) is None  # not before its retry time
            clock.advance(retry_at - clock.time())
        else:
            assert retry_at is None and state == JobState.FAILED
    failed = store.get(job.id)
    assert (failed.state, failed.attempts, failed.error) == (JobState.FAILED, 3, BOOM)
    assert failed.finished_at == _ts(clock.time())
    clock.advance(3600)
    assert store.lease(worker_pid=1) is None


def test_permanent_failure_is_not_retried(store: JobStore, spec: Spec, clock: FakeClock) -> None:
    """A permanent error on the first attempt fails the job at once, whatever its max_attempts."""
    [job] = enqueue(store, [spec(max_attempts=5)]).jobs
    lease = _lease(store)
    retry_at = next_attempt_at(clock.time(), lease.attempt, 5, None, True)
    assert store.fail(lease, BOOM, retry_at) == JobState.FAILED
    assert store.get(job.id).attempts == 1


def test_retry_of_failed_job_gives_a_fresh_budget(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """Retrying a FAILED job queues it now with attempts reset: a full budget of attempts again."""
    [job] = enqueue(store, [spec(max_attempts=2)]).jobs
    store.fail(_lease(store), BOOM, clock.time())
    store.fail(_lease(store), BOOM, None)
    assert store.get(job.id).attempts == 2
    clock.advance(50)
    retried = store.retry(job.id)
    assert retried == store.get(job.id)
    assert retried.state == JobState.QUEUED
    assert retried.attempts == 0
    assert retried.run_after == _ts(clock.time())
    assert retried.finished_at is None
    assert retried.error == BOOM  # the last error stays until the next attempt ends
    first = _lease(store)
    assert first.attempt == 1
    assert store.fail(first, BOOM, clock.time()) == JobState.QUEUED
    second = _lease(store)
    assert second.attempt == 2
    store.complete(second, b'"ok"')
    done = store.get(job.id)
    assert (done.state, done.attempts, done.result, done.error) == (JobState.DONE, 2, "ok", None)


def test_retry_of_cancelled_jobs(store: JobStore, spec: Spec) -> None:
    """A job cancelled while queued or while running can be retried and runs again."""
    queued, running = enqueue(store, [spec(priority=-1), spec()]).jobs
    store.cancel_running(_lease(store), STOPPED)
    assert store.cancel_queued(queued.id, "no") is True
    for job in (queued, running):
        retried = store.retry(job.id)
        assert (retried.state, retried.attempts) == (JobState.QUEUED, 0)
    assert _drain(store) == [running.id, queued.id]


def _done(store: JobStore, spec: Spec) -> int:
    [job] = enqueue(store, [spec()]).jobs
    store.complete(_lease(store), None)
    return job.id


def _queued(store: JobStore, spec: Spec) -> int:
    return enqueue(store, [spec()]).jobs[0].id


def _running(store: JobStore, spec: Spec) -> int:
    [job] = enqueue(store, [spec()]).jobs
    assert _lease(store).job_id == job.id
    return job.id


def _superseded(store: JobStore, spec: Spec) -> int:
    old, _new = enqueue(store, [spec(subject="s"), spec(subject="s")]).jobs
    return old.id


@pytest.mark.parametrize(
    "make",
    [_done, _queued, _running, _superseded],
    ids=["DONE", "QUEUED", "RUNNING", "SUPERSEDED"],
)
def test_retry_of_a_job_that_is_not_failed_or_cancelled_is_refused(
    store: JobStore, spec: Spec, clock: FakeClock, make: Callable[[JobStore, Spec], int]
) -> None:
    """Retrying a DONE, QUEUED, RUNNING or SUPERSEDED job raises BadInput and changes nothing."""
    job_id = make(store, spec)
    before = store.get(job_id)
    counts = store.counts()
    clock.advance(10)
    with pytest.raises(BadInput, match=f"job {job_id} is {before.state.value}"):
        store.retry(job_id)
    assert store.get(job_id) == before
    assert store.counts() == counts


def test_retry_of_a_running_job_never_starts_it_twice(store: JobStore, spec: Spec) -> None:
    """Asking to retry a running job cannot make a second worker run it while the first does."""
    [job] = enqueue(store, [spec(subject="s")]).jobs
    first = store.lease(worker_pid=1)
    assert first is not None
    with pytest.raises(BadInput):
        store.retry(job.id)
    assert store.lease(worker_pid=2) is None
    store.complete(first, b"1")
    assert store.get(job.id).state == JobState.DONE


def test_retry_of_an_older_generation_is_refused_while_a_newer_one_stands(
    store: JobStore, spec: Spec
) -> None:
    """Generation 1 failed; once generation 2 is queued, running or DONE, retrying
    generation 1 is refused (it would undo the newer one's work) and changes nothing.
    A newer generation that itself failed or was cancelled does not stand in the way."""
    [old] = enqueue(store, [spec(subject="s", generation=1)]).jobs
    store.cancel_running(_lease(store), STOPPED)
    [new] = enqueue(store, [spec(subject="s", generation=2)]).jobs
    for make_state in ("QUEUED", "RUNNING", "DONE"):
        if make_state == "RUNNING":
            lease = _lease(store)
        if make_state == "DONE":
            store.complete(lease, None)
        with pytest.raises(BadInput, match=f"job {new.id} is generation 2 and {make_state}"):
            store.retry(old.id)
        assert store.get(old.id).state == JobState.CANCELLED
    [other] = enqueue(store, [spec(subject="t", generation=1)]).jobs
    store.cancel_queued(other.id, "no")
    [newer] = enqueue(store, [spec(subject="t", generation=2)]).jobs
    store.cancel_queued(newer.id, "no")
    assert store.retry(other.id).state == JobState.QUEUED


def test_retry_of_unknown_job_raises_no_such_job(store: JobStore) -> None:
    """Retrying a job id that does not exist raises NoSuchJob."""
    with pytest.raises(NoSuchJob):
        store.retry(404)


# ---------------------------------------------------------------- cancel


def test_cancel_queued_job(store: JobStore, spec: Spec, clock: FakeClock) -> None:
    """A cancelled queued job is CANCELLED at once with its reason, and never starts."""
    [job] = enqueue(store, [spec()]).jobs
    clock.advance(4)
    assert store.cancel_queued(job.id, "not needed") is True
    cancelled = store.get(job.id)
    assert cancelled.state == JobState.CANCELLED
    assert cancelled.error == JobError(ErrorKind.CANCELLED.value, "not needed")
    assert cancelled.finished_at == _ts(clock.time())
    assert cancelled.attempts == 0
    assert store.lease(worker_pid=1) is None


def _failed(store: JobStore, spec: Spec) -> int:
    [job] = enqueue(store, [spec()]).jobs
    store.fail(_lease(store), BOOM, None)
    return job.id


def _cancelled(store: JobStore, spec: Spec) -> int:
    [job] = enqueue(store, [spec()]).jobs
    store.cancel_running(_lease(store), STOPPED)
    return job.id


@pytest.mark.parametrize(
    "make",
    [_running, _done, _failed, _cancelled, _superseded],
    ids=["RUNNING", "DONE", "FAILED", "CANCELLED", "SUPERSEDED"],
)
def test_cancel_queued_of_a_job_not_queued_changes_nothing(
    store: JobStore, spec: Spec, clock: FakeClock, make: Callable[[JobStore, Spec], int]
) -> None:
    """cancel_queued of a job that is not QUEUED returns False and leaves the job as it was."""
    job_id = make(store, spec)
    before = store.get(job_id)
    clock.advance(3)
    assert store.cancel_queued(job_id, "too late") is False
    assert store.get(job_id) == before


def test_cancel_queued_of_unknown_job_is_false(store: JobStore) -> None:
    """cancel_queued of an id that names no job returns False."""
    assert store.cancel_queued(404, "nothing") is False


def test_cancel_running_job(store: JobStore, spec: Spec, clock: FakeClock) -> None:
    """A cancelled running job is CANCELLED, frees its subject and refuses late reports."""
    [job] = enqueue(store, [spec(subject="s")]).jobs
    lease = _lease(store)
    [newer] = enqueue(store, [spec(subject="s")]).jobs
    assert store.lease(worker_pid=1) is None
    clock.advance(2)
    store.cancel_running(lease, STOPPED)
    cancelled = store.get(job.id)
    assert cancelled.state == JobState.CANCELLED
    assert cancelled.error == STOPPED
    assert cancelled.finished_at == _ts(clock.time())
    assert cancelled.attempts == 1
    with pytest.raises(StaleLease):
        store.complete(lease, b"1")
    with pytest.raises(StaleLease):
        store.cancel_running(lease, STOPPED)
    assert store.get(job.id) == cancelled
    assert _lease(store).job_id == newer.id


# ---------------------------------------------------------------- rule 8: subjects


def test_newer_generation_supersedes_queued_older_ones(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """Each newer generation of a subject replaces the queued older one, which never runs."""
    [one] = enqueue(store, [spec(subject="f", generation=1)]).jobs
    result = enqueue(store, [spec(subject="f", generation=2)])
    [two] = result.jobs
    assert result.superseded == [one.id]
    clock.advance(5)
    result = enqueue(store, [spec(subject="f", generation=3)])
    [three] = result.jobs
    assert not three.deduplicated and three.generation == 3
    assert result.superseded == [two.id]
    assert result.running_older == []
    for old, by in ((one, two), (two, three)):
        job = store.get(old.id)
        assert job.state == JobState.SUPERSEDED
        assert job.superseded_by == by.id
        assert job.error is None and job.attempts == 0
    assert store.get(two.id).finished_at == _ts(clock.time())
    assert _drain(store) == [three.id]


def test_newer_generation_supersedes_a_job_waiting_to_retry(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """A job of a subject waiting for its retry time is replaced by a newer generation."""
    [old] = enqueue(store, [spec(subject="f")]).jobs
    store.fail(_lease(store), BOOM, clock.time() + 60)
    result = enqueue(store, [spec(subject="f")])
    assert result.superseded == [old.id]
    clock.advance(60)
    assert _drain(store) == [result.jobs[0].id]
    assert store.get(old.id).error == BOOM


def test_not_newer_generation_returns_the_queued_job(store: JobStore, spec: Spec) -> None:
    """Enqueuing a generation not above the queued one returns that job and adds nothing."""
    [queued] = enqueue(store, [spec(subject="f", generation=5)]).jobs
    for generation in (5, 4, 0):
        result = enqueue(store, [spec(subject="f", generation=generation, payload="new")])
        [job] = result.jobs
        assert job.deduplicated is True
        assert job.id == queued.id and job.generation == 5 and job.payload is None
        assert result.superseded == [] and result.running_older == []
    assert store.counts()["QUEUED"] == 1
    assert len(store.list()) == 1
    assert store.get(queued.id).deduplicated is False


def test_not_newer_generation_returns_the_running_job(store: JobStore, spec: Spec) -> None:
    """Enqueuing a generation not above the running one returns the running job."""
    [running] = enqueue(store, [spec(subject="f", generation=2)]).jobs
    _lease(store)
    [job] = enqueue(store, [spec(subject="f", generation=2, supersede_running=True)]).jobs
    assert (job.id, job.state, job.deduplicated) == (running.id, JobState.RUNNING, True)
    assert len(store.list()) == 1


def test_deduplication_returns_the_newest_live_job(store: JobStore, spec: Spec) -> None:
    """With generation 1 running and 2 queued, enqueuing generation 1 again returns generation 2."""
    enqueue(store, [spec(subject="f", generation=1)])
    _lease(store)
    [two] = enqueue(store, [spec(subject="f", generation=2)]).jobs
    [job] = enqueue(store, [spec(subject="f", generation=1)]).jobs
    assert job.id == two.id and job.deduplicated


def test_finished_generations_do_not_deduplicate(store: JobStore, spec: Spec) -> None:
    """A generation not above a finished one is still added: only queued or running jobs count."""
    [done] = enqueue(store, [spec(subject="f", generation=4)]).jobs
    store.complete(_lease(store), None)
    [job] = enqueue(store, [spec(subject="f", generation=4)]).jobs
    assert not job.deduplicated and job.id != done.id
    assert store.state(job.id) == JobState.QUEUED


def test_enqueue_without_generation_goes_one_above_the_newest(store: JobStore, spec: Spec) -> None:
    """Without a generation a job is one above the newest of its subject, so the latest wins."""
    [first] = enqueue(store, [spec(subject="f")]).jobs
    assert first.generation == 1
    [seven] = enqueue(store, [spec(subject="f", generation=7)]).jobs
    result = enqueue(store, [spec(subject="f")])
    [latest] = result.jobs
    assert latest.generation == 8 and not latest.deduplicated
    assert result.superseded == [seven.id]
    store.complete(_lease(store), None)
    # The newest counts even when it has finished.
    [after] = enqueue(store, [spec(subject="f")]).jobs
    assert after.generation == 9


def test_generations_are_per_type_and_subject(store: JobStore, spec: Spec) -> None:
    """Jobs of another type or another subject neither supersede nor deduplicate each other."""
    a = enqueue(store, [spec("A", subject="f", generation=3)]).jobs[0]
    result = enqueue(
        store,
        [
            spec("B", subject="f", generation=9),
            spec("A", subject="g", generation=9),
            spec("A", subject="f", generation=3),
            spec("A"),
        ],
    )
    assert result.superseded == []
    assert [job.deduplicated for job in result.jobs] == [False, False, True, False]
    assert result.jobs[2].id == a.id
    assert result.jobs[3].generation is None
    assert store.counts()["QUEUED"] == 4


def test_jobs_without_subject_never_deduplicate(store: JobStore, spec: Spec) -> None:
    """Identical jobs without a subject are all added and all run."""
    jobs = enqueue(store, [spec(), spec(), spec()]).jobs
    assert not any(job.deduplicated for job in jobs)
    assert len(_drain(store)) == 3


def test_two_jobs_of_one_subject_never_run_at_once(store: JobStore, spec: Spec) -> None:
    """While a subject's job runs its newer job waits, and other jobs start past it."""
    [old] = enqueue(store, [spec(subject="f")]).jobs
    running = _lease(store)
    new, other_type, other = enqueue(
        store, [spec(subject="f", priority=9), spec("U", subject="f", priority=1), spec()]
    ).jobs
    assert _drain(store) == [other_type.id, other.id]
    assert store.state(new.id) == JobState.QUEUED
    assert store.state(old.id) == JobState.RUNNING
    store.complete(running, None)
    assert _drain(store) == [new.id]


def test_subject_busy_across_queues(store: JobStore, spec: Spec) -> None:
    """A subject's job in another queue still waits while the subject's running job runs."""
    enqueue(store, [spec(queue="a", subject="f")])
    first = _lease(store)
    [second] = enqueue(store, [spec(queue="b", subject="f")]).jobs
    assert store.lease(worker_pid=1) is None
    store.fail(first, BOOM, None)
    assert _lease(store).job_id == second.id


def test_supersede_running_reports_the_running_older_job(store: JobStore, spec: Spec) -> None:
    """With supersede_running the enqueue names the running older job to stop, still running."""
    [running] = enqueue(store, [spec(subject="f", generation=1)]).jobs
    _lease(store)
    [queued] = enqueue(store, [spec(subject="f", generation=2)]).jobs
    result = enqueue(store, [spec(subject="f", generation=3, supersede_running=True)])
    [new] = result.jobs
    assert result.running_older == [(running.id, new.id)]
    assert result.superseded == [queued.id]
    assert store.state(running.id) == JobState.RUNNING


def test_without_supersede_running_running_jobs_are_not_named(store: JobStore, spec: Spec) -> None:
    """Without supersede_running a newer generation leaves the running job off the result."""
    enqueue(store, [spec(subject="f")])
    _lease(store)
    result = enqueue(store, [spec(subject="f")])
    assert result.running_older == [] and result.superseded == []


def test_batch_later_spec_supersedes_earlier_spec(store: JobStore, spec: Spec) -> None:
    """In one batch, a later job of a subject supersedes the batch's earlier job of it."""
    result = enqueue(
        store, [spec(subject="f", payload=1), spec(subject="g"), spec(subject="f", payload=2)]
    )
    first, other, last = result.jobs
    assert (first.generation, other.generation, last.generation) == (1, 1, 2)
    assert result.superseded == [first.id]
    old = store.get(first.id)
    assert old.state == JobState.SUPERSEDED and old.superseded_by == last.id
    assert _drain(store) == [other.id, last.id]


def test_batch_later_spec_with_same_generation_is_deduplicated(store: JobStore, spec: Spec) -> None:
    """In one batch, a later spec of the same subject and generation returns the earlier job."""
    result = enqueue(store, [spec(subject="f", generation=2), spec(subject="f", generation=2)])
    first, again = result.jobs
    assert again.deduplicated and again.id == first.id
    assert len(store.list()) == 1


def test_batch_result_shows_the_superseded_job_as_superseded(store: JobStore, spec: Spec) -> None:
    """The enqueue result shows a job superseded within its own batch as SUPERSEDED."""
    result = enqueue(store, [spec(subject="f"), spec(subject="f")])
    first, last = result.jobs
    assert first == store.get(first.id)
    assert first.state == JobState.SUPERSEDED and first.superseded_by == last.id


def test_batch_result_shows_a_deduplicated_job_superseded_later_in_the_batch(
    store: JobStore, spec: Spec
) -> None:
    """A batch entry returning an existing job shows it SUPERSEDED if a later entry replaced it."""
    [old] = enqueue(store, [spec(subject="f")]).jobs
    result = enqueue(store, [spec(subject="f", generation=1), spec(subject="f")])
    again, new = result.jobs
    assert again.id == old.id and again.deduplicated
    assert (again.state, again.superseded_by) == (JobState.SUPERSEDED, new.id)
    assert again.finished_at == store.get(old.id).finished_at


def _subjects_batch(spec: Spec, type: str) -> list[JobSpec]:
    """Jobs of many subjects in one batch: most of a subject of their own and no
    generation (which a store may take together), among every other kind."""
    return [
        *(spec(type, subject=f"s{n}", payload=n) for n in range(2)),
        spec(type, subject="s2", supersede_running=True),
        spec(type, subject="s3", priority=3, delay=5),
        spec(type),
        spec(type, subject="s4"),
        spec(type, subject="s1"),  # again: supersedes the one earlier in the batch
        spec(type, subject="s5", generation=1),  # deduplicated
        spec(type, subject="s6"),
        spec(type, subject="s0", generation=9),
        *(spec(type, subject=f"t{n}") for n in range(40)),
        spec(type, after=[1]),
        spec(type, subject="t7"),
    ]


def _subjects_setup(store: JobStore, spec: Spec, type: str) -> list[int]:
    """Older jobs of the subjects: generation 1 of each, 2 of s0 and s1, s2's RUNNING."""
    jobs = enqueue(store, [spec(type, subject=f"s{n}", priority=9 * (n == 2)) for n in range(6)])
    jobs.jobs += enqueue(store, [spec(type, subject="s0"), spec(type, subject="s1")]).jobs
    lease = store.lease(worker_pid=1)
    assert lease is not None and lease.job_id == jobs.jobs[2].id
    return [job.id for job in jobs.jobs]


def test_a_batch_of_many_subjects_ends_as_one_job_at_a_time_would(
    store: JobStore, spec: Spec
) -> None:
    """A batch of jobs of many subjects leaves the jobs, old and new, as the same specs
    enqueued one at a time do: generations, states, who superseded whom, the RUNNING
    older job named for --supersede-running, and the result shows the jobs as stored."""
    outcomes = []
    for type, together in (("A", True), ("B", False)):
        setup = _subjects_setup(store, spec, type)
        batch = _subjects_batch(spec, type)
        if together:
            result = enqueue(store, batch)
            assert [j.id for j in result.jobs if not j.deduplicated] == sorted(
                j.id for j in result.jobs if not j.deduplicated
            )
            stored = store.get_many([job.id for job in result.jobs])
            assert [msgspec.structs.replace(j, deduplicated=False) for j in result.jobs] == stored
        else:
            results = [enqueue(store, [one]) for one in batch]
            result = EnqueueResult(
                jobs=[job for r in results for job in r.jobs],
                superseded=[i for r in results for i in r.superseded],
                running_older=[pair for r in results for pair in r.running_older],
            )
        names = {job_id: f"old{n}" for n, job_id in enumerate(setup)}
        names |= {job.id: f"new{n}" for n, job in enumerate(result.jobs) if not job.deduplicated}

        def name(job_id: int | None, names: dict[int, str] = names) -> str | None:
            return None if job_id is None else names.get(job_id, "?")

        ids = setup + [job.id for job in result.jobs]
        outcomes.append(
            (
                [
                    (name(j.id), j.subject, j.generation, j.state, name(j.superseded_by))
                    for j in store.get_many(ids)
                ],
                sorted(map(name, result.superseded)),  # type: ignore[arg-type]
                [(name(old), name(new)) for old, new in result.running_older],
            )
        )
    together, one_by_one = outcomes
    assert together == one_by_one
    assert together[2] == [("old2", "new2")]
    assert len(together[1]) == 7  # s0 and s1 (old and the batch's own), s3, s4, t7's first


# ---------------------------------------------------------------- rule 9: conditions


def test_require_charging_waits_for_ac(store: JobStore, spec: Spec) -> None:
    """A job that requires charging starts only on AC power; other jobs start meanwhile."""
    charging, plain = enqueue(store, [spec(require_charging=True, priority=5), spec()]).jobs
    assert _drain(store, on_ac=False) == [plain.id]
    assert _drain(store, on_ac=True, idle=False) == [charging.id]


def test_require_idle_waits_for_an_idle_machine(store: JobStore, spec: Spec) -> None:
    """A job that requires an idle CPU starts only when the machine is idle."""
    idle, plain = enqueue(store, [spec(require_idle=True, priority=5), spec()]).jobs
    assert _drain(store, idle=False) == [plain.id]
    assert _drain(store, on_ac=False, idle=True) == [idle.id]


def test_both_conditions_must_hold(store: JobStore, spec: Spec) -> None:
    """A job that requires charging and idle waits until both hold."""
    [job] = enqueue(store, [spec(require_charging=True, require_idle=True)]).jobs
    assert store.lease(worker_pid=1, on_ac=True, idle=False) is None
    assert store.lease(worker_pid=1, on_ac=False, idle=True) is None
    assert _lease(store, on_ac=True, idle=True).job_id == job.id


def test_conditions_wanted_follows_queued_jobs(store: JobStore, spec: Spec) -> None:
    """conditions_wanted tells whether queued jobs want AC or idle; running jobs want nothing."""
    assert store.conditions_wanted() == (False, False)
    charging, idle = enqueue(store, [spec(require_charging=True), spec(require_idle=True)]).jobs
    assert store.conditions_wanted() == (True, True)
    assert store.cancel_queued(idle.id, "no") is True
    assert store.conditions_wanted() == (True, False)
    lease = _lease(store)
    assert lease.job_id == charging.id
    assert store.conditions_wanted() == (False, False)  # running jobs want nothing more
    store.fail(lease, BOOM, store.clock.time() + 5)
    assert store.conditions_wanted() == (True, False)  # waiting for its retry, it wants AC again
