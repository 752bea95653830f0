"""The job store on a PostgreSQL database, shared by any number of nodes: the parts by
concern, put together.

:class:`PostgresStore` implements
:class:`~semantica.supervisor.store.contract.JobStore` (read it for what each
method promises) with psycopg 3; each concern is a module of this package:

* ``connection.py``: deadlines, reconnection, typed errors, transactions, group commit;
* ``migrations.py``: schema versions (``sql/postgres/``), migrated once by many nodes;
* ``enqueue.py``: inserts, dedup and supersede by subject;
* ``leases.py``: the start order and taking jobs across nodes; ``moves.py``: every later move;
* ``nodes.py``: registration, heartbeats, the dead nodes' jobs;
* ``reads.py`` and ``queues.py``: what is read;
* ``schedules.py``: schedules and the firing of their slots, claimed once across nodes;
* ``changes.py``: LISTEN/NOTIFY, what other nodes changed;
* ``logbook.py``: job logs every node reads;
* ``upkeep.py``: maintenance, on a second connection.

Calls are synchronous and short (one small transaction each), and each of
their statements is bounded by a deadline: the store never waits longer than
that for a server that does not answer, whatever the network does.
"""

from __future__ import annotations

from semantica.clock import Clock, SystemClock
from semantica.errors import StoreError
from semantica.supervisor.store.postgres.changes import PGChangeFeed
from semantica.supervisor.store.postgres.connection import DEADLINE_S, reads
from semantica.supervisor.store.postgres.enqueue import PGEnqueue
from semantica.supervisor.store.postgres.leases import PGLeases
from semantica.supervisor.store.postgres.logbook import PGLogBook
from semantica.supervisor.store.postgres.migrations import read_version
from semantica.supervisor.store.postgres.moves import PGMoves
from semantica.supervisor.store.postgres.queues import PGQueues
from semantica.supervisor.store.postgres.reads import PGReads
from semantica.supervisor.store.postgres.schedules import PGSchedules
from semantica.supervisor.store.postgres.upkeep import SIZE_SQL, PGUpkeep
from semantica.supervisor.store.records import NodeSpec, SchemaChange


class PostgresStore(PGLeases, PGMoves, PGEnqueue, PGReads, PGQueues, PGLogBook, PGSchedules):
    """The job store on one PostgreSQL database.

    Args:
        dsn: a libpq connection string or ``postgresql://`` URL (libpq's
            environment applies: PGPASSFILE, PGSSLMODE...).
        clock: wall-clock time source for the times written on jobs.
        migrate: bring the schema to the newest at once (else call :meth:`migrate`).
        node: how this store's owner registers as a node (at its first write that
            needs one, or at :meth:`join`).
        deadline: the longest a statement may wait for the server before the
            connection is cut (StoreUnavailable).

    Raises:
        StoreUnavailable: the server cannot be reached.
        SchemaTooNew: the database was written by a newer Semantica.
    """

    def __init__(
        self,
        dsn: str,
        clock: Clock | None = None,
        *,
        migrate: bool = True,
        node: NodeSpec | None = None,
        deadline: float = DEADLINE_S,
    ) -> None:
        self._deadline = deadline
        self._node, self._node_spec, self._taken_over = None, node, 0
        self._last_start = 0.0
        self._cascaded: list[int] = []  # jobs ended by a dependency's end (take_cascaded)
        self._setup(dsn, clock or SystemClock(), deadline)
        try:
            with self._call("cannot open the job store") as conn:
                self._check_not_too_new(read_version(conn))
            if migrate:
                self.migrate()
        except StoreError:
            self.close()
            raise

    def migrate(self, to: int | None = None) -> SchemaChange:
        change = super().migrate(to)
        if change.after != change.before:
            self._node = None  # (a registration may be gone with the nodes table)
        return change

    def upkeep(self) -> PGUpkeep:
        """A second connection, for maintenance work in a thread (see PGUpkeep)."""
        return PGUpkeep(self.dsn, self._deadline)

    @reads
    def size_bytes(self) -> int:
        """Bytes the store's tables take on the server (on this connection: ``status``
        asks on the event loop, where a new connection would be a connect each time)."""
        row = self._live().execute(SIZE_SQL).fetchone()
        return int(row[0]) if row else 0

    def changes(self) -> PGChangeFeed:
        """A feed of what the other nodes commit to this database (LISTEN/NOTIFY)."""
        return PGChangeFeed(self.dsn, self._deadline, own=lambda: self.backend_pid)
