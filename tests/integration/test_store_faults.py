"""Store faults: a typed error to the client, reads still served, nothing acknowledged lost.

(The chaos suite, tests/chaos, runs these at size and with injected I/O errors.)
"""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from full_disk import FullDisk, full_disk_fixture  # noqa: F401  # the fixture it provides
from harness import Daemon, write_locked

from semantica import AsyncClient
from semantica.errors import StoreBusy, StoreError, StoreFull
from semantica.models import JobSpec
from semantica.protocol import (
    PROTOCOL_VERSION,
    ControlReply,
    Enqueue,
    ErrorReply,
    FrameDecoder,
    GetJob,
    GetLogs,
    GetStatus,
    Hello,
    HelloOk,
    ListJobs,
    ListQueues,
    LogLines,
    Wait,
    encode,
)

pytestmark = pytest.mark.slow


def test_a_write_lock_held_elsewhere_gives_store_busy_and_reads_go_on(daemon: Daemon) -> None:
    """While another process holds the write lock past the busy timeout (5 s), an enqueue
    is refused with store_busy, and reads are answered at once meanwhile; after the lock
    is released, enqueues work again and nothing acknowledged was lost."""
    with daemon.client() as client:
        before = client.enqueue("NOOP")
        client.wait(before.id, timeout=30)

    async def main() -> tuple[float, float, BaseException | None]:
        async with AsyncClient(home=daemon.home) as writer, AsyncClient(home=daemon.home) as reader:
            refused: BaseException | None = None
            read_s = 0.0

            async def enqueue() -> None:
                nonlocal refused
                try:
                    await writer.enqueue("NOOP")
                except StoreBusy as exc:
                    refused = exc

            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(enqueue)
                await trio.sleep(0.5)  # the enqueue is now waiting for the lock
                t0 = trio.current_time()
                status = await reader.status()
                read_s = trio.current_time() - t0
                assert status.counts["DONE"] == 1
            return read_s, trio.current_time() - started, refused

    with write_locked(daemon.home / "semantica.db"):
        read_s, refused_after, refused = trio.run(main)
    assert isinstance(refused, StoreBusy) and "locked" in str(refused)
    assert 4.5 <= refused_after < 8, refused_after
    assert read_s < 1.0, f"status took {read_s:.2f} s while an enqueue waited for the lock"
    with daemon.client() as client:
        after = client.enqueue("NOOP")
        assert client.wait(after.id, timeout=30).state == "DONE"
        assert client.get(before.id).state == "DONE"


def test_semctl_says_the_database_is_locked(daemon: Daemon) -> None:
    """semctl enqueue against a locked database: exit 1 and one line naming the cause."""
    with write_locked(daemon.home / "semantica.db"):
        result = daemon.semctl("enqueue", "NOOP")
    assert result.code == 1
    assert result.err.count("\n") == 1 and "locked by another process" in result.err
    assert daemon.semctl("enqueue", "NOOP").code == 0


def test_a_full_disk_gives_store_full_and_keeps_what_was_acknowledged(daemon: Daemon) -> None:
    """Under a file size limit (ulimit -f) enqueues are refused with store_full; the
    jobs acknowledged before are intact, reads work, and the supervisor stays up."""
    with daemon.client() as client:
        client.pause("fill")
    assert daemon.proc is not None
    files = [daemon.home / "semantica.db", daemon.home / "semantica.db-wal"]
    limit = max(f.stat().st_size for f in files if f.exists()) + 256 * 1024
    _soft, hard = resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (limit, hard))
    acked: list[int] = []
    with daemon.client() as client:
        with pytest.raises(StoreFull, match="disk is full"):
            for _ in range(10_000):
                acked.append(client.enqueue("NOOP", {"pad": "x" * 400}, queue="fill").id)
        assert acked, "the limit left no room for even one job"
        assert [job.id for job in client.wait_many(acked, timeout=0.1)] == acked
        assert client.status().counts["QUEUED"] == len(acked)
    assert daemon.proc.poll() is None
    resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
    with daemon.client() as client:
        client.resume("fill")
        done = client.wait_many(acked, timeout=60)
    assert all(job.state == "DONE" for job in done)


def test_a_database_that_cannot_be_opened_stops_the_start_in_one_line(short_tmp: Path) -> None:
    """A state directory whose database is not SQLite: exit 1 within a second or so,
    one line naming the file."""
    daemon = Daemon(home=short_tmp / "home")
    daemon.home.mkdir(mode=0o700)
    (daemon.home / "semantica.db").write_bytes(b"this is not a database" * 100)
    t0 = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "semantica.supervisor", "--workers", "1"],
        env=daemon.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - t0
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert str(daemon.home / "semantica.db") in result.stderr
    assert took < 3, f"took {took:.1f} s"  # the interpreter's start included


