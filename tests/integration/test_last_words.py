"""A stopped job keeps its last words: what it writes or logs while it stops is in its log.

Real supervisors. An exec command stopped by a cancel or its timeout gets SIGTERM
and the grace to exit; what it writes until it exits, and what is still in its
pipe then, reaches the job's log.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from harness import Daemon

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
