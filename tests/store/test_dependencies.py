"""Dependencies at the store: jobs that wait for other jobs (--after, --after-end).

Each test runs on every backend. A job waiting for others is QUEUED and never
leased; an end of a job resolves the edges towards it in the same write (DONE
meets them; any other end cancels the waiting jobs, down the chain); a retry
with dependents brings the chain back; retention takes the edges with the jobs.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from storekit import BOOM, STOPPED, enqueue

from semantica.clock import FakeClock
from semantica.errors import BadInput, NoSuchJob
from semantica.models import ErrorKind, JobSpec, JobState, WaitReason
from semantica.supervisor.store import JobStore, Lease, StoreUpkeep

Spec = Callable[..., JobSpec]


def _take(store: JobStore, job_id: int) -> Lease:
    """Lease until ``job_id`` is taken (others leased meanwhile are given back)."""
    others: list[Lease] = []
    while True:
        lease = store.lease(worker_pid=1)
        assert lease is not None, f"job {job_id} was never leased"
        if lease.job_id == job_id:
            store.give_back(others)
            return lease
        others.append(lease)


def _leasable(store: JobStore) -> set[int]:
    taken = store.lease_many(1, 10_000)
    store.give_back(taken)
    return {lease.job_id for lease in taken}


def _done(store: JobStore, job_id: int) -> None:
    store.complete(_take(store, job_id), None)


def _failed(store: JobStore, job_id: int) -> None:
    assert store.fail(_take(store, job_id), BOOM, None) == JobState.FAILED


def test_a_job_waits_until_each_job_it_waits_for_is_done(store: JobStore, spec: Spec) -> None:
    a, b = enqueue(store, [spec(), spec()]).jobs
    [c] = enqueue(store, [spec(after=[a.id, b.id])]).jobs
    assert c.state == JobState.QUEUED and c.waiting_on == [a.id, b.id]
    assert _leasable(store) == {a.id, b.id}
    _done(store, a.id)
    assert store.get(c.id).waiting_on == [b.id]
    assert c.id not in _leasable(store)
    _done(store, b.id)
    got = store.get(c.id)
    assert got.waiting_on is None
    assert _leasable(store) == {c.id}
    assert store.take_cascaded() == []


def test_a_failed_dependency_cancels_the_chain_three_levels_down(
    store: JobStore, spec: Spec
) -> None:
    a = enqueue(store, [spec()]).jobs[0]
    b = enqueue(store, [spec(after=[a.id])]).jobs[0]
    c = enqueue(store, [spec(after=[b.id])]).jobs[0]
    d = enqueue(store, [spec(after=[c.id])]).jobs[0]
    other = enqueue(store, [spec()]).jobs[0]
    _failed(store, a.id)
    for job_id, cause in ((b.id, a.id), (c.id, b.id), (d.id, c.id)):
        job = store.get(job_id)
        assert job.state == JobState.CANCELLED
        assert job.error is not None and job.error.kind == ErrorKind.DEPENDENCY_FAILED
        ended = "FAILED" if cause == a.id else "CANCELLED"
        assert job.error.message == f"job {cause} ended {ended}"
    assert store.take_cascaded() == [b.id, c.id, d.id]
    assert store.take_cascaded() == []
    assert _leasable(store) == {other.id}


def test_after_end_waits_for_any_end(store: JobStore, spec: Spec) -> None:
    a, b = enqueue(store, [spec(), spec()]).jobs
    [clean] = enqueue(store, [spec(after_end=[a.id, b.id])]).jobs
    _failed(store, a.id)
    assert store.get(clean.id).state == JobState.QUEUED
    assert store.cancel_queued(b.id, "no")
    assert store.get(clean.id).waiting_on is None
    assert _leasable(store) == {clean.id}
    assert store.take_cascaded() == []


def test_dependencies_already_ended_are_resolved_at_enqueue(store: JobStore, spec: Spec) -> None:
    done, failed = enqueue(store, [spec(), spec()]).jobs
    _done(store, done.id)
    _failed(store, failed.id)
    [ready] = enqueue(store, [spec(after=[done.id])]).jobs
    assert ready.state == JobState.QUEUED and ready.waiting_on is None
    [doomed] = enqueue(store, [spec(after=[done.id, failed.id])]).jobs
    assert doomed.state == JobState.CANCELLED
    assert doomed.error is not None and doomed.error.message == f"job {failed.id} ended FAILED"
    assert store.get(doomed.id).state == JobState.CANCELLED
    assert store.take_cascaded() == [doomed.id]
    [cleanup] = enqueue(store, [spec(after_end=[failed.id])]).jobs
    assert cleanup.state == JobState.QUEUED and cleanup.waiting_on is None
    assert _leasable(store) == {ready.id, cleanup.id}


def test_an_unknown_job_id_adds_nothing(store: JobStore, spec: Spec) -> None:
    [a] = enqueue(store, [spec()]).jobs
    with pytest.raises(NoSuchJob, match="no job 999"):
        enqueue(store, [spec(), spec(after=[a.id, 999])])
    assert store.count() == 1


def test_a_graph_with_refs_is_inserted_in_order_and_answered_in_the_requests(
    store: JobStore, spec: Spec
) -> None:
    jobs = enqueue(
        store,
        [
            spec("deploy", after=["test", "build"]),
            spec("test", ref="test", after=["build"]),
            spec("build", ref="build"),
            spec("lint"),
        ],
    ).jobs
    deploy, test, build, lint = jobs
    assert [j.type for j in jobs] == ["deploy", "test", "build", "lint"]
    assert build.id < test.id < deploy.id  # each after those it waits for
    assert deploy.waiting_on == sorted([test.id, build.id]) and test.waiting_on == [build.id]
    assert _leasable(store) == {build.id, lint.id}
    shown = store.get(build.id)
    assert shown.dependents == sorted([test.id, deploy.id]) and shown.dependents_count == 2
    shown = store.get(deploy.id)
    assert shown.dependencies is not None
    assert [(d.id, d.mode, d.state) for d in shown.dependencies] == [
        (build.id, "done", JobState.QUEUED),
        (test.id, "done", JobState.QUEUED),
    ]


def test_refs_that_make_a_cycle_or_name_nothing_are_refused(store: JobStore, spec: Spec) -> None:
    with pytest.raises(BadInput, match="cycle: 'a' -> 'b' -> 'a'"):
        enqueue(store, [spec(ref="a", after=["b"]), spec(ref="b", after=["a"])])
    with pytest.raises(BadInput, match="no job of the request has ref 'x'"):
        enqueue(store, [spec(after=["x"])])
    with pytest.raises(BadInput, match="names two jobs"):
        enqueue(store, [spec(ref="a"), spec(ref="a")])
    assert store.count() == 0


def test_a_lease_never_takes_a_waiting_job(store: JobStore, spec: Spec) -> None:
    [a] = enqueue(store, [spec(priority=-5)]).jobs
    waiting = enqueue(store, [spec(priority=100, after=[a.id]) for _ in range(5)]).jobs
    leases = store.lease_many(1, 10)
    assert [lease.job_id for lease in leases] == [a.id]
    assert store.next_startable(10, 80) == []
    assert {job.id for job in store.next_queued(10)} == {job.id for job in waiting}
    store.complete(leases[0], None)
    assert {lease.job_id for lease in store.lease_many(1, 10)} == {j.id for j in waiting}


def test_supersede_and_cancel_of_a_dependency_cascade(store: JobStore, spec: Spec) -> None:
    [old] = enqueue(store, [spec(subject="s")]).jobs
    [waits_old] = enqueue(store, [spec(after=[old.id])]).jobs
    [after_old] = enqueue(store, [spec(after_end=[old.id])]).jobs
    enqueue(store, [spec(subject="s")])  # supersedes old
    job = store.get(waits_old.id)
    assert job.state == JobState.CANCELLED
    assert job.error is not None and job.error.message == f"job {old.id} ended SUPERSEDED"
    assert store.get(after_old.id).waiting_on is None
    [a] = enqueue(store, [spec()]).jobs
    [b] = enqueue(store, [spec(after=[a.id])]).jobs
    store.cancel_running(_take(store, a.id), STOPPED)
    assert store.get(b.id).state == JobState.CANCELLED
    assert store.take_cascaded() == [waits_old.id, b.id]


def test_retry_with_dependents_brings_the_chain_back(store: JobStore, spec: Spec) -> None:
    a = enqueue(store, [spec()]).jobs[0]
    b = enqueue(store, [spec(after=[a.id])]).jobs[0]
    c = enqueue(store, [spec(after=[b.id])]).jobs[0]
    x = enqueue(store, [spec()]).jobs[0]
    both = enqueue(store, [spec(after=[b.id, x.id])]).jobs[0]  # x will fail too
    _failed(store, x.id)
    assert store.get(both.id).state == JobState.CANCELLED
    _failed(store, a.id)
    store.take_cascaded()
    with pytest.raises(BadInput, match=f"job {b.id} waits for job {a.id}, which ended FAILED: "):
        store.retry(b.id)
    job, back = store.retry_with_dependents(a.id)
    assert job.state == JobState.QUEUED and back == [b.id, c.id]
    for job_id, waits in ((b.id, a.id), (c.id, b.id)):
        again = store.get(job_id)
        assert again.state == JobState.QUEUED and again.waiting_on == [waits]
        assert again.error is None and again.attempts == 0
    assert store.get(both.id).state == JobState.CANCELLED  # x is still FAILED
    assert _leasable(store) == {a.id}
    _done(store, a.id)
    _done(store, b.id)
    _done(store, c.id)
    # A plain retry of a job whose dependency now stands is allowed.
    store.retry(x.id)
    again = store.retry(both.id)
    assert again.state == JobState.QUEUED
    assert store.get(both.id).waiting_on == [x.id]


def test_retry_with_dependents_leaves_an_older_generation_cancelled(
    store: JobStore, spec: Spec
) -> None:
    """A dependent of an older generation of its subject stays CANCELLED once a newer
    generation is queued, running or DONE, as a plain retry of it is refused; so do
    the jobs that wait for it. Its siblings come back."""
    [a] = enqueue(store, [spec()]).jobs
    [old] = enqueue(store, [spec(subject="s", generation=1, after=[a.id])]).jobs
    [below_old] = enqueue(store, [spec(after=[old.id])]).jobs
    [sibling] = enqueue(store, [spec(after=[a.id])]).jobs
    [queued_old] = enqueue(store, [spec(subject="q", generation=1, after=[a.id])]).jobs
    _failed(store, a.id)
    store.take_cascaded()
    [newer] = enqueue(store, [spec(subject="s", generation=2)]).jobs
    _done(store, newer.id)
    enqueue(store, [spec(subject="q", generation=2)])  # queued, not yet run
    with pytest.raises(BadInput, match="retry or enqueue the newest instead"):
        store.retry(old.id)
    job, back = store.retry_with_dependents(a.id)
    assert job.state == JobState.QUEUED and back == [sibling.id]
    for job_id in (old.id, below_old.id, queued_old.id):
        assert store.get(job_id).state == JobState.CANCELLED, job_id
    assert store.get(sibling.id).waiting_on == [a.id]
    _done(store, a.id)
    _done(store, sibling.id)
    assert store.get(old.id).state == JobState.CANCELLED


def test_retention_deletes_the_edges_of_deleted_jobs(
    store: JobStore, upkeep: StoreUpkeep, spec: Spec, clock: FakeClock
) -> None:
    """A job that waited for a DONE job retention deleted no longer lists it (no edge
    points at a missing job), and still lists the one it waits for."""
    [a, other] = enqueue(store, [spec(), spec()]).jobs
    [b] = enqueue(store, [spec(after=[a.id])]).jobs
    [c] = enqueue(store, [spec(after=[a.id, other.id])]).jobs
    _done(store, a.id)
    clock.advance(10)
    assert upkeep.delete_finished(clock.time()) == [a.id]
    got = store.get(b.id)
    assert got.dependencies is None and got.waiting_on is None
    got = store.get(c.id)
    assert got.dependencies is not None
    assert [(dep.id, dep.state) for dep in got.dependencies] == [(other.id, JobState.QUEUED)]
    assert got.waiting_on == [other.id]
    _done(store, b.id)


def test_waiting_counts_and_reasons(store: JobStore, spec: Spec) -> None:
    [a] = enqueue(store, [spec()]).jobs
    enqueue(store, [spec(after=[a.id]), spec(after_end=[a.id])])
    assert store.dependency_waits() == 2
    _done(store, a.id)
    assert store.dependency_waits() == 0


def test_a_job_may_wait_for_at_most_a_thousand(store: JobStore, spec: Spec) -> None:
    with pytest.raises(BadInput, match="at most 1000"):
        enqueue(store, [spec(after=list(range(1, 1002)))])


def test_the_reason_is_dependency(store: JobStore, spec: Spec) -> None:
    from semantica.supervisor.store import Blockers, waiting_reason

    [a] = enqueue(store, [spec()]).jobs
    [b] = enqueue(store, [spec(after=[a.id])]).jobs
    job = store.get(b.id)
    assert job.waiting_on is not None
    reason = waiting_reason(
        queue=job.queue,
        type=job.type,
        subject=None,
        run_after=0.0,
        failed_before=False,
        require_charging=False,
        require_idle=False,
        blockers=Blockers(),
        now=0.0,
        on_ac=True,
        idle=True,
        unmet=len(job.waiting_on),
    )
    assert reason == WaitReason.DEPENDENCY


def test_the_end_of_the_head_of_a_long_chain_cancels_it_all_in_one_short_write(
    store: JobStore, spec: Spec
) -> None:
    """3,000 jobs each waiting for the one before (what a loop of `enqueue --after $prev`
    makes): the head fails, and the whole chain ends CANCELLED in the same write, in a
    few statements rather than a few per level (a store call has a deadline)."""
    jobs = enqueue(store, [spec()]).jobs
    while len(jobs) < 3000:  # (in requests of 500, as a graph is sent: at most 512 a request)
        piece = [spec(ref="r0", after=[jobs[-1].id])]
        piece += [spec(ref=f"r{n}", after=[f"r{n - 1}"]) for n in range(1, 500)]
        jobs += enqueue(store, piece).jobs
    _failed(store, jobs[0].id)  # (on PostgreSQL, within the call's deadline: 1 s here)
    cascaded = store.take_cascaded()
    assert sorted(cascaded) == [job.id for job in jobs[1:]]
    assert {job.state for job in store.get_many(cascaded)} == {JobState.CANCELLED}
    last = store.get(jobs[-1].id)
    assert last.error is not None and last.error.message == f"job {jobs[-2].id} ended CANCELLED"