# ---------------------------------------------------------------------- a disk that fills up


def _pipelined(daemon: Daemon, requests: list[Any]) -> list[Any]:
    """Send ``requests`` in one write on one connection (so the supervisor carries them
    out back to back, in one moment) and return the replies, in order."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(str(daemon.socket))
    decoder = FrameDecoder(ControlReply, 1 << 30)
    replies: list[Any] = []
    try:
        token = (daemon.home / "token").read_text().strip()
        sock.sendall(encode(Hello(version=PROTOCOL_VERSION, token=token, client="test")))
        sock.sendall(b"".join(encode(r) for r in requests))
        while len(replies) < len(requests) + 1:
            data = sock.recv(1 << 20)
            assert data, f"the supervisor closed the connection after {replies}"
            decoder.feed(data)
            replies.extend(decoder.messages())
    finally:
        sock.close()
    assert isinstance(replies[0], HelloOk), replies[0]
    return replies[1:]


def test_reads_never_answer_store_full_and_jobs_start_once_there_is_space(
    full_disk: FullDisk,
) -> None:
    """The disk fills up. Writes are refused (store_full) and nothing else is: a read
    carried out in the same moment as a refused write (pipelined behind it, or beside a
    lease that cannot be committed) is answered, never with store_full. Jobs that came
    due meanwhile stay QUEUED; once there is space they run, with no restart."""
    d = full_disk.daemon
    d.start()
    lines = d.semctl("enqueue", "LINES", "--payload", '{"count": 3}').out.strip()
    assert d.semctl("wait", lines).code == 0
    done = int(lines)
    delay = 8.0  # they come due once the disk is full (filling takes a second or so)
    with d.client() as client:
        due = [client.enqueue("NOOP", delay=delay).id for _ in range(4)]
        due_at = client.get(due[-1]).run_after
    assert due_at is not None
    acked = full_disk.fill()  # (none, when the disk was full at once)
    assert datetime.now(UTC) < due_at, "filling the disk took longer than the delay"

    # Each read pipelined behind an enqueue, in one write: carried out before the
    # enqueue's failed commit, it must not share its fate.
    requests: list[Any] = []
    for _ in range(3):
        for read in (
            GetStatus(),
            ListJobs(limit=5),
            GetJob(id=done),
            GetLogs(id=done),
            ListQueues(),
            Wait(ids=[done], timeout=0),
        ):
            requests += [Enqueue(jobs=[JobSpec(type="NOOP")]), read]
    for rid, request in enumerate(requests, 1):
        request.rid = rid
    by_rid = {reply.rid: reply for reply in _pipelined(d, requests)}  # (a wait answers apart)
    replies = [by_rid[request.rid] for request in requests]
    for request, reply in zip(requests, replies, strict=True):
        if isinstance(request, Enqueue):
            assert isinstance(reply, ErrorReply) and reply.code == "store_full", reply
        else:
            assert not isinstance(reply, ErrorReply), (type(request).__name__, reply)
    assert [line for r in replies if isinstance(r, LogLines) for line in r.lines] == [
        "line 0",
        "line 1",
        "line 2",
    ] * 3

    # The delayed jobs come due: idle workers lease them, and those leases cannot be
    # committed. Reads meanwhile, as semctl and Client make them, are all answered.
    while datetime.now(UTC) < due_at + timedelta(seconds=1):
        time.sleep(0.1)  # waiting for a wall-clock time: the jobs' own start time
    refused: list[str] = []
    deadline = time.monotonic() + 3
    with d.client() as client:
        while time.monotonic() < deadline:
            for name, read in (
                ("status", client.status),
                ("list", client.list),
                ("show", lambda: client.get(due[0])),
                ("logs", lambda: client.logs(done)),
            ):
                try:
                    read()
                except StoreError as exc:
                    refused.append(f"{name}: {exc.message}")
        assert not refused, refused
        assert [job.state for job in client.wait_many(due, timeout=0)] == ["QUEUED"] * 4
    for args in (["status"], ["list"], ["show", str(due[0])], ["logs", str(done)]):
        result = d.semctl(*args)
        assert result.code == 0, (args, result.err)
    assert d.proc is not None and d.proc.poll() is None

    full_disk.free()
    with d.client() as client:
        jobs = client.wait_many(due, timeout=30)
        assert [job.state for job in jobs] == ["DONE"] * 4, jobs
        client.resume("fill")
        if acked:
            assert {job.state for job in client.wait_many(acked, timeout=60)} == {"DONE"}
