"""Ours on PostgreSQL: 1, 2 or 3 semanticad nodes sharing one fresh database, 2 workers each.

Each instance is a new database on the run's server (bench/pgserver.py) and N nodes,
``semanticad --store postgresql://... --workers 2 --node-name nK``, each with its own
SEMANTICA_HOME (so its own socket and token), started at once. The client enqueues through
node 1's socket; whichever node leases a job runs it, and a drain ends when ``wait_many``
on node 1 reports every job DONE (the store is shared, so any node could say it). The
workloads are ours of bench/ours.py, unchanged, over node 1.

A Semantica without the PostgreSQL store (semanticad has no ``--store``) makes every
workload of these engines raise :class:`Unavailable`, one line, and the run goes on with
the peers.
"""

from __future__ import annotations

from typing import Any

from bench.ours import Ours, drain
from bench.pgserver import PgServer
from bench.semantica_engine import Engine
from bench.table import Figures
from semantica import Client

NO_STORE = "this Semantica has no PostgreSQL store (semanticad has no --store)"


class Unavailable(RuntimeError):
    """The engine cannot run here, for a reason one line says (no traceback wanted)."""


def has_pg_store() -> bool:
    """Whether this checkout's semanticad takes ``--store``."""
    from semantica.supervisor.cli import build_parser

    return any("--store" in action.option_strings for action in build_parser()._actions)


class Nodes:
    """N semanticad nodes on one new database; ``home`` and ``proc`` are node 1's."""

    def __init__(self, server: PgServer, count: int, workers: int = 2) -> None:
        self.server = server
        self.count = count
        self.workers = workers
        self.engines: list[Engine] = []
        self.db = ""

    def __enter__(self) -> Nodes:
        self.db, url = self.server.create(f"ours-{self.count}n")
        try:
            for k in range(1, self.count + 1):
                node = Engine(
                    workers=self.workers,
                    durability=None,
                    args=["--store", url, "--node-name", f"n{k}"],
                    keep_stderr=True,
                )
                self.engines.append(node)
                node.start()
            for k, node in enumerate(self.engines, 1):
                try:
                    node.wait_ready()
                except RuntimeError as exc:
                    raise RuntimeError(f"node n{k}: {exc}") from None
        except BaseException:
            self.__exit__()
            raise
        return self

    @property
    def home(self) -> Any:
        return self.engines[0].home

    @property
    def proc(self) -> Any:
        return self.engines[0].proc

    def __exit__(self, *exc: object) -> None:
        for node in self.engines:  # all at once: the last to go would otherwise wait for
            node.signal_stop()  # the others' leases
        for node in self.engines:
            node.close()
        if self.db:
            self.server.drop(self.db)


class OursPg(Ours):
    """Ours' workloads W1, W1c, W2 (both handler kinds) and W3 over ``count`` nodes."""

    def __init__(self, server: PgServer, count: int) -> None:
        super().__init__()
        self.server = server
        self.count = count
        self.name = f"ours-{count}n"
        self.note = (
            f"{count} x `semanticad --store postgresql://... --workers 2 --node-name nK`, "
            "clients on node 1"
        )
        self.available = has_pg_store()

    def engine(self) -> Nodes:  # type: ignore[override]
        if not self.available:
            raise Unavailable(NO_STORE)
        return Nodes(self.server, self.count)

    def warm(self, client: Client) -> None:
        """A stamp job per worker of the cluster goes through first."""
        jobs = client.enqueue_many([{"type": "STAMP"}] * (2 * self.count))
        client.wait_many([job.id for job in jobs], timeout=60)

    def w2_w4(self, n: int, idle_seconds: float, do_w2: bool = True, do_w4: bool = True) -> Figures:
        """W2 only (W4 is not part of the PostgreSQL run)."""
        if not do_w2:
            return {}
        with self.engine() as nodes, Client(home=nodes.home) as client:
            self.warm(client)
            return {"w2": drain(client, n, "STAMP")}

    def w2_async(self, n: int) -> float:
        with self.engine() as nodes, Client(home=nodes.home) as client:
            self.warm(client)
            return drain(client, n, "ANOOP")
