"""Maintenance on SQLite: a connection of its own, for a thread, in short steps.

Deleting old jobs and forgetting unused queues go in batches of short
transactions; "flush the journal" is ``wal_checkpoint(TRUNCATE)``; compacting
is ``incremental_vacuum`` a few hundred pages a step (the file is created with
``auto_vacuum = INCREMENTAL``), or one ``VACUUM`` when forced; the check is
``PRAGMA quick_check``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import msgspec

from semantica.supervisor.store.rows import ALL_STATES_SQL, FINISHED_STATES_SQL
from semantica.supervisor.store.sqlite.connection import (
    BUSY_TIMEOUT_S,
    set_busy_timeout,
    size_on_disk,
    store_error,
)
from semantica.supervisor.store.sqlite.rows import IDS_IN_JSON, json_ids

#: Free pages above this share of the file are given back.
VACUUM_THRESHOLD = 0.10


class SQLiteUpkeep:
    """Long store work on a connection of its own, meant to run in a thread.

    Each write is a short transaction (a batch of at most ``batch`` rows, a
    step of at most ``pages`` pages); only :meth:`compact_fully` holds the write lock
    for as long as it runs. The caller closes the supervisor's store gate
    around the steps that hold the lock (maintenance.py), so the supervisor's
    writers wait at the gate rather than in SQLite's busy wait.
    """

    #: Its write steps hold SQLite's one write lock: the supervisor's writers wait.
    exclusive = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        set_busy_timeout(self._conn, BUSY_TIMEOUT_S)

    def close(self) -> None:
        self._conn.close()

    def lead(self) -> bool:
        """True: one supervisor owns the file (its lock file says so), and runs one
        maintenance at a time itself."""
        return True

    def size_bytes(self) -> int:
        return size_on_disk(self.path)

    def delete_finished(self, before: float, batch: int = 500) -> list[int]:
        """Delete up to ``batch`` finished jobs whose ``finished_at`` is before
        ``before``, in one short transaction; return their ids (fewer than
        ``batch``: there are no more)."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            ids = [
                row[0]
                for row in self._conn.execute(
                    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs "
                    f"WHERE finished_at < ? AND state IN {FINISHED_STATES_SQL} LIMIT ?) "
                    "RETURNING id",
                    (before, batch),
                ).fetchall()
            ]
            if ids:  # their dependency edges go with them, both ways
                for column in ("job_id", "after_id"):
                    self._conn.execute(
                        f"DELETE FROM job_deps WHERE {column} IN {IDS_IN_JSON}", (json_ids(ids),)
                    )
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise store_error(exc, "deleting old jobs failed") from None
        return ids

    def forget_queues(self, after: str, batch: int = 500) -> tuple[int, str | None]:
        """Look at up to ``batch`` queues named after ``after``, in name order, and delete
        those that have no job left and no setting (not paused, no limit), in one short
        transaction. Returns how many went, and the name to go on after (None: all
        looked at). A queue forgotten is as if it had never been used."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            names = [
                row[0]
                for row in self._conn.execute(
                    "SELECT name FROM queues WHERE name > ? ORDER BY name LIMIT ?", (after, batch)
                )
            ]
            cur = self._conn.execute(
                "DELETE FROM queues WHERE name IN (SELECT value FROM json_each(?)) "
                "AND paused = 0 AND max_running = 0 AND NOT EXISTS ("
                "  SELECT 1 FROM jobs INDEXED BY jobs_state "
                f"  WHERE jobs.state IN {ALL_STATES_SQL} AND jobs.queue = queues.name)",
                (msgspec.json.encode(names).decode(),),
            )
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise store_error(exc, "forgetting unused queues failed") from None
        return int(cur.rowcount), (names[-1] if len(names) == batch else None)

    def existing(self, job_ids: Sequence[int]) -> set[int]:
        """Which of ``job_ids`` name a job."""
        try:
            return {
                row[0]
                for row in self._conn.execute(
                    f"SELECT id FROM jobs WHERE id IN {IDS_IN_JSON}", (json_ids(job_ids),)
                )
            }
        except sqlite3.Error as exc:
            raise store_error(exc, "reading the job store failed") from None

    def flush_journal(self) -> None:
        """Copy the WAL into the database and truncate it (``wal_checkpoint(TRUNCATE)``)."""
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            raise store_error(exc, "checkpoint failed") from None

    def free_ratio(self) -> float:
        """Free pages over all pages of the file."""
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        return float(free) / pages if pages else 0.0

    def wants_compacting(self) -> bool:
        """Whether free pages are more than :data:`VACUUM_THRESHOLD` of the file."""
        return self.free_ratio() > VACUUM_THRESHOLD

    def compact_step(self, pages: int = 256) -> int:
        """Give up to ``pages`` free pages back to the file system, in one short
        transaction; return how many (0: none left, or auto_vacuum is off)."""
        before = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        if not before:
            return 0
        try:
            self._conn.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall()
        except sqlite3.Error as exc:
            raise store_error(exc, "vacuum failed") from None
        after = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        return max(0, int(before) - int(after))

    def compact_fully(self) -> None:
        """``VACUUM``: rewrite the whole file (holds the write lock until done)."""
        try:
            self._conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect with VACUUM
            self._conn.execute("VACUUM")
        except sqlite3.Error as exc:
            raise store_error(exc, "vacuum failed") from None

    def check(self) -> str:
        """``ok``, or what SQLite's ``PRAGMA quick_check`` found wrong."""
        try:
            rows = self._conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.Error as exc:
            return f"quick_check failed: {exc}"
        return "; ".join(str(row[0]) for row in rows)
