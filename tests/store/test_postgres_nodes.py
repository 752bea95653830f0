"""Several nodes on one PostgreSQL database: what a shared store adds to the contract.

Two or three stores (nodes, each with its own key) on one database lease at
once and never take a job twice, nor pass a queue's limit, nor start two jobs
of one subject; a node declared dead loses its jobs to the others, and its
late reports are refused (fencing across nodes); writes reach the other
nodes through the changes feed, at commit only; several nodes migrate a new
database once; a lost server is StoreUnavailable within the call's deadline,
and the store works again once the server is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from pgshared import database_for
from storekit import enqueue

from semantica.clock import FakeClock
from semantica.errors import BadInput, StoreBusy, StoreUnavailable
from semantica.models import GENERATION_MAX, JobError, JobSpec, JobState
from semantica.supervisor.store import (
    JobStore,
    Lease,
    NodeSpec,
    SchemaTooNew,
    StaleLease,
    open_store,
)
from semantica.supervisor.store.postgres import PostgresStore

Opener = Callable[[str], JobStore]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Opener]:
    """Open a node (a store with the given key) on the test's one database."""
    opened: list[JobStore] = []
    dsn = database_for(tmp_path)

    def node(key: str) -> JobStore:
        store = open_store(dsn, FakeClock(), migrate=True, node=NodeSpec(key=key))
        opened.append(store)
        return store

    yield node
    for store in opened:
        store.close()


def _race(stores: list[JobStore], take: Callable[[JobStore], list[Lease]]) -> list[list[Lease]]:
    """Each store takes in a thread of its own, all at once, until it gets nothing."""
    start = threading.Barrier(len(stores))
    taken: list[list[Lease]] = [[] for _ in stores]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait()
            while got := take(stores[index]):
                taken[index] += got
        except BaseException as exc:  # noqa: BLE001  # a thread's failure, asserted by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return taken


def test_nodes_leasing_at_once_never_take_a_job_twice(nodes: Opener) -> None:
    """Three nodes drain 300 jobs at once, a few at a time: each job is taken once."""
    a, b, c = nodes("a"), nodes("b"), nodes("c")
    jobs = enqueue(a, [JobSpec(type="T", priority=n % 3) for n in range(300)]).jobs
    taken = _race([a, b, c], lambda store: store.lease_many(1, 4))
    ids = [lease.job_id for leases in taken for lease in leases]
    assert sorted(ids) == sorted(job.id for job in jobs)
    lease_ids = [lease.lease_id for leases in taken for lease in leases]
    assert len(set(lease_ids)) == len(lease_ids)


def test_a_queue_limit_and_a_subject_hold_across_nodes(nodes: Opener) -> None:
    """A queue limited to 2, and jobs of one subject in two queues: nodes leasing at
    once start 2 of the queue's jobs and 1 of the subject's, no more."""
    a, b, c = nodes("a"), nodes("b"), nodes("c")
    a.set_queue("small", limit=2)
    enqueue(a, [JobSpec(type="T", queue="small") for _ in range(20)])
    for n in range(10):
        queue = "q1" if n % 2 else "q2"
        enqueue(a, [JobSpec(type="S", subject="same", queue=queue, generation=n)])
    # (each enqueue of generation n superseded n-1: one job of the subject is queued)
    enqueue(a, [JobSpec(type="S", subject=f"other-{n}", queue="q1") for n in range(3)])
    _race([a, b, c], lambda store: store.lease_many(1, 1))
    running = a.list(state=JobState.RUNNING.value, limit=1000)
    assert sum(job.queue == "small" for job in running) == 2
    assert sum(job.subject == "same" for job in running) == 1
    assert sum((job.subject or "").startswith("other") for job in running) == 3


def test_a_subjects_next_job_waits_for_the_one_running_on_another_node(
    nodes: Opener,
) -> None:
    """Generation 1 of a subject runs on node a (queue q1); generation 2, in queue q2,
    does not start on node b until a's ends."""
    a, b = nodes("a"), nodes("b")
    enqueue(a, [JobSpec(type="S", subject="x", queue="q1")])
    first = a.lease(worker_pid=1)
    assert first is not None
    [second] = enqueue(b, [JobSpec(type="S", subject="x", queue="q2")]).jobs
    assert b.lease(worker_pid=1) is None
    a.complete(first, None)
    again = b.lease(worker_pid=1)
    assert again is not None and again.job_id == second.id


