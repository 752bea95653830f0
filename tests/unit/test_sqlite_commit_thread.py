"""The SQLite store's commit in its own thread: the connection has one user at a time."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from semantica.clock import FakeClock
from semantica.errors import StoreError, StoreFull
from semantica.models import JobSpec, JobState
from semantica.supervisor.lifecycle import prepare
from semantica.supervisor.store import Prepared
from semantica.supervisor.store.sqlite import SQLiteStore


class Outcome:
    def __init__(self) -> None:
        self.called = threading.Event()
        self.error: StoreError | None = None

    def __call__(self, error: StoreError | None) -> None:
        self.error = error
        self.called.set()


class HeldCommit:
    """The store's connection, with its COMMIT held until :attr:`release` is set."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.committing = threading.Event()
        self.release = threading.Event()
        self.full = False

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.lstrip().upper().startswith("COMMIT"):
            self.committing.set()
            assert self.release.wait(10)
            if self.full:
                exc = sqlite3.OperationalError("database or disk is full")
                exc.sqlite_errorname = "SQLITE_FULL"  # type: ignore[misc]
                raise exc
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def store_prepared(job_type: str) -> list[Prepared]:
    return list(prepare([JobSpec(type=job_type)]))


def _store(tmp_path: Path) -> tuple[SQLiteStore, HeldCommit]:
    store = SQLiteStore(tmp_path / "semantica.db", FakeClock())
    held = HeldCommit(store._conn)
    store._conn = held  # type: ignore[assignment]
    store.defer_commits(lambda: None)
    return store, held


def test_nothing_uses_the_connection_while_a_commit_runs_in_the_thread(tmp_path: Path) -> None:
    """A read and a write started while the commit is under way wait for its end (they
    do not run beside it on the one connection), then go on as usual."""
    store, held = _store(tmp_path)
    try:
        [first] = store.insert(store_prepared("T")).jobs
        done = Outcome()
        store.commit_in_thread(done)
        assert held.committing.wait(10)
        seen: list[object] = []

        def use() -> None:
            seen.append(store.get(first.id).state)
            seen.append(store.insert(store_prepared("U")).jobs[0].id)

        user = threading.Thread(target=use)
        user.start()
        user.join(0.2)
        assert user.is_alive() and seen == []  # waiting for the commit
        assert not done.called.is_set()
        held.release.set()
        user.join(10)
        assert seen == [JobState.QUEUED, first.id + 1]
        assert done.called.wait(10) and done.error is None
    finally:
        held.release.set()
        store.close()


def test_a_commit_that_fails_in_the_thread_undoes_its_batch_and_says_so(tmp_path: Path) -> None:
    """A failed commit in the thread: ``done`` gets the typed error, the batch is gone,
    and the store goes on with the next batch."""
    store, held = _store(tmp_path)
    try:
        [lost] = store.insert(store_prepared("T")).jobs
        held.full = True
        held.release.set()
        done = Outcome()
        store.commit_in_thread(done)
        assert done.called.wait(10)
        assert isinstance(done.error, StoreFull)
        held.full = False
        [kept] = store.insert(store_prepared("T")).jobs
        again = Outcome()
        store.commit_in_thread(again)
        assert again.called.wait(10) and again.error is None
        assert store.count() == 1 and store.get(kept.id).state == JobState.QUEUED
        assert kept.id == lost.id  # the lost one's id was never taken
    finally:
        held.release.set()
        store.close()
