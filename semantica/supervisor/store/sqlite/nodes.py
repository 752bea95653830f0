"""Nodes on SQLite: one node, this store's own supervisor, always alive.

A SQLite file has one writer, so nothing changes behind its owner's back: the
node methods of the contract are trivial here (the node id is 1, the
heartbeat is now, no node is ever dead), and there is no changes feed, no stop
request from another node and no log book (job logs are the supervisor's files).
"""

from __future__ import annotations

import msgspec

from semantica.clock import Clock
from semantica.models import JobError
from semantica.supervisor.store.records import NodeInfo, NodeSpec

#: The one node of a SQLite store.
NODE_ID = 1


class SQLiteNodes:
    """The one node: its spec and the detail it last published, in memory."""

    clock: Clock
    _node_spec: NodeSpec | None = None
    _node_detail: bytes = b""
    _node_started: float | None = None

    def join(self, node: NodeSpec) -> int:
        """Register as the one node (its id is always 1)."""
        self._node_spec = node
        return NODE_ID

    def heartbeat(self, detail: bytes) -> bool:
        """Keep ``detail`` to show; the one node is never declared dead."""
        self._node_detail = detail
        return True

    def reap_dead(self, timeout: float) -> list[int]:
        """No other node: nothing to reap."""
        return []

    def nodes(self) -> list[NodeInfo]:
        """The one node, alive, its heartbeat now."""
        spec = self._node_spec or NodeSpec()
        now = self.clock.time()
        if self._node_started is None:
            self._node_started = now
        return [
            NodeInfo(
                **msgspec.structs.asdict(spec),
                node_id=NODE_ID,
                started_at=self._node_started,
                heartbeat_at=now,
                state="alive",
                detail=self._node_detail,
                this=True,
            )
        ]

    def leave(self) -> None:
        """Nothing to mark: the file has no other reader to tell."""

    def changes(self) -> None:
        """None: a single-writer store; nothing changes behind its owner's back."""
        return None

    def request_stop(self, job_id: int, error: JobError) -> bool:
        """False: every running job is its own supervisor's, which stops it itself."""
        return False

    def stop_requests(self) -> list[tuple[int, JobError]]:
        """None: no other node asks."""
        return []

    def log_book(self) -> None:
        """None: the supervisor keeps job logs in files of its own."""
        return None
