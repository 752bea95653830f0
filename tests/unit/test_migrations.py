"""Schema migrations: up and down one transaction a step, keeping every job; backups first."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from enqueueing import enqueue

from semantica.clock import FakeClock
from semantica.errors import BadInput
from semantica.models import JobSpec, JobState
from semantica.supervisor.store.sqlite import SQLiteStore, migrations

LATEST = migrations()[-1][0]


def _columns(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}


def _fill(store: SQLiteStore) -> dict[int, JobState]:
    jobs = enqueue(store, [JobSpec(type="T", payload={"n": n}) for n in range(50)]).jobs
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


# A store opened in a process of its own that is SIGKILLed at one point of the
# backup taken before the upgrade:
#   open     the copy's file was just made (it is empty);
#   copy     a few pages are copied (the file is partial);
#   publish  the copy is complete but not yet in place (only once it has a name of its own).
_KILLED_DURING_BACKUP = """
import os, signal, sqlite3, sys
from pathlib import Path

db, point = Path(sys.argv[1]), sys.argv[2]
real_connect, real_replace = sqlite3.connect, os.replace

def die():
    os.kill(os.getpid(), signal.SIGKILL)

class Connection(sqlite3.Connection):
    def backup(self, target, *, pages=-1, progress=None, name="main", sleep=0.25):
        def step(status, remaining, total):
            if point == "copy" and total - remaining >= 3:
                die()
        return super().backup(target, pages=1, progress=step, name=name, sleep=0)

def connect(path, *args, **kwargs):
    conn = real_connect(path, *args, factory=Connection, **kwargs)
    if point == "open" and Path(path).parent.name == "backups":
        die()
    return conn

def replace(src, dst, **kwargs):
    if point == "publish" and Path(dst).parent.name == "backups":
        die()
    return real_replace(src, dst, **kwargs)

sqlite3.connect, os.replace = connect, replace
from semantica.supervisor.store.sqlite import SQLiteStore
SQLiteStore(db).close()
"""

_JOBS = 300


def _jobs_in(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])


@pytest.mark.parametrize("point", ["open", "copy", "publish"])
def test_a_kill_during_the_backup_leaves_no_partial_file_named_like_a_backup(
    tmp_path: Path, point: str
) -> None:
    """SIGKILL while the copy taken before an upgrade is being written: every file in
    backups/ named like a backup is a whole copy; the next start removes what the kill
    left behind, takes its own backup and upgrades."""
    db = tmp_path / "semantica.db"
    store = SQLiteStore(db, FakeClock())
    enqueue(store, [JobSpec(type="T", payload={"pad": "x" * 1000, "n": n}) for n in range(_JOBS)])
    store.migrate(to=1)
    store.close()
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_DURING_BACKUP, str(db), point],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    backups = tmp_path / "backups"
    for path in backups.glob("semantica-*.db"):
        assert path.stat().st_size > 0 and _jobs_in(path) == _JOBS, path.name
    reopened = SQLiteStore(db, FakeClock())
    assert reopened.schema_version == LATEST
    reopened.close()
    [backup] = list(backups.iterdir())  # the kill's leftovers are gone
    assert backup.name.startswith("semantica-v1-") and _jobs_in(backup) == _JOBS


def test_a_backup_is_whole_and_private(tmp_path: Path) -> None:
    """The copy before an upgrade is complete, named for its version, and 0600 with the
    supervisor's umask; nothing else is left in backups/."""
    db = tmp_path / "semantica.db"
    store = SQLiteStore(db, FakeClock())
    enqueue(store, [JobSpec(type="T") for _ in range(_JOBS)])
    store.migrate(to=1)
    old_umask = os.umask(0o077)
    try:
        change = store.migrate()
    finally:
        os.umask(old_umask)
    store.close()
    assert change.backup is not None and change.backup.parent == tmp_path / "backups"
    assert list((tmp_path / "backups").iterdir()) == [change.backup]
    assert stat.S_IMODE(change.backup.stat().st_mode) == 0o600
    assert _jobs_in(change.backup) == _JOBS


_NO_ROOM_FOR_THE_BACKUP = """
import resource, signal, sys
from pathlib import Path
from semantica.errors import StoreFull
from semantica.supervisor.store.sqlite import SQLiteStore

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
try:
    SQLiteStore(Path(sys.argv[1]))
except StoreFull as exc:
    print(exc.message)
"""


def test_a_backup_without_room_is_a_full_disk_and_changes_nothing(tmp_path: Path) -> None:
    """No room for the copy before an upgrade (a file size limit below the database's
    size): opening fails with StoreFull, leaves no file in backups/, and the database is
    still whole at its old schema, to be upgraded once there is room."""
    db = tmp_path / "semantica.db"
    store = SQLiteStore(db, FakeClock())
    enqueue(store, [JobSpec(type="T", payload={"pad": "x" * 1000, "n": n}) for n in range(_JOBS)])
    store.migrate(to=1)
    store.close()
    refused = subprocess.run(
        [sys.executable, "-c", _NO_ROOM_FOR_THE_BACKUP, str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 0, refused.stderr
    assert "cannot back up" in refused.stdout and "the disk is full" in refused.stdout
    assert list((tmp_path / "backups").iterdir()) == []
    assert _jobs_in(db) == _JOBS  # (and still at schema 1)
    reopened = SQLiteStore(db, FakeClock())
    assert reopened.schema_version == LATEST
    reopened.close()
