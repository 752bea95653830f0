"""Store faults: a typed error to the client, reads still served, nothing acknowledged lost.

(The chaos suite, tests/chaos, runs these at size and with injected I/O errors.)
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
from harness import Daemon, write_locked

from semantica import AsyncClient
from semantica.errors import StoreBusy, StoreFull

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
