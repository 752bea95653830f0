"""The job store: the only code that speaks SQL, behind one contract.

* ``contract.py``: :class:`JobStore` (its reads are :class:`StoreReads`) and
  :class:`StoreUpkeep`, what any store must do (typing Protocols), free of any
  database;
* ``records.py``: what a store takes and returns (:class:`Lease`,
  :class:`Prepared`, :class:`EnqueueResult`, ...), and :func:`prepare`, which
  checks specs before they reach a store;
* ``start_rules.py``: when a queued job may start, stated once;
* ``sqlite/``: the SQLite backend, one module per concern.

The rest of the supervisor imports from this package's top (this module) and
never from ``sqlite/``; it gets a store from :func:`open_store`. Nothing in
this package imports from the rest of the supervisor.
"""

from __future__ import annotations

from pathlib import Path

from semantica.clock import Clock
from semantica.supervisor.store.contract import (
    BUSY_PATIENCE_S,
    JobStore,
    StoreReads,
    StoreUpkeep,
)
from semantica.supervisor.store.records import (
    EnqueueResult,
    Lease,
    Page,
    Prepared,
    SchemaChange,
    SchemaTooNew,
    StaleLease,
    check_queue_setting,
    prepare,
)
from semantica.supervisor.store.start_rules import Blockers, waiting_reason


def open_store(
    path: Path, clock: Clock | None = None, durability: str = "full", migrate: bool = False
) -> JobStore:
    """Open the store at ``path`` (the SQLite file; created if missing).

    With ``migrate``, its schema is brought to the newest at once; otherwise the
    caller calls :meth:`JobStore.migrate` (to log what it does first).

    Raises:
        StoreError: it cannot be opened (StoreFull on a full disk), or its
            schema is newer than this code (SchemaTooNew).
    """
    from semantica.supervisor.store.sqlite import SQLiteStore

    return SQLiteStore(path, clock, durability, migrate=migrate)


__all__ = [
    "BUSY_PATIENCE_S",
    "Blockers",
    "EnqueueResult",
    "JobStore",
    "Lease",
    "Page",
    "Prepared",
    "SchemaChange",
    "SchemaTooNew",
    "StaleLease",
    "StoreReads",
    "StoreUpkeep",
    "check_queue_setting",
    "open_store",
    "prepare",
    "waiting_reason",
]
