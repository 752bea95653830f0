"""Killed workers, drains and a killed supervisor: every acknowledged job still runs to DONE."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from harness import Announcements, Daemon

DRAIN_TIMEOUT_S = "30"


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    """Wait until none of ``pids`` runs anything; return those still running."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=timeout)
    return {p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE}


def _pool_full_again(daemon: Daemon, without: int | None, timeout: float) -> bool:
    """Whether the supervisor reports its 2 workers (none of them ``without``) within
    ``timeout`` s. (A worker starting is a process of its own: nothing to wait on here.)"""
    deadline = time.monotonic() + timeout
    while True:
        workers = daemon.worker_pids()
        if len(workers) == 2 and without not in workers:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def test_worker_killed_mid_job_is_replaced_and_the_job_reruns(
    daemon: Daemon, announcements: Announcements, short_tmp: Path
) -> None:
    """SIGKILL of the busy worker: a new worker takes its place and the job ends DONE."""
    payload = f'{{"marker": "{short_tmp / "marker"}", "notify": "{announcements.path}"}}'
    job_id = int(daemon.semctl("enqueue", "HANG_ONCE", "--payload", payload, "--backoff", "0").out)
    announced_job, attempt, pid = announcements.next()
    assert (announced_job, attempt) == (job_id, 1)
    os.kill(pid, signal.SIGKILL)
    _, attempt, second_pid = announcements.next()
    assert attempt == 2 and second_pid != pid
    assert daemon.semctl("wait", str(job_id), "--timeout", "30").code == 0
    job = daemon.semctl("show", str(job_id), "--json").json()
    assert job["state"] == "DONE" and job["attempts"] == 2
    # The rerun may end on the other worker before the replacement has started (a
    # worker killed within a second of its start is replaced after a short backoff,
    # and a new Python process takes a while on a busy machine): look until then.
    assert _pool_full_again(daemon, without=pid, timeout=10)
    lost = [e for e in daemon.events() if e.get("error_kind") == "worker_lost"]
    assert lost and lost[0]["job_id"] == job_id


def test_sigterm_lets_the_running_job_finish_and_exits_0(
    daemon: Daemon, announcements: Announcements
) -> None:
    """SIGTERM with a job running: the job finishes DONE, exit 0, no process left, socket gone."""
    payload = f'{{"seconds": 1.0, "notify": "{announcements.path}"}}'
    job_id = int(daemon.semctl("enqueue", "WORK", "--payload", payload).out)
    announcements.next()
    tree = daemon.process_tree()
    assert daemon.stop(signal.SIGTERM) == 0
    assert not _wait_gone({p.pid for p in tree}, timeout=5)
    assert not daemon.socket.exists()
    done = [e for e in daemon.events() if e.get("job_id") == job_id and e.get("state") == "DONE"]
    assert len(done) == 1
    daemon.start()
    assert daemon.semctl("show", str(job_id), "--json").json()["state"] == "DONE"


def test_drain_timeout_requeues_the_job_without_spending_an_attempt(
    make_daemon: Callable[..., Daemon], short_tmp: Path, announcements: Announcements
) -> None:
    """A job outliving the drain timeout is stopped, re-queued with its attempt given back."""
    daemon = make_daemon("--drain-timeout", "0.5")
    marker = short_tmp / "marker"
    payload = f'{{"marker": "{marker}", "notify": "{announcements.path}"}}'
    job_id = int(daemon.semctl("enqueue", "HANG_ONCE", "--payload", payload).out)
    announcements.next()
    tree = daemon.process_tree()
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10
    assert not _wait_gone({p.pid for p in tree}, timeout=5)
    daemon.start()
    assert daemon.semctl("wait", str(job_id), "--timeout", "30").code == 0
    job = daemon.semctl("show", str(job_id), "--json").json()
    assert job["state"] == "DONE" and job["attempts"] == 1