def test_a_dead_nodes_jobs_run_elsewhere_and_its_late_reports_are_refused(
    nodes: Opener,
) -> None:
    """Node a stops heartbeating; b declares it dead and its job goes back to the queue;
    b leases it under a newer lease; a's late report is StaleLease, its heartbeat says
    it is dead, and it takes nothing until it joins again."""
    a, b = nodes("a"), nodes("b")
    [job] = enqueue(a, [JobSpec(type="T")]).jobs
    old = a.lease(worker_pid=1)
    assert old is not None
    b.join(NodeSpec(key="b"))
    assert b.reap_dead(60.0) == []  # a's heartbeat is fresh
    time.sleep(0.02)
    b.heartbeat(b"{}")
    assert b.reap_dead(0.01) == [job.id]
    moved = b.get(job.id)
    assert moved.state == JobState.QUEUED and moved.attempts == 0
    assert moved.error is not None and moved.error.kind == "interrupted"
    new = b.lease(worker_pid=2)
    assert new is not None and new.job_id == job.id and new.lease_id > old.lease_id
    with pytest.raises(StaleLease):
        a.complete(old, b'"late"')
    assert a.heartbeat(b"{}") is False
    enqueue(a, [JobSpec(type="T")])
    assert a.lease(worker_pid=1) is None  # a dead node takes nothing
    states = {node.key: node.state for node in b.nodes()}
    assert states["a"] == "dead" and states["b"] == "alive"
    a.join(NodeSpec(key="a"))
    assert a.lease(worker_pid=1) is not None
    b.complete(new, b'"ok"')
    assert b.get(job.id).result == "ok"


