"""Jobs taken and ended several at a time, jobs given back, and progress.

A worker that runs short jobs takes a few at once (``lease_many``), reports
their ends together (``complete_many``), and hands back the ones it never
began (``give_back``); while a job runs, its handler reports progress.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import msgspec
from storekit import BOOM, enqueue

from semantica.clock import FakeClock
from semantica.models import JobSpec, JobState
from semantica.supervisor.store import JobStore, Lease

Spec = Callable[..., JobSpec]


def _lease(store: JobStore, worker_pid: int = 1) -> Lease:
    lease = store.lease(worker_pid=worker_pid)
    assert lease is not None
    return lease


# ---------------------------------------------------------------- lease_many


def test_lease_many_takes_jobs_in_start_order_for_one_worker(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """A batch of leases: the best jobs first, each RUNNING on that worker with its own
    lease id and one attempt spent; each lease starts later than every one before it."""
    jobs = enqueue(store, [spec(), spec(priority=2), spec(), spec(priority=1)]).jobs
    leases = store.lease_many(77, 3)
    assert [lease.job_id for lease in leases] == [jobs[1].id, jobs[3].id, jobs[0].id]
    assert len({lease.lease_id for lease in leases}) == 3
    assert all(lease.attempt == 1 for lease in leases)
    running_ids = [lease.job_id for lease in leases]
    running = store.get_many(running_ids)
    assert all(job.state == JobState.RUNNING and job.worker_pid == 77 for job in running)
    [last] = store.lease_many(77, 5)
    assert last.job_id == jobs[2].id
    assert store.lease_many(77, 5) == []
    # The clock has not moved, yet each job started after the one before it.
    jobs_run = store.get_many([*running_ids, last.job_id])
    starts = [job.started_at.timestamp() for job in jobs_run if job.started_at is not None]
    assert len(starts) == 4
    assert all(a < b for a, b in itertools.pairwise(starts))


def test_lease_many_counts_its_own_jobs_against_limits_and_subjects(
    store: JobStore, spec: Spec
) -> None:
    """Within one batch, a queue's limit and a subject's one-at-a-time hold as across leases."""
    # Two QUEUED jobs of one subject: generations 1 and 2 both failed, and retried.
    [old] = enqueue(store, [spec(subject="s", generation=1)]).jobs
    store.fail(_lease(store), BOOM, None)
    [new] = enqueue(store, [spec(subject="s", generation=2)]).jobs
    store.fail(_lease(store), BOOM, None)
    store.retry(old.id)
    store.retry(new.id)
    store.set_queue("one", limit=1)
    jobs = enqueue(
        store,
        [
            spec(queue="one", priority=5),
            spec(queue="one", priority=5),
            spec("U", subject="s", priority=-1),
            spec(priority=-2),
        ],
    ).jobs
    taken = [lease.job_id for lease in store.lease_many(1, 10)]
    assert taken == [jobs[0].id, old.id, jobs[2].id, jobs[3].id]
    assert store.state(jobs[1].id) == store.state(new.id) == JobState.QUEUED


# ---------------------------------------------------------------- complete_many


def test_complete_many_skips_and_returns_the_stale_leases(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """Ends recorded together: current leases end DONE with their results; a lease no
    longer current is returned and its job left as it is."""
    enqueue(store, [spec(), spec(), spec()])
    first, second, third = store.lease_many(1, 3)
    store.fail(second, BOOM, clock.time())  # second is back in the queue: its lease is stale
    before = store.get(second.job_id)
    clock.advance(2)
    stale = store.complete_many([(first, b"1", 0.0), (second, b"2", 0.0), (third, None, 0.0)])
    assert stale == [second]
    done = store.get_many([first.job_id, third.job_id])
    assert [(job.state, job.result) for job in done] == [(JobState.DONE, 1), (JobState.DONE, None)]
    assert all(job.error is None and job.finished_at is not None for job in done)
    assert store.get(second.job_id) == before
    assert store.complete_many([]) == []


def test_complete_clears_the_error_of_an_earlier_attempt(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """A job that failed once and then succeeds shows no error."""
    [job] = enqueue(store, [spec()]).jobs
    store.fail(_lease(store), BOOM, clock.time())
    retry = _lease(store)
    assert store.get(job.id).error == BOOM
    assert store.complete_many([(retry, b'"fine"', 0.0)]) == []
    done = store.get(job.id)
    assert (done.state, done.result, done.error, done.attempts) == (JobState.DONE, "fine", None, 2)


def test_complete_many_names_a_lease_twice_and_ends_its_job_once(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """A lease reported twice in one batch ends its job once, with the first result; the
    second report is returned as stale, and the rest of the batch ends as usual."""
    enqueue(store, [spec(), spec()])
    first, second = store.lease_many(1, 2)
    ends = [(first, b"1", 0.0), (first, b"2", 0.0), (second, b"3", 0.0), (second, b"3", 0.0)]
    assert store.complete_many(ends) == [first, second]
    done = store.get_many([first.job_id, second.job_id])
    assert [(job.state, job.result) for job in done] == [(JobState.DONE, 1), (JobState.DONE, 3)]


def test_complete_many_keeps_each_result_and_start_as_given(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """Results of any JSON (text beyond ASCII, quotes, escapes, nested values, large
    numbers) are stored exactly as each worker sent them; each job's ``started_at``
    becomes its own worker's start where that is later than its lease, never later
    than the end."""
    results = [
        r'{"text": "caf\u00e9 \u2603 \ud83d\ude00 \\ \"q\"", "n": [1, 2.5, null]}',
        '"été \U0001f600 \\n"',
        "12345678901234567890",
        "-0.1",
    ]
    enqueue(store, [spec() for _ in results])
    leases = store.lease_many(1, len(results))
    leased_at = clock.time()
    clock.advance(10)
    starts = [0.0, leased_at + 3.25, leased_at - 5, leased_at + 100]
    ends = [
        (lease, text.encode(), start)
        for lease, text, start in zip(leases, results, starts, strict=True)
    ]
    assert store.complete_many(ends) == []
    jobs = store.get_many([lease.job_id for lease in leases])
    assert [job.result for job in jobs] == [msgspec.json.decode(text) for text in results]
    started = [job.started_at.timestamp() for job in jobs if job.started_at is not None]
    assert started[1] == leased_at + 3.25
    assert leased_at <= started[0] < leased_at + 1 and leased_at <= started[2] < leased_at + 1
    assert started[3] == clock.time()  # (a start after the end: the end)


def test_complete_many_ends_a_batch_of_any_size(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """However many ends a batch holds (more than one statement takes, or a size a
    statement is padded to), each current lease ends DONE with its own result, and a
    stale one among them is returned, whatever its place."""
    enqueue(store, [spec() for _ in range(150)])
    leases = store.lease_many(1, 150)
    assert len(leases) == 150
    for size in (3, 17, 130):
        batch, leases = leases[:size], leases[size:]
        stale_one = batch[-2]
        store.fail(stale_one, BOOM, clock.time())
        ends = [(lease, str(lease.job_id).encode(), 0.0) for lease in batch]
        assert store.complete_many(ends) == [stale_one]
        jobs = store.get_many([lease.job_id for lease in batch if lease is not stale_one])
        assert all(job.state == JobState.DONE for job in jobs)
        assert [job.result for job in jobs] == [job.id for job in jobs]
    assert len(leases) == 0


def test_lease_ids_and_starts_increase_in_the_order_of_a_batch(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """The leases of one batch come in start order, not id order, and so do their lease
    ids and start times; a later batch's are later than every earlier one's."""
    jobs = enqueue(store, [spec(priority=p) for p in (1, 3, 2, 5, 4)]).jobs
    batch = store.lease_many(1, 3)
    later = store.lease_many(2, 3)
    order = [lease.job_id for lease in [*batch, *later]]
    assert order == [jobs[i].id for i in (3, 4, 1, 2, 0)]
    ids = [lease.lease_id for lease in [*batch, *later]]
    assert all(a < b for a, b in itertools.pairwise(ids))
    started = [job.started_at for job in (store.get(job_id) for job_id in order)]
    assert all(a is not None and b is not None and a < b for a, b in itertools.pairwise(started))


# ---------------------------------------------------------------- give_back


def test_given_back_jobs_wait_as_if_never_taken(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """Jobs given back are QUEUED again with their attempt unspent and all else as it was,
    and start again in the order they had; a stale lease is skipped and not counted."""
    jobs = enqueue(store, [spec(priority=3), spec(priority=2), spec(priority=1)]).jobs
    before = {job.id: store.get(job.id) for job in jobs}
    leases = store.lease_many(1, 3)
    assert [lease.job_id for lease in leases] == [job.id for job in jobs]
    store.complete(leases[0], None)
    clock.advance(1)
    assert store.give_back(leases) == 2  # the first had ended: its lease is stale
    assert store.give_back(leases) == 0
    assert store.give_back([]) == 0
    for lease in leases[1:]:
        job = store.get(lease.job_id)
        assert job.state == JobState.QUEUED
        # (started_at is not compared: the SQLite store leaves it as the lease set it.)
        assert msgspec.structs.replace(job, started_at=None) == before[lease.job_id]
    again = store.lease_many(2, 3)
    assert [lease.job_id for lease in again] == [jobs[1].id, jobs[2].id]
    assert [lease.attempt for lease in again] == [1, 1]
    assert all(lease.lease_id > old.lease_id for lease in again for old in leases)


def test_a_given_back_retry_keeps_its_attempts_and_error(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """A retry handed back unstarted keeps the attempts spent before and the last error."""
    [job] = enqueue(store, [spec(max_attempts=3)]).jobs
    store.fail(_lease(store), BOOM, clock.time())
    retry = _lease(store)
    assert retry.attempt == 2
    assert store.give_back([retry]) == 1
    back = store.get(job.id)
    assert (back.state, back.attempts, back.error) == (JobState.QUEUED, 1, BOOM)
    assert _lease(store).attempt == 2


# ---------------------------------------------------------------- progress


def test_progress_is_recorded_under_the_current_lease_only(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """A running job's progress is stored; a report under a stale lease changes nothing
    (and raises nothing); the next attempt starts with no progress."""
    [job] = enqueue(store, [spec()]).jobs
    first = _lease(store)
    store.set_progress(first, 0.25, "a quarter")
    running = store.get(job.id)
    assert (running.progress, running.progress_message) == (0.25, "a quarter")
    store.fail(first, BOOM, clock.time())
    second = _lease(store)
    fresh = store.get(job.id)
    assert (fresh.progress, fresh.progress_message) == (None, None)
    store.set_progress(first, 0.9, "late")  # the first attempt's lease: ignored
    assert store.get(job.id) == fresh
    store.set_progress(second, 1.0, "")
    assert (store.get(job.id).progress, store.get(job.id).progress_message) == (1.0, "")
