"""``python -m bench``: Semantica's own figures (the peers join in bench/peers.py later).

Workloads (see docs/benchmarks.md):

* one no-op job, enqueue -> DONE, one at a time (median and p99 over N jobs);
* start latency, enqueue -> handler start, jobs spaced 20 ms apart;
* drain of N queued no-op jobs with 2 workers (jobs/s until all DONE);
* enqueue one job per request from one client (jobs/s);
* ``semctl enqueue`` as a new process (median wall time over 20 runs).

Each workload runs ``--rounds`` times; the table shows medians. ``--json F``
writes the raw figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.semantica_engine import Engine
from semantica import Client


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def one_job_round_trip(client: Client, n: int) -> dict[str, float]:
    """enqueue -> wait -> DONE, one job at a time."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        job = client.enqueue("NOOP")
        client.wait(job.id, timeout=30)
        times.append(time.perf_counter() - t0)
    return {"p50_ms": _pct(times, 50) * 1e3, "p99_ms": _pct(times, 99) * 1e3}


def start_latency(client: Client, n: int) -> dict[str, float]:
    """enqueue -> handler start, on the system-wide monotonic clock, jobs 20 ms apart."""
    latencies = []
    for _ in range(n):
        t0 = time.monotonic()
        job = client.enqueue("STAMP")
        done = client.wait(job.id, timeout=30)
        latencies.append(done.result - t0)
        time.sleep(0.02)
    return {
        "p50_ms": _pct(latencies, 50) * 1e3,
        "p95_ms": _pct(latencies, 95) * 1e3,
        "p99_ms": _pct(latencies, 99) * 1e3,
    }


def drain(client: Client, n: int) -> dict[str, float]:
    """N no-op jobs queued to start together (--at), then the time until all are DONE."""
    at = datetime.now(UTC) + timedelta(seconds=2 + n / 20_000)
    ids: list[int] = []
    batch = 2000
    for start in range(0, n, batch):
        jobs = client.enqueue_many(
            [{"type": "NOOP", "at": at} for _ in range(min(batch, n - start))]
        )
        ids.extend(job.id for job in jobs)
    if datetime.now(UTC) >= at:
        raise RuntimeError("enqueueing took longer than the start delay; lower N")
    done = client.wait_many(ids, timeout=600)
    elapsed = (datetime.now(UTC) - at).total_seconds()
    assert all(job.state == "DONE" for job in done)
    return {"jobs": n, "seconds": elapsed, "jobs_per_s": n / elapsed}


def enqueue_one_at_a_time(client: Client, n: int) -> dict[str, float]:
    """N enqueues, one job per request, from one client (the jobs are delayed an hour)."""
    t0 = time.perf_counter()
    for _ in range(n):
        client.enqueue("NOOP", delay=3600)
    elapsed = time.perf_counter() - t0
    return {"jobs": n, "jobs_per_s": n / elapsed}


def semctl_enqueue(engine: Engine, n: int) -> dict[str, float]:
    """``semctl enqueue`` as a new process, wall time."""
    semctl = str(Path(sys.executable).parent / "semctl")
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(
            [semctl, "enqueue", "NOOP", "--delay", "3600"],
            env=engine.env(),
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - t0)
    return {"p50_ms": statistics.median(times) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs for drain and enqueue")
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args()

    rounds: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        with Engine(workers=2) as engine, Client(home=engine.home) as client:
            rounds.append(
                {
                    "round_trip": one_job_round_trip(client, args.latency_jobs),
                    "start_latency": start_latency(client, args.latency_jobs),
                    "drain": drain(client, args.jobs),
                    "enqueue": enqueue_one_at_a_time(client, args.jobs),
                    "semctl_enqueue": semctl_enqueue(engine, 20),
                }
            )
    summary = {
        workload: {
            key: statistics.median(r[workload][key] for r in rounds) for key in rounds[0][workload]
        }
        for workload in rounds[0]
    }
    print(f"Semantica, 2 workers, synchronous=FULL, median of {args.rounds} rounds")
    for workload, figures in summary.items():
        print(f"  {workload:16} " + "  ".join(f"{k}={v:,.2f}" for k, v in figures.items()))
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
