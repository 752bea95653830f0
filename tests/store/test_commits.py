"""Group commit, the store on an event loop, its clock and its size.

After ``defer_commits`` the supervisor's writes join one open batch, and
``commit`` makes the batch durable; the supervisor replies to no one about a
write until then. What a failed commit undoes cannot be caused without
breaking the backend under it (a full disk: tests/unit/test_store_full.py does
it to SQLite); here is what can be seen of a batch from outside.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from storekit import BOOM, enqueue

from semantica.clock import FakeClock
from semantica.errors import BadInput, NoSuchJob, StoreError
from semantica.models import GENERATION_MAX, JobSpec, JobState
from semantica.supervisor.store import JobStore, StaleLease, StoreUpkeep

Spec = Callable[..., JobSpec]


class Writes:
    """An ``on_write`` callback that counts its calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def test_a_batch_is_seen_by_its_store_at_once_and_kept_once_committed(
    store: JobStore, open_store: Callable[[], JobStore], spec: Spec
) -> None:
    """Each write of a batch calls on_write once; the store's own reads and leases see the
    batch before it is committed; after commit, another handle on the store sees it."""
    writes = Writes()
    store.defer_commits(writes)
    done, queued = enqueue(store, [spec(priority=1), spec(queue="q")]).jobs
    assert writes.count == 1
    lease = store.lease(worker_pid=1)
    assert lease is not None and lease.job_id == done.id
    assert writes.count == 2
    store.complete(lease, b'"ok"')
    store.set_queue("q", paused=True)
    assert writes.count == 4
    assert store.state(done.id) == JobState.DONE
    assert store.lease(worker_pid=1) is None  # the pause is in force already
    store.commit()
    other = open_store()
    try:
        assert other.get(done.id) == store.get(done.id)
        assert other.get(queued.id) == store.get(queued.id)
        assert [(q.name, q.paused) for q in other.queues()] == [("default", False), ("q", True)]
    finally:
        other.close()


def test_a_failed_write_in_a_batch_undoes_itself_alone(
    store: JobStore, open_store: Callable[[], JobStore], spec: Spec, clock: FakeClock
) -> None:
    """A write that fails inside a batch (refused, or fenced off) changes nothing; the
    batch's other writes stand and are committed."""
    store.defer_commits(Writes())
    [kept] = enqueue(store, [spec(subject="s", generation=GENERATION_MAX)]).jobs
    with pytest.raises(BadInput):
        enqueue(store, [spec(queue="fresh", payload="lost"), spec(subject="s")])
    lease = store.lease(worker_pid=1)
    assert lease is not None
    store.fail(lease, BOOM, clock.time())
    with pytest.raises(StaleLease):
        store.complete(lease, b"1")
    store.commit()
    other = open_store()
    try:
        assert other.count() == 1 and not other.queue_known("fresh")
        job = other.get(kept.id)
        assert (job.state, job.attempts, job.error) == (JobState.QUEUED, 1, BOOM)
        with pytest.raises(NoSuchJob):
            other.get(kept.id + 1)
    finally:
        other.close()


def test_commits_go_on_batch_after_batch(
    store: JobStore, open_store: Callable[[], JobStore], spec: Spec
) -> None:
    """A commit with nothing written does nothing; writes after a commit join the next
    batch (on_write is called again), and the next commit keeps them too."""
    writes = Writes()
    store.defer_commits(writes)
    store.commit()
    [first] = enqueue(store, [spec()]).jobs
    store.commit()
    store.commit()
    [second] = enqueue(store, [spec()]).jobs
    assert writes.count == 2
    store.commit()
    other = open_store()
    try:
        assert [job.id for job in other.list()] == [second.id, first.id]
    finally:
        other.close()


def test_a_store_on_an_event_loop_works_as_before(store: JobStore, spec: Spec) -> None:
    """fail_fast_when_busy changes only how long a write waits for another process: with
    none holding the store, writes, group commit and reads go on as before."""
    store.fail_fast_when_busy()
    writes = Writes()
    store.defer_commits(writes)
    [job] = enqueue(store, [spec()]).jobs
    lease = store.lease(worker_pid=1)
    assert lease is not None
    store.complete(lease, None)
    store.commit()
    assert writes.count == 3
    assert store.state(job.id) == JobState.DONE


def test_times_come_from_the_stores_clock(store: JobStore, spec: Spec, clock: FakeClock) -> None:
    """The clock a store was given is its clock: the times it writes are that clock's."""
    assert store.clock.time() == clock.time()
    clock.advance(123.5)
    [job] = enqueue(store, [spec()]).jobs
    assert job.created_at.timestamp() == store.clock.time() == clock.time()


def test_size_grows_with_what_is_stored(store: JobStore, upkeep: StoreUpkeep) -> None:
    """size_bytes: what the store takes on disk, more once a megabyte of payloads is in,
    the same through the store and through its upkeep handle."""
    empty = store.size_bytes()
    assert empty > 0
    enqueue(store, [JobSpec(type="T", payload="x" * 10_000) for _ in range(100)])
    full = store.size_bytes()
    assert full >= empty + 500_000
    assert upkeep.size_bytes() == full


def test_a_failed_first_write_of_a_batch_leaves_it_empty(
    store: JobStore, open_store: Callable[[], JobStore], spec: Spec
) -> None:
    """The first write of a batch that fails changes nothing and holds nothing open: the
    writes after it form the batch, and the commit keeps just them."""
    store.defer_commits(Writes())
    [full] = enqueue(store, [spec(subject="s", generation=GENERATION_MAX)]).jobs
    store.commit()
    with pytest.raises(BadInput):
        enqueue(store, [spec(queue="fresh", payload="lost"), spec(subject="s")])
    store.commit()  # nothing to commit
    with pytest.raises(BadInput):
        enqueue(store, [spec(queue="fresh", payload="lost"), spec(subject="s")])
    [kept] = enqueue(store, [spec(queue="other")]).jobs
    [also] = enqueue(store, [spec(queue="other")]).jobs
    store.commit()
    other = open_store()
    try:
        assert [job.id for job in other.list()] == [also.id, kept.id, full.id]
        assert not other.queue_known("fresh")
    finally:
        other.close()


class Outcome:
    """A ``done`` callback for ``commit_in_thread``: the error it was given, once called."""

    def __init__(self) -> None:
        self.called = threading.Event()
        self.error: StoreError | None = None

    def __call__(self, error: StoreError | None) -> None:
        self.error = error
        self.called.set()


def test_a_commit_in_thread_keeps_the_batch_and_says_when_it_is_done(
    store: JobStore, open_store: Callable[[], JobStore], spec: Spec
) -> None:
    """commit_in_thread makes the batch durable as commit does and calls done(None) once
    it has; the writes after it, made whenever the caller goes on, form the next batch,
    and a use of the store meanwhile (a read, a write) sees the store as it is."""
    writes = Writes()
    store.defer_commits(writes)
    [first] = enqueue(store, [spec()]).jobs
    done = Outcome()
    store.commit_in_thread(done)
    assert store.get(first.id).state == JobState.QUEUED  # waits for the commit if need be
    [second] = enqueue(store, [spec()]).jobs
    assert done.called.wait(10) and done.error is None
    other = open_store()
    try:
        assert [job.id for job in other.list()] == [first.id]
    finally:
        other.close()
    again = Outcome()
    store.commit_in_thread(again)
    assert again.called.wait(10) and again.error is None
    assert writes.count == 2
    other = open_store()
    try:
        assert [job.id for job in other.list()] == [second.id, first.id]
    finally:
        other.close()
