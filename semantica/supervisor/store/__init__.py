"""The job store: the only code that speaks SQL, behind one contract.

* ``contract.py``: :class:`JobStore` (its reads are :class:`StoreReads`) and
  :class:`StoreUpkeep`, what any store must do (typing Protocols), free of any
  database;
* ``records.py``: what a store takes and returns (:class:`Lease`,
  :class:`Prepared`, :class:`EnqueueResult`, ...), and :func:`prepare`, which
  checks specs before they reach a store;
* ``start_rules.py``: when a queued job may start, stated once;
* ``rows.py``: the jobs table's columns and how a row becomes a Job, for any backend;
* ``sqlite/``: the SQLite backend, one module per concern;
* ``postgres/``: the PostgreSQL backend (many nodes on one database), likewise.

The rest of the supervisor imports from this package's top (this module) and
never from a backend; it gets a store from :func:`open_store`. Nothing in
this package imports from the rest of the supervisor.
"""

from __future__ import annotations

from pathlib import Path

from semantica.clock import Clock
from semantica.config import is_postgres_location
from semantica.supervisor.store.contract import (
    BUSY_PATIENCE_S,
    JobStore,
    StoreReads,
    StoreUpkeep,
)
from semantica.supervisor.store.records import (
    EnqueueResult,
    Fired,
    Lease,
    NodeInfo,
    NodeSpec,
    Page,
    Prepared,
    SchemaChange,
    SchemaTooNew,
    StaleLease,
    check_queue_setting,
    prepare,
)
from semantica.supervisor.store.sharing import ChangeFeed, LogBook
from semantica.supervisor.store.start_rules import Blockers, waiting_reason


def is_postgres(location: Path | str) -> bool:
    """Whether ``location`` names a PostgreSQL database rather than a SQLite file: a
    ``postgresql://`` or ``postgres://`` URL, or libpq's ``key=value`` words (a
    :class:`~pathlib.Path` is always a SQLite file)."""
    return isinstance(location, str) and is_postgres_location(location)


def open_store(
    location: Path | str,
    clock: Clock | None = None,
    durability: str = "full",
    migrate: bool = False,
    node: NodeSpec | None = None,
    deadline: float | None = None,
) -> JobStore:
    """Open the store at ``location``: a PostgreSQL database (see :func:`is_postgres`;
    libpq's environment applies), or else the SQLite file at that path (created if
    missing; ``durability`` is SQLite's).

    With ``migrate``, its schema is brought to the newest at once; otherwise the
    caller calls :meth:`JobStore.migrate` (to log what it does first). ``node``:
    how this supervisor registers as a node of a shared store. ``deadline``: the
    longest a call to a PostgreSQL store may take before it gives up on its
    connection (StoreUnavailable; by default 2 s).

    Raises:
        StoreError: it cannot be opened (StoreFull on a full disk,
            StoreUnavailable naming the host for a server it cannot reach), or its
            schema is newer than this code (SchemaTooNew).
    """
    if is_postgres(location):
        from semantica.supervisor.store.postgres import PostgresStore

        if deadline is None:
            return PostgresStore(str(location), clock, migrate=migrate, node=node)
        return PostgresStore(str(location), clock, migrate=migrate, node=node, deadline=deadline)

    from semantica.supervisor.store.sqlite import SQLiteStore

    store = SQLiteStore(Path(location), clock, durability, migrate=migrate)
    if node is not None:
        store.join(node)
    return store


__all__ = [
    "BUSY_PATIENCE_S",
    "Blockers",
    "ChangeFeed",
    "EnqueueResult",
    "Fired",
    "JobStore",
    "LogBook",
    "Lease",
    "NodeInfo",
    "NodeSpec",
    "Page",
    "Prepared",
    "SchemaChange",
    "SchemaTooNew",
    "StaleLease",
    "StoreReads",
    "StoreUpkeep",
    "check_queue_setting",
    "is_postgres",
    "open_store",
    "prepare",
    "waiting_reason",
]
