"""What a job starts never outlives it, and never holds a worker.

Real supervisors, real processes. The handlers of ``semtest_handlers`` (SPAWN,
ASYNC_SPAWN) start processes the ways handlers do: a shell's background job, a
child never waited for, one in a session of its own, a double-forked daemon, a
fork that never execs (it holds every descriptor of its worker, the channel to
the supervisor included), and multiprocessing. Each of those processes writes
its pid to a file; a test checks, once the job has ended, that none still runs,
however the job ended.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from harness import Announcements, Daemon

pytestmark = pytest.mark.slow

#: Every way of starting a process the SPAWN handlers know.
ALL_WAYS = ["system", "popen", "setsid", "double_fork", "fork", "multiprocessing"]
#: The cancel grace of these supervisors: a process that ignores SIGTERM dies this long on.
GRACE_S = 1.0
#: How long a job's processes may take to record their pids (a loaded machine).
START_TIMEOUT_S = 30.0
MakeDaemon = Callable[..., Daemon]
_SPAWNED: list[Spawned] = []  # every one made by the running test, for the clean-up


class Spawned:
    """The processes one job started, as they recorded themselves in a file."""

    def __init__(self, path: Path, count: int) -> None:
        self.path = path
        self.count = count
        self.procs: list[psutil.Process] = []
        _SPAWNED.append(self)

    def wait(self) -> list[psutil.Process]:
        """Wait until all ``count`` have recorded their pid; keep them (psutil notices a
        reused pid, so a later check cannot mistake another process for one of them)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(self._pids()) < self.count:
            assert time.monotonic() < deadline, f"only {len(self._pids())} of {self.count} started"
            time.sleep(0.01)
        assert len(self.read()) == self.count, "a process ended by itself before the test looked"
        return self.procs

    def _pids(self) -> list[int]:
        return [int(word) for word in (self.path.read_text() if self.path.exists() else "").split()]

    def read(self) -> list[psutil.Process]:
        """The processes recorded so far that still exist (kept, by pid and start time)."""
        known = {proc.pid for proc in self.procs}
        for pid in self._pids():
            if pid not in known:
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.procs.append(psutil.Process(pid))
        return self.procs

    def running(self) -> list[psutil.Process]:
        """Those still running (a zombie runs nothing)."""
        alive = []
        for proc in self.procs:
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                pass
        return alive


@pytest.fixture(autouse=True)
def _kill_leftovers(short_tmp: Path) -> Iterator[None]:
    """A test that fails must not leave its processes on the machine."""
    _SPAWNED.clear()
    yield
    for spawned in _SPAWNED:
        spawned.read()
        for proc in spawned.running():
            proc.kill()


def spawn_payload(
    tmp: Path, name: str, ways: list[str], **extra: Any
) -> tuple[dict[str, Any], Spawned]:
    pids = tmp / f"{name}.pids"
    return {"how": ways, "pids": str(pids), **extra}, Spawned(pids, len(ways))


def leaf(pids: Path, ignore_term: bool = False) -> str:
    """A shell command that records its pid and sleeps (as semtest_handlers._leaf)."""
    script = f"echo $$ >> {shlex.quote(str(pids))}; exec sleep 300"
    if ignore_term:
        script = "trap '' TERM; " + script
    return f"sh -c {shlex.quote(script)}"


def worker_of(daemon: Daemon, job_id: int) -> int:
    [pid] = [
        w["pid"] for w in daemon.semctl("status", "--json").json()["workers"] if w["job"] == job_id
    ]
    return int(pid)


# ---------------------------------------------------------------------- the worker's channel


def test_a_handlers_background_command_does_not_hold_the_workers_channel(
    daemon: Daemon, short_tmp: Path
) -> None:
    """``os.system("cmd &")`` in a handler: the command holds none of the worker's sockets."""
    payload = {"pids": str(short_tmp / "pids")}
    with daemon.client() as client:
        job = client.enqueue("CHANNEL_HOLDERS", payload)
        done = client.wait(job.id, timeout=60)
    assert done.state == "DONE", done.error
    assert done.result == [], f"the background command holds the worker's {done.result}"


def test_a_dead_workers_job_is_settled_though_its_fork_holds_the_channel(
    make_daemon: MakeDaemon, announcements: Announcements, short_tmp: Path
) -> None:
    """A handler forks (the child keeps every descriptor, the channel too); its worker is
    SIGKILLed. The supervisor notices the death all the same: the job is settled at once
    (worker_lost), the slot gets a new worker, the fork is ended and SIGTERM completes."""
    daemon = make_daemon(SEMANTICA_CANCEL_GRACE=str(GRACE_S))
    payload, spawned = spawn_payload(
        short_tmp,
        "fork",
        ["fork"],
        then="release",
        release=str(short_tmp / "never"),
        notify=str(announcements.path),
    )
    with daemon.client() as client:
        job = client.enqueue("SPAWN", payload, max_attempts=1)
        _, _, worker = announcements.next()
        spawned.wait()
        killed = time.monotonic()
        os.kill(worker, signal.SIGKILL)
        ended = client.wait(job.id, timeout=10)
        took = time.monotonic() - killed
    assert ended.state == "FAILED" and ended.error is not None, ended
    assert ended.error.kind == "worker_lost"
    assert took < 3.0, f"the dead worker's job was settled {took:.1f} s after the kill"
    deadline = time.monotonic() + 10
    while len(daemon.worker_pids() - {worker}) != 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(daemon.worker_pids() - {worker}) == 2, "the slot was not given a new worker"
    stopping = time.monotonic()
    assert daemon.stop(signal.SIGTERM, timeout=30) == 0
    assert time.monotonic() - stopping < 5
