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
import json
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

    def wait(self, alive: bool = True) -> list[psutil.Process]:
        """Wait until all ``count`` have recorded their pid; keep those that exist (psutil
        notices a reused pid, so a later check cannot mistake another process for one of
        them). ``alive``: all must still exist."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(self._pids()) < self.count:
            assert time.monotonic() < deadline, f"only {len(self._pids())} of {self.count} started"
            time.sleep(0.01)
        self.read()
        assert not alive or len(self.procs) == self.count, "one ended before the test looked"
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
        then="return",
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
    assert not spawned.running(), "the fork outlived its worker"
    stopping = time.monotonic()
    assert daemon.stop(signal.SIGTERM, timeout=30) == 0
    assert time.monotonic() - stopping < 5


# ---------------------------------------------------------------------- ended with the job


@pytest.mark.parametrize(
    ("kind", "then", "ignore_term"),
    [
        ("SPAWN", "return", False),
        ("ASYNC_SPAWN", "return", True),
        ("SPAWN", "fail", True),
        ("ASYNC_SPAWN", "fail", False),
    ],
)
def test_nothing_a_finished_job_started_is_left_running(
    make_daemon: MakeDaemon, short_tmp: Path, kind: str, then: str, ignore_term: bool
) -> None:
    """A handler (plain or async) starts processes every way there is and returns (DONE)
    or raises (FAILED): when the job has ended, none of them runs (one that ignores
    SIGTERM is killed after the cancel grace)."""
    daemon = make_daemon(SEMANTICA_CANCEL_GRACE=str(GRACE_S))
    release = short_tmp / "release"
    payload, spawned = spawn_payload(
        short_tmp, "job", ALL_WAYS, then=then, ignore_term=ignore_term, release=str(release)
    )
    with daemon.client() as client:
        job = client.enqueue(kind, payload, max_attempts=1)
        spawned.wait()
        release.touch()
        ended = client.wait(job.id, timeout=60)
    assert ended.state == ("DONE" if then == "return" else "FAILED"), ended.error
    assert not spawned.running(), f"left running after the job ended: {spawned.running()}"
    logs = daemon.semctl("logs", str(job.id)).out
    assert f"{len(ALL_WAYS)} processes" in logs, logs


def test_an_exec_job_ends_when_its_command_exits_and_its_background_children_with_it(
    daemon: Daemon, short_tmp: Path
) -> None:
    """``sh -c 'sleep 300 & exit 0'`` ends DONE when sh exits, with the output it wrote;
    what it left behind (in its group, in a session of its own, a daemon) is ended."""
    pids = short_tmp / "pids"
    script = (
        f"echo before; {leaf(pids)} & setsid {leaf(pids)} & "
        f"( setsid {leaf(pids, ignore_term=True)} & ); "
        f'while [ "$(wc -l < {shlex.quote(str(pids))})" -lt 3 ]; do sleep 0.01; done; '
        "echo after; exit 0"
    )
    pids.touch()  # (the loop reads it before the first child has written to it)
    spawned = Spawned(pids, 3)
    started = time.monotonic()
    job_id = daemon.semctl("enqueue", "exec", "--", "sh", "-c", script).out.strip()
    waited = daemon.semctl("wait", job_id, "--timeout", "30")
    took = time.monotonic() - started
    assert waited.code == 0, waited
    assert took < 15, f"the job ended {took:.1f} s after it was enqueued"
    spawned.wait(alive=False)
    assert not spawned.running(), f"left running after the job ended: {spawned.running()}"
    log = daemon.semctl("logs", job_id).out.splitlines()
    assert log[:2] == ["before", "after"], log


@pytest.mark.parametrize("kind", ["SPAWN", "ASYNC_SPAWN", "exec"])
def test_nothing_a_cancelled_or_timed_out_job_started_is_left_running(
    make_daemon: MakeDaemon, announcements: Announcements, short_tmp: Path, kind: str
) -> None:
    """A job stopped by cancel, and one stopped by its timeout: once each has ended, none
    of the processes it started runs."""
    daemon = make_daemon(SEMANTICA_CANCEL_GRACE=str(GRACE_S))
    with daemon.client() as client:
        for stop in ("cancel", "timeout"):
            name = f"{kind}-{stop}"
            if kind == "exec":
                pids = short_tmp / f"{name}.pids"
                script = (
                    f"{leaf(pids)} & setsid {leaf(pids, ignore_term=True)} & "
                    f"( setsid {leaf(pids)} & ); trap '' TERM; sleep 300"
                )
                spawned = Spawned(pids, 3)
                job = client.enqueue(
                    "exec",
                    {"argv": ["sh", "-c", script]},
                    max_attempts=1,
                    timeout=None if stop == "cancel" else 2.0,
                )
            else:
                payload, spawned = spawn_payload(
                    short_tmp,
                    name,
                    ALL_WAYS,
                    then="wait_cancel",
                    ignore_term=stop == "timeout",
                    notify=str(announcements.path),
                )
                job = client.enqueue(
                    kind, payload, max_attempts=1, timeout=None if stop == "cancel" else 2.0
                )
                announcements.next()
            spawned.wait()
            if stop == "cancel":
                client.cancel(job.id)
            ended = client.wait(job.id, timeout=60)
            assert ended.state == ("CANCELLED" if stop == "cancel" else "FAILED"), ended
            assert not spawned.running(), f"{name}: left running: {spawned.running()}"


def test_a_plain_handler_that_ignores_its_cancel_takes_its_processes_with_it(
    make_daemon: MakeDaemon, announcements: Announcements, short_tmp: Path
) -> None:
    """A plain handler ignores cancel (its thread cannot be stopped): after the grace the
    job ends CANCELLED, and by then nothing it started runs."""
    daemon = make_daemon(SEMANTICA_CANCEL_GRACE=str(GRACE_S))
    payload, spawned = spawn_payload(
        short_tmp, "deaf", ALL_WAYS, then="ignore_cancel", notify=str(announcements.path)
    )
    with daemon.client() as client:
        job = client.enqueue("SPAWN", payload, max_attempts=1)
        announcements.next()
        spawned.wait()
        client.cancel(job.id)
        ended = client.wait(job.id, timeout=60)
    assert ended.state == "CANCELLED", ended
    assert not spawned.running(), f"left running: {spawned.running()}"


@pytest.mark.parametrize("how", ["sigkill", "exit"])
def test_nothing_the_job_of_a_killed_worker_started_is_left_running(
    make_daemon: MakeDaemon, announcements: Announcements, short_tmp: Path, how: str
) -> None:
    """The worker dies under the job (SIGKILL from outside, or the handler's own
    os._exit): it cannot clean up, so the supervisor ends what the job started, before
    the job is settled."""
    daemon = make_daemon(SEMANTICA_CANCEL_GRACE=str(GRACE_S))
    release = short_tmp / "release"
    payload, spawned = spawn_payload(
        short_tmp,
        "job",
        ALL_WAYS,
        ignore_term=True,
        then="return" if how == "sigkill" else "exit",
        release=str(release) if how == "sigkill" else None,
        notify=str(announcements.path),
    )
    pids = short_tmp / "exec.pids"
    command = (
        f"{leaf(pids)} & setsid {leaf(pids, ignore_term=True)} & "
        f"( setsid {leaf(pids)} & ); sleep 300"
    )
    exec_spawned = Spawned(pids, 3)
    with daemon.client() as client:
        job = client.enqueue("SPAWN", payload, max_attempts=1)
        _, _, worker = announcements.next()
        spawned.wait(alive=how == "sigkill")  # (exit: the worker may be gone already)
        exec_job = client.enqueue("exec", {"argv": ["sh", "-c", command]}, max_attempts=1)
        exec_spawned.wait()
        if how == "sigkill":
            os.kill(worker, signal.SIGKILL)
        exec_worker = worker_of(daemon, exec_job.id)
        os.kill(exec_worker, signal.SIGKILL)
        ended = client.wait_many([job.id, exec_job.id], timeout=60)
    for one in ended:
        assert one.state == "FAILED" and one.error is not None, one
        assert one.error.kind == "worker_lost", one.error
    assert not spawned.running(), f"the handler's, left running: {spawned.running()}"
    assert not exec_spawned.running(), f"the command's, left running: {exec_spawned.running()}"


def test_what_ran_below_semanticad_before_it_started_is_never_taken_for_a_jobs(
    short_tmp: Path,
) -> None:
    """``sh -c 'log-shipper & exec semanticad'``: semanticad starts with a child it did not
    start. A worker's death makes the supervisor end what that worker's job left, and
    the supervisor's exit ends its workers: neither ends that child (it used to be
    SIGKILLed at the first worker death, every worker's exit at a drain included)."""
    shipper_pid = short_tmp / "shipper.pid"
    launcher = f'sleep 300 & echo $! > {shlex.quote(str(shipper_pid))}; exec "$@"'
    daemon = Daemon(home=short_tmp / "home", launcher=("sh", "-c", launcher, "sh"))
    shipper: psutil.Process | None = None
    try:
        daemon.start(SEMANTICA_CANCEL_GRACE=str(GRACE_S))
        assert daemon.proc is not None
        shipper = psutil.Process(int(shipper_pid.read_text()))
        assert shipper.ppid() == daemon.proc.pid
        payload, spawned = spawn_payload(short_tmp, "job", ["setsid"], then="exit")
        with daemon.client() as client:
            job = client.enqueue("SPAWN", payload, max_attempts=1)  # its worker dies under it
            ended = client.wait(job.id, timeout=60)
        assert ended.error is not None and ended.error.kind == "worker_lost", ended
        spawned.wait(alive=False)
        assert not spawned.running(), f"the dead worker's job's, left running: {spawned.running()}"
        assert _runs(shipper), "the process semanticad started with was ended"
        assert daemon.stop(signal.SIGTERM, timeout=30) == 0
        assert _runs(shipper), "the process semanticad started with was ended at its exit"
    finally:
        if shipper is not None:
            daemon.seen.pop(shipper.pid, None)  # (not semanticad's: it may outlive it)
            if _runs(shipper):
                shipper.kill()
        assert not daemon.stop_for_good(), "processes left behind"


