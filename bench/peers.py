"""The peers: huey (SQLite, Redis) and RQ (fork per job, SimpleWorker), run the way their docs say.

Each workload gets a fresh instance: a temporary directory holding ``app.py``
(the peer's tasks and its client configuration) and, for SQLite, the database;
for Redis, the shared server is flushed. Workers run as the peer's own
command-line consumer (``huey_consumer``, ``rq worker``) in subprocesses.
Nothing is installed here: huey, rq and redis come from the ``bench`` extra,
``redis-server`` from the system.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil

from bench.ours import batch_size, idle_cpu, new_process_ms, rate, rss_mb, threaded
from bench.table import Figures, pct

BIN = Path(sys.executable).parent
POLL = 0.005  # seconds between looks at a peer's result store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            proc.kill()
            proc.wait()


def wait_for(what: str, check: Any, timeout: float, interval: float = POLL) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout} s")
        time.sleep(interval)


class RedisServer:
    """A private ``redis-server`` on a free port, no persistence (``--save '' --appendonly no``)."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.dir = Path(tempfile.mkdtemp(prefix="sem-bench-redis-", dir="/tmp"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.version = "?"

    @staticmethod
    def find() -> str | None:
        return shutil.which("redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        from redis import Redis

        self.proc = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = Redis(host="127.0.0.1", port=self.port)

        def ping() -> bool:
            try:
                return bool(client.ping())
            except Exception:  # noqa: BLE001 - not listening yet
                return False

        wait_for("redis-server", ping, 10, 0.05)
        self.version = str(client.info("server").get("redis_version", "?"))
        client.close()
        return self

    def flush(self) -> None:
        from redis import Redis

        with Redis(host="127.0.0.1", port=self.port) as client:
            client.flushall()

    def process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def load_app(path: Path) -> ModuleType:
    """Import ``path`` as module ``app`` afresh (each instance writes its own)."""
    spec = importlib.util.spec_from_file_location("app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------- instances


class Instance:
    """One fresh state of a peer: its app module, its clients and its worker processes."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.dir = Path(tempfile.mkdtemp(prefix=f"sem-bench-{peer.name}-", dir="/tmp"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.dir), env.get("PYTHONPATH")]))
        return env

    def spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"worker{len(self.procs)}.log", "wb")  # noqa: SIM115 - closed in close()
        self.logs.append(log)
        proc = subprocess.Popen(argv, cwd=self.dir, env=self.env(), stdout=log, stderr=log)
        self.procs.append(proc)
        return proc

    def stop_workers(self) -> None:
        for proc in self.procs:
            stop(proc, self.peer.stop_signal)
        self.procs.clear()

    def close(self) -> None:
        self.stop_workers()
        for log in self.logs:
            log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # to be filled in by each peer
    def start_workers(self) -> None:
        raise NotImplementedError

    def client(self) -> Any:
        raise NotImplementedError

    def finished(self) -> int:
        """Jobs finished so far (each of its completions recorded)."""
        raise NotImplementedError

    def main_procs(self) -> list[psutil.Process]:
        """The supervisor-like process(es): huey's consumer; none for RQ."""
        return []

    def worker_procs(self) -> list[psutil.Process]:
        raise NotImplementedError

    def ready(self) -> None:
        """Block until the workers take jobs: one stamp job goes through."""
        client = self.client()
        try:
            handle = client.stamp()
            wait_for(f"{self.peer.name} warm-up job", lambda: client.stamp_result(handle), 60)
        finally:
            client.close()


class HueyInstance(Instance):
    def __init__(self, peer: Peer) -> None:
        super().__init__(peer)
        redis = peer.redis
        if redis is None:
            db = str(self.dir / "huey.db")
            storage = f"huey_lib.SqliteHuey('bench', filename={db!r}, fsync=True)"
        else:
            redis.flush()
            storage = f"huey_lib.RedisHuey('bench', host='127.0.0.1', port={redis.port})"
        (self.dir / "app.py").write_text(
            textwrap.dedent(
                f'''\
                """The benchmark's huey app (written by bench/peers.py)."""
                import time

                import huey as huey_lib


                def make():
                    h = {storage}

                    @h.task()
                    def noop():
                        return None

                    @h.task()
                    def stamp():
                        return time.monotonic()

                    return h, noop, stamp


                huey, noop, stamp = make()


                def enqueue_one():
                    noop()
                '''
            )
        )
        self.app = load_app(self.dir / "app.py")

    def start_workers(self) -> None:
        self.spawn([str(BIN / "huey_consumer"), "app.huey", "-w", "2", "-k", "process"])

    def client(self) -> HueyClient:
        return HueyClient(self.app)

    def finished(self) -> int:
        return int(self.app.huey.result_count())

    def stamps(self) -> list[float]:
        h = self.app.huey
        return [h.serializer.deserialize(bytes(v)) for v in h.all_results().values()]

    def main_procs(self) -> list[psutil.Process]:
        return [psutil.Process(p.pid) for p in self.procs]

    def worker_procs(self) -> list[psutil.Process]:
        return [c for p in self.main_procs() for c in p.children(recursive=True)]

    def close(self) -> None:
        self.app.huey.storage.close()
        super().close()


class HueyClient:
    """One huey instance (one connection) of the app's configuration."""

    def __init__(self, app: ModuleType) -> None:
        self.h, self._noop, self._stamp = app.make()

    def noop(self) -> None:
        self._noop()

    def stamp(self) -> Any:
        return self._stamp()

    def stamp_result(self, result: Any) -> float | None:
        value = result.get()  # not blocking: None until the task ran
        return None if value is None else float(value)

    batch = None  # huey has no bulk enqueue (task.map() enqueues one by one)

    def close(self) -> None:
        self.h.storage.close()


class RQInstance(Instance):
    def __init__(self, peer: Peer) -> None:
        super().__init__(peer)
        assert peer.redis is not None
        peer.redis.flush()
        (self.dir / "app.py").write_text(
            textwrap.dedent(
                f'''\
                """The benchmark's RQ tasks (written by bench/peers.py)."""
                import time


                def noop():
                    return None


                def stamp():
                    return time.monotonic()


                def enqueue_one():
                    from redis import Redis
                    from rq import Queue

                    Queue(connection=Redis(host="127.0.0.1", port={peer.redis.port})).enqueue(noop)
                '''
            )
        )
        from redis import Redis
        from rq import Queue

        self.redis = Redis(host="127.0.0.1", port=peer.redis.port)
        self.queue = Queue("default", connection=self.redis)

    def start_workers(self) -> None:
        from rq import Worker

        assert self.peer.redis is not None
        before = Worker.count(connection=self.redis)
        for i in range(2):
            self.spawn(
                [
                    str(BIN / "rq"),
                    "worker",
                    "--url",
                    self.peer.redis.url,
                    "--path",
                    str(self.dir),
                    "--worker-class",
                    self.peer.worker_class,
                    "--name",
                    f"bench-{os.getpid()}-{time.monotonic_ns()}-{i}",
                    "default",
                ]
            )
        self.registered = lambda: Worker.count(connection=self.redis) >= before + 2

    def ready(self) -> None:
        wait_for("rq workers registered", self.registered, 60, 0.05)
        super().ready()

    def client(self) -> RQClient:
        assert self.peer.redis is not None
        return RQClient(self.peer.redis.port)

    def finished(self) -> int:
        return int(self.queue.finished_job_registry.get_job_count(cleanup=False))

    def main_procs(self) -> list[psutil.Process]:
        return []

    def worker_procs(self) -> list[psutil.Process]:
        procs = [psutil.Process(p.pid) for p in self.procs]
        return procs + [c for p in procs for c in p.children(recursive=True)]

    def close(self) -> None:
        super().close()
        self.redis.close()


class RQClient:
    """One Redis connection and its Queue."""

    def __init__(self, port: int) -> None:
        from redis import Redis
        from rq import Queue

        self.redis = Redis(host="127.0.0.1", port=port)
        self.queue = Queue("default", connection=self.redis)

    def noop(self) -> Any:
        return self.queue.enqueue("app.noop")

    def stamp(self) -> Any:
        return self.queue.enqueue("app.stamp")

    def stamp_result(self, job: Any) -> float | None:
        value = job.return_value(refresh=True)
        return None if value is None else float(value)

    def batch(self, k: int, func: str = "app.noop") -> list[Any]:
        from rq import Queue

        return list(self.queue.enqueue_many([Queue.prepare_data(func) for _ in range(k)]))

    def close(self) -> None:
        self.redis.close()


# --------------------------------------------------------------------------- peers


class Peer:
    """The workloads, the same for every peer, over an :class:`Instance`."""

    name = ""
    note = ""
    uses_redis = False
    stop_signal = signal.SIGTERM
    worker_class = ""

    def __init__(self, redis: RedisServer | None = None) -> None:
        self.redis = redis

    def new_instance(self) -> Instance:
        raise NotImplementedError

    @contextlib.contextmanager
    def instance(self) -> Iterator[Instance]:
        inst = self.new_instance()
        try:
            yield inst
        finally:
            inst.close()

    def extra_procs(self) -> list[psutil.Process]:
        """Processes the peer needs besides its own (the Redis server)."""
        return [self.redis.process()] if self.redis is not None and self.uses_redis else []

    # W1 ---------------------------------------------------------------------

    def w1(self, n: int) -> float:
        """n enqueues, one at a time, one client; no worker runs."""
        with self.instance() as inst:
            client = inst.client()
            try:
                t0 = time.perf_counter()
                for _ in range(n):
                    client.noop()
                return rate(n, time.perf_counter() - t0)
            finally:
                client.close()

    def w1b_threads(self, n: int, clients: int = 8) -> float:
        with self.instance() as inst:
            return threaded(n, clients, inst.client, lambda c: c.noop())

    def w1b_async(self, n: int) -> float | None:
        return None

    def w2_async(self, n: int) -> float | None:
        return None  # their handlers are plain functions, run in the worker's main thread

    def w1c(self, n: int) -> float | None:
        """The bulk API in batches of the size ours uses; None if the peer has none."""
        with self.instance() as inst:
            client = inst.client()
            try:
                if client.batch is None:
                    return None
                size = batch_size("NOOP")
                t0 = time.perf_counter()
                for start in range(0, n, size):
                    client.batch(min(size, n - start))
                return rate(n, time.perf_counter() - t0)
            finally:
                client.close()

    # W2 + W4 ----------------------------------------------------------------

    def w2_w4(self, n: int, idle_seconds: float, do_w2: bool = True, do_w4: bool = True) -> Figures:
        """W4 idle on a warmed-up consumer; then it stops, n stamp jobs are queued, and a
        fresh consumer drains them (W2), timed from the first handler start to the
        n-th completion seen in the peer's result store; then W4 after W2."""
        out: Figures = {}
        with self.instance() as inst:
            extra = self.extra_procs()
            if do_w4:
                inst.start_workers()
                inst.ready()
                time.sleep(1)
                main, workers = inst.main_procs(), inst.worker_procs()
                if main:
                    out["w4_rss_main_idle"] = rss_mb(main)
                out["w4_rss_all_idle"] = rss_mb(main + workers + extra)
                cpu_main, cpu_all = idle_cpu(main, workers + extra, idle_seconds)
                if main:
                    out["w4_cpu_main_idle"] = cpu_main
                out["w4_cpu_all_idle"] = cpu_all
                inst.stop_workers()
            if not do_w2:
                return out
            client = inst.client()
            try:
                before = inst.finished()
                handles = []
                if client.batch is not None:
                    size = batch_size("STAMP")
                    for start in range(0, n, size):
                        handles.extend(client.batch(min(size, n - start), "app.stamp"))
                else:
                    handles = [client.stamp() for _ in range(n)]
                inst.start_workers()
                wait_for(
                    f"{self.name} drain",
                    lambda: inst.finished() >= before + n,
                    max(600, n / 5),
                    0.01,
                )
                end = time.monotonic()
                first = min(self.drain_stamps(inst, client, handles))
                out["w2"] = rate(n, end - first)
            finally:
                client.close()
            if do_w4:
                time.sleep(1)
                main, workers = inst.main_procs(), inst.worker_procs()
                if main:
                    out["w4_rss_main_after"] = rss_mb(main)
                out["w4_rss_all_after"] = rss_mb(main + workers + extra)
        return out

    def drain_stamps(self, inst: Instance, client: Any, handles: list[Any]) -> list[float]:
        """When the drained jobs' handlers started (the first few suffice: FIFO)."""
        stamps = [client.stamp_result(h) for h in handles[:50]]
        return [s for s in stamps if s is not None]

    # W3 ---------------------------------------------------------------------

    def w3(self, n: int) -> Figures:
        """Idle consumer; per job: enqueue, wait until it ran, pause 20 ms. Start - enqueue."""
        with self.instance() as inst:
            inst.start_workers()
            inst.ready()
            time.sleep(0.5)
            client = inst.client()
            latencies = []
            try:
                for _ in range(n):
                    t0 = time.monotonic()
                    handle = client.stamp()
                    started = wait_for(
                        f"{self.name} stamp job", lambda h=handle: client.stamp_result(h), 30
                    )
                    latencies.append((started - t0) * 1e3)
                    time.sleep(0.02)
            finally:
                client.close()
        return {f"w3_p{p}": pct(latencies, p) for p in (50, 95, 99)}

    # W5 ---------------------------------------------------------------------

    def w5(self, runs: int) -> Figures:
        """``python -c "import app; app.enqueue_one()"`` as a new process; no worker runs."""
        with self.instance() as inst:
            ms = new_process_ms(
                [sys.executable, "-c", "import app; app.enqueue_one()"], inst.env(), runs, inst.dir
            )
        return {"w5": ms, "w5_py": ms}


class HueySqlite(Peer):
    name = "huey-sqlite"
    note = "huey SqliteHuey (WAL, fsync=True), huey_consumer -w 2 -k process"
    stop_signal = signal.SIGINT  # graceful: the consumer stops its worker processes

    def new_instance(self) -> Instance:
        return HueyInstance(self)

    def drain_stamps(self, inst: Instance, client: Any, handles: list[Any]) -> list[float]:
        assert isinstance(inst, HueyInstance)
        return inst.stamps()


class HueyRedis(HueySqlite):
    name = "huey-redis"
    note = "huey RedisHuey, huey_consumer -w 2 -k process"
    uses_redis = True


class RQFork(Peer):
    name = "rq-fork"
    note = "RQ, 2 x `rq worker` (a fork per job)"
    uses_redis = True
    worker_class = "rq.worker.Worker"

    def new_instance(self) -> Instance:
        return RQInstance(self)


class RQSimple(RQFork):
    name = "rq-simple"
    note = "RQ, 2 x `rq worker --worker-class rq.worker.SimpleWorker` (no fork)"
    worker_class = "rq.worker.SimpleWorker"


PEERS: tuple[type[Peer], ...] = (HueySqlite, HueyRedis, RQFork, RQSimple)
