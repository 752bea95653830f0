"""The bound, measured in the same run: what the bare parts of each workload allow.

A figure of ours is only judged against a bound measured beside it, on the same
machine in the same run, since this machine's speed moves by a third from one
minute to the next. This module owns those parts and the formulas that turn them
into one bound per workload; bench/__main__.py runs :func:`measure` once per round,
and bench/table.py prints the bound beside ours with the ratio ours/bound.

The parts (keys of :data:`PARTS`), each in fresh child processes:

* ``rt_one_us``, ``rt_one_p50_us``: a request/reply over a Unix socket, one at a
  time. The server is a bare trio loop in one process (frames of our shape: a
  4-byte big-endian length and a msgpack body, a real ``Enqueue`` of one job
  decoded by msgspec, a real ``Enqueued`` of one job encoded back); the client a
  blocking socket in another, as ``semantica.Client`` is. Mean and median.
* ``rt_idle_p50_us``: the same, each after a pause of :data:`IDLE_PAUSE` (W3's
  pause between jobs), so that both processes sleep in between: median. Waking a
  process that slept costs more than one that was just running.
* ``w3_path_p50_ms``, ``w3_path_p95_ms``, ``w3_path_p99_ms``: W3's path, an idle
  round trip, a commit and another idle round trip, one after another: the
  percentiles of :data:`DRAWS` such sums, each part drawn at random from the
  measured samples (the idle round trips and the single-row commits).
* ``rt_pipe_per_s``, ``rt_pipe_each_per_s``: the same server, and a trio client
  keeping up to :data:`PIPELINE_DEPTH` requests in flight (one task sends, one
  receives): round trips/s. The server answers every frame of one read in one
  write; the client sends whatever the window has room for in one write
  (``rt_pipe_per_s``, the bound) or each request in a write of its own
  (``rt_pipe_each_per_s``, shown beside it: each write wakes the server for one
  frame, and each of its replies wakes the client).
* ``server_cpu_one_us``, ``server_cpu_pipe_us``: the bare server's CPU time (user
  + system, psutil) per request, one at a time (back to back and idle together)
  and pipelined one write per window: what a request costs the one process that
  answers it, to set beside what the supervisor spends.
* ``commit_ms``, ``commit_p50_ms``: one single-row INSERT into ``jobs`` and its
  COMMIT, at ``journal_mode=WAL``, ``synchronous=FULL``, in a database with our
  real schema (the ``sql/`` migrations applied) in a temporary directory under
  /tmp, where the bench's engines keep theirs. Mean and median.
* ``group_rows_s``: :data:`GROUP` single-row INSERTs per COMMIT (what a group
  commit of pipelined enqueues is): rows/s.
* ``batch_rows_s``: ``executemany`` of :data:`BATCH` rows in one transaction
  with its COMMIT: rows/s.
* ``batch_multi_rows_s``: the same rows (rounded up to whole statements), in
  INSERTs of :data:`MULTI_ROW` rows each with ``RETURNING id``, as the store
  sends a batch: rows/s.
* ``batch_run_rows_s``: the same rows as one ``INSERT ... SELECT FROM json_each(?)``
  (the payloads one JSON array), as the store inserts a run of jobs alike but for
  their payloads: rows/s.
* ``update_us``: the store's statements a job costs in a drain, the lease (the read
  of the next jobs, and their take: QUEUED to RUNNING) and the end (RUNNING to
  DONE), each one statement for :data:`LEASE_BATCH` jobs (a COMMIT after each
  batch, not timed): µs per job. They are the store's own statements, imported
  from it, so the bound moves with them.
* ``start_pass_ms``, ``start_msgspec_ms``, ``start_msgspec_lean_ms``: a new
  ``python -c pass``, ``python -c "import msgspec"``, and the same with
  ``typing_extensions`` hidden while msgspec loads (:data:`LEAN_MSGSPEC`, as
  ``semctl enqueue`` loads it: msgspec then takes ``typing``'s and leaves
  ``inspect`` unloaded), median wall time.

How they make each workload's bound: :func:`figures` (docs/benchmarks.md, "The
bound", says the same for users). A bound is an estimate of the best those parts
allow, never a guarantee: where ours beats it, the formula has missed something,
and that is worth a look rather than a celebration.

Failures: a part whose child fails raises ``RuntimeError`` with the child's stderr
tail; bench/__main__.py then reports the round's bound as failed and goes on.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from bench.bound_parts import (
    BATCH,
    GROUP,
    IDLE_PAUSE,
    LEASE_BATCH,
    MULTI_ROW,
    PIPELINE_DEPTH,
    ROOT,
    Parts,
)
from bench.starts import start_env
from bench.table import pct

DRAWS = 20_000  # sums drawn for W3's path
# msgspec imported as semantica/control/entry.py does for `semctl enqueue`.
LEAN_MSGSPEC = "import sys; sys.modules['typing_extensions'] = None; import msgspec"

# What each part is, for the parts table and --json: key -> (label, unit, digits).
PARTS: dict[str, tuple[str, str, int]] = {
    "rt_one_us": ("request/reply over a Unix socket, one at a time, mean", "µs", 1),
    "rt_one_p50_us": ("request/reply over a Unix socket, one at a time, p50", "µs", 1),
    "rt_idle_p50_us": (
        f"request/reply, one at a time, {IDLE_PAUSE * 1e3:g} ms apart, p50",
        "µs",
        1,
    ),
    "rt_pipe_per_s": (
        f"request/reply, pipelined ({PIPELINE_DEPTH} in flight), one write per window",
        "req/s",
        0,
    ),
    "rt_pipe_each_per_s": (
        f"request/reply, pipelined ({PIPELINE_DEPTH} in flight), one write per request",
        "req/s",
        0,
    ),
    "server_cpu_one_us": ("the server's CPU per request, one at a time", "µs", 1),
    "server_cpu_pipe_us": (
        "the server's CPU per request, pipelined, one write per window",
        "µs",
        1,
    ),
    "commit_ms": ("single-row INSERT + COMMIT (WAL, synchronous=FULL), mean", "ms", 3),
    "commit_p50_ms": ("single-row INSERT + COMMIT (WAL, synchronous=FULL), p50", "ms", 3),
    "group_rows_s": (f"{GROUP} single-row INSERTs per COMMIT", "rows/s", 0),
    "batch_rows_s": (f"executemany of {BATCH:,} rows, one COMMIT", "rows/s", 0),
    "batch_multi_rows_s": (
        f"the same in INSERTs of {MULTI_ROW} rows RETURNING id, one COMMIT",
        "rows/s",
        0,
    ),
    "batch_run_rows_s": (
        "the same in one INSERT ... SELECT FROM json_each, one COMMIT",
        "rows/s",
        0,
    ),
    "update_us": (f"lease + end statements, {LEASE_BATCH} jobs a statement, per job", "µs", 1),
    "w3_path_p50_ms": ("idle round trip + commit + idle round trip, p50", "ms", 3),
    "w3_path_p95_ms": ("idle round trip + commit + idle round trip, p95", "ms", 3),
    "w3_path_p99_ms": ("idle round trip + commit + idle round trip, p99", "ms", 3),
    "start_pass_ms": ("new process: python -c pass", "ms", 1),
    "start_msgspec_ms": ('new process: python -c "import msgspec"', "ms", 1),
    "start_msgspec_lean_ms": ("new process: the same, typing_extensions hidden", "ms", 1),
}


# ------------------------------------------------------------------------------ the formulas


def _per_s(*seconds: float) -> float:
    """Jobs/s when each job costs the sum of ``seconds``, one after another."""
    return 1 / sum(seconds)


def figures(parts: Mapping[str, float | None]) -> dict[str, float | None]:
    """Each workload's bound from the parts (None where a part it needs is missing).

    Costs that one job pays one after another add up (a reply waits for the commit);
    work that overlaps (pipelined requests, a drain's hand-overs and its statements)
    is bounded by the slower of the two, the other one hidden behind it.
    """
    p = {k: v for k, v in parts.items() if v is not None}
    out: dict[str, float | None] = {}

    def have(*keys: str) -> bool:
        return all(k in p for k in keys)

    # W1: the client waits for each reply, and the reply waits for its commit.
    if have("rt_one_us", "commit_ms"):
        out["w1"] = _per_s(p["rt_one_us"] / 1e6, p["commit_ms"] / 1e3)
    # W1b, pipelining: requests overlap each other and the commits, which carry
    # up to one job per request in flight.
    if have("rt_pipe_per_s", "group_rows_s"):
        out["w1b_async"] = min(p["rt_pipe_per_s"], p["group_rows_s"])
    # W1c: the statements and their commit (whichever way of batching is faster); the
    # frame's own travel is a few µs per job.
    batched = [p[k] for k in ("batch_rows_s", "batch_multi_rows_s", "batch_run_rows_s") if k in p]
    if batched:
        out["w1c"] = max(batched)
    # W2: each job is one hand-over and one report (a pipelined round trip, the
    # supervisor's loop being the one serial part), overlapping with the store's
    # share: the set-based lease and end, and a commit per LEASE_BATCH jobs.
    if have("rt_pipe_per_s", "update_us", "commit_ms"):
        store = _per_s(p["update_us"] / 1e6, p["commit_ms"] / 1e3 / LEASE_BATCH)
        out["w2"] = out["w2_async"] = min(p["rt_pipe_per_s"], store)
    # W3: client -> supervisor, the commit, supervisor -> worker, one after another,
    # each process woken from sleep: the percentiles of that path (w3_path).
    for q in (50, 95, 99):
        if have(f"w3_path_p{q}_ms"):
            out[f"w3_p{q}"] = p[f"w3_path_p{q}_ms"]
    # W5: a client process has to start and load msgspec to speak at all (the cheaper
    # way); --help needs no protocol, only a start.
    started = [p[k] for k in ("start_msgspec_ms", "start_msgspec_lean_ms") if k in p]
    if started:
        for key in ("w5", "w5_py", "w5_status", "w5_list", "w5_show", "w5_wait", "w5_logs"):
            out[key] = min(started)
    if have("start_pass_ms"):
        out["w5_help"] = p["start_pass_ms"]
    return out


def medians(rounds: Iterable[Mapping[str, float]]) -> dict[str, float | None]:
    """Per part, the median over the rounds that have it."""
    rounds = list(rounds)
    out: dict[str, float | None] = {}
    for key in PARTS:
        values = [r[key] for r in rounds if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    return out


# ------------------------------------------------------------------------------ running it


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _child(*args: str, timeout: float = 300) -> Any:
    """Run ``python -m bench.bound_parts ARGS`` and return the JSON it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.bound_parts", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"bench.bound_parts {args[0]} exited {done.returncode}: {done.stderr.strip()[-1500:]}"
        )
    return json.loads(done.stdout)


