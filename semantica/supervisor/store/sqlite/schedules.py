"""Schedules on SQLite: the shared schedule methods (``store/schedule_ops.py``) on the
store's connection.

SQLite has one writer at a time (``BEGIN IMMEDIATE``), so a claim needs no row
lock: the compare-and-set on ``next_slot`` alone makes a slot's claim once.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from semantica.supervisor.store.schedule_ops import ScheduleOps
from semantica.supervisor.store.sqlite.connection import SQLiteConnection, store_error


class SQLiteSchedules(ScheduleOps, SQLiteConnection):
    """Schedules, their runs, and the firing of their slots (see ScheduleOps)."""

    def _schedule_write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return self.transaction()

    @contextlib.contextmanager
    def _schedule_read(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._conn
        except sqlite3.Error as exc:
            raise store_error(exc, "reading the job store failed") from None
