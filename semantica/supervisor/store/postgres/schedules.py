"""Schedules on PostgreSQL: the shared schedule methods (``store/schedule_ops.py``) on
the store's connection, for many nodes.

A due schedule's row is taken ``FOR UPDATE SKIP LOCKED``: a node claiming it
holds it until its write commits, and another node passes over it rather than
wait; the compare-and-set on ``next_slot`` then makes the claim once even if
the other node read the row before the first committed. A put or a pause
reads the row ``FOR UPDATE``: it waits for a claim in progress, then keeps the
slot that claim moved on to (writing back the one it read before would give
that slot a second job). A change to the schedules tells the other nodes (the
changes feed's ``schedules``), whose timers then look again.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg

from semantica.supervisor.store.postgres.changes import notify
from semantica.supervisor.store.postgres.connection import PGConnection, Unchanged
from semantica.supervisor.store.schedule_ops import ScheduleOps


class PGSchedules(ScheduleOps, PGConnection):
    """Schedules, their runs, and the firing of their slots (see ScheduleOps)."""

    _claim_lock = " FOR UPDATE SKIP LOCKED"
    _change_lock = " FOR UPDATE"

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def _schedule_write(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return self.transaction()

    def _schedule_read(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return self._call("reading the job store failed")

    def _schedules_changed(self, conn: Any) -> None:
        notify(conn, "schedules")

    def _nothing_written(self) -> None:
        raise Unchanged
