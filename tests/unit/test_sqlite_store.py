"""What only the SQLite store does: its file, its schema versions, its pragmas, its SQL.

Everything the contract promises of any store is in the conformance suite
(``tests/store/``); here is what is SQLite's own (the file another connection
reads, ``PRAGMA user_version`` and ``sql/``, WAL and ``synchronous``, the work
of a lease in SQLite's steps).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from enqueueing import enqueue

from semantica.clock import FakeClock
from semantica.errors import NoSuchJob, StoreError
from semantica.models import JobError, JobSpec
from semantica.supervisor.store import SchemaTooNew, prepare
from semantica.supervisor.store.graph import plan
from semantica.supervisor.store.sqlite import SQLiteStore

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
Spec = Callable[..., JobSpec]


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_enqueue_is_committed_for_another_connection(
    store: SQLiteStore, spec: Spec, db_path: Path
) -> None:
    """An acknowledged enqueue is already on disk: a second connection sees it."""
    [job] = enqueue(store, [spec()]).jobs
    with sqlite3.connect(db_path) as other:
        rows = other.execute("SELECT id, state FROM jobs").fetchall()
    other.close()
    assert rows == [(job.id, "QUEUED")]


def test_job_ids_are_never_reused(store: SQLiteStore, spec: Spec) -> None:
    """After the newest job is deleted, the next job still gets a new, higher id."""
    jobs = enqueue(store, [spec(), spec(), spec()]).jobs
    newest = jobs[-1].id
    # No public delete exists yet (retention GC will add one); reach into the
    # connection to delete the newest row as the GC would.
    store._conn.execute("DELETE FROM jobs WHERE id = ?", (newest,))
    with pytest.raises(NoSuchJob):
        store.get(newest)
    [new] = enqueue(store, [spec()]).jobs
    assert new.id > newest


def test_schema_version_is_the_newest_migration(store: SQLiteStore) -> None:
    """A new database is migrated to the highest sql/NNN_*.sql version."""
    numbers = [
        int(m.group(1))
        for p in SQL_DIR.iterdir()
        if (m := re.fullmatch(r"(\d{3})_[a-z0-9_]+\.sql", p.name))
    ]
    assert numbers
    assert store.schema_version == max(numbers)


def _make_future_db(path: Path, wal: bool) -> None:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE future (x)")
    conn.execute("INSERT INTO future VALUES (1)")
    conn.commit()
    conn.execute("PRAGMA user_version = 999")
    conn.close()


def test_newer_schema_is_refused_naming_both_versions(db_path: Path, clock: FakeClock) -> None:
    """A database from a newer Semantica is refused with both schema versions in the message."""
    _make_future_db(db_path, wal=True)
    before = _file_hash(db_path)
    with pytest.raises(SchemaTooNew) as info:
        SQLiteStore(db_path, clock)
    newest = max(int(p.name[:3]) for p in SQL_DIR.glob("[0-9][0-9][0-9]_*.sql"))
    assert "999" in info.value.message
    assert f"({newest})" in info.value.message
    assert _file_hash(db_path) == before


def test_newer_schema_leaves_the_file_untouched(db_path: Path, clock: FakeClock) -> None:
    """Refusing a newer database does not change a byte of it."""
    _make_future_db(db_path, wal=False)
    before = _file_hash(db_path)
    with pytest.raises(SchemaTooNew):
        SQLiteStore(db_path, clock)
    assert _file_hash(db_path) == before


def _pragma(store: SQLiteStore, name: str) -> object:
    # synchronous is a per-connection setting: only the store's own connection can tell.
    return store._conn.execute(f"PRAGMA {name}").fetchone()[0]


def test_default_durability_is_wal_and_full(store: SQLiteStore, db_path: Path) -> None:
    """By default the database is in WAL mode and every commit is synced (synchronous=FULL)."""
    assert _pragma(store, "journal_mode") == "wal"
    assert _pragma(store, "synchronous") == 2
    with sqlite3.connect(db_path) as other:  # WAL is a property of the file
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()


def test_normal_durability(db_path: Path, clock: FakeClock) -> None:
    """durability="normal" keeps WAL and relaxes syncing to synchronous=NORMAL."""
    store = SQLiteStore(db_path, clock, durability="normal")
    try:
        assert _pragma(store, "journal_mode") == "wal"
        assert _pragma(store, "synchronous") == 1
    finally:
        store.close()


# ---------------------------------------------------------------- many queue names


def _lease_steps(store: SQLiteStore) -> int:
    """SQLite's virtual machine steps that one lease takes (the work it does, not its time)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    store._conn.set_progress_handler(count, 1)
    try:
        lease = store.lease(worker_pid=1)
    finally:
        store._conn.set_progress_handler(None, 1)
    assert lease is not None
    return steps


