"""The PostgreSQL backend of the job store (see store.py for its parts).

Only the store package's :func:`~semantica.supervisor.store.open_store`, and
tests, name these classes; the rest of the supervisor uses the contract.
"""

from semantica.supervisor.store.postgres.migrations import migrations
from semantica.supervisor.store.postgres.store import PostgresStore
from semantica.supervisor.store.postgres.upkeep import PGUpkeep

__all__ = ["PGUpkeep", "PostgresStore", "migrations"]
