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
* ``rt_pipe_per_s``, ``rt_pipe_each_per_s``: the same server, and a trio client
  keeping up to :data:`PIPELINE_DEPTH` requests in flight (one task sends, one
  receives): round trips/s. The server answers every frame of one read in one
  write; the client sends whatever the window has room for in one write
  (``rt_pipe_per_s``, the bound) or each request in a write of its own
  (``rt_pipe_each_per_s``, shown beside it: each write wakes the server for one
  frame, and each of its replies wakes the client).
* ``commit_ms``, ``commit_p50_ms``: one single-row INSERT into ``jobs`` and its
  COMMIT, at ``journal_mode=WAL``, ``synchronous=FULL``, in a database with our
  real schema (the ``sql/`` migrations applied) in a temporary directory under
  /tmp, where the bench's engines keep theirs. Mean and median.
* ``group_rows_s``: :data:`GROUP` single-row INSERTs per COMMIT (what a group
  commit of pipelined enqueues is): rows/s.
* ``batch_rows_s``: ``executemany`` of :data:`BATCH` rows in one transaction
  with its COMMIT: rows/s.
* ``update_us``: the two set-based UPDATEs a job costs in a drain, the lease
  (QUEUED to RUNNING) and the end (RUNNING to DONE), each one statement for
  :data:`LEASE_BATCH` jobs (a COMMIT after each batch, not timed): µs per job.
* ``start_pass_ms``, ``start_msgspec_ms``: a new ``python -c pass`` and
  ``python -c "import msgspec"``, median wall time.

How they make each workload's bound: :func:`figures` (docs/benchmarks.md, "The
bound", says the same for users). A bound is an estimate of the best those parts
allow, never a guarantee: where ours beats it, the formula has missed something,
and that is worth a look rather than a celebration.

Failures: a part whose child fails raises ``RuntimeError`` with the child's stderr
tail; bench/__main__.py then reports the round's bound as failed and goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_DEPTH = 100  # as bench/ours.py's pipelining AsyncClient
GROUP = 100  # single-row INSERTs per COMMIT for group_rows_s: one per request in flight
BATCH = 3_000  # rows per executemany: about what one enqueue_many frame carries
LEASE_BATCH = 64  # jobs per lease: the supervisor's prefetch of short jobs

# What each part is, for the parts table and --json: key -> (label, unit, digits).
PARTS: dict[str, tuple[str, str, int]] = {
    "rt_one_us": ("request/reply over a Unix socket, one at a time, mean", "µs", 1),
    "rt_one_p50_us": ("request/reply over a Unix socket, one at a time, p50", "µs", 1),
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
    "commit_ms": ("single-row INSERT + COMMIT (WAL, synchronous=FULL), mean", "ms", 3),
    "commit_p50_ms": ("single-row INSERT + COMMIT (WAL, synchronous=FULL), p50", "ms", 3),
    "group_rows_s": (f"{GROUP} single-row INSERTs per COMMIT", "rows/s", 0),
    "batch_rows_s": (f"executemany of {BATCH:,} rows, one COMMIT", "rows/s", 0),
    "update_us": (f"lease + end UPDATEs, {LEASE_BATCH} jobs a statement, per job", "µs", 1),
    "start_pass_ms": ("new process: python -c pass", "ms", 1),
    "start_msgspec_ms": ('new process: python -c "import msgspec"', "ms", 1),
}

