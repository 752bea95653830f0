"""Semantica's workloads: a fresh ``semanticad`` (2 workers) per workload, driven by its clients."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import trio

from bench.semantica_engine import Engine
from bench.starts import start_env
from bench.table import Figures, pct
from semantica import AsyncClient, Client
from semantica.control.client import make_spec
from semantica.protocol import MAX_FRAME, Enqueue, encode

QUEUE = "default"
PIPELINE_DEPTH = 100  # W1b async: requests in flight at once on the one connection
# W1 and W5 jobs are delayed an hour, so that nothing runs while they are enqueued (a
# delayed enqueue wakes only the timer, not the idle workers).
LATER = {"delay": 3600}


SEMCTL = str(Path(sys.executable).parent / "semctl")


def semctl_commands(job_id: int) -> dict[str, list[str]]:
    """W5's semctl commands, by metric key: what a person types (``job_id`` DONE, with a
    log line). ``w5`` is the enqueue, the row the peers' ``python -c`` is compared with."""
    job = str(job_id)
    return {
        "w5": ["enqueue", "NOOP", "--delay", "3600"],
        "w5_status": ["status"],
        "w5_list": ["list"],
        "w5_show": ["show", job],
        "w5_wait": ["wait", job],
        "w5_logs": ["logs", job],
        "w5_help": ["--help"],
    }


def batch_size(job_type: str, **options: Any) -> int:
    """Jobs per ``enqueue_many`` call: the request stays under half the 1 MiB frame limit."""
    per_job = len(encode(Enqueue(jobs=[make_spec(job_type, **options)] * 100))) / 100
    return max(1, int(MAX_FRAME / 2 / per_job))


def rate(n: int, seconds: float) -> float:
    return n / seconds


def threaded(n: int, clients: int, make: Callable[[], Any], enqueue: Callable[[Any], Any]) -> float:
    """``clients`` threads, each with a client made beforehand, enqueue n jobs in all: jobs/s."""
    shares = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    ready = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def run(share: int) -> None:
        client = make()
        ready.wait()
        try:
            for _ in range(share):
                enqueue(client)
        except Exception as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
        finally:
            closer = getattr(client, "close", None)
            if closer is not None:
                closer()

    threads = [threading.Thread(target=run, args=(s,)) for s in shares]
    for t in threads:
        t.start()
    ready.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return rate(n, elapsed)


def tree(pid: int) -> tuple[psutil.Process, list[psutil.Process]]:
    main = psutil.Process(pid)
    return main, main.children(recursive=True)


def rss_mb(procs: list[psutil.Process]) -> float:
    return sum(p.memory_info().rss for p in procs) / 1e6


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        t = p.cpu_times()
        total += t.user + t.system
    return total


def idle_cpu(
    main: list[psutil.Process], rest: list[psutil.Process], seconds: float
) -> tuple[float, float]:
    """Percent of one CPU over ``seconds`` of idling: (main processes, all processes)."""
    m0, r0 = cpu_seconds(main), cpu_seconds(rest)
    time.sleep(seconds)
    m1, r1 = cpu_seconds(main), cpu_seconds(rest)
    return (m1 - m0) / seconds * 100, (m1 - m0 + r1 - r0) / seconds * 100


def new_process_ms(
    argv: list[str], env: dict[str, str], runs: int, cwd: Path | None = None
) -> float:
    """Median wall time of ``argv`` as a new process (after one untimed run, which also
    writes its bytecode: see bench/starts.py)."""
    env = start_env(env)
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
        if i:
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1e3


def drain(client: Client, n: int, type: str) -> float:
    """Enqueue n jobs into the paused queue, resume it, and time until all are DONE: jobs/s."""
    client.pause(QUEUE)
    size = batch_size(type)
    ids: list[int] = []
    for start in range(0, n, size):
        jobs = client.enqueue_many([{"type": type}] * min(size, n - start))
        ids.extend(job.id for job in jobs)
    t0 = time.perf_counter()
    client.resume(QUEUE)
    done = client.wait_many(ids, timeout=max(600, n / 10))
    elapsed = time.perf_counter() - t0
    unfinished = [job for job in done if job.state != "DONE"]
    if unfinished:
        raise RuntimeError(f"W2: {len(unfinished)} jobs not DONE, e.g. {unfinished[0]}")
    return rate(n, elapsed)


