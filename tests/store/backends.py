"""The store backends the conformance suite runs against, and the one way it opens them.

To run the suite on a new backend, add its name to :data:`BACKENDS` and a branch
to :func:`open_backend`; no test changes. Every test of ``tests/store/`` then
runs once per backend (``test_x[sqlite]``, ``test_x[postgresql]``...).
"""

from __future__ import annotations

from pathlib import Path

from pgshared import database_for

from semantica.clock import Clock
from semantica.supervisor.store import JobStore, open_store

#: Every backend the suite runs on.
BACKENDS = ["sqlite", "postgresql"]


def open_backend(name: str, place: Path, clock: Clock) -> JobStore:
    """Open (creating it if new) the store of backend ``name`` kept at ``place``, a
    directory of the test's own, with its schema at the newest.

    Called again with the same ``name`` and ``place``, it opens the same store
    again (what a restart after a crash does); a new ``place`` is a new, empty
    store. ``clock`` is the store's wall clock (a FakeClock in the tests).
    """
    if name == "sqlite":
        # "normal": the same store without an fsync per commit; what durability
        # means on disk is SQLite's own business (tests/unit/test_sqlite_store.py).
        return open_store(place / "semantica.db", clock, durability="normal", migrate=True)
    if name == "postgresql":
        # A schema per place, on the suite's own server (tests/pgshared.py).
        return open_store(database_for(place), clock, migrate=True)
    raise ValueError(f"no store backend {name!r}; the suite knows {', '.join(BACKENDS)}")