def test_killed_supervisor_takes_its_workers_and_the_job_runs_after_restart(
    daemon: Daemon, announcements: Announcements, short_tmp: Path
) -> None:
    """SIGKILL of the supervisor: its workers (and exec commands) exit within a second or so,
    and the next start runs the interrupted jobs to DONE."""
    marker = short_tmp / "marker"
    payload = f'{{"marker": "{marker}", "notify": "{announcements.path}"}}'
    hang_id = int(daemon.semctl("enqueue", "HANG_ONCE", "--payload", payload).out)
    announcements.next()
    # A command that ignores SIGTERM: only SIGKILL ends it.
    exec_id = int(daemon.semctl("enqueue", "exec", "--", "sh", "-c", "trap '' TERM; sleep 300").out)
    while not [p for p in daemon.process_tree() if p.name() == "sleep"]:
        time.sleep(0.01)  # the exec job is a process of its own: nothing announces it
    tree = daemon.process_tree()
    daemon.stop(signal.SIGKILL)
    assert not _wait_gone({p.pid for p in tree}, timeout=2), "orphans survived the supervisor"
    daemon.start()
    with daemon.client() as client:
        job = client.wait(hang_id, timeout=30)
        assert job.state == "DONE" and job.attempts == 1
        assert client.get(exec_id).state in ("QUEUED", "RUNNING")
        assert client.get(exec_id).attempts <= 1


def test_worker_killed_mid_exec_job_takes_the_command_with_it(
    daemon: Daemon, short_tmp: Path
) -> None:
    """SIGKILL of a worker running a command: the command's whole process group dies too."""
    job_id = int(
        daemon.semctl(
            "enqueue", "exec", "--max-attempts", "1", "--", "sh", "-c", "sleep 300 & sleep 300"
        ).out
    )
    while len([p for p in daemon.process_tree() if p.name() == "sleep"]) < 2:
        time.sleep(0.01)  # the command is a process of its own: nothing announces it
    sleeps = {p.pid for p in daemon.process_tree() if p.name() == "sleep"}
    [worker] = [
        p
        for p in daemon.process_tree()
        if "semantica.worker" in " ".join(p.cmdline())
        and any(c.pid in sleeps for c in p.children(recursive=True))
    ]
    worker.kill()
    assert not _wait_gone(sleeps, timeout=2), "the command outlived its worker"
    job = daemon.semctl("show", str(job_id), "--json").json()
    assert job["state"] == "FAILED" and job["error"]["kind"] == "worker_lost"


def test_shutdown_does_not_wait_forever_for_a_worker_that_cannot_answer(
    make_daemon: Callable[..., Daemon], announcements: Announcements
) -> None:
    """A handler blocking its worker's event loop: the drain still ends, the worker is killed."""
    daemon = make_daemon("--drain-timeout", "0.5")
    payload = f'{{"seconds": 120, "notify": "{announcements.path}"}}'
    daemon.semctl("enqueue", "BLOCK_LOOP", "--payload", payload)
    announcements.next()
    tree = daemon.process_tree()
    started = time.monotonic()
    assert daemon.stop(signal.SIGTERM, timeout=30) == 0
    assert time.monotonic() - started < 15
    assert not _wait_gone({p.pid for p in tree}, timeout=2)


def test_a_stopped_worker_is_killed_after_the_heartbeat_timeout_and_its_job_reruns(
    make_daemon: Callable[..., Daemon], announcements: Announcements, short_tmp: Path
) -> None:
    """SIGSTOP of a busy worker: killed after the heartbeat timeout, its job DONE elsewhere."""
    daemon = make_daemon("--heartbeat-timeout", "1")
    payload = f'{{"marker": "{short_tmp / "marker"}", "notify": "{announcements.path}"}}'
    job_id = int(daemon.semctl("enqueue", "HANG_ONCE", "--payload", payload, "--backoff", "0").out)
    _, _, pid = announcements.next()
    os.kill(pid, signal.SIGSTOP)
    _, attempt, second_pid = announcements.next()
    assert attempt == 2 and second_pid != pid
    assert not _wait_gone({pid}, timeout=2)  # it was killed before the job ran again
    assert daemon.semctl("wait", str(job_id), "--timeout", "30").code == 0
    assert daemon.semctl("show", str(job_id), "--json").json()["attempts"] == 2
    assert any(e.get("event") == "worker stopped answering; killing it" for e in daemon.events())


