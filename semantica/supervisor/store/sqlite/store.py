"""The job store on one SQLite file: the parts by concern, put together.

One file in WAL mode, ``synchronous=FULL`` by default, through the standard
``sqlite3`` module and sqlite-utils. :class:`SQLiteStore` implements
:class:`~semantica.supervisor.store.contract.JobStore` (read it for what each
method promises); each concern is a module of this package:

* ``connection.py``: typed errors, transactions, group commit;
* ``migrations.py``: schema versions and backups;
* ``enqueue.py``: inserts, dedup and supersede by subject (``inserts.py``: many rows a
  statement; ``subjects.py``: a run of subjects at once);
* ``leases.py``: the start order and taking jobs; ``moves.py``: every later move;
* ``reads.py`` and ``queues.py``: what is read;
* ``schedules.py``: schedules and the firing of their slots (``store/schedule_ops.py``);
* ``nodes.py``: the one node (this supervisor), for the contract's node methods;
* ``upkeep.py``: maintenance, on a second connection.

Calls are synchronous and short (one small transaction each); long work
(VACUUM, integrity checks) belongs on the upkeep connection, in a thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import sqlite_utils

from semantica.clock import Clock, SystemClock
from semantica.errors import StoreError
from semantica.supervisor.store.sqlite.connection import BUSY_TIMEOUT_S, set_busy_timeout
from semantica.supervisor.store.sqlite.enqueue import SQLiteEnqueue
from semantica.supervisor.store.sqlite.leases import SQLiteLeases
from semantica.supervisor.store.sqlite.moves import SQLiteMoves
from semantica.supervisor.store.sqlite.nodes import SQLiteNodes
from semantica.supervisor.store.sqlite.queues import SQLiteQueues
from semantica.supervisor.store.sqlite.reads import SQLiteReads
from semantica.supervisor.store.sqlite.schedules import SQLiteSchedules
from semantica.supervisor.store.sqlite.upkeep import SQLiteUpkeep


class SQLiteStore(
    SQLiteLeases,
    SQLiteMoves,
    SQLiteEnqueue,
    SQLiteReads,
    SQLiteQueues,
    SQLiteNodes,
    SQLiteSchedules,
):
    """The job store on one SQLite file.

    Args:
        path: the database file (created if missing).
        clock: wall-clock time source.
        durability: ``"full"`` (an acknowledged write survives power loss) or
            ``"normal"`` (it survives a process crash).
        migrate: bring the schema to the newest at once (else call :meth:`migrate`).
    """

    def __init__(
        self,
        path: Path,
        clock: Clock | None = None,
        durability: str = "full",
        migrate: bool = True,
    ) -> None:
        self.path = Path(path)
        self.clock = clock or SystemClock()
        self._last_lease = 0  # the newest lease id taken (read once the schema exists)
        self._on_write: Callable[[], None] | None = None
        self._batch_lost: StoreError | None = None
        self._batch_writes = 0
        self._cascaded: list[int] = []  # jobs ended by a dependency's end (take_cascaded)
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._open_error(exc) from None
        try:
            self.db = sqlite_utils.Database(self._conn)
            set_busy_timeout(self._conn, BUSY_TIMEOUT_S)
            # Refuse a newer schema before changing anything in the file (WAL mode included).
            self._check_not_too_new()
            if self.schema_version == 0:
                # A new file: free pages can then be given back in small steps
                # (maintenance), without a VACUUM that locks out every writer.
                self._conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"cannot put {self.path} in WAL mode (got {mode})")
            self._conn.execute(
                f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}"
            )
            if migrate:
                self.migrate()
            elif self.schema_version > 0:
                self._read_last_lease()
        except sqlite3.Error as exc:
            self._conn.close()
            raise self._open_error(exc) from None
        except StoreError:
            self._conn.close()
            raise
        self._last_start = 0.0

    def upkeep(self) -> SQLiteUpkeep:
        """A second connection, for maintenance work in a thread (see SQLiteUpkeep)."""
        return SQLiteUpkeep(self.path)