def _start_ms(code: str, runs: int) -> float:
    """Median wall time of ``python -c CODE`` as a new process, after one untimed run."""
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=start_env(_env()))
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _cpu_seconds(pid: int) -> Callable[[int], float]:
    """A meter of process ``pid``'s CPU time (user + system): each call returns the µs
    spent since the previous call (or since this one), per ``count`` requests."""
    proc = psutil.Process(pid)

    def spent() -> float:
        times = proc.cpu_times()
        return times.user + times.system

    last = spent()

    def per_request(count: int) -> float:
        nonlocal last
        now = spent()
        used, last = now - last, now
        return used / count * 1e6

    return per_request


def w3_path(idle_us: Sequence[float], commit_ms: Sequence[float]) -> Parts:
    """The percentiles of idle round trip + commit + idle round trip, in ms, over DRAWS sums
    of parts drawn at random (a fixed seed: the same samples give the same figures)."""
    draw = random.Random(0).choice
    sums = [(draw(idle_us) + draw(idle_us)) / 1e3 + draw(commit_ms) for _ in range(DRAWS)]
    return {f"w3_path_p{q}_ms": pct(sums, q) for q in (50, 95, 99)}


def measure(
    workloads: Iterable[str], *, requests: int, commits: int, rows: int, starts: int
) -> Parts:
    """The parts the chosen workloads need, each in fresh child processes.

    ``requests`` round trips one at a time (five times as many pipelined), ``commits``
    single-row commits, ``rows`` rows for the grouped, batched and updated figures,
    ``starts`` process starts of each kind.
    """
    w = set(workloads)
    out: Parts = {}
    idle: list[float] = []
    if w & {"W1", "W1b", "W2", "W3"}:
        with tempfile.TemporaryDirectory(prefix="sem-bound-", dir="/tmp") as tmp:
            path = str(Path(tmp) / "s.sock")
            server = subprocess.Popen(
                [sys.executable, "-m", "bench.bound_parts", "serve", path],
                env=_env(),
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert server.stdout is not None
                if server.stdout.readline().strip() != "ready":
                    raise RuntimeError("bench.bound_parts serve did not start")
                server_cpu = _cpu_seconds(server.pid)
                if w & {"W1", "W3"}:
                    got = _child("one", path, str(requests))
                    idle = got.pop("rt_idle_samples_us")
                    out.update(got)
                    # every round trip of the child, back to back and idle
                    out["server_cpu_one_us"] = server_cpu(
                        requests + requests // 10 + max(20, requests // 20)
                    )
                if w & {"W1b", "W2"}:
                    out.update(_child("pipe", path, str(requests * 5)))
                    out["server_cpu_pipe_us"] = server_cpu(requests * 5)
                    out.update(_child("pipe-each", path, str(requests * 5)))
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(10)
                if server.stdout is not None:
                    server.stdout.close()
    if w & {"W1", "W1b", "W1c", "W2", "W3"}:
        got = _child("sqlite", str(commits), str(rows))
        commit_samples = got.pop("commit_samples_ms")
        out.update(got)
        if "W3" in w:
            out.update(w3_path(idle, commit_samples))
    if "W5" in w:
        out["start_pass_ms"] = _start_ms("pass", starts)
        out["start_msgspec_ms"] = _start_ms("import msgspec", starts)
        out["start_msgspec_lean_ms"] = _start_ms(LEAN_MSGSPEC, starts)
    return out


def main() -> None:
    """``python -m bench.bound``: every part once, as a table."""
    parts = measure(
        ("W1", "W1b", "W1c", "W2", "W3", "W5"), requests=2_000, commits=300, rows=10_000, starts=10
    )
    for key, value in parts.items():
        label, unit, digits = PARTS[key]
        print(f"{label:66} {value:>12,.{digits}f} {unit}")


if __name__ == "__main__":
    main()