def test_a_lease_does_not_grow_with_the_queue_names_ever_used(
    store: SQLiteStore, spec: Spec
) -> None:
    """20,000 queues used once, their jobs finished (or paused, or limited), leave a lease
    as cheap as before: it looks only at queues with queued jobs."""
    enqueue(store, [spec()])
    alone = _lease_steps(store)
    enqueue(store, [spec(queue=f"q{n}") for n in range(20_000)])
    leases = store.lease_many(worker_pid=1, count=20_000)
    assert len(leases) == 20_000
    store.complete_many([(lease, None, 0.0) for lease in leases])
    for n in range(0, 200, 2):  # settings that keep their queues' rows for good
        store.set_queue(f"q{n}", paused=True) if n % 4 else store.set_queue(f"q{n}", limit=3)
    enqueue(store, [spec()])
    assert _lease_steps(store) <= alone + 20  # (it was 3,000 times as many)


class _FailingJobReads:
    """The store's connection, but a read of whole job rows fails (an I/O error)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql.startswith("SELECT id, type, queue"):  # (the columns a Job is read from)
            raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)


def test_a_retry_whose_read_back_fails_raises_a_store_error(store: SQLiteStore) -> None:
    """A retry reads the job back after moving it: an SQLite failure there is a typed
    StoreError (the client hears store_error), not a raw sqlite3 error (``internal``)."""
    [job] = enqueue(store, [JobSpec(type="T", max_attempts=1)]).jobs
    lease = store.lease(worker_pid=1)
    assert lease is not None
    store.fail(lease, JobError("exception", "boom"), retry_at=None)
    store._conn = _FailingJobReads(store._conn)  # type: ignore[assignment]
    with pytest.raises(StoreError, match="reading the job store failed"):
        store.retry(job.id)


# ---------------------------------------------------------------- dependencies


def _steps(store: SQLiteStore, call: Callable[[], object]) -> int:
    """SQLite's virtual machine steps that ``call`` takes (its work, not its time)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    store._conn.set_progress_handler(count, 1)
    try:
        call()
    finally:
        store._conn.set_progress_handler(None, 1)
    return steps


def _cancelled_chain(store: SQLiteStore, spec: Spec) -> int:
    """A job and one waiting for it, the first cancelled (so the second is too): its id."""
    [head] = enqueue(store, [spec()]).jobs
    store.insert(plan(prepare([spec(after=[head.id])])).prepared)
    assert store.cancel_queued(head.id, "stop")
    return head.id


def test_a_retry_with_dependents_does_not_grow_with_the_cancelled_jobs_kept(
    store: SQLiteStore, spec: Spec
) -> None:
    """20,000 CANCELLED jobs elsewhere in the store leave a retry of a two-job chain
    with its dependents as cheap as before: it reads the edges below the job retried,
    not every cancelled job at each level (a chain 10,000 deep took 44 s)."""
    alone = _steps(store, lambda: store.retry_with_dependents(_cancelled_chain(store, spec)))
    [head] = enqueue(store, [spec()]).jobs
    store.insert(plan(prepare([spec(after=[head.id]) for _ in range(20_000)])).prepared)
    assert store.cancel_queued(head.id, "stop")
    store.take_cascaded()
    root = _cancelled_chain(store, spec)
    assert _steps(store, lambda: store.retry_with_dependents(root)) <= alone + 200


