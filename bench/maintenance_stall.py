"""``python -m bench.maintenance_stall``: how long maintenance holds up the socket and enqueues.

A supervisor with ``--jobs`` finished jobs (enqueued into a paused queue,
then cancelled) and retention 0 runs ``semctl maintenance --force-vacuum``
(with ``--incremental``: without it, so free pages go back step by step),
which deletes them all and VACUUMs. Meanwhile two probe threads, each with its
own connection, time every request: one asks ``status`` (a read: the socket
and the event loop), one enqueues a delayed job (a write: it must wait while
VACUUM holds the database's write lock). Printed: the maintenance report and,
per probe, the requests made in the 1.5 s before it and during it, their
median and the longest.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable

from bench.semantica_engine import Engine
from semantica import Client

BATCH = 2000


def fill(client: Client, n: int) -> None:
    """``n`` finished jobs: enqueued into a paused queue, then cancelled."""
    client.pause("fill")
    for start in range(0, n, BATCH):
        jobs = client.enqueue_many(
            [{"type": "NOOP", "queue": "fill", "payload": {"pad": "x" * 200}}]
            * min(BATCH, n - start)
        )
        client.cancel(*(job.id for job in jobs))


def probe(
    home: object, request: Callable[[Client], object], stop: threading.Event
) -> list[tuple[float, float]]:
    """(start, duration) of each request until ``stop``."""
    times: list[tuple[float, float]] = []
    with Client(home=home) as client:  # type: ignore[arg-type]
        while not stop.is_set():
            t0 = time.perf_counter()
            request(client)
            times.append((t0, time.perf_counter() - t0))
            time.sleep(0.002)
    return times


def summary(times: list[float]) -> str:
    return (
        f"{len(times):5} requests, median {statistics.median(times) * 1e3:5.1f} ms, "
        f"longest {max(times) * 1e3:6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.maintenance_stall", description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="no --force-vacuum: free pages go back by incremental_vacuum steps",
    )
    args = parser.parse_args()
    os.environ["SEMANTICA_RETENTION_DAYS"] = "0"
    with Engine(workers=2) as engine, Client(home=engine.home) as client:
        fill(client, args.jobs)
        stop = threading.Event()
        results: dict[str, list[tuple[float, float]]] = {}
        probes = {
            "status (read)": lambda c: c.status(),
            "enqueue (write)": lambda c: c.enqueue("NOOP", delay=3600),
        }
        threads = [
            threading.Thread(
                target=lambda name=name, req=req: results.__setitem__(
                    name, probe(engine.home, req, stop)
                )
            )
            for name, req in probes.items()
        ]
        for thread in threads:
            thread.start()
        time.sleep(2.0)  # the probes' connections are up; their latencies without maintenance
        t0 = time.perf_counter()
        report = client.maintenance(force_vacuum=not args.incremental)
        took = time.perf_counter() - t0
        stop.set()
        for thread in threads:
            thread.join()
    print(
        f"maintenance of {args.jobs:,} finished jobs: {took * 1e3:,.0f} ms wall; "
        f"db {report.db_bytes_before / 2**20:.1f} -> {report.db_bytes_after / 2**20:.1f} MiB, "
        f"jobs_deleted={report.jobs_deleted}, vacuumed={report.vacuumed}, "
        f"integrity={report.integrity}, duration_ms={report.duration_ms:,.0f}"
    )
    for name, times in results.items():
        before = [d for start, d in times if start < t0 - 0.5]
        during = [d for start, d in times if t0 <= start < t0 + took]
        print(f"  {name:16} before: {summary(before)};  during: {summary(during)}")


if __name__ == "__main__":
    main()