Parts = dict[str, float]

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
    # W1c: the statement and its commit, the frame's own travel is a few µs per job.
    if have("batch_rows_s"):
        out["w1c"] = p["batch_rows_s"]
    # W2: each job is one hand-over and one report (a pipelined round trip, the
    # supervisor's loop being the one serial part), overlapping with the store's
    # share: the set-based lease and end, and a commit per LEASE_BATCH jobs.
    if have("rt_pipe_per_s", "update_us", "commit_ms"):
        store = _per_s(p["update_us"] / 1e6, p["commit_ms"] / 1e3 / LEASE_BATCH)
        out["w2"] = out["w2_async"] = min(p["rt_pipe_per_s"], store)
    # W3: client -> supervisor, the commit, supervisor -> worker, one after another;
    # the medians, since W3 is read at its percentiles.
    if have("rt_one_p50_us", "commit_p50_ms"):
        w3 = 2 * p["rt_one_p50_us"] / 1e3 + p["commit_p50_ms"]
        out["w3_p50"] = out["w3_p95"] = out["w3_p99"] = w3
    # W5: a client process has to start and load msgspec to speak at all; --help
    # needs no protocol, only a start.
    if have("start_msgspec_ms"):
        for key in ("w5", "w5_py", "w5_status", "w5_list", "w5_show", "w5_wait", "w5_logs"):
            out[key] = p["start_msgspec_ms"]
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
    """Run ``python -m bench.bound ARGS`` and return the JSON it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.bound", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"bench.bound {args[0]} exited {done.returncode}: {done.stderr.strip()[-1500:]}"
        )
    return json.loads(done.stdout)


def _start_ms(code: str, runs: int) -> float:
    """Median wall time of ``python -c CODE`` as a new process, after one untimed run."""
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=_env())
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


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
    if w & {"W1", "W1b", "W2", "W3"}:
        with tempfile.TemporaryDirectory(prefix="sem-bound-", dir="/tmp") as tmp:
            path = str(Path(tmp) / "s.sock")
            server = subprocess.Popen(
                [sys.executable, "-m", "bench.bound", "serve", path],
                env=_env(),
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert server.stdout is not None
                if server.stdout.readline().strip() != "ready":
                    raise RuntimeError("bench.bound serve did not start")
                if w & {"W1", "W3"}:
                    out.update(_child("one", path, str(requests)))
                if w & {"W1b", "W2"}:
                    out.update(_child("pipe", path, str(requests * 5)))
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(10)
    if w & {"W1", "W1b", "W1c", "W2", "W3"}:
        out.update(_child("sqlite", str(commits), str(rows)))
    if "W5" in w:
        out["start_pass_ms"] = _start_ms("pass", starts)
        out["start_msgspec_ms"] = _start_ms("import msgspec", starts)
    return out


# ------------------------------------------------------------------------------ the children


def _request(rid: int) -> bytes:
    """A real ``Enqueue`` frame of one job, as ``Client.enqueue("NOOP", delay=3600)`` sends."""
    from semantica.control.client import make_spec
    from semantica.protocol import Enqueue, encode

    return encode(Enqueue(jobs=[make_spec("NOOP", delay=3600)], rid=rid))


def _job() -> Any:
    """A job as an enqueue's reply carries it."""
    from semantica.models import Job, JobState

    now = datetime.now(UTC)
    return Job(
        id=1,
        type="NOOP",
        queue="default",
        subject=None,
        generation=None,
        priority=0,
        state=JobState.QUEUED,
        attempts=0,
        max_attempts=3,
        created_at=now,
        started_at=None,
        finished_at=None,
        run_after=now,
    )


def serve(path: str) -> None:
    """The bare server: decode each request frame, answer it; the frames of one read in
    one write."""
    import trio

    from semantica.protocol import HEADER, Enqueue, Enqueued, encode

    decoder = msgspec.msgpack.Decoder(Enqueue)
    job = _job()

    async def handle(stream: trio.SocketStream) -> None:
        buf = bytearray()
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            buf += data
            replies = []
            at = 0
            while len(buf) - at >= HEADER.size:
                (size,) = HEADER.unpack_from(buf, at)
                end = at + HEADER.size + size
                if len(buf) < end:
                    break
                msg = decoder.decode(memoryview(buf)[at + HEADER.size : end])
                replies.append(encode(Enqueued(jobs=[job], rid=msg.rid)))
                at = end
            del buf[:at]
            if replies:
                await stream.send_all(b"".join(replies))

    async def main() -> None:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(path)
        sock.listen(16)
        print("ready", flush=True)
        await trio.serve_listeners(handle, [trio.SocketListener(sock)])

    # Stopped by SIGTERM whatever it is doing: nothing to clean up but the socket file,
    # which the parent removes with its directory.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    trio.run(main)


