"""Nodes on PostgreSQL: the supervisors sharing one database, their heartbeats, and
what happens to the jobs of one that is gone.

Each store registers its owner as a node (a row of ``nodes``) at :meth:`join`,
or at its first write that needs one. A lease records its node in
``jobs.node_id`` (cleared when the job leaves RUNNING), so that:

* a join with the key of an earlier registration (the same supervisor,
  restarted) takes it over and puts its RUNNING jobs back in the queue;
* :meth:`recover_running` puts back the RUNNING jobs of this node's earlier
  registrations (and those leased before nodes existed), never another live
  node's;
* :meth:`reap_dead` declares dead the nodes whose heartbeat is older than the
  timeout, by the database's clock (the nodes' clocks may disagree), and puts
  their RUNNING jobs back. It locks the rows of the nodes it kills
  (``FOR UPDATE``): a lease holds its own node's row ``FOR KEY SHARE``, so a
  node is never declared dead in the middle of a lease, and a node no longer
  alive takes nothing. Two reapers at once: the second waits for the first and
  then finds those nodes dead already; each job goes back once.

Heartbeats, ``started_at`` and the hour of history :meth:`nodes` shows are the
database's clock (``clock_timestamp()``); the times written on jobs stay the
store's clock.
"""

from __future__ import annotations

from typing import Any

import psycopg

from semantica.models import JobError, JobState, check_transition
from semantica.supervisor.store.postgres.changes import notifying
from semantica.supervisor.store.postgres.connection import reads
from semantica.supervisor.store.postgres.migrations import PGMigrations
from semantica.supervisor.store.postgres.rows import clean
from semantica.supervisor.store.records import NodeInfo, NodeSpec

#: The database's clock, in Unix seconds.
DB_NOW = "extract(epoch from clock_timestamp())::float8"
#: How long dead and gone nodes are still listed by nodes().
HISTORY_S = 3600.0

_REQUEUE = (
    "UPDATE jobs SET state = 'QUEUED', attempts = attempts - 1, run_after = %s, "
    "error_kind = 'interrupted', error_message = %s, worker_pid = NULL, node_id = NULL "
    "WHERE state = 'RUNNING' AND {which} RETURNING id"
)
STOPPED = "the supervisor stopped while the job ran"


def requeue(
    conn: psycopg.Connection[Any],
    now: float,
    which: str,
    args: tuple[Any, ...],
    message: str = STOPPED,
) -> list[int]:
    """Put the RUNNING jobs ``which`` selects back in the queue, due ``now``, error
    ``interrupted``, attempt not spent; their ids (and "jobs" for the other nodes)."""
    check_transition(JobState.RUNNING, JobState.QUEUED)
    sql = notifying(_REQUEUE.format(which=which), "jobs", "ends")
    return [job_id for (job_id,) in conn.execute(sql, (now, message, *args))]