def _runs(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# ---------------------------------------------------------------------- the drain


def test_a_drain_ends_in_its_bound_whatever_the_handlers_do(
    make_daemon: MakeDaemon, announcements: Announcements, short_tmp: Path
) -> None:
    """SIGTERM with four stubborn jobs running: a plain handler that ignores its cancel
    and loops, an async one whose worker ignores SIGTERM, a command that traps TERM, and
    a fork holding its worker's descriptors and ignoring SIGTERM. semanticad exits 0
    within the drain timeout + the cancel grace (+ a little); nothing they started runs."""
    drain, grace = 1.0, 0.5
    daemon = make_daemon(
        "--workers", "4", SEMANTICA_DRAIN_TIMEOUT=str(drain), SEMANTICA_CANCEL_GRACE=str(grace)
    )
    notify = str(announcements.path)
    deaf, deaf_spawned = spawn_payload(
        short_tmp, "deaf", ["setsid"], ignore_term=True, then="ignore_cancel", notify=notify
    )
    blind, blind_spawned = spawn_payload(
        short_tmp, "blind", ["double_fork"], ignore_term=True, then="ignore_sigterm", notify=notify
    )
    holder, holder_spawned = spawn_payload(
        short_tmp,
        "holder",
        ["fork"],
        ignore_term=True,
        then="return",
        release=str(short_tmp / "never"),
        notify=notify,
    )
    pids = short_tmp / "exec.pids"
    exec_spawned = Spawned(pids, 2)
    command = (
        f"setsid {leaf(pids, ignore_term=True)} & {leaf(pids, ignore_term=True)} & "
        "trap '' TERM; sleep 300"
    )
    with daemon.client() as client:
        jobs = [
            client.enqueue("SPAWN", deaf).id,
            client.enqueue("ASYNC_SPAWN", blind).id,
            client.enqueue("SPAWN", holder).id,
        ]
        for _ in jobs:
            announcements.next()
        jobs.append(client.enqueue("exec", {"argv": ["sh", "-c", command]}).id)
        for spawned in (deaf_spawned, blind_spawned, holder_spawned, exec_spawned):
            spawned.wait()
        assert {w.job for w in client.status().workers} == set(jobs)
    daemon.remember()
    sent = time.monotonic()
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    code = daemon.proc.wait(60)
    took = time.monotonic() - sent
    assert code == 0, daemon.log()[-3000:]
    assert took <= drain + grace + 2.0, f"exited {took:.2f} s after SIGTERM"
    for spawned in (deaf_spawned, blind_spawned, holder_spawned, exec_spawned):
        assert not spawned.running(), f"left running after the drain: {spawned.running()}"
    interrupted = [e for e in daemon.events() if e.get("error_kind") == "interrupted"]
    assert sorted(e["job_id"] for e in interrupted) == sorted(jobs)


def test_a_drain_ends_what_the_jobs_it_waited_for_started(
    make_daemon: MakeDaemon, announcements: Announcements, short_tmp: Path
) -> None:
    """SIGTERM while a job that started processes runs to its end within the drain: it
    ends DONE, and semanticad exits leaving none of its processes running."""
    daemon = make_daemon(SEMANTICA_CANCEL_GRACE=str(GRACE_S))
    release = short_tmp / "release"
    payload, spawned = spawn_payload(
        short_tmp,
        "job",
        ALL_WAYS,
        then="return",
        release=str(release),
        notify=str(announcements.path),
    )
    with daemon.client() as client:
        job = client.enqueue("SPAWN", payload)
        announcements.next()
        spawned.wait()
    assert daemon.proc is not None
    daemon.remember()
    daemon.proc.send_signal(signal.SIGTERM)
    release.touch()
    assert daemon.proc.wait(60) == 0
    done = [e for e in daemon.events() if e.get("job_id") == job.id and e.get("state") == "DONE"]
    assert len(done) == 1, json.dumps(daemon.events()[-5:])
    assert not spawned.running(), f"left running after the drain: {spawned.running()}"