def test_two_reapers_at_once_put_each_job_back_once(nodes: Opener) -> None:
    """Nodes b and c reap the dead node a at the same moment: its 6 jobs come back once."""
    a, b, c = nodes("a"), nodes("b"), nodes("c")
    enqueue(a, [JobSpec(type="T") for _ in range(6)])
    assert len(a.lease_many(1, 6)) == 6
    b.join(NodeSpec(key="b"))
    c.join(NodeSpec(key="c"))
    time.sleep(0.02)
    b.heartbeat(b"{}")
    c.heartbeat(b"{}")
    start = threading.Barrier(2)
    reaped: list[list[int]] = [[], []]

    def reap(index: int, store: JobStore) -> None:
        start.wait()
        reaped[index] = store.reap_dead(0.01)

    threads = [threading.Thread(target=reap, args=(i, s)) for i, s in enumerate((b, c))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(reaped[0] + reaped[1]) == sorted(job.id for job in a.list())
    assert b.count(state=JobState.QUEUED.value) == 6


def test_recover_running_takes_back_only_this_nodes_jobs(nodes: Opener) -> None:
    """A restarted node (same key) gets its own running jobs back, at its join; another
    live node's running jobs stay RUNNING."""
    a, b = nodes("a"), nodes("b")
    mine, theirs = enqueue(a, [JobSpec(type="T"), JobSpec(type="T")]).jobs
    assert a.lease(worker_pid=1) is not None
    assert b.lease(worker_pid=1) is not None
    a.close()
    again = nodes("a")  # a's supervisor restarted
    assert again.recover_running() == 1
    assert again.state(mine.id) == JobState.QUEUED
    assert again.state(theirs.id) == JobState.RUNNING
    assert b.recover_running() == 0


def test_the_feed_tells_other_nodes_at_commit_only(pg_database: str) -> None:
    """A write notifies at its commit: an enqueue "jobs", a pause "queues", an end "ends";
    under group commit nothing before the commit, and a write refused says nothing."""
    a = PostgresStore(pg_database, FakeClock(), node=NodeSpec(key="a"))
    b = PostgresStore(pg_database, FakeClock(), node=NodeSpec(key="b"))
    feed = b.changes()
    try:
        assert feed.wait(0.05) == set()
        [job] = enqueue(a, [JobSpec(type="T", subject="s", generation=GENERATION_MAX)]).jobs
        assert "jobs" in feed.wait(2.0)
        a.set_queue("default", paused=True)
        assert "queues" in feed.wait(2.0)
        a.set_queue("default", paused=False)
        feed.wait(0.1)
        lease = a.lease(worker_pid=1)
        assert lease is not None
        feed.wait(0.1)
        a.defer_commits(lambda: None)
        a.complete(lease, None)
        assert feed.wait(0.2) == set()
        a.commit()
        assert "ends" in feed.wait(2.0)
        with pytest.raises(BadInput):  # (s has no generation left: nothing is added)
            enqueue(a, [JobSpec(type="T", queue="fresh"), JobSpec(type="T", subject="s")])
        a.commit()
        assert feed.wait(0.2) == set()
        assert b.state(job.id) == JobState.DONE
    finally:
        feed.close()
        a.close()
        b.close()


def test_each_move_tells_what_it_changed_and_a_move_that_changed_nothing_tells_nothing(
    pg_database: str,
) -> None:
    """The kinds each move notifies, one statement with the move: a cancel and an end
    "ends"; a failure with a retry and jobs given back "jobs" and "ends"; a stop request
    "stops". The same moves refused (stale lease, a job not in that state) say nothing."""
    a = PostgresStore(pg_database, FakeClock(), node=NodeSpec(key="a"))
    b = PostgresStore(pg_database, FakeClock(), node=NodeSpec(key="b"))
    feed = b.changes()
    error = JobError("failed", "no")
    try:
        assert feed.wait(0.05) == set()  # (listening from now on)
        first, second, _ = enqueue(a, [JobSpec(type="T")] * 3).jobs
        assert "jobs" in feed.wait(2.0)
        assert a.cancel_queued(first.id, "no")
        assert feed.wait(2.0) == {"ends"}
        assert not a.cancel_queued(first.id, "again")
        assert feed.wait(0.2) == set()
        lease = a.lease(worker_pid=1)
        assert lease is not None and lease.job_id == second.id
        assert feed.wait(0.2) == set()  # (a lease frees nothing)
        assert a.request_stop(second.id, error)
        assert feed.wait(2.0) == {"stops"}
        assert a.fail(lease, error, retry_at=0.0) == JobState.QUEUED
        assert feed.wait(2.0) == {"ends", "jobs"}
        with pytest.raises(StaleLease):
            a.fail(lease, error, retry_at=None)
        assert not a.request_stop(second.id, error)
        assert a.complete_many([(lease, None, 0.0)]) == [lease]
        assert a.give_back([lease]) == 0
        assert feed.wait(0.2) == set()
        leases = a.lease_many(worker_pid=1, count=2)
        assert feed.wait(0.2) == set()
        assert a.give_back(leases[1:]) == 1
        assert feed.wait(2.0) == {"ends", "jobs"}
        assert a.complete_many([(leases[0], None, 0.0)]) == []
        assert feed.wait(2.0) == {"ends"}
    finally:
        feed.close()
        a.close()
        b.close()


def test_a_lease_that_takes_nothing_is_no_write_and_holds_no_lock(pg_database: str) -> None:
    """A lease that finds nothing to take (a paused queue, jobs not due yet) is undone at
    once: nothing for the group commit, and the queue's lock is not held until the next
    commit (another node leases from the queue without waiting)."""
    a = PostgresStore(pg_database, FakeClock(), node=NodeSpec(key="a"))
    b = PostgresStore(pg_database, FakeClock(), node=NodeSpec(key="b"))
    writes: list[int] = []
    try:
        enqueue(b, [JobSpec(type="T"), JobSpec(type="T", delay=3600.0)])
        b.set_queue("default", paused=True)
        a.defer_commits(lambda: writes.append(1))
        a.join(NodeSpec(key="a"))
        a.commit()
        writes.clear()
        assert a.lease_many(worker_pid=1, count=2) == []
        assert writes == []
        b.set_queue("default", paused=False)
        b.fail_fast_when_busy()
        lease = b.lease(worker_pid=2)  # (StoreBusy if a still held the queue's lock)
        assert lease is not None
        assert a.lease_many(worker_pid=1, count=2) == []  # (the other one is not due)
        assert writes == []
    finally:
        a.close()
        b.close()


def test_a_nodes_feed_passes_over_its_own_writes(pg_database: str) -> None:
    """A node's own feed says nothing of its own commits (it knows them), but tells it
    what another node commits, even among its own notifications."""
    a = PostgresStore(pg_database, FakeClock(), node=NodeSpec(key="a"))
    b = PostgresStore(pg_database, FakeClock(), node=NodeSpec(key="b"))
    feed = a.changes()
    try:
        assert feed.wait(0.05) == set()
        enqueue(a, [JobSpec(type="T")])
        a.set_queue("default", paused=True)
        assert feed.wait(0.3) == set()
        enqueue(a, [JobSpec(type="T")])
        b.set_queue("default", paused=False)
        assert feed.wait(2.0) == {"queues"}
    finally:
        feed.close()
        a.close()
        b.close()


def test_nodes_starting_at_once_migrate_once(pg_database: str) -> None:
    """Four nodes open a new database at once, each migrating: one makes the schema, the
    others find it made; all are at the newest."""
    changes = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        try:
            start.wait()
            store = PostgresStore(pg_database, migrate=False)
            changes.append(store.migrate())
            assert store.schema_version == store.newest_schema_version
            store.close()
        except BaseException as exc:  # noqa: BLE001  # a thread's failure, asserted by the test
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(change.before for change in changes)[0] == 0
    assert [change.before for change in changes].count(0) == 1


def test_a_lost_server_is_store_unavailable_and_the_store_comes_back(
    pg_database: str,
) -> None:
    """The server ends the store's session: the next call fails at once with
    StoreUnavailable, nothing acknowledged is lost, and the store works again by itself
    once its background reconnection is done."""
    store = PostgresStore(pg_database, FakeClock(), deadline=1.0)
    try:
        [job] = enqueue(store, [JobSpec(type="T")]).jobs
        with psycopg.connect(pg_database, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.get(job.id)
        assert time.monotonic() - started < 1.0
        deadline = time.monotonic() + 10
        while True:
            try:
                assert store.get(job.id).state == JobState.QUEUED
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the store did not reconnect"
                time.sleep(0.05)
        assert store.lease(worker_pid=1) is not None
    finally:
        store.close()


def test_a_call_that_hangs_is_cut_at_its_deadline(pg_database: str) -> None:
    """A call stuck on the server (here: a lock held elsewhere) is cut at the store's
    deadline with StoreUnavailable, and the store works again once it reconnects."""
    store = PostgresStore(pg_database, FakeClock(), deadline=0.5)
    try:
        [job] = enqueue(store, [JobSpec(type="T")]).jobs
        with psycopg.connect(pg_database) as holder:
            holder.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                store.get(job.id)
            assert 0.4 < time.monotonic() - started < 1.5
        deadline = time.monotonic() + 10
        while True:
            try:
                assert store.state(job.id) == JobState.QUEUED
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the store did not reconnect"
                time.sleep(0.05)
    finally:
        store.close()


def test_a_long_write_whose_statements_all_answer_is_not_cut(pg_database: str) -> None:
    """The deadline is for a server that does not answer: a write of many statements
    (jobs with subjects go in one by one) that takes longer than the deadline in all,
    each statement answered at once, is carried out, and the store stays connected."""
    store = PostgresStore(pg_database, FakeClock(), deadline=0.5)
    try:
        specs = [JobSpec(type="T", subject=f"s{n}") for n in range(3000)]
        started = time.monotonic()
        result = enqueue(store, specs)
        took = time.monotonic() - started
        assert len(result.jobs) == 3000 and store.count(state="QUEUED") == 3000
        assert took > 0.5, f"took {took:.2f} s: not longer than the deadline, proves nothing"
        assert store.get(result.jobs[-1].id).subject == "s2999"
    finally:
        store.close()


def test_an_unreachable_server_is_one_line_naming_the_host_not_the_password() -> None:
    """open_store on a URL nothing answers: StoreUnavailable naming where it looked."""
    with pytest.raises(StoreUnavailable) as caught:
        open_store("postgresql://someone:s3cret@127.0.0.1:1/jobs")
    message = str(caught.value)
    assert "127.0.0.1:1/jobs" in message and "s3cret" not in message
    assert "\n" not in message


def test_a_newer_schema_is_refused_before_anything_changes(pg_database: str) -> None:
    """A database a newer Semantica migrated (version 999) is refused, untouched."""
    PostgresStore(pg_database).close()
    with psycopg.connect(pg_database, autocommit=True) as admin:
        admin.execute("UPDATE semantica_schema SET version = 999")
    with pytest.raises(SchemaTooNew, match="999"):
        PostgresStore(pg_database)
    with psycopg.connect(pg_database, autocommit=True) as admin:
        assert admin.execute("SELECT version FROM semantica_schema").fetchone() == (999,)


def test_a_node_frozen_inside_a_batch_does_not_keep_the_others_from_reaping_it(
    tmp_path: Path,
) -> None:
    """Node a takes a job inside an open batch and freezes there (SIGSTOP: its session
    idle in a transaction, its row locks held). The server ends that session within a
    few call deadlines, so node b can declare a dead and put its job back long before a
    node timeout; until then b's reap fails as busy, changing nothing."""
    dsn = database_for(tmp_path)
    a = PostgresStore(dsn, FakeClock(), migrate=True, node=NodeSpec(key="a"), deadline=0.2)
    b = open_store(dsn, FakeClock(), migrate=True, node=NodeSpec(key="b"))
    try:
        [job] = enqueue(a, [JobSpec(type="T")]).jobs
        a.join(NodeSpec(key="a"))
        a.defer_commits(lambda: None)
        assert a.lease(worker_pid=1) is not None  # never committed: a is frozen here
        b.join(NodeSpec(key="b"))
        b.fail_fast_when_busy()
        started, reaped = time.monotonic(), None
        while reaped is None and time.monotonic() - started < 5:
            try:
                reaped = b.reap_dead(0.0)
            except StoreBusy:
                time.sleep(0.05)
        assert reaped == [], "a's lease was never committed: nothing of it to put back"
        assert b.state(job.id) == JobState.QUEUED
        assert [n.state for n in b.nodes() if n.key == "a"] == ["dead"]
        assert time.monotonic() - started < 5
    finally:
        a.close()
        b.close()
