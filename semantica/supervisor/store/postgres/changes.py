"""The changes feed: what other nodes changed, through LISTEN/NOTIFY.

A write that changes what may start notifies one channel, :data:`CHANNEL`,
inside its own transaction, so the news is delivered at commit, and only then
(a rolled-back write says nothing). The payload is the kind of change:

* ``jobs``: a job became startable (an insert, a requeue, a retry, a job
  given back, a failure with a retry, a dead node's jobs put back);
* ``queues``: a queue's settings changed (pause, resume, limit);
* ``ends``: a job left RUNNING or QUEUED (it frees a limit or a subject, and
  wakes whoever waits for it on another node);
* ``stops``: a node asked another to stop a job it runs (a cancel);
* ``schedules``: a schedule was put, removed, paused or resumed (the timers
  look again at when the next slot is due).

:class:`PGChangeFeed` listens on a connection of its own, in a thread of its
caller's. PostgreSQL folds the same notification sent twice in one
transaction into one, so a batch of writes costs the listeners one wake-up.

The feed of a store tells what *other* nodes changed: a notification sent by
its own store's connection (the server process it names is that
connection's) is passed over. The node knows its own changes already, and
hearing them again would cost it a wake-up, and a look at every job waited
for, at each of its own commits.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import psycopg

from semantica.errors import StoreUnavailable
from semantica.supervisor.store.postgres.connection import open_connection, where

CHANNEL = "semantica"
KINDS = frozenset({"jobs", "queues", "ends", "stops", "schedules"})


def notify(conn: psycopg.Connection[Any], *kinds: str) -> None:
    """Tell the other nodes, at this transaction's commit, that ``kinds`` changed."""
    conn.execute(
        "SELECT pg_notify(%s, kind) FROM unnest(%s::text[]) AS kind", (CHANNEL, list(kinds))
    )


def notifying(write: str, *kinds: str) -> str:
    """``write`` (an ``UPDATE ... RETURNING``) as one statement that also tells the other
    nodes, at this transaction's commit, that ``kinds`` changed, if it changed a row:
    its rows are ``write``'s. (One statement rather than two: a round trip less.)"""
    assert kinds and all(kind in KINDS for kind in kinds)
    told = ", ".join(f"pg_notify('{CHANNEL}', '{kind}')" for kind in kinds)
    # `told` calls a volatile function, so it is computed once, in full (never inlined),
    # when the count asks for its row; it notifies only if `changed` has a row. The
    # count is used (a join whose columns were not would be dropped by the planner).
    return (
        f"WITH changed AS ({write}), "
        f"told AS (SELECT {told} WHERE EXISTS (SELECT FROM changed)) "
        "SELECT changed.* FROM changed, (SELECT count(*) AS n FROM told) AS t WHERE t.n >= 0"
    )


class PGChangeFeed:
    """A feed of the changes committed to one database (see the module docstring).

    Its connection is opened at the first :meth:`wait`, and again at the wait
    after one that raised StoreUnavailable. ``own`` gives the server process of
    the owner's connection (it changes when that connection is reopened): what
    that process notified is not reported.
    """

    def __init__(self, dsn: str, deadline: float, own: Callable[[], int] = lambda: 0) -> None:
        self.dsn, self.place, self._deadline = dsn, where(dsn), deadline
        self._own = own
        self._conn: psycopg.Connection[Any] | None = None
        self._retry_at = 0.0  # after a failed reconnect, not before (no busy loop)

    def _listening(self, timeout: float) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        pause = self._retry_at - time.monotonic()
        if pause > 0:
            time.sleep(min(pause, timeout))
            if pause > timeout:
                raise StoreUnavailable(f"the changes feed is lost: {self.place} is unreachable")
        try:
            conn = open_connection(self.dsn, self._deadline, {})
            conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error:
            self._retry_at = time.monotonic() + 1.0
            raise StoreUnavailable(
                f"the changes feed is lost: {self.place} is unreachable"
            ) from None
        self._conn = conn
        return conn

    def wait(self, timeout: float) -> set[str]:
        """Block until changes arrive or ``timeout`` passes; the kinds seen (empty on
        timeout). Raises StoreUnavailable when the connection is lost (the caller
        then treats everything as changed, and waits again: that reconnects)."""
        conn = self._listening(timeout)
        kinds: set[str] = set()
        until = time.monotonic() + timeout
        try:
            while True:
                left = max(0.0, until - time.monotonic())
                notes = list(conn.notifies(timeout=left, stop_after=1))
                if notes:  # and whatever else came with it
                    notes += conn.notifies(timeout=0.0)
                own = self._own()
                kinds.update(note.payload for note in notes if note.pid != own)
                if kinds or time.monotonic() >= until:
                    break
        except psycopg.Error:
            self._drop()
            raise StoreUnavailable(
                f"the changes feed is lost: {self.place} is unreachable"
            ) from None
        return kinds & KINDS

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def close(self) -> None:
        self._drop()
