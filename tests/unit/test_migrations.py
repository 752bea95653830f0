"""Schema migrations: up and down one transaction a step, keeping every job; backups first."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from semantica.errors import BadInput
from semantica.models import JobSpec, JobState
from semantica.supervisor.clock import FakeClock
from semantica.supervisor.store import SQLiteStore, migrations

LATEST = migrations()[-1][0]


def _columns(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}


def _fill(store: SQLiteStore) -> dict[int, JobState]:
    jobs = store.enqueue([JobSpec(type="T", payload={"n": n}) for n in range(50)]).jobs
    lease = store.lease(worker_pid=1)
    assert lease is not None
    store.complete(lease, b'{"ok": true}')
    return {job.id: store.get(job.id).state for job in jobs}


def test_every_migration_after_the_first_has_a_way_down() -> None:
    """Each sql/NNN_name.sql after 001 has its NNN_name.down.sql."""
    for version, path in migrations():
        if version > 1:
            assert path.with_name(path.stem + ".down.sql").exists(), path.name


def test_down_to_1_and_back_up_keeps_every_job(tmp_path: Path) -> None:
    """Going down to schema 1 and up again loses no job, no state, no payload."""
    db = tmp_path / "semantica.db"
    store = SQLiteStore(db, FakeClock())
    states = _fill(store)
    assert store.migrate(to=1).after == 1
    assert "progress" not in _columns(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == len(states)
    assert store.migrate().after == LATEST
    assert "progress" in _columns(db)
    assert {job_id: store.get(job_id).state for job_id in states} == states
    assert store.get(min(states)).payload == {"n": 0}
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()


def test_going_up_backs_the_database_up_first(tmp_path: Path) -> None:
    """Before pending migrations apply to a database with jobs, a copy goes to backups/."""
    db = tmp_path / "semantica.db"
    store = SQLiteStore(db, FakeClock())
    _fill(store)
    store.migrate(to=1)
    store.close()
    reopened = SQLiteStore(db, FakeClock())  # opening migrates up, after a backup
    [backup] = (tmp_path / "backups").glob("semantica-v1-*.db")
    with sqlite3.connect(backup) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 50
    assert reopened.schema_version == LATEST
    reopened.close()


def test_a_new_database_is_not_backed_up(tmp_path: Path) -> None:
    """Creating the schema from nothing needs no backup."""
    SQLiteStore(tmp_path / "semantica.db", FakeClock()).close()
    assert not (tmp_path / "backups").exists()


@pytest.mark.parametrize("to", [0, LATEST + 1, -1])
def test_a_version_this_code_does_not_have_is_refused(tmp_path: Path, to: int) -> None:
    """migrate(to=N) for an N outside 1..newest changes nothing and says why."""
    store = SQLiteStore(tmp_path / "semantica.db", FakeClock())
    with pytest.raises(BadInput, match="schema versions go from 1"):
        store.migrate(to=to)
    assert store.schema_version == LATEST
    store.close()