class PGNodes(PGMigrations):
    """This store's node: joining, heartbeats, reaping the dead, leaving."""

    _node_spec: NodeSpec | None
    _node: int | None  # this store's node id, once joined
    _taken_over: int  # jobs a join put back, told by the next recover_running

    def join(self, node: NodeSpec) -> int:
        """Register as a node, taking over the registrations with the same key (their
        RUNNING jobs go back to the queue); the node id (see the contract)."""
        return self._join(node, tell=True)

    def _join(self, node: NodeSpec, *, tell: bool) -> int:
        now = self.clock.time()
        with self.transaction(tell=tell) as conn:
            conn.execute(
                f"UPDATE nodes SET state = 'gone', ended_at = {DB_NOW} "
                "WHERE key = %s AND state = 'alive'",
                (node.key,),
            )
            taken = requeue(
                conn, now, "node_id IN (SELECT id FROM nodes WHERE key = %s)", (node.key,)
            )
            row = conn.execute(
                "INSERT INTO nodes (key, name, host, pid, version, workers, started_at, "
                f"heartbeat_at) VALUES (%s, %s, %s, %s, %s, %s, {DB_NOW}, {DB_NOW}) RETURNING id",
                (node.key, node.name, node.host, node.pid, node.version, node.workers),
            ).fetchone()
        assert row is not None
        self._node, self._node_spec = int(row[0]), node
        self._taken_over += len(taken)
        return self._node

    def _joined(self) -> int:
        """This store's node id, joining with the defaults (or the spec it was opened
        with) if it has not joined yet."""
        if self._node is None:
            # Part of the write that needs it: that write tells the owner of both.
            return self._join(self._node_spec or NodeSpec(), tell=False)
        return self._node

    def heartbeat(self, detail: bytes) -> bool:
        """Renew this node's heartbeat and publish ``detail``; False if it was declared
        dead (or left) meanwhile."""
        node = self._joined()
        with self.transaction() as conn:
            cur = conn.execute(
                f"UPDATE nodes SET heartbeat_at = {DB_NOW}, detail = %s "
                "WHERE id = %s AND state = 'alive' RETURNING id",
                (detail, node),
            )
        return bool(cur.fetchall())

    def reap_dead(self, timeout: float) -> list[int]:
        """Declare dead the nodes silent for ``timeout`` seconds (the database's clock) and
        put their RUNNING jobs back; those jobs' ids."""
        now = self.clock.time()
        with self.transaction() as conn:
            dead = [
                node_id
                for (node_id,) in conn.execute(
                    "SELECT id FROM nodes WHERE state = 'alive' "
                    f"AND heartbeat_at < {DB_NOW} - %s AND id IS DISTINCT FROM %s "
                    "ORDER BY id FOR UPDATE",
                    (timeout, self._node),
                )
            ]
            if not dead:
                return []
            conn.execute(
                f"UPDATE nodes SET state = 'dead', ended_at = {DB_NOW} WHERE id = ANY(%s)",
                (dead,),
            )
            return requeue(
                conn,
                now,
                "node_id = ANY(%s)",
                (dead,),
                "the node running the job stopped answering (declared dead)",
            )

    @reads
    def nodes(self) -> list[NodeInfo]:
        """Every node alive, and those dead or gone within the last hour, by id."""
        rows = self._live().execute(
            "SELECT id, key, name, host, pid, version, workers, started_at, heartbeat_at, "
            "state, detail FROM nodes "
            f"WHERE state = 'alive' OR ended_at > {DB_NOW} - %s ORDER BY id",
            (HISTORY_S,),
        )
        return [_node_info(row, self._node) for row in rows]

    def leave(self) -> None:
        """Mark this node gone (a clean stop, after its jobs were put back)."""
        if self._node is None:
            return
        with self.transaction() as conn:
            conn.execute(
                f"UPDATE nodes SET state = 'gone', ended_at = {DB_NOW} "
                "WHERE id = %s AND state = 'alive'",
                (self._node,),
            )

    def request_stop(self, job_id: int, error: JobError) -> bool:
        """Ask the node running ``job_id`` to stop it (see the contract); False if the
        job is not RUNNING. The feed says "stops"."""
        with self.transaction() as conn:
            cur = conn.execute(
                notifying(
                    "UPDATE jobs SET stop_kind = %s, stop_message = %s "
                    "WHERE id = %s AND state = 'RUNNING' RETURNING id",
                    "stops",
                ),
                (error.kind, clean(error.message), job_id),
            )
        return bool(cur.fetchall())

    @reads
    def stop_requests(self) -> list[tuple[int, JobError]]:
        """The jobs running on this node that another node asked to stop."""
        if self._node is None:
            return []
        rows = self._live().execute(
            "SELECT id, stop_kind, stop_message FROM jobs "
            "WHERE state = 'RUNNING' AND node_id = %s AND stop_kind IS NOT NULL ORDER BY id",
            (self._node,),
        )
        return [(job_id, JobError(kind, message or "")) for job_id, kind, message in rows]

    def recover_running(self) -> int:
        """At start: put back the RUNNING jobs of this node's earlier registrations
        (same key) and those leased before nodes existed; how many."""
        node = self._joined()
        key = (self._node_spec or NodeSpec()).key
        with self.transaction() as conn:
            ids = requeue(
                conn,
                self.clock.time(),
                "(node_id IS NULL OR node_id IN (SELECT id FROM nodes WHERE key = %s AND id <> %s)"
                " OR node_id NOT IN (SELECT id FROM nodes))",
                (key, node),
            )
        taken, self._taken_over = self._taken_over, 0
        return len(ids) + taken


def _node_info(row: Any, this: int | None) -> NodeInfo:
    node_id, key, name, host, pid, version, workers, started_at, heartbeat_at, state, detail = row
    return NodeInfo(
        node_id=node_id,
        key=key,
        name=name,
        host=host,
        pid=pid,
        version=version,
        workers=workers,
        started_at=started_at,
        heartbeat_at=heartbeat_at,
        state=state,
        detail=bytes(detail),
        this=node_id == this,
    )
