"""The PostgreSQL peers: procrastinate and pgqueuer, run the way their docs show.

Each workload gets a fresh instance: a new database on the run's server
(bench/pgserver.py), the peer's schema installed by its own command
(``procrastinate schema --apply``, ``pgq install``), and a temporary directory
holding ``app.py`` (the peer's tasks and connection). Workers are the peer's own
command-line worker, two processes of it:

* procrastinate: ``procrastinate --app=app.app worker``, its default
  concurrency of 1 per process ("launch multiple workers, each using their own
  process" is how its docs scale a synchronous task), a plain ``def`` task as in
  its quickstart, which it runs in a thread. Enqueue: ``task.defer()`` and
  ``task.batch_defer()``, the synchronous API, inside ``app.open()``.
* pgqueuer: ``pgq run app:main``, a factory yielding ``PgQueuer`` over an
  asyncpg connection (the driver its docs recommend), ``async def`` entrypoints
  as in its docs, its defaults (it takes 10 jobs per dequeue). Enqueue:
  ``Queries.enqueue``, one job per call or lists of jobs, on asyncio.

The handlers' start times come from a stamp log: the ``stamp`` task appends its
``time.monotonic()`` (system-wide, so it agrees with the bench's clock) and its
number to a file, one ``write`` each. A job counts as finished when the peer's
own tables say so (procrastinate: ``status = 'succeeded'``; pgqueuer: a
``successful`` row in its log table), looked at every 10 ms at the end of a
drain, once the stamp log shows every job started.
Nothing is installed at run time: the peers come from the ``bench`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.ours import batch_size, rate
from bench.peers import BIN, load_app, stop, wait_for
from bench.pgserver import PgServer
from bench.table import Figures, pct

STAMP_TASK = '''\
_stamps = None


def _stamp(i):
    """Append this handler's start (system-wide monotonic clock) to the stamp log."""
    global _stamps
    started = time.monotonic()
    if _stamps is None:
        _stamps = os.open(STAMPS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(_stamps, f"{i} {started!r}\\n".encode())
'''


class StampLog:
    """The stamp log of an instance, read as it grows: job number -> handler start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.seen: dict[int, float] = {}

    def poll(self) -> dict[int, float]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return self.seen
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode().splitlines():
            number, started = line.split()
            self.seen[int(number)] = float(started)
        return self.seen


class PgInstance:
    """One fresh state of a peer: its database, app module, stamp log and worker processes."""

    def __init__(self, peer: PgPeer) -> None:
        import psycopg

        self.peer = peer
        self.dir = Path(tempfile.mkdtemp(prefix=f"sem-bench-{peer.name}-", dir="/tmp"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []
        self.stamps = StampLog(self.dir / "stamps")
        self.db, self.url = peer.server.create(peer.name)
        try:
            (self.dir / "app.py").write_text(peer.app_source(self.url, self.stamps.path))
            installed = subprocess.run(
                peer.install_argv(self),
                cwd=self.dir,
                env=self.env(),
                capture_output=True,
                text=True,
            )
            if installed.returncode != 0:
                raise RuntimeError(
                    f"{peer.name}: schema install failed: {installed.stderr[-2000:]}"
                )
            self.app = load_app(self.dir / "app.py")
            self.conn = psycopg.connect(self.url, autocommit=True)
        except BaseException:
            peer.server.drop(self.db)
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.dir), env.get("PYTHONPATH")]))
        return env

    def start_workers(self) -> None:
        for i in range(2):
            log = open(self.dir / f"worker{i}.log", "wb")  # noqa: SIM115 - closed in close()
            self.logs.append(log)
            self.procs.append(
                subprocess.Popen(
                    self.peer.worker_argv(self, i),
                    cwd=self.dir,
                    env=self.env(),
                    stdout=log,
                    stderr=log,
                )
            )

    def alive(self) -> None:
        """Raise, with its log's tail, if a worker process has ended."""
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                tail = (self.dir / f"worker{i}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.peer.name} worker {i} exited {proc.returncode}: {tail}")

    def finished(self) -> int:
        """Jobs the peer's tables record as finished successfully."""
        row = self.conn.execute(self.peer.finished_sql).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        for proc in self.procs:
            stop(proc, signal.SIGTERM)
        for log in self.logs:
            log.close()
        self.conn.close()
        self.peer.server.drop(self.db)
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------------- clients


class ProcrastinateClient:
    """The app's tasks, deferred synchronously inside ``app.open()``."""

    def __init__(self, inst: PgInstance) -> None:
        self.app = inst.app.app
        self.app.open()
        self.noop, self.stamp_task = inst.app.noop, inst.app.stamp

    def noop_each(self, n: int) -> None:
        for _ in range(n):
            self.noop.defer()

    def noop_batches(self, n: int, size: int) -> None:
        for start in range(0, n, size):
            self.noop.batch_defer(*({} for _ in range(min(size, n - start))))

    def stamp_batches(self, n: int, size: int) -> None:
        for start in range(0, n, size):
            self.stamp_task.batch_defer(*({"i": i} for i in range(start, min(n, start + size))))

    def stamp(self, i: int) -> None:
        self.stamp_task.defer(i=i)

    def close(self) -> None:
        self.app.close()


class PgQueuerClient:
    """``Queries`` over one asyncpg connection, driven from a private asyncio loop."""

    def __init__(self, inst: PgInstance) -> None:
        import asyncpg
        from pgqueuer import Queries

        self.runner = asyncio.Runner()
        self.conn = self.runner.run(asyncpg.connect(inst.url))
        self.queries = Queries.from_asyncpg_connection(self.conn)

    def noop_each(self, n: int) -> None:
        async def go() -> None:
            for _ in range(n):
                await self.queries.enqueue("noop", None)

        self.runner.run(go())

    def _batches(self, n: int, size: int, entrypoint: str) -> None:
        async def go() -> None:
            for start in range(0, n, size):
                numbers = range(start, min(n, start + size))
                await self.queries.enqueue(
                    [entrypoint] * len(numbers),
                    [str(i).encode() for i in numbers],
                    [0] * len(numbers),
                )

        self.runner.run(go())

    def noop_batches(self, n: int, size: int) -> None:
        self._batches(n, size, "noop")

    def stamp_batches(self, n: int, size: int) -> None:
        self._batches(n, size, "stamp")

    def stamp(self, i: int) -> None:
        self.runner.run(self.queries.enqueue("stamp", str(i).encode()))

    def close(self) -> None:
        self.runner.run(self.conn.close())
        self.runner.close()


# --------------------------------------------------------------------------- peers


class PgPeer:
    """The workloads W1, W1c, W2 and W3, the same for both peers, over a :class:`PgInstance`."""

    name = ""
    note = ""
    finished_sql = ""

    def __init__(self, server: PgServer) -> None:
        self.server = server

    def app_source(self, url: str, stamps: Path) -> str:
        raise NotImplementedError

    def install_argv(self, inst: PgInstance) -> list[str]:
        raise NotImplementedError

    def worker_argv(self, inst: PgInstance, i: int) -> list[str]:
        raise NotImplementedError

    def client(self, inst: PgInstance) -> Any:
        raise NotImplementedError

    @contextlib.contextmanager
    def session(self, workers: bool = False) -> Iterator[tuple[PgInstance, Any]]:
        """A fresh instance and a client of it (and its workers, started, if asked)."""
        inst = PgInstance(self)
        try:
            if workers:
                inst.start_workers()
            client = self.client(inst)
            try:
                yield inst, client
            finally:
                client.close()
        finally:
            inst.close()

    def w1(self, n: int) -> float:
        """n enqueues, one job per call, one client; no worker runs."""
        with self.session() as (_, client):
            t0 = time.perf_counter()
            client.noop_each(n)
            return rate(n, time.perf_counter() - t0)

    def w1c(self, n: int) -> float:
        """The batch API, in batches of the size ours uses; no worker runs."""
        with self.session() as (_, client):
            t0 = time.perf_counter()
            client.noop_batches(n, batch_size("NOOP"))
            return rate(n, time.perf_counter() - t0)

    def w2_w4(self, n: int, idle_seconds: float, do_w2: bool = True, do_w4: bool = True) -> Figures:
        """W2 only (no W4 here): n stamp jobs queued with no worker running, then two
        worker processes start; timed from the first handler's start to the n-th
        successful job in the peer's tables."""
        if not do_w2:
            return {}
        with self.session() as (inst, client):
            client.stamp_batches(n, batch_size("STAMP"))
            inst.start_workers()

            def all_started() -> bool:
                inst.alive()
                return len(inst.stamps.poll()) >= n

            def done() -> bool:
                inst.alive()
                return inst.finished() >= n

            # The count is a scan of the peer's table: asked every 10 ms through the whole
            # drain it would take a share of the server's CPU from the peer. Until every
            # handler has started, the stamp log (a file) says that the end is not near.
            wait_for(f"{self.name} drain", all_started, max(600, n / 5), 0.01)
            wait_for(f"{self.name} drain's last completions", done, 60, 0.01)
            end = time.monotonic()
            first = min(inst.stamps.poll().values())
            return {"w2": rate(n, end - first)}

    def w2_async(self, n: int) -> None:
        return None  # the peer's handler is as its docs show it (see the module docstring)

    def w3(self, n: int) -> Figures:
        """Idle workers; per job: enqueue, wait until its handler started, pause 20 ms."""
        with self.session(workers=True) as (inst, client):

            def started(i: int) -> float | None:
                inst.alive()
                return inst.stamps.poll().get(i)

            client.stamp(-1)  # warm-up: the workers take jobs
            wait_for(f"{self.name} warm-up job", lambda: started(-1), 60)
            time.sleep(1)
            latencies = []
            for i in range(n):
                t0 = time.monotonic()
                client.stamp(i)
                latencies.append(
                    (wait_for(f"{self.name} stamp job", lambda i=i: started(i), 30) - t0) * 1e3
                )
                time.sleep(0.02)
        return {f"w3_p{p}": pct(latencies, p) for p in (50, 95, 99)}


class Procrastinate(PgPeer):
    name = "procrastinate"
    note = "procrastinate, 2 x `procrastinate worker` (concurrency 1 each), a plain def task"
    finished_sql = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"

    def app_source(self, url: str, stamps: Path) -> str:
        return (
            textwrap.dedent(
                f'''\
                """The benchmark's procrastinate app (written by bench/pg_peers.py)."""
                import os
                import time

                import procrastinate

                STAMPS = {str(stamps)!r}
                app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo={url!r}))


                @app.task(name="noop")
                def noop():
                    return None


                @app.task(name="stamp")
                def stamp(i):
                    _stamp(i)


                '''
            )
            + STAMP_TASK
        )

    def install_argv(self, inst: PgInstance) -> list[str]:
        return [str(BIN / "procrastinate"), "--app=app.app", "schema", "--apply"]

    def worker_argv(self, inst: PgInstance, i: int) -> list[str]:
        return [str(BIN / "procrastinate"), "--app=app.app", "worker", f"--name=bench-{i}"]

    def client(self, inst: PgInstance) -> ProcrastinateClient:
        return ProcrastinateClient(inst)


class PgQueuer(PgPeer):
    name = "pgqueuer"
    note = "pgqueuer (asyncpg), 2 x `pgq run app:main`, async def entrypoints"
    finished_sql = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"

    def app_source(self, url: str, stamps: Path) -> str:
        return (
            textwrap.dedent(
                f'''\
                """The benchmark's pgqueuer app (written by bench/pg_peers.py)."""
                import os
                import time
                from contextlib import asynccontextmanager

                import asyncpg
                from pgqueuer import PgQueuer
                from pgqueuer.models import Job

                STAMPS = {str(stamps)!r}


                @asynccontextmanager
                async def main():
                    connection = await asyncpg.connect({url!r})
                    pgq = PgQueuer.from_asyncpg_connection(connection)

                    @pgq.entrypoint("noop")
                    async def noop(job: Job) -> None:
                        return None

                    @pgq.entrypoint("stamp")
                    async def stamp(job: Job) -> None:
                        _stamp(int(job.payload))

                    yield pgq


                '''
            )
            + STAMP_TASK
        )

    def install_argv(self, inst: PgInstance) -> list[str]:
        return [str(BIN / "pgq"), "--pg-dsn", inst.url, "install"]

    def worker_argv(self, inst: PgInstance, i: int) -> list[str]:
        return [str(BIN / "pgq"), "--pg-dsn", inst.url, "run", "app:main"]

    def client(self, inst: PgInstance) -> PgQueuerClient:
        return PgQueuerClient(inst)


PG_PEERS: tuple[type[PgPeer], ...] = (Procrastinate, PgQueuer)