def test_a_poison_job_fails_after_exactly_max_attempts_while_others_run(daemon: Daemon) -> None:
    """A job that kills its worker every run ends FAILED after max-attempts; others go on."""
    with daemon.client() as client:
        poison = client.enqueue("POISON", max_attempts=3, backoff=0)
        others = client.enqueue_many([{"type": "WHO"} for _ in range(30)])
        done = client.wait_many([poison.id, *(job.id for job in others)], timeout=60)
    daemon.remember()
    by_id = {job.id: job for job in done}
    assert by_id[poison.id].state == "FAILED" and by_id[poison.id].attempts == 3
    assert by_id[poison.id].error is not None
    assert by_id[poison.id].error.kind == "worker_lost"
    assert all(by_id[job.id].state == "DONE" for job in others)
    # Replaced each time: the last replacement may still wait out the respawn
    # backoff (at most 5 s), so look until then.
    assert _pool_full_again(daemon, without=None, timeout=10)


def test_shutdown_now_requeues_running_jobs_without_waiting(
    make_daemon: Callable[..., Daemon], announcements: Announcements
) -> None:
    """semctl shutdown --now: no drain wait (the running job gets the cancel grace, as a
    cancel would: this one ignores its stop); it is re-queued, attempt given back."""
    daemon = make_daemon("--drain-timeout", "60", SEMANTICA_CANCEL_GRACE="1")
    payload = f'{{"notify": "{announcements.path}"}}'
    job_id = int(daemon.semctl("enqueue", "HANG", "--payload", payload).out)
    announcements.next()
    started = time.monotonic()
    assert daemon.semctl("shutdown", "--now").code == 0
    assert daemon.proc is not None and daemon.proc.wait(30) == 0
    assert time.monotonic() - started < 5
    assert any(e.get("error_kind") == "interrupted" for e in daemon.events())
    daemon.start()
    job = daemon.semctl("show", str(job_id), "--json").json()
    assert job["state"] in ("QUEUED", "RUNNING") and job["attempts"] <= 1


def test_a_second_semctl_shutdown_lets_the_drain_go_on(
    make_daemon: Callable[..., Daemon], announcements: Announcements
) -> None:
    """semctl shutdown run twice (to be sure it was heard) keeps the drain: the running job
    is not stopped; only --now stops it."""
    daemon = make_daemon("--drain-timeout", "60")
    payload = f'{{"notify": "{announcements.path}"}}'
    job_id = daemon.semctl("enqueue", "HANG", "--payload", payload).out.strip()
    announcements.next()
    assert daemon.semctl("shutdown").code == 0
    again = daemon.semctl("shutdown")
    assert again.code == 0, again.err
    assert "drain" in again.out
    status = daemon.semctl("status", "--json").json()
    assert status["draining"] and status["counts"]["RUNNING"] == 1
    assert daemon.semctl("show", job_id, "--json").json()["state"] == "RUNNING"
    assert not any(e.get("error_kind") == "interrupted" for e in daemon.events())
    assert daemon.semctl("shutdown", "--now").code == 0
    assert daemon.proc is not None and daemon.proc.wait(30) == 0
    assert any(e.get("error_kind") == "interrupted" for e in daemon.events())


def test_durability_setting_is_reported(make_daemon: Callable[..., Daemon]) -> None:
    """status --json says which durability the store runs with; full is the default."""
    assert make_daemon().semctl("status", "--json").json()["durability"] == "full"
    normal = make_daemon("--durability", "normal")
    assert normal.semctl("status", "--json").json()["durability"] == "normal"
