"""Retention and maintenance through a store's upkeep handle.

Maintenance (supervisor/maintenance.py) runs these in a thread, one short
step at a time: delete finished jobs past retention, forget queues nothing
names any more, fold the journal in, give free space back, check the store.
Here each is run straight from the test, against the store beside it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from storekit import BOOM, STOPPED, enqueue

from semantica.clock import FakeClock
from semantica.errors import NoSuchJob
from semantica.models import JobSpec, JobState
from semantica.supervisor.store import JobStore, Lease, StoreUpkeep

Spec = Callable[..., JobSpec]


def _lease(store: JobStore) -> Lease:
    lease = store.lease(worker_pid=1)
    assert lease is not None
    return lease


def _done(store: JobStore, spec: Spec, count: int = 1, **fields: object) -> list[int]:
    """Enqueue ``count`` jobs and end them DONE (they must be the next to start)."""
    ids = [job.id for job in enqueue(store, [spec(**fields) for _ in range(count)]).jobs]
    store.complete_many([(lease, None, 0.0) for lease in store.lease_many(1, count)])
    assert store.states(ids) == dict.fromkeys(ids, JobState.DONE)
    return ids


def _every_state(store: JobStore, spec: Spec, clock: FakeClock) -> dict[str, int]:
    """A job in each state, and each way to end; the finished ones end now."""
    jobs = {}
    [jobs["done"]] = _done(store, spec)
    [jobs["failed"], jobs["cancelled running"], jobs["backing off"]] = [
        job.id for job in enqueue(store, [spec(), spec(), spec()]).jobs
    ]
    store.fail(_lease(store), BOOM, None)
    store.cancel_running(_lease(store), STOPPED)
    store.fail(_lease(store), BOOM, clock.time() + 3600)  # QUEUED, for its retry
    old, new = enqueue(store, [spec(subject="s"), spec(subject="s")]).jobs
    jobs["superseded"] = old.id
    jobs["queued"] = new.id
    [jobs["cancelled queued"], jobs["running"]] = [
        job.id for job in enqueue(store, [spec(), spec(priority=5)]).jobs
    ]
    assert store.cancel_queued(jobs["cancelled queued"], "no")
    assert _lease(store).job_id == jobs["running"]
    return jobs


FINISHED = ("done", "failed", "cancelled running", "cancelled queued", "superseded")


# ---------------------------------------------------------------- retention


def test_delete_finished_takes_finished_jobs_older_than_the_cutoff(
    store: JobStore, upkeep: StoreUpkeep, spec: Spec, clock: FakeClock
) -> None:
    """Finished jobs (DONE, FAILED, CANCELLED, SUPERSEDED) that ended before the cutoff go;
    queued and running ones, and those that ended at the cutoff or after, stay."""
    jobs = _every_state(store, spec, clock)
    clock.advance(10)
    [late] = _done(store, spec, priority=9)  # (before the one left queued)
    cutoff = clock.time()
    kept = {name: store.get(job_id) for name, job_id in jobs.items() if name not in FINISHED}

    deleted = upkeep.delete_finished(cutoff)

    assert sorted(deleted) == sorted(jobs[name] for name in FINISHED)
    for name in FINISHED:
        with pytest.raises(NoSuchJob):
            store.get(jobs[name])
    assert {name: store.get(job.id) for name, job in kept.items()} == kept
    assert store.state(late) == JobState.DONE
    assert upkeep.delete_finished(cutoff) == []
    assert upkeep.delete_finished(cutoff + 0.001) == [late]
    assert store.counts() == {s.value: 0 for s in JobState} | {"QUEUED": 2, "RUNNING": 1}


def test_delete_finished_goes_in_batches(
    store: JobStore, upkeep: StoreUpkeep, spec: Spec, clock: FakeClock
) -> None:
    """At most ``batch`` jobs a call; fewer than ``batch`` says there are no more."""
    ids = _done(store, spec, 7)
    clock.advance(1)
    batches = []
    while True:
        batch = upkeep.delete_finished(clock.time(), batch=3)
        batches.append(batch)
        if len(batch) < 3:
            break
    assert [len(batch) for batch in batches] == [3, 3, 1]
    assert sorted(job_id for batch in batches for job_id in batch) == ids
    assert store.count() == 0


def test_ids_of_deleted_jobs_are_never_given_again(
    store: JobStore, upkeep: StoreUpkeep, spec: Spec, clock: FakeClock
) -> None:
    """After the newest job is deleted, the next job still gets a new, higher id."""
    ids = _done(store, spec, 3)
    clock.advance(1)
    assert sorted(upkeep.delete_finished(clock.time())) == ids
    [new] = enqueue(store, [spec()]).jobs
    assert new.id > ids[-1]


# ---------------------------------------------------------------- queues


def test_queues_no_job_nor_setting_names_are_forgotten(
    store: JobStore, upkeep: StoreUpkeep, spec: Spec, clock: FakeClock
) -> None:
    """A queue goes once its last job is deleted, unless it is paused or limited; a queue
    with a job of any state stays. A forgotten queue is as if never used, until a job
    names it again."""
    _done(store, spec, queue="gone")
    _done(store, spec, queue="ended")
    enqueue(store, [spec(queue="queued")])
    store.set_queue("paused", paused=True)
    store.set_queue("limited", limit=2)
    store.set_queue("was-paused", paused=True)
    store.set_queue("was-paused", paused=False)
    clock.advance(1)
    assert upkeep.delete_finished(clock.time(), batch=1) != []  # one of the two DONE jobs
    assert upkeep.forget_queues("") == (2, None)  # was-paused, and one of gone or ended
    upkeep.delete_finished(clock.time())
    assert upkeep.forget_queues("") == (1, None)

    assert [q.name for q in store.queues()] == ["limited", "paused", "queued"]
    for name in ("gone", "ended", "was-paused"):
        assert not store.queue_known(name)
    assert store.queue_known("paused") and store.queue_known("queued")
    enqueue(store, [spec(queue="gone")])
    assert store.queue_known("gone")
    assert {q.name: q.counts["QUEUED"] for q in store.queues()}["gone"] == 1


def test_forget_queues_goes_in_batches_of_names(
    store: JobStore, upkeep: StoreUpkeep, spec: Spec
) -> None:
    """Each call looks at up to ``batch`` names in name order and says where to go on;
    None once every name was looked at."""
    for name in "abcde":
        store.set_queue(name, paused=True)
        store.set_queue(name, paused=False)
    store.set_queue("c", limit=1)  # kept
    counts = []
    after: str | None = ""
    while after is not None:
        forgotten, after = upkeep.forget_queues(after, batch=2)
        counts.append(forgotten)
    assert counts == [2, 1, 1]
    assert [q.name for q in store.queues()] == ["c"]


# ---------------------------------------------------------------- reads on the side


def test_existing_names_the_ids_that_are_jobs(
    store: JobStore, upkeep: StoreUpkeep, spec: Spec, clock: FakeClock
) -> None:
    """existing: which ids name a job, of any state; the upkeep handle sees what the store
    wrote, and the store sees what the upkeep handle deleted."""
    jobs = _every_state(store, spec, clock)
    ids = sorted(jobs.values())
    assert upkeep.existing([*ids, ids[-1] + 1, 10**9]) == set(ids)
    assert upkeep.existing([]) == set()
    clock.advance(1)
    upkeep.delete_finished(clock.time())
    assert upkeep.existing(ids) == {jobs[name] for name in jobs if name not in FINISHED}
    assert store.count() == len(jobs) - len(FINISHED)


def test_an_upkeep_handle_each_run(store: JobStore, spec: Spec) -> None:
    """Maintenance opens a handle a run and closes it: the store goes on meanwhile."""
    for _ in range(2):
        side = store.upkeep()
        [job] = enqueue(store, [spec()]).jobs
        assert side.existing([job.id]) == {job.id}
        assert isinstance(side.exclusive, bool)
        side.close()
    assert store.count() == 2


# ---------------------------------------------------------------- space and checks


def _fill_and_empty(store: JobStore, upkeep: StoreUpkeep, spec: Spec, clock: FakeClock) -> int:
    """Store 2 MB of jobs, then delete them all; the size it had when full."""
    _done(store, spec, 200, payload="x" * 10_000)
    upkeep.flush_journal()
    full = upkeep.size_bytes()
    clock.advance(1)
    while len(upkeep.delete_finished(clock.time())) == 500:
        pass
    upkeep.flush_journal()
    assert store.count() == 0
    return full


def test_a_new_store_has_nothing_to_give_back(upkeep: StoreUpkeep) -> None:
    assert upkeep.wants_compacting() is False
    assert upkeep.check() == "ok"


def test_space_comes_back_in_steps(
    store: JobStore, upkeep: StoreUpkeep, spec: Spec, clock: FakeClock
) -> None:
    """Once most of the store is free, compacting is wanted; steps give space back until
    none is left, and the store is smaller, whole, and in use again."""
    full = _fill_and_empty(store, upkeep, spec, clock)
    assert upkeep.wants_compacting() is True
    given = [upkeep.compact_step()]
    while given[-1] and len(given) < 10_000:
        given.append(upkeep.compact_step())
    assert given[0] > 0 and given[-1] == 0
    upkeep.flush_journal()
    assert upkeep.wants_compacting() is False
    assert upkeep.size_bytes() < full // 2
    assert upkeep.check() == "ok"
    [job] = enqueue(store, [spec()]).jobs
    assert _lease(store).job_id == job.id


def test_space_comes_back_at_once(
    store: JobStore, upkeep: StoreUpkeep, spec: Spec, clock: FakeClock
) -> None:
    """compact_fully gives every free byte back in one go."""
    full = _fill_and_empty(store, upkeep, spec, clock)
    upkeep.compact_fully()
    upkeep.flush_journal()
    assert upkeep.wants_compacting() is False
    assert upkeep.compact_step() == 0
    assert upkeep.size_bytes() < full // 2
    assert store.size_bytes() == upkeep.size_bytes()
    assert upkeep.check() == "ok"
    [job] = enqueue(store, [spec()]).jobs
    assert _lease(store).job_id == job.id


def test_flushing_the_journal_changes_nothing_seen(
    store: JobStore, upkeep: StoreUpkeep, spec: Spec, clock: FakeClock
) -> None:
    """flush_journal at any time: every job reads the same after it, and writes go on."""
    jobs = _every_state(store, spec, clock)
    before = store.get_many(sorted(jobs.values()))
    upkeep.flush_journal()
    upkeep.flush_journal()
    assert store.get_many(sorted(jobs.values())) == before
    assert upkeep.check() == "ok"
    store.complete(_lease(store), None)


def test_one_upkeep_leads_maintenance_at_a_time(store: JobStore, backend: str) -> None:
    """lead(): True for the first handle; a second handle on the same store is told
    another leads (a shared store: two nodes) until the first closes."""
    first_side, second_side = store.upkeep(), store.upkeep()
    try:
        assert first_side.lead() is True
        if backend == "sqlite":  # one supervisor owns the file: its one run leads
            assert second_side.lead() is True
            return
        assert second_side.lead() is False
        first_side.close()
        assert second_side.lead() is True
    finally:
        if backend == "sqlite":
            first_side.close()
        second_side.close()
