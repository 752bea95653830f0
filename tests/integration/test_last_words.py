"""A stopped job keeps its last words: what it writes or logs while it stops is in its log.

Real supervisors. An exec command stopped by a cancel or its timeout gets SIGTERM
and the grace to exit; what it writes until it exits, and what is still in its
pipe then, reaches the job's log. At the end of a drain a job is stopped as by a
cancel: its handler is told, and what it logs as it stops is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import Announcements, Daemon

pytestmark = pytest.mark.slow

MakeDaemon = Callable[..., Daemon]
#: The cancel grace of these supervisors: far more than the commands need to stop.
GRACE_S = 10.0

#: A command that, on SIGTERM, says so, takes a moment, says more, and exits 1.
TRAPPING = (
    'trap "echo got TERM; sleep 0.5; echo after sleep; exit 1" TERM; echo begin; sleep 100 & wait'
)
#: On SIGTERM, more output than a pipe holds (about 110 KB) before it exits.
FLOODING = 'trap "seq 1 20000; echo last; exit 1" TERM; echo begin; sleep 100 & wait'
#: A child in a session of its own (no SIGTERM for it) holds the output pipe open.
HOLDING = 'setsid sleep 300 & trap "echo got TERM; exit 1" TERM; echo begin; sleep 100 & wait'


@pytest.mark.parametrize("stop", ["cancel", "timeout"])
@pytest.mark.parametrize(
    ("command", "last_words"),
    [
        (TRAPPING, ["got TERM", "after sleep"]),
        (FLOODING, [*(str(n) for n in range(1, 20001)), "last"]),
        (HOLDING, ["got TERM"]),
    ],
    ids=["trap", "flood", "holder"],
)
def test_a_stopped_commands_output_until_it_exits_is_in_its_log(
    make_daemon: MakeDaemon, short_tmp: Path, stop: str, command: str, last_words: list[str]
) -> None:
    """``semctl logs`` of an exec job stopped by ``semctl cancel`` or ``--timeout``: what
    the command wrote after its SIGTERM, until it exited within the grace, follows
    ``begin``. The job ends when the command exits, though a child of it still holds
    the pipe. (It used to show ``begin`` alone: the output was no longer read.)"""
    daemon = make_daemon(SEMANTICA_CANCEL_GRACE=str(GRACE_S))
    timeout = ["--timeout", "2"] if stop == "timeout" else []
    enqueued = daemon.semctl(
        "enqueue", "exec", "--max-attempts", "1", *timeout, "--", "sh", "-c", command
    )
    assert enqueued.code == 0, enqueued
    job_id = enqueued.out.strip()
    with daemon.client() as client:
        # The command runs, its trap set: "begin" is in its log.
        assert next(iter(client.follow(int(job_id)))) == "begin"
    if stop == "cancel":
        assert daemon.semctl("cancel", job_id).code == 0
    waited = daemon.semctl("wait", job_id, "--timeout", "60")
    assert waited.code != 0, waited  # it ended, and not DONE
    show = daemon.semctl("show", job_id, "--json").json()
    assert show["state"] == ("CANCELLED" if stop == "cancel" else "FAILED"), show
    logs = daemon.semctl("logs", job_id)
    assert logs.code == 0, logs
    lines = logs.out.splitlines()
    assert lines[0] == "begin", lines[:5]
    assert lines[1 : 1 + len(last_words)] == last_words, (lines[:5], lines[-5:])


@pytest.mark.parametrize("how", ["drain timeout", "shutdown --now"])
def test_jobs_stopped_at_the_end_of_a_drain_are_told_and_their_last_words_kept(
    make_daemon: MakeDaemon, announcements: Announcements, short_tmp: Path, how: str
) -> None:
    """The end of a drain (its timeout passed, or ``semctl shutdown --now``) stops the
    running jobs as a cancel would: a plain handler sees ``ctx.cancelled`` and finishes
    what it does as it stops, an async one is cancelled and runs its ``finally``, a
    command gets SIGTERM. What they log as they stop is in their logs, each goes back to
    the queue with its attempt given back (``interrupted``), and the supervisor exits as
    soon as they have stopped, not at the end of the grace. (The plain one's thread used
    to be abandoned at once as its worker exited, and the others' last lines were lost.)"""
    drain = "1" if how == "drain timeout" else "60"
    daemon = make_daemon(
        "--workers", "3", "--drain-timeout", drain, SEMANTICA_CANCEL_GRACE=str(GRACE_S)
    )
    markers = {"STOP_WORDS": short_tmp / "plain", "ASYNC_STOP_WORDS": short_tmp / "async"}
    notify = str(announcements.path)
    with daemon.client() as client:
        jobs = {
            type_: client.enqueue(type_, {"marker": str(marker), "notify": notify}, queue="q").id
            for type_, marker in markers.items()
        }
        for _ in jobs:
            announcements.next()
        jobs["exec"] = client.enqueue("exec", {"argv": ["sh", "-c", TRAPPING]}, queue="q").id
        assert next(iter(client.follow(jobs["exec"]))) == "begin"  # its trap is set
        client.pause("q")  # (after the restart below, they stay in the queue to be looked at)
    assert daemon.proc is not None
    daemon.remember()
    began = time.monotonic()
    stopped = daemon.semctl("shutdown", *(["--now"] if how == "shutdown --now" else []))
    assert stopped.code == 0, stopped
    assert daemon.proc.wait(60) == 0, daemon.log()[-3000:]
    took = time.monotonic() - began
    assert took < float(drain) + GRACE_S / 2, f"exited {took:.1f} s after the shutdown"
    for type_, marker in markers.items():
        assert marker.exists(), f"{type_}: the handler did not finish stopping"
    ends = [e for e in daemon.events() if e.get("job_id") and e["event"].startswith("job ")]
    interrupted = [e["job_id"] for e in ends if e["event"] == "job interrupted"]
    assert sorted(interrupted) == sorted(jobs.values()), ends
    daemon.start()
    logs = {
        "STOP_WORDS": ["ready", "saw cancel"],
        "ASYNC_STOP_WORDS": ["ready", "async finally"],
        "exec": ["begin", "got TERM", "after sleep"],
    }
    for type_, job_id in jobs.items():
        job = daemon.semctl("show", str(job_id), "--json").json()
        assert job["state"] == "QUEUED" and job["attempts"] == 0, job
        assert job["error"]["kind"] == "interrupted", job
        assert daemon.semctl("logs", str(job_id)).out.splitlines() == logs[type_], type_
