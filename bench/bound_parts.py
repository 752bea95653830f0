"""The child processes that measure the parts of bench/bound.py, one part each.

``python -m bench.bound_parts serve PATH`` is the bare server (it prints ``ready``
once it listens, and runs until SIGTERM); ``one PATH N``, ``pipe PATH N``,
``pipe-each PATH N`` and
``sqlite COMMITS ROWS`` measure and print their parts as one JSON object. Each runs
in a fresh interpreter, so that no state of the bench's own process (its heap, its
threads, what it imported) weighs on the bound. What each part is, and why it is
shaped so, is in bench/bound.py's docstring.

Failures: any error ends the child with a traceback and a non-zero status, which
bench/bound.py reports.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_DEPTH = 100  # as bench/ours.py's pipelining AsyncClient
GROUP = 100  # single-row INSERTs per COMMIT for group_rows_s: one per request in flight
BATCH = 3_000  # rows per executemany: about what one enqueue_many frame carries
MULTI_ROW = 256  # rows per multi-row INSERT, as the store's largest chunk
LEASE_BATCH = 64  # jobs per lease: the supervisor's prefetch of short jobs
IDLE_PAUSE = 0.02  # seconds between idle round trips: W3's pause between jobs

Parts = dict[str, float]


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


def one_at_a_time(path: str, n: int) -> dict[str, Any]:
    """A blocking client, one request in flight: mean and median µs per round trip, back to
    back; then the median of IDLE_PAUSE-spaced ones (a twentieth as many, at least 20),
    when both processes have gone to sleep in between, as W3's have."""
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

    def round_trip(rid: int) -> float:
        t0 = time.perf_counter()
        sock.sendall(_request(rid))
        (size,) = HEADER.unpack(read(HEADER.size))
        decoder.decode(read(size))
        return time.perf_counter() - t0

    warm = n // 10  # the first tenth warms up, untimed
    times = [round_trip(i) for i in range(n + warm)][warm:]
    idle = []
    for i in range(max(20, n // 20)):
        time.sleep(IDLE_PAUSE)
        idle.append(round_trip(i))
    sock.close()
    return {
        "rt_one_us": statistics.fmean(times) * 1e6,
        "rt_one_p50_us": statistics.median(times) * 1e6,
        "rt_idle_p50_us": statistics.median(idle) * 1e6,
        "rt_idle_samples_us": [t * 1e6 for t in idle],  # for W3's path (bench/bound.py)
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
        samples = [t * 1e3 for t in times]  # for W3's path (bench/bound.py)

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

        # The same rows MULTI_ROW to an INSERT ... RETURNING id, as the store sends them.
        values = _INSERT[_INSERT.index("(?") : _INSERT.index(" RETURNING")]
        multi = _INSERT.replace(values, ", ".join([values] * MULTI_ROW))
        statements = -(-BATCH // MULTI_ROW)
        t0 = time.perf_counter()
        for _ in range(batches):
            conn.execute("BEGIN IMMEDIATE")
            for _ in range(statements):
                conn.execute(multi, [x for _ in range(MULTI_ROW) for x in _row()]).fetchall()
            conn.execute("COMMIT")
        out["batch_multi_rows_s"] = batches * statements * MULTI_ROW / (time.perf_counter() - t0)

        # The same rows as one INSERT ... SELECT FROM json_each(?), the payloads one JSON
        # array (the store's statement for a run of jobs alike but for their payloads).
        run = (
            _INSERT[: _INSERT.index(" VALUES")]
            + " SELECT ?, ?, NULL, NULL, ?, 'QUEUED', value, ?, ?, ?, ?, ?, ?, ? FROM json_each(?)"
        )
        t0 = time.perf_counter()
        for _ in range(batches):
            conn.execute("BEGIN IMMEDIATE")
            now = time.time()
            payloads = json.dumps(["null"] * BATCH)
            conn.execute(
                run, ("NOOP", "default", 0, 3, None, None, 0, 0, now, now + 3600, payloads)
            )
            conn.execute("SELECT last_insert_rowid()").fetchone()
            conn.execute("COMMIT")
        out["batch_run_rows_s"] = batches * BATCH / (time.perf_counter() - t0)

        # Make every job due, then lease and end them LEASE_BATCH at a time, one COMMIT
        # per batch, with the store's own statements (sqlite/leases.py, sqlite/moves.py):
        # the read of the next jobs, their take, their end. Only the statements are
        # timed (the commits are commit_ms; the start rules' Python is not SQLite's).
        from semantica.supervisor.store.sqlite import leases, moves
        from semantica.supervisor.store.sqlite.rows import json_ids

        conn.execute("UPDATE jobs SET run_after = 0")
        jobs = conn.execute("SELECT count(*) FROM jobs WHERE state = 'QUEUED'").fetchone()[0]
        spent = 0.0
        lease_id = 0
        while True:
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            t0 = time.perf_counter()
            ids = [
                row[1]
                for row in conn.execute(
                    leases._NEXT_IN_QUEUE, ("default", now, True, True, LEASE_BATCH)
                )
            ]
            if not ids:
                conn.execute("ROLLBACK")
                break
            conn.execute(leases._TAKE, (now, lease_id + 1, 1, json_ids(ids)))
            ends = [(job_id, lease_id + 1 + n, "null", now) for n, job_id in enumerate(ids)]
            moves.complete_rows(conn, now, ends)
            spent += time.perf_counter() - t0
            lease_id += len(ids)
            conn.execute("COMMIT")
        assert lease_id == jobs, (lease_id, jobs)
        out["update_us"] = spent / jobs * 1e6
        out["commit_samples_ms"] = samples  # type: ignore[assignment]
        conn.close()
        return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bound_parts", description=__doc__)
    sub = parser.add_subparsers(dest="part", required=True)
    sub.add_parser("serve").add_argument("path")
    for name in ("one", "pipe", "pipe-each"):
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
        print(json.dumps({"rt_pipe_per_s": pipelined(args.path, args.n, coalesce=True)}))
    elif args.part == "pipe-each":
        print(json.dumps({"rt_pipe_each_per_s": pipelined(args.path, args.n, coalesce=False)}))
    else:
        print(json.dumps(sqlite_parts(args.commits, args.rows)))


if __name__ == "__main__":
    main()
