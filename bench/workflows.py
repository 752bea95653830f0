"""``python -m bench.workflows``: what dependencies and schedules cost, on SQLite.

Not a comparison with peers (none has both), but the sizes a user can reach: how
long the write that ends a job takes when 100,000 jobs wait for it, or when it
heads a chain 10,000 deep (the cascade is one transaction, on the supervisor's
event loop); the same cancel through the job lifecycle (logs, waiters, counters);
and how much CPU an idle supervisor spends with schedules waiting for their next
slot (it looks at the wall clock once a second, never at the store).

Prints one Markdown table; takes about two minutes here.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import structlog
import trio

from semantica.models import JobSpec
from semantica.supervisor.events import JobEvents
from semantica.supervisor.joblogs import JobLogs
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.metrics import Metrics
from semantica.supervisor.scheduler import Scheduler
from semantica.supervisor.store import prepare
from semantica.supervisor.store.graph import plan
from semantica.supervisor.store.sqlite import SQLiteStore

#: A graph goes in requests of at most this many jobs, as the clients send it.
PIECE = 500


def _fan(store: SQLiteStore, count: int) -> int:
    """A job and ``count`` jobs waiting for it; the first job's id."""
    [head] = store.insert(prepare([JobSpec(type="T")])).jobs
    for start in range(0, count, PIECE):
        specs = [JobSpec(type="W", after=[head.id]) for _ in range(min(PIECE, count - start))]
        store.insert(plan(prepare(specs)).prepared)
    return head.id


def _chain(store: SQLiteStore, depth: int) -> int:
    """``depth`` jobs each waiting for the one before; the first job's id."""
    [head] = store.insert(prepare([JobSpec(type="T")])).jobs
    last, made = head.id, 0
    while made < depth:
        size = min(PIECE, depth - made)
        specs = [JobSpec(type="W", ref="r0", after=[last])]
        specs += [JobSpec(type="W", ref=f"r{n}", after=[f"r{n - 1}"]) for n in range(1, size)]
        planned = plan(prepare(specs))
        jobs = planned.in_request_order(store.insert(planned.prepared).jobs)
        last, made = jobs[-1].id, made + size
    return head.id


def _timed_cancel(store: SQLiteStore, head: int) -> tuple[float, int]:
    started = time.perf_counter()
    assert store.cancel_queued(head, "bench")
    took = time.perf_counter() - started
    return took, len(store.take_cascaded())


def store_cancels(fan: int, depth: int) -> list[tuple[str, str]]:
    rows = []
    with tempfile.TemporaryDirectory() as place:
        store = SQLiteStore(Path(place) / "semantica.db")
        took, cascaded = _timed_cancel(store, _fan(store, fan))
        rows.append((f"cancel of a job {fan:,} jobs wait for (the store's write)", f"{took:.2f} s"))
        assert cascaded == fan
        took, cascaded = _timed_cancel(store, _chain(store, depth))
        rows.append((f"cancel of the head of a chain {depth:,} deep", f"{took:.2f} s"))
        assert cascaded == depth
        store.close()
    return rows


def lifecycle_cancel(fan: int) -> tuple[str, str]:
    # The supervisor writes its log lines to its stderr; here they would cover the table.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    async def run() -> float:
        with tempfile.TemporaryDirectory() as place:
            store = SQLiteStore(Path(place) / "semantica.db")
            logs = JobLogs(Path(place) / "logs", 1 << 20)
            metrics = Metrics(dict, dict)
            jobs = JobLifecycle(store, logs, JobEvents(), Scheduler(store), metrics=metrics)
            head = _fan(store, fan)
            started = time.perf_counter()
            assert jobs.cancel_queued(head)
            took = time.perf_counter() - started
            store.close()
            return took

    took = trio.run(run)
    return (
        f"the same for {fan:,} through the lifecycle (logs, waiters, counters)",
        f"{took:.2f} s",
    )


def idle_with_schedules(count: int, seconds: float) -> tuple[str, str]:
    """An idle supervisor with ``count`` schedules (an hour or more to their next slot)."""
    with tempfile.TemporaryDirectory() as place:
        env = dict(
            os.environ, SEMANTICA_HOME=str(Path(place) / "home"), SEMANTICA_LOG_FORMAT="json"
        )
        bindir = Path(sys.executable).parent
        daemon = subprocess.Popen(
            [str(bindir / "semanticad"), "--workers", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            semctl = [str(bindir / "semctl")]
            deadline = time.monotonic() + 30
            while subprocess.run([*semctl, "status"], env=env, capture_output=True).returncode:
                assert time.monotonic() < deadline, "the supervisor did not start"
                time.sleep(0.1)
            for n in range(count):
                every = ["--every", f"{n + 1}h"] if n % 2 else ["--cron", f"{n % 60} 3 * * *"]
                add = [*semctl, "schedule", "add", f"s{n}", *every, "exec", "--", "true"]
                subprocess.run(add, env=env, check=True, capture_output=True)
            time.sleep(2)
            process = psutil.Process(daemon.pid)
            before = process.cpu_times()
            time.sleep(seconds)
            after = process.cpu_times()
        finally:
            daemon.terminate()
            daemon.wait(30)
    used = (after.user + after.system) - (before.user + before.system)
    return (
        f"supervisor idle with {count} schedules, over {seconds:g} s",
        f"{100 * used / seconds:.3f} % of a CPU",
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.workflows", description=__doc__)
    parser.add_argument("--fan", type=int, default=100_000)
    parser.add_argument("--depth", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    args = parser.parse_args()
    rows = store_cancels(args.fan, args.depth)
    rows.append(lifecycle_cancel(args.fan // 5))
    rows.append(idle_with_schedules(10, args.idle_seconds))
    print("| what | took |\n|---|---:|")
    for what, took in rows:
        print(f"| {what} | {took} |")


if __name__ == "__main__":
    main()
