"""Job semantics through semctl: order, queues, delays, retries, timeouts, cancel, subjects."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from harness import Announcements, Daemon


def _show(daemon: Daemon, job_id: int | str) -> dict[str, Any]:
    job: dict[str, Any] = daemon.semctl("show", str(job_id), "--json").json()
    return job


def _enqueue(daemon: Daemon, *args: str) -> int:
    result = daemon.semctl("enqueue", *args)
    assert result.code == 0, result.err
    return int(result.out)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _payload(**fields: Any) -> str:
    return json.dumps(fields)


# ---------------------------------------------------------------- order and queues


def test_priority_then_fifo_on_one_worker(make_daemon: Callable[..., Daemon]) -> None:
    """With one worker, jobs start highest priority first, and in enqueue order within one."""
    daemon = make_daemon("--workers", "1")
    daemon.semctl("pause", "default")
    ids = {
        name: _enqueue(daemon, "NOOP", "--priority", str(priority))
        for name, priority in [("low1", 0), ("high1", 5), ("low2", 0), ("high2", 5), ("mid", 3)]
    }
    assert daemon.semctl("resume", "default").code == 0
    assert daemon.semctl("wait", *map(str, ids.values())).code == 0
    started = sorted(ids, key=lambda name: _ts(_show(daemon, ids[name])["started_at"]))
    assert started == ["high1", "high2", "mid", "low1", "low2"]


def test_paused_queue_starts_nothing_until_resumed(daemon: Daemon) -> None:
    """A paused queue's jobs stay QUEUED (waiting_for queue_paused); other queues go on."""
    paused = daemon.semctl("pause", "--create", "slow", "--json")
    assert paused.code == 0 and paused.json()["paused"] is True
    held = _enqueue(daemon, "NOOP", "--queue", "slow")
    other = _enqueue(daemon, "NOOP", "--queue", "fast")
    assert daemon.semctl("wait", str(other)).code == 0
    job = _show(daemon, held)
    assert job["state"] == "QUEUED" and job["waiting_for"] == "queue_paused"
    assert "resumed" in daemon.semctl("show", str(held)).out
    queues = {q["name"]: q for q in daemon.semctl("queues", "--json").json()}
    assert queues["slow"]["paused"] is True and queues["slow"]["counts"]["QUEUED"] == 1
    assert queues["fast"]["counts"]["DONE"] == 1
    daemon.semctl("resume", "slow")
    assert daemon.semctl("wait", str(held), "--timeout", "30").code == 0


def test_pause_and_limit_survive_a_restart(daemon: Daemon) -> None:
    """Queue settings are stored: after a restart the queue is still paused and limited."""
    daemon.semctl("pause", "--create", "q")
    daemon.semctl("limit", "q", "3")
    daemon.stop()
    daemon.start()
    [q] = [q for q in daemon.semctl("queues", "--json").json() if q["name"] == "q"]
    assert q["paused"] is True and q["limit"] == 3