def test_the_end_of_a_job_with_many_dependents_costs_a_few_statements(
    store: SQLiteStore, spec: Spec
) -> None:
    """A job waited for by 5,000 is cancelled: the cascade that cancels them all is a
    few statements per level, not two per dependent."""
    [head] = enqueue(store, [spec()]).jobs
    store.insert(plan(prepare([spec(after=[head.id]) for _ in range(5000)])).prepared)
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    try:
        assert store.cancel_queued(head.id, "stop")
    finally:
        store._conn.set_trace_callback(None)
    assert len(store.take_cascaded()) == 5000
    assert len(statements) <= 50


def test_a_cascade_does_not_grow_with_the_jobs_queued(store: SQLiteStore, spec: Spec) -> None:
    """A chain of jobs waiting each for the one before, its head cancelled: each level's
    cancel looks its jobs up by id, whatever else is queued (SQLite would rather walk
    every QUEUED job of the state index, at every level: minutes for a long chain)."""

    def chain_cancel_steps() -> int:
        [head] = enqueue(store, [spec()]).jobs
        before = head.id
        for _ in range(20):
            [job] = store.insert(plan(prepare([spec(after=[before])])).prepared).jobs
            before = job.id
        steps = _steps(store, lambda: store.cancel_queued(head.id, "stop"))
        assert len(store.take_cascaded()) == 20
        return steps

    alone = chain_cancel_steps()
    enqueue(store, [spec() for _ in range(20_000)])
    assert chain_cancel_steps() < alone * 3


# ---------------------------------------------------------------- lists by any filter

_FILTERS = {"state": "DONE", "queue": "q", "type": "T", "subject": "s"}


def _finish_all(store: SQLiteStore) -> None:
    leases = store.lease_many(worker_pid=1, count=100_000)
    store.complete_many([(lease, None, 0.0) for lease in leases])


def test_a_page_of_jobs_costs_the_same_whatever_else_the_store_holds(
    store: SQLiteStore, spec: Spec
) -> None:
    """The jobs page (newest first, any filters, 20 a page) reads its page from an index
    in id order: it sorts no state's jobs, scans no table, and walks no jobs of a state
    and a queue to find a subject's, however many jobs there are besides."""
    for _ in range(20):  # (one at a time: a newer generation supersedes a queued one)
        enqueue(store, [spec(queue="q", subject="s")])
        _finish_all(store)
    combos = [
        {name: _FILTERS[name] for name in chosen}
        for size in range(1, len(_FILTERS) + 1)
        for chosen in itertools.combinations(_FILTERS, size)
    ]

    def page_steps(filters: dict[str, str]) -> int:
        def read() -> None:
            assert len(store.list_page(**filters, limit=20).jobs) == 20

        return _steps(store, read)

    alone = [page_steps(filters) for filters in combos]
    # 10,000 more DONE jobs of the queue and type, and 10,000 newer QUEUED ones elsewhere.
    enqueue(store, [spec(queue="q") for _ in range(10_000)])
    _finish_all(store)
    enqueue(store, [spec("U", queue="other") for _ in range(10_000)])
    for filters, before in zip(combos, alone, strict=True):
        assert page_steps(filters) < 3 * before + 100, filters


def test_the_first_write_of_a_batch_takes_no_savepoint(store: SQLiteStore, spec: Spec) -> None:
    """A write alone in its batch (most of them) is BEGIN, its statements, COMMIT: the
    transaction undoes it alone. Each later write of the batch has its savepoint."""
    statements: list[str] = []
    store.defer_commits(lambda: None)
    store._conn.set_trace_callback(statements.append)
    enqueue(store, [spec()])
    store.commit()
    assert not [s for s in statements if "SAVEPOINT" in s or "RELEASE" in s]
    statements.clear()
    enqueue(store, [spec()])
    enqueue(store, [spec()])
    store.commit()
    assert [s for s in statements if s.startswith(("SAVEPOINT", "RELEASE"))] == [
        "SAVEPOINT write",
        "RELEASE write",
    ]