class Ours:
    """Semantica: ``semanticad --workers 2 --durability full`` with bench/handlers.py."""

    name = "ours"
    note = "semanticad, 2 workers, synchronous=FULL"

    def __init__(self, durability: str = "full") -> None:
        self.durability = durability

    def engine(self) -> Engine:
        return Engine(workers=2, durability=self.durability)

    # W1 ---------------------------------------------------------------------

    def w1(self, n: int) -> float:
        """n enqueues, one job per request, one client (delayed: nothing runs)."""
        with self.engine() as engine, Client(home=engine.home) as client:
            t0 = time.perf_counter()
            for _ in range(n):
                client.enqueue("NOOP", **LATER)
            return rate(n, time.perf_counter() - t0)

    def w1b_threads(self, n: int, clients: int = 8) -> float:
        with self.engine() as engine:

            def make() -> Client:
                client = Client(home=engine.home)
                client.connect()
                return client

            return threaded(n, clients, make, lambda c: c.enqueue("NOOP", **LATER))

    def w1b_async(self, n: int) -> float:
        """One AsyncClient, PIPELINE_DEPTH tasks sharing its connection, n enqueues in all."""
        with self.engine() as engine:

            async def main() -> float:
                async with AsyncClient(home=engine.home) as client:
                    shares = [
                        n // PIPELINE_DEPTH + (1 if i < n % PIPELINE_DEPTH else 0)
                        for i in range(PIPELINE_DEPTH)
                    ]

                    async def run(share: int) -> None:
                        for _ in range(share):
                            await client.enqueue("NOOP", **LATER)

                    t0 = time.perf_counter()
                    async with trio.open_nursery() as nursery:
                        for share in shares:
                            nursery.start_soon(run, share)
                    return rate(n, time.perf_counter() - t0)

            return trio.run(main)

    def w1c(self, n: int) -> float:
        """``enqueue_many`` in batches under the frame limit."""
        size = batch_size("NOOP", **LATER)
        with self.engine() as engine, Client(home=engine.home) as client:
            t0 = time.perf_counter()
            for start in range(0, n, size):
                client.enqueue_many([{"type": "NOOP", **LATER}] * min(size, n - start))
            return rate(n, time.perf_counter() - t0)

    # W2 + W4 ----------------------------------------------------------------

    def w2_w4(self, n: int, idle_seconds: float, do_w2: bool = True, do_w4: bool = True) -> Figures:
        """Idle RSS and CPU (W4), then the drain (W2), then RSS again (W4).

        W2: n no-op jobs are enqueued into the paused queue; the clock starts just
        before ``resume`` and stops when ``wait_many`` reports them all finished.
        """
        out: Figures = {}
        with self.engine() as engine, Client(home=engine.home) as client:
            assert engine.proc is not None
            client.wait(client.enqueue("STAMP").id, timeout=30)  # both workers are up by now
            time.sleep(1)
            main, workers = tree(engine.proc.pid)
            if do_w4:
                out["w4_rss_main_idle"] = rss_mb([main])
                out["w4_rss_all_idle"] = rss_mb([main, *workers])
                cpu_main, cpu_all = idle_cpu([main], workers, idle_seconds)
                out["w4_cpu_main_idle"], out["w4_cpu_all_idle"] = cpu_main, cpu_all
            if do_w2:
                out["w2"] = drain(client, n, "STAMP")
                if do_w4:
                    time.sleep(1)
                    main, workers = tree(engine.proc.pid)
                    out["w4_rss_main_after"] = rss_mb([main])
                    out["w4_rss_all_after"] = rss_mb([main, *workers])
        return out

    def w2_async(self, n: int) -> float:
        """W2 with an ``async def`` no-op handler: it runs on the worker's loop, no thread."""
        with self.engine() as engine, Client(home=engine.home) as client:
            client.wait(client.enqueue("STAMP").id, timeout=30)  # both workers are up by now
            return drain(client, n, "ANOOP")

    # W3 ---------------------------------------------------------------------

    def w3(self, n: int) -> Figures:
        """Idle engine; each job: enqueue, wait until done, 20 ms pause. Handler start - enqueue."""
        with self.engine() as engine, Client(home=engine.home) as client:
            client.wait(client.enqueue("STAMP").id, timeout=30)
            time.sleep(0.5)
            latencies = []
            for _ in range(n):
                t0 = time.monotonic()
                job = client.enqueue("STAMP")
                done = client.wait(job.id, timeout=30)
                latencies.append((done.result - t0) * 1e3)
                time.sleep(0.02)
        return {f"w3_p{p}": pct(latencies, p) for p in (50, 95, 99)}

    # W5 ---------------------------------------------------------------------

    def w5(self, runs: int) -> Figures:
        """Every semctl command a person types, and ``python -c`` with Client, each as a new
        process; show, wait and logs read a job that is DONE and logged a line."""
        code = "from semantica import Client; Client().enqueue('NOOP', delay=3600)"
        with self.engine() as engine, Client(home=engine.home) as client:
            job = client.enqueue("LOGGED")
            client.wait(job.id, timeout=30)
            env = engine.env()
            out: Figures = {
                key: new_process_ms([SEMCTL, *argv], env, runs)
                for key, argv in semctl_commands(job.id).items()
            }
            out["w5_py"] = new_process_ms([sys.executable, "-c", code], env, runs)
            return out