def test_limit_one_never_runs_two_at_once(daemon: Daemon) -> None:
    """A queue limited to 1 runs its jobs one after another, even with two idle workers."""
    assert daemon.semctl("limit", "--create", "serial", "1").code == 0
    ids = [
        _enqueue(daemon, "WORK", "--queue", "serial", "--payload", _payload(seconds=0.2))
        for _ in range(4)
    ]
    assert daemon.semctl("wait", *map(str, ids)).code == 0
    spans = sorted(
        (_ts(job["started_at"]), _ts(job["finished_at"]))
        for job in map(lambda i: _show(daemon, i), ids)
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end


# ---------------------------------------------------------------- time


def test_delay_starts_the_job_after_it(daemon: Daemon) -> None:
    """--delay 1: QUEUED (waiting_for run_after) at first, started 1 s after enqueue."""
    job_id = _enqueue(daemon, "NOOP", "--delay", "1")
    job = _show(daemon, job_id)
    assert job["state"] == "QUEUED" and job["waiting_for"] == "run_after"
    assert daemon.semctl("wait", str(job_id), "--timeout", "30").code == 0
    job = _show(daemon, job_id)
    late = (_ts(job["started_at"]) - _ts(job["created_at"])).total_seconds()
    assert 1.0 <= late < 2.0  # the target is 100 ms; a shared test machine gets slack


def test_at_in_the_past_runs_now_and_at_in_the_future_waits(daemon: Daemon) -> None:
    """--at in the past is allowed (it runs at once); in the future it sets run_after."""
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert daemon.semctl("wait", str(_enqueue(daemon, "NOOP", "--at", past))).code == 0
    future = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    job = _show(daemon, _enqueue(daemon, "NOOP", "--at", future.isoformat()))
    assert _ts(job["run_after"]) == future
    assert job["waiting_for"] == "run_after"


def test_retries_back_off_with_growing_gaps(daemon: Daemon, announcements: Announcements) -> None:
    """A failing job is retried after ~base, then ~2x base, and ends FAILED with its error."""
    payload = _payload(notify=str(announcements.path))
    job_id = _enqueue(
        daemon, "ANNOUNCE_FAIL", "--payload", payload, "--max-attempts", "3", "--backoff", "0.3"
    )
    times = []
    for attempt in (1, 2, 3):
        _, announced, _ = announcements.next()
        assert announced == attempt
        times.append(time.monotonic())
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    # (10 ms of slack: each time is taken when the test reads an announcement.)
    assert 0.3 * 0.8 - 0.01 <= first_gap < second_gap
    assert second_gap >= 0.6 * 0.8
    assert daemon.semctl("wait", str(job_id)).code == 1
    job = _show(daemon, job_id)
    assert job["attempts"] == 3 and job["error"]["message"] == "ValueError: attempt 3 failed"


def test_retry_puts_a_failed_job_back_with_a_fresh_budget(daemon: Daemon) -> None:
    """semctl retry: a FAILED job runs again with attempts counted from zero."""
    job_id = _enqueue(daemon, "FAIL", "--max-attempts", "1")
    daemon.semctl("wait", str(job_id))
    retried = daemon.semctl("retry", str(job_id), "--json")
    assert retried.code == 0 and retried.json()["attempts"] == 0
    daemon.semctl("wait", str(job_id))
    job = _show(daemon, job_id)
    assert job["state"] == "FAILED" and job["attempts"] == 1


def test_retry_of_a_done_job_is_refused(daemon: Daemon) -> None:
    """Retrying a DONE job exits 2 with a reason, and the job stays DONE."""
    job_id = _enqueue(daemon, "NOOP")
    daemon.semctl("wait", str(job_id))
    result = daemon.semctl("retry", str(job_id))
    assert result.code == 2 and "DONE" in result.err
    assert _show(daemon, job_id)["state"] == "DONE"


# ---------------------------------------------------------------- timeouts and cancel


def _gone(pid: int, timeout: float = 10) -> bool:
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def test_timeout_of_a_blocking_handler(
    make_daemon: Callable[..., Daemon], announcements: Announcements
) -> None:
    """A blocking handler past --timeout: the attempt fails (timeout), its worker replaced."""
    daemon = make_daemon("--cancel-grace", "0.5")
    payload = _payload(notify=str(announcements.path))
    job_id = _enqueue(
        daemon, "HANG", "--payload", payload, "--timeout", "0.5", "--max-attempts", "1"
    )
    _, _, worker_pid = announcements.next()
    assert daemon.semctl("wait", str(job_id), "--timeout", "30").code == 1
    job = _show(daemon, job_id)
    assert job["state"] == "FAILED"
    assert job["error"] == {"kind": "timeout", "message": "timed out after 0.5 s"}
    assert _gone(worker_pid)  # its thread could not be stopped, so the worker went
    daemon.remember()


def test_timeout_of_an_exec_job_kills_the_command(daemon: Daemon) -> None:
    """An exec job past --timeout fails with kind timeout and its command is gone."""
    job_id = _enqueue(
        daemon, "exec", "--timeout", "0.5", "--max-attempts", "1", "--", "sleep", "60"
    )
    assert daemon.semctl("wait", str(job_id), "--timeout", "30").code == 1
    assert _show(daemon, job_id)["error"]["kind"] == "timeout"
    assert not [p for p in daemon.process_tree() if p.name() == "sleep"]


def test_timed_out_attempt_is_retried(daemon: Daemon, announcements: Announcements) -> None:
    """A timeout is a failed attempt: with attempts left, the job runs again."""
    payload = _payload(notify=str(announcements.path))
    job_id = _enqueue(
        daemon,
        "ASYNC_HANG",
        "--payload",
        payload,
        "--timeout",
        "0.3",
        "--max-attempts",
        "2",
        "--backoff",
        "0",
    )
    assert announcements.next()[1] == 1
    assert announcements.next()[1] == 2
    assert daemon.semctl("wait", str(job_id), "--timeout", "30").code == 1
    assert _show(daemon, job_id)["attempts"] == 2


def test_cancel_a_queued_job(daemon: Daemon) -> None:
    """A queued job is CANCELLED at once and never runs."""
    daemon.semctl("pause", "--create", "held")
    job_id = _enqueue(daemon, "NOOP", "--queue", "held")
    result = daemon.semctl("cancel", str(job_id))
    assert result.code == 0 and result.out.strip() == f"{job_id} CANCELLED (cancelled)"
    daemon.semctl("resume", "held")
    job = _show(daemon, job_id)
    assert job["state"] == "CANCELLED" and job["started_at"] is None


def test_cancel_an_async_handler(daemon: Daemon, announcements: Announcements) -> None:
    """A running async handler is cancelled through its cancel scope; the worker stays."""
    job_id = _enqueue(daemon, "ASYNC_HANG", "--payload", _payload(notify=str(announcements.path)))
    _, _, worker_pid = announcements.next()
    started = time.monotonic()
    result = daemon.semctl("cancel", str(job_id))
    assert result.code == 0 and "CANCELLED" in result.out
    assert time.monotonic() - started < 3
    assert _show(daemon, job_id)["error"]["kind"] == "cancelled"
    assert worker_pid in daemon.worker_pids()


def test_cancel_a_cooperative_blocking_handler(
    daemon: Daemon, announcements: Announcements
) -> None:
    """A blocking handler that checks ctx.cancelled stops; the job is CANCELLED, worker kept."""
    job_id = _enqueue(daemon, "COOPERATIVE", "--payload", _payload(notify=str(announcements.path)))
    _, _, worker_pid = announcements.next()
    assert daemon.semctl("cancel", str(job_id)).code == 0
    assert _show(daemon, job_id)["state"] == "CANCELLED"
    assert worker_pid in daemon.worker_pids()


def test_cancel_a_blocking_handler_that_ignores_it(
    make_daemon: Callable[..., Daemon], announcements: Announcements
) -> None:
    """A blocking handler that never looks: after the grace period its worker is replaced."""
    daemon = make_daemon("--cancel-grace", "0.5")
    job_id = _enqueue(daemon, "HANG", "--payload", _payload(notify=str(announcements.path)))
    _, _, worker_pid = announcements.next()
    assert daemon.semctl("cancel", str(job_id)).code == 0
    assert _show(daemon, job_id)["state"] == "CANCELLED"
    assert _gone(worker_pid)
    daemon.remember()


def test_cancel_an_exec_job_kills_its_process_group(daemon: Daemon) -> None:
    """Cancelling a command stops it and everything it started."""
    job_id = _enqueue(daemon, "exec", "--", "sh", "-c", "sleep 60 & sleep 60")
    while len([p for p in daemon.process_tree() if p.name() == "sleep"]) < 2:
        time.sleep(0.01)  # the command is a process of its own: nothing announces it
    sleeps = [p for p in daemon.process_tree() if p.name() == "sleep"]
    assert daemon.semctl("cancel", str(job_id)).code == 0
    assert _show(daemon, job_id)["state"] == "CANCELLED"
    assert all(_gone(p.pid, timeout=2) for p in sleeps)


def test_cancel_of_a_finished_job_says_so_and_exits_0(daemon: Daemon) -> None:
    """Cancelling a DONE job changes nothing, says it was finished, and exits 0."""
    job_id = _enqueue(daemon, "NOOP")
    daemon.semctl("wait", str(job_id))
    result = daemon.semctl("cancel", str(job_id))
    assert result.code == 0 and "already finished" in result.out
    assert _show(daemon, job_id)["state"] == "DONE"


# ---------------------------------------------------------------- subjects


def test_newer_generation_supersedes_queued_older_ones(daemon: Daemon) -> None:
    """Each newer generation of a subject marks the queued older ones SUPERSEDED, by it."""
    daemon.semctl("pause", "--create", "idx")
    old = [
        _enqueue(daemon, "NOOP", "--queue", "idx", "--subject", "a.rs", "--generation", str(g))
        for g in (1, 2)
    ]
    new = _enqueue(daemon, "NOOP", "--queue", "idx", "--subject", "a.rs", "--generation", "3")
    for job_id, by in zip(old, [old[1], new], strict=True):
        job = _show(daemon, job_id)
        assert job["state"] == "SUPERSEDED" and job["superseded_by"] == by
    daemon.semctl("resume", "idx")
    assert daemon.semctl("wait", str(new), *map(str, old)).code == 1  # superseded is not DONE
    assert _show(daemon, new)["state"] == "DONE"


def test_latest_wins_without_a_generation(daemon: Daemon) -> None:
    """Without --generation each new job is one above the newest and replaces queued ones."""
    daemon.semctl("pause", "--create", "idx")
    first = _show(daemon, _enqueue(daemon, "NOOP", "--queue", "idx", "--subject", "s"))
    second = _show(daemon, _enqueue(daemon, "NOOP", "--queue", "idx", "--subject", "s"))
    assert second["generation"] == first["generation"] + 1
    assert _show(daemon, first["id"])["state"] == "SUPERSEDED"


def test_a_generation_that_is_not_newer_is_deduplicated(daemon: Daemon) -> None:
    """Enqueuing a generation not above a queued one returns that job and adds nothing."""
    daemon.semctl("pause", "--create", "idx")
    queued = _enqueue(daemon, "NOOP", "--queue", "idx", "--subject", "b.rs", "--generation", "5")
    before = daemon.semctl("status", "--json").json()["counts"]
    again = daemon.semctl(
        "enqueue", "NOOP", "--queue", "idx", "--subject", "b.rs", "--generation", "4", "--json"
    )
    assert again.code == 0
    assert again.json()["id"] == queued and again.json()["deduplicated"] is True
    plain = daemon.semctl(
        "enqueue", "NOOP", "--queue", "idx", "--subject", "b.rs", "--generation", "5"
    )
    assert plain.out.strip() == str(queued)
    assert daemon.semctl("status", "--json").json()["counts"] == before


def test_two_jobs_of_one_subject_never_run_at_once(
    daemon: Daemon, announcements: Announcements, short_tmp: Path
) -> None:
    """A newer job of a running subject waits (subject_busy) and starts after the older ends."""
    release = short_tmp / "release"
    payload = _payload(notify=str(announcements.path), release=str(release))
    older = _enqueue(daemon, "PROGRESS", "--subject", "c.rs", "--payload", payload)
    announcements.next()  # the older one runs, and waits for the release file
    newer = _enqueue(daemon, "PROGRESS", "--subject", "c.rs", "--payload", payload)
    job = _show(daemon, newer)
    assert job["state"] == "QUEUED" and job["waiting_for"] == "subject_busy"
    release.touch()
    assert daemon.semctl("wait", str(older), str(newer)).code == 0
    assert _ts(_show(daemon, newer)["started_at"]) >= _ts(_show(daemon, older)["finished_at"])


def test_supersede_running_cancels_the_running_older_generation(
    daemon: Daemon, announcements: Announcements
) -> None:
    """--supersede-running: the running older job is cancelled and the new one runs."""
    older = _enqueue(
        daemon,
        "ASYNC_HANG",
        "--subject",
        "d.rs",
        "--payload",
        _payload(notify=str(announcements.path)),
    )
    announcements.next()
    newer = _enqueue(
        daemon,
        "ASYNC_HANG",
        "--subject",
        "d.rs",
        "--supersede-running",
        "--payload",
        _payload(hang=False),
    )
    assert daemon.semctl("wait", str(newer), "--timeout", "30").code == 0
    job = _show(daemon, older)
    assert job["state"] == "CANCELLED" and str(newer) in job["error"]["message"]


# ---------------------------------------------------------------- conditions


def test_require_charging_waits_on_battery_and_runs_on_ac(
    make_daemon: Callable[..., Daemon],
) -> None:
    """On battery a --require-charging job stays QUEUED (charging); restarted on AC, it runs."""
    daemon = make_daemon(SEMANTICA_POWER="battery")
    job_id = _enqueue(daemon, "NOOP", "--require-charging")
    other = _enqueue(daemon, "NOOP")
    assert daemon.semctl("wait", str(other)).code == 0
    job = _show(daemon, job_id)
    assert job["state"] == "QUEUED" and job["waiting_for"] == "charging"
    assert "AC power" in daemon.semctl("show", str(job_id)).out
    daemon.stop()
    daemon.start(SEMANTICA_POWER="ac")
    assert daemon.semctl("wait", str(job_id), "--timeout", "30").code == 0


def test_require_idle_waits_while_busy_and_runs_when_idle(
    make_daemon: Callable[..., Daemon],
) -> None:
    """--require-idle: with a 0 % threshold the CPU is never idle enough; at 100 % it runs."""
    busy = make_daemon(SEMANTICA_IDLE_CPU="0", SEMANTICA_IDLE_WINDOW="0")
    job_id = _enqueue(busy, "NOOP", "--require-idle")
    assert busy.semctl("wait", str(job_id), "--timeout", "2.5").code == 1
    assert _show(busy, job_id)["waiting_for"] == "idle"
    busy.stop()
    busy.start(SEMANTICA_IDLE_CPU="100")
    assert busy.semctl("wait", str(job_id), "--timeout", "30").code == 0


# ---------------------------------------------------------------- bad input


def test_bad_queue_commands_exit_2_and_change_nothing(daemon: Daemon) -> None:
    """A bad queue name or limit is refused with exit 2 and no queue is created."""
    for args in (
        ["pause", "bad name"],
        ["limit", "q", "-1"],
        ["limit", "q", "many"],
        ["resume", ""],
    ):
        result = daemon.semctl(*args)
        assert result.code == 2, (args, result.err)
    assert daemon.semctl("queues", "--json").json() == []


def test_an_enqueue_to_an_idle_engine_answers_with_the_job_as_it_was_enqueued(
    daemon: Daemon,
) -> None:
    """The job goes to an idle worker in the enqueue's own commit: the reply still shows it
    QUEUED and waiting for nothing (not held back by its own start: its subject running,
    its queue at its limit)."""
    daemon.semctl("limit", "--create", "one", "1")
    assert daemon.semctl("wait", str(_enqueue(daemon, "NOOP"))).code == 0  # workers idle
    for _ in range(3):
        reply = daemon.semctl("enqueue", "NOOP", "--queue", "one", "--subject", "s", "--json")
        job = reply.json()
        assert job["state"] == "QUEUED" and job["waiting_for"] is None, job
        assert daemon.semctl("wait", str(job["id"])).code == 0
