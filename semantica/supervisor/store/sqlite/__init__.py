"""The SQLite backend of the job store (see store.py for its parts).

Only the store package's :func:`~semantica.supervisor.store.open_store`, and
tests, name these classes; the rest of the supervisor uses the contract.
"""

from semantica.supervisor.store.sqlite.migrations import migrations
from semantica.supervisor.store.sqlite.store import SQLiteStore
from semantica.supervisor.store.sqlite.upkeep import SQLiteUpkeep

__all__ = ["SQLiteStore", "SQLiteUpkeep", "migrations"]
