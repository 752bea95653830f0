"""The SQLite schema: the ``sql/`` migrations, applied one transaction a step, and backups.

Migrations are ``sql/NNN_name.sql`` (and ``NNN_name.down.sql`` to go back),
numbered from 1; ``PRAGMA user_version`` holds the version a file is at. A
file written by a newer Semantica is refused before anything in it changes.
Before going up, the database is copied aside with SQLite's backup API; a
backup is written under a temporary name and renamed when whole, so a file
named like a backup is never partial, however the process is killed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from semantica.errors import BadInput, StoreError, StoreFull
from semantica.supervisor.store.records import SchemaChange, SchemaTooNew
from semantica.supervisor.store.sqlite.connection import SQLiteConnection, store_error

_MIGRATION_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


def migrations_dir() -> Path:
    """The ``sql/`` directory: inside the installed package, or beside it in a checkout."""
    package = Path(__file__).resolve().parents[3]  # semantica/
    for candidate in (package / "sql", package.parent / "sql"):
        if candidate.is_dir():
            return candidate
    raise StoreError(f"the sql/ migrations are missing (looked in {package} and its parent)")


def migrations() -> list[tuple[int, Path]]:
    """The up-migrations, ``(version, path)``, in order."""
    found = []
    for path in migrations_dir().iterdir():
        match = _MIGRATION_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


#: The name a backup has while it is written (see SQLiteMigrations.backup).
_PARTIAL = ".partial-"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make the names in a directory (a new file, a rename) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_partials(folder: Path) -> None:
    """Remove backups left unfinished (and their journals) by a kill or a failure.

    Best effort: a leftover that cannot be removed is only a wasted file, never
    taken for a backup, and must not stop a start.
    """
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            if path.name.startswith(_PARTIAL):
                with contextlib.suppress(OSError):
                    path.unlink()


class SQLiteMigrations(SQLiteConnection):
    """Schema versions: checking, migrating up and down, and backups before going up.

    ``_last_lease`` is here because lease ids go on from the newest in the file:
    with one writer, the store counts them in memory (see leases.py).
    """

    _last_lease: int

    @property
    def newest_schema_version(self) -> int:
        return migrations()[-1][0]

    def _check_not_too_new(self) -> None:
        latest = migrations()[-1][0]
        current = self.schema_version
        if current > latest:
            raise SchemaTooNew(
                f"{self.path} has schema version {current}, newer than this Semantica "
                f"knows ({latest}); upgrade Semantica or restore a backup"
            )

    def migrate(self, to: int | None = None) -> SchemaChange:
        """Move the schema up or down to version ``to`` (default: the newest), one
        transaction per step, keeping the data; say what was done.

        A new database (schema 0) gets the schema made from nothing. Going up
        from a database that already has one first copies it aside with
        SQLite's backup API (``backups/`` beside it).

        Raises:
            SchemaTooNew: the file's version is above the newest this code knows.
            BadInput: ``to`` names no version this code has.
            StoreError: a step failed (that step was rolled back).
        """
        started = time.monotonic()
        try:
            change = self._migrate(to)
            self._read_last_lease()
        except sqlite3.Error as exc:
            raise store_error(exc, f"migrating {self.path} failed") from None
        change.seconds = time.monotonic() - started
        return change

    def _read_last_lease(self) -> None:
        """Lease ids go on from the newest in the file (they fence late reports)."""
        (newest,) = self._conn.execute("SELECT coalesce(max(lease_id), 0) FROM jobs").fetchone()
        self._last_lease = max(self._last_lease, newest)

    def _migrate(self, to: int | None) -> SchemaChange:
        self._check_not_too_new()
        remove_partials(self.backups_dir)  # a backup a kill interrupted
        steps = migrations()
        latest = steps[-1][0]
        target = latest if to is None else to
        if not 1 <= target <= latest:
            raise BadInput(f"schema versions go from 1 to {latest}, not {target}")
        current = self.schema_version
        change = SchemaChange(before=current, after=current)
        if current < target and current > 0:
            change.backup = self.backup(f"before-v{target}")
        for version, path in steps:
            if current < version <= target:
                self._step(path, version)
                current = version
        for version, path in reversed(steps):
            if target < version <= current:
                down = path.with_name(path.name.removesuffix(".sql") + ".down.sql")
                if not down.exists():
                    raise StoreError(f"no way down from schema {version}: {down.name} is missing")
                self._step(down, version - 1)
                current = version - 1
        change.after = current
        return change

    def _step(self, script_path: Path, version_after: int) -> None:
        script = script_path.read_text()
        try:
            self._conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version_after};\nCOMMIT;"
            )
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise StoreError(f"migration {script_path.name} failed: {exc}") from None

    def backup(self, label: str) -> Path:
        """Copy the database (consistently, with SQLite's backup API) into ``backups/``.

        The copy is written under a temporary name (``.partial-`` and the backup's
        name), synced, and renamed when whole, and the rename is synced too: a
        file named like a backup is never empty or partial, whenever the process
        is killed. A kill's leftovers are removed by the next :meth:`migrate`.
        """
        stamp = datetime.fromtimestamp(self.clock.time(), UTC).strftime("%Y%m%dT%H%M%SZ")
        folder = self.backups_dir
        target = folder / f"{self.path.stem}-v{self.schema_version}-{label}-{stamp}.db"
        partial = folder / (_PARTIAL + target.name)
        try:
            if not folder.is_dir():
                folder.mkdir(mode=0o700)
                _fsync_dir(folder.parent)
            with contextlib.closing(sqlite3.connect(partial)) as copy:
                self._conn.backup(copy)
            _fsync_file(partial)
            os.replace(partial, target)
            _fsync_dir(folder)
        except sqlite3.Error as exc:
            remove_partials(folder)
            raise store_error(exc, f"cannot back up {self.path} to {target}") from None
        except OSError as exc:
            remove_partials(folder)
            what = f"cannot back up {self.path} to {target}"
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise StoreFull(f"{what}: the disk is full ({exc.strerror})") from None
            raise StoreError(f"{what}: {exc.strerror}") from None
        return target

    @property
    def backups_dir(self) -> Path:
        """Where the copies taken before upgrades go: ``backups/`` beside the database."""
        return self.path.parent / "backups"