def one_at_a_time(path: str, n: int) -> Parts:
    """A blocking client, one request in flight: mean and median µs per round trip."""
    from semantica.protocol import HEADER, Enqueued

    decoder = msgspec.msgpack.Decoder(Enqueued)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)

    def read(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            if not chunk:
                raise RuntimeError("the bound's server closed the connection")
            data += chunk
        return data

    times = []
    for i in range(n + n // 10):  # the first tenth warms up, untimed
        t0 = time.perf_counter()
        sock.sendall(_request(i))
        (size,) = HEADER.unpack(read(HEADER.size))
        decoder.decode(read(size))
        if i >= n // 10:
            times.append(time.perf_counter() - t0)
    sock.close()
    return {
        "rt_one_us": statistics.fmean(times) * 1e6,
        "rt_one_p50_us": statistics.median(times) * 1e6,
    }


def pipelined(path: str, n: int, coalesce: bool) -> float:
    """A trio client keeping up to PIPELINE_DEPTH requests in flight: round trips/s.

    ``coalesce`` False sends each request in a write of its own, as soon as the
    window has room for it; True sends every request the window has room for in
    one write (what a client that buffers its requests can do).
    """
    import trio

    from semantica.protocol import HEADER, Enqueued

    decoder = msgspec.msgpack.Decoder(Enqueued)

    async def main() -> float:
        stream = await trio.open_unix_socket(path)
        free = PIPELINE_DEPTH  # requests the window has room for
        room = trio.Event()

        async def send() -> None:
            nonlocal free, room
            sent = 0
            while sent < n:
                while not free:
                    room = trio.Event()
                    await room.wait()
                count = min(free if coalesce else 1, n - sent)
                free -= count
                await stream.send_all(b"".join(_request(sent + i) for i in range(count)))
                sent += count

        async def receive() -> None:
            nonlocal free
            buf = bytearray()
            got = 0
            while got < n:
                data = await stream.receive_some(65536)
                if not data:
                    raise RuntimeError("the bound's server closed the connection")
                buf += data
                at = 0
                while len(buf) - at >= HEADER.size:
                    (size,) = HEADER.unpack_from(buf, at)
                    end = at + HEADER.size + size
                    if len(buf) < end:
                        break
                    decoder.decode(memoryview(buf)[at + HEADER.size : end])
                    free += 1
                    got += 1
                    at = end
                del buf[:at]
                room.set()

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            nursery.start_soon(receive)
        elapsed = time.perf_counter() - t0
        await stream.aclose()
        return n / elapsed

    return trio.run(main)


# The columns the store's enqueue fills (supervisor/store/sqlite/enqueue.py); the rest
# take the schema's defaults.
_INSERT = (
    "INSERT INTO jobs (type, queue, subject, generation, priority, state, payload, "
    "max_attempts, timeout_s, backoff_s, require_charging, require_idle, created_at, run_after) "
    "VALUES (?, ?, ?, ?, ?, 'QUEUED', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)


def _row() -> tuple[Any, ...]:
    now = time.time()
    return ("NOOP", "default", None, None, 0, "null", 3, None, None, 0, 0, now, now + 3600)


def sqlite_parts(commits: int, rows: int) -> Parts:
    """The store's parts, on a fresh database with the real schema (sql/ migrations)."""
    with tempfile.TemporaryDirectory(prefix="sem-bound-", dir="/tmp") as tmp:
        conn = sqlite3.connect(Path(tmp) / "bound.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        for script in sorted((ROOT / "sql").glob("[0-9][0-9][0-9]_*.sql")):
            if not script.name.endswith(".down.sql"):
                conn.executescript(script.read_text())
        conn.execute("INSERT OR IGNORE INTO queues (name) VALUES ('default')")
        out: Parts = {}

        times = []
        for i in range(commits + commits // 10):  # the first tenth warms up, untimed
            t0 = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_INSERT, _row()).fetchall()
            conn.execute("COMMIT")
            if i >= commits // 10:
                times.append(time.perf_counter() - t0)
        out["commit_ms"] = statistics.fmean(times) * 1e3
        out["commit_p50_ms"] = statistics.median(times) * 1e3

        groups = max(1, rows // GROUP)
        t0 = time.perf_counter()
        for _ in range(groups):
            conn.execute("BEGIN IMMEDIATE")
            for _ in range(GROUP):
                conn.execute(_INSERT, _row()).fetchall()
            conn.execute("COMMIT")
        out["group_rows_s"] = groups * GROUP / (time.perf_counter() - t0)

        batches = max(1, rows // BATCH)
        t0 = time.perf_counter()
        for _ in range(batches):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT.removesuffix(" RETURNING id"), [_row()] * BATCH)
            conn.execute("COMMIT")
        out["batch_rows_s"] = batches * BATCH / (time.perf_counter() - t0)

        # Make every job due, then lease and end them LEASE_BATCH at a time, by id, one
        # COMMIT per batch; only the statements are timed (the commits are commit_ms).
        conn.execute("UPDATE jobs SET run_after = 0")
        first, last = conn.execute("SELECT min(id), max(id) FROM jobs").fetchone()
        jobs = min(rows, last - first + 1)
        spent = 0.0
        for lo in range(first, first + jobs, LEASE_BATCH):
            hi = min(lo + LEASE_BATCH, first + jobs) - 1
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            t0 = time.perf_counter()
            conn.execute(
                "UPDATE jobs SET state = 'RUNNING', attempts = attempts + 1, started_at = ?, "
                "lease_id = id, worker_pid = 1 WHERE id BETWEEN ? AND ? AND state = 'QUEUED' "
                "RETURNING id, type, payload",
                (now, lo, hi),
            ).fetchall()
            conn.execute(
                "UPDATE jobs SET state = 'DONE', result = 'null', finished_at = ? "
                "WHERE id BETWEEN ? AND ? AND state = 'RUNNING'",
                (now, lo, hi),
            )
            spent += time.perf_counter() - t0
            conn.execute("COMMIT")
        out["update_us"] = spent / jobs * 1e6
        conn.close()
        return out


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.bound``: all the parts, as a table (or one child's part, as JSON)."""
    parser = argparse.ArgumentParser(prog="python -m bench.bound", description=__doc__)
    sub = parser.add_subparsers(dest="part")
    sub.add_parser("serve").add_argument("path")
    for name in ("one", "pipe"):
        child = sub.add_parser(name)
        child.add_argument("path")
        child.add_argument("n", type=int)
    store = sub.add_parser("sqlite")
    store.add_argument("commits", type=int)
    store.add_argument("rows", type=int)
    args = parser.parse_args(argv)
    if args.part == "serve":
        serve(args.path)
    elif args.part == "one":
        print(json.dumps(one_at_a_time(args.path, args.n)))
    elif args.part == "pipe":
        print(
            json.dumps(
                {
                    "rt_pipe_per_s": pipelined(args.path, args.n, coalesce=True),
                    "rt_pipe_each_per_s": pipelined(args.path, args.n, coalesce=False),
                }
            )
        )
    elif args.part == "sqlite":
        print(json.dumps(sqlite_parts(args.commits, args.rows)))
    else:
        parts = measure(
            ("W1", "W1b", "W1c", "W2", "W3", "W5"),
            requests=2_000,
            commits=300,
            rows=10_000,
            starts=10,
        )
        for key, value in parts.items():
            label, unit, digits = PARTS[key]
            print(f"{label:62} {value:>12,.{digits}f} {unit}")


if __name__ == "__main__":
    main()
