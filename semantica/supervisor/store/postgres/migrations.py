"""The PostgreSQL schema: the ``sql/postgres/`` migrations, one transaction a step.

Migrations are ``sql/postgres/NNN_name.sql`` (and ``NNN_name.down.sql``), with
the same version numbers as SQLite's in ``sql/``: schema N means the same on
both. The version is kept in the one-row table ``semantica_schema``. A
database written by a newer Semantica is refused before anything changes.

Several nodes may start at once on one database: each migrates under a
session advisory lock (:data:`MIGRATION_LOCK`), and reads the version again
once it holds it, so the first one migrates and the others find it done.
Migrations run on a connection of their own, without the store's call
deadline (a step may take long on a big table). No backup is taken: backing up
a server is its operator's business (``pg_dump``, replicas).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import psycopg

from semantica.errors import BadInput, StoreError
from semantica.supervisor.store.postgres.connection import (
    PGConnection,
    open_connection,
    store_error,
)
from semantica.supervisor.store.records import SchemaChange, SchemaTooNew
from semantica.supervisor.store.sqlite.migrations import migrations_dir

_MIGRATION_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
#: The advisory lock migrations hold (one bigint key: "semantica" in ASCII, shortened).
MIGRATION_LOCK = 0x53454D414E544943


def migrations() -> list[tuple[int, Path]]:
    """The up-migrations of PostgreSQL, ``(version, path)``, in order."""
    folder = migrations_dir() / "postgres"
    found = [
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if (match := _MIGRATION_RE.match(path.name))
    ]
    return sorted(found)


def read_version(conn: psycopg.Connection[Any]) -> int:
    """The schema version a database holds (0: none yet)."""
    row = conn.execute("SELECT to_regclass('semantica_schema') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    found = conn.execute("SELECT version FROM semantica_schema").fetchone()
    return int(found[0]) if found else 0


class PGMigrations(PGConnection):
    """Schema versions: checking, and migrating up and down under the migration lock."""

    _deadline: float

    @property
    def newest_schema_version(self) -> int:
        return migrations()[-1][0]

    @property
    def schema_version(self) -> int:
        with self._call("reading the schema version failed") as conn:
            return read_version(conn)

    def _check_not_too_new(self, current: int) -> None:
        latest = self.newest_schema_version
        if current > latest:
            raise SchemaTooNew(
                f"{self.place} has schema version {current}, newer than this Semantica "
                f"knows ({latest}); upgrade Semantica"
            )

    def migrate(self, to: int | None = None) -> SchemaChange:
        """Move the schema up or down to version ``to`` (default: the newest), one
        transaction per step, keeping the data; say what was done. No backup.

        Raises:
            SchemaTooNew: the database's version is above the newest this code knows.
            BadInput: ``to`` names no version this code has.
            StoreError: a step failed (that step was rolled back).
        """
        started = time.monotonic()
        try:
            conn = open_connection(self.dsn, self._deadline, {})
        except psycopg.Error as exc:
            raise self._error(exc) from None
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            change = self._migrate(conn, to)
        except psycopg.Error as exc:
            raise self._error(exc) from None
        finally:
            conn.close()  # (and the session's advisory lock with it)
        change.seconds = time.monotonic() - started
        return change

    def _error(self, exc: psycopg.Error) -> StoreError:
        return store_error(exc, f"migrating {self.place} failed", self.place)

    def _migrate(self, conn: psycopg.Connection[Any], to: int | None) -> SchemaChange:
        current = read_version(conn)
        self._check_not_too_new(current)
        steps = migrations()
        latest = steps[-1][0]
        target = latest if to is None else to
        if not 1 <= target <= latest:
            raise BadInput(f"schema versions go from 1 to {latest}, not {target}")
        change = SchemaChange(before=current, after=current)
        for version, path in steps:
            if current < version <= target:
                _step(conn, path, version)
                current = version
        for version, path in reversed(steps):
            if target < version <= current:
                down = path.with_name(path.name.removesuffix(".sql") + ".down.sql")
                if not down.exists():
                    raise StoreError(f"no way down from schema {version}: {down.name} is missing")
                _step(conn, down, version - 1)
                current = version - 1
        change.after = current
        return change


def _step(conn: psycopg.Connection[Any], script_path: Path, version_after: int) -> None:
    script = script_path.read_text()
    try:
        with conn.transaction():
            conn.execute("CREATE TABLE IF NOT EXISTS semantica_schema (version integer NOT NULL)")
            conn.execute(script.encode())  # (several statements: the simple protocol)
            conn.execute("DELETE FROM semantica_schema")
            conn.execute("INSERT INTO semantica_schema VALUES (%s)", (version_after,))
    except psycopg.Error as exc:
        raise StoreError(f"migration {script_path.name} failed: {exc}") from None
