"""``semctl schedule list|show|pause|resume|remove|run``, ``tail`` and ``top`` print the
same, and exit the same, on the fast path (fast_path.py, no typer) as through the typer commands,
against a real supervisor: plain and ``--json``, and for a schedule or job that is not
there (``top``'s figures move from one run to the next: compared as words, numbers
aside); and ``tail`` without ID ends quietly on Ctrl-C.

The typer way is forced by running cli.py's ``main`` directly. The schedules here do not
fire while the test runs (a nightly cron, a paused interval), so two runs of a reading
command see the same schedule; what a change itself changes (``updated_at``, a new job's
id) is compared apart.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from typing import Any

import pytest
from harness import SEMCTL, Daemon, Result
from lines import Lines

pytestmark = pytest.mark.slow

#: The typer CLI itself, named ``semctl`` as the console script is.
TYPER = (
    "import sys; sys.argv[0] = 'semctl'; from semantica.control.cli import main; sys.exit(main())"
)


def typer_way(daemon: Daemon, *args: str) -> Result:
    run = subprocess.run(
        [sys.executable, "-c", TYPER, *args],
        env=daemon.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Result(run.returncode, run.stdout, run.stderr)


def both(daemon: Daemon, *args: str) -> tuple[Result, Result]:
    """``semctl ARGS`` on the fast path, then through typer."""
    return daemon.semctl(*args), typer_way(daemon, *args)


def _same_but(fast: Result, slow: Result, *fields: str) -> dict[str, Any]:
    """Both ended 0 with one JSON document, equal but for ``fields``; the fast one's."""
    assert (fast.code, fast.err, slow.code, slow.err) == (0, "", 0, "")
    a, b = json.loads(fast.out), json.loads(slow.out)
    assert {k: v for k, v in a.items() if k not in fields} == {
        k: v for k, v in b.items() if k not in fields
    }
    return dict(a)


def test_each_schedule_command_prints_and_exits_the_same_both_ways(daemon: Daemon) -> None:
    with daemon.client() as client:
        client.pause("held", create=True)  # its jobs stay queued: the same both ways
        client.schedule(
            "nightly",
            "exec",
            {"argv": ["true"]},
            cron="0 3 * * *",
            tz="Europe/Berlin",
            queue="held",
        )
        client.schedule("odd", "[red]MARKUP", {"path": "[red]x"}, every="1h", paused=True)
        for name in ("gone-a", "gone-b"):
            client.schedule(name, "NOOP", None, every="1h", paused=True)
        client.run_schedule("nightly")  # a run to list
    reading = [
        ("schedule", "list"),
        ("schedule", "show", "nightly"),
        ("schedule", "show", "nightly", "--runs", "0"),
        ("schedule", "show", "odd"),
    ]
    for args in reading:
        for form in (args, (*args, "--json")):
            fast, slow = both(daemon, *form)
            assert fast == slow, form
            assert fast.code == 0 and fast.out, form
    # Each change twice, once each way; then its --json, once each way.
    for verb, done in (("pause", "paused"), ("resume", "resumed")):
        fast, slow = both(daemon, "schedule", verb, "nightly")
        assert fast == slow and fast.code == 0, verb
        assert fast.out.startswith(f"{done} nightly: cron 0 3 * * * Europe/Berlin, next ")
        fast, slow = both(daemon, "schedule", verb, "nightly", "--json")
        assert _same_but(fast, slow, "updated_at")["paused"] == (verb == "pause")
    fast, slow = both(daemon, "schedule", "run", "nightly")
    assert (fast.code, fast.err, slow.code, slow.err) == (0, "", 0, "")
    assert int(slow.out) == int(fast.out) + 1
    fast, slow = both(daemon, "schedule", "run", "nightly", "--json")
    job = _same_but(fast, slow, "id", "created_at", "run_after")
    assert (job["schedule"], job["state"]) == ("nightly", "QUEUED")
    fast, slow = (
        daemon.semctl("schedule", "remove", "gone-a"),
        typer_way(daemon, "schedule", "remove", "gone-b"),
    )
    assert (fast.code, fast.out, fast.err) == (0, "removed gone-a\n", "")
    assert (slow.code, slow.out, slow.err) == (0, "removed gone-b\n", "")
    # Not there (any more): one line, exit 5, both ways alike.
    for args in (
        ("schedule", "show", "gone-a"),
        ("schedule", "pause", "gone-a", "--json"),
        ("schedule", "resume", "gone-a"),
        ("schedule", "run", "gone-a"),
        ("schedule", "remove", "gone-a"),
        ("schedule", "show", "nightly", "--runs", "1000"),
    ):
        fast, slow = both(daemon, *args)
        assert fast == slow, args
        assert fast.code in (2, 5) and fast.out == "" and fast.err.startswith("semctl: "), args


def test_tail_prints_and_exits_the_same_both_ways(daemon: Daemon) -> None:
    with daemon.client() as client:
        done = client.enqueue("LINES", payload={"count": 3})
        failed = client.enqueue("LINES", payload={"count": 2, "fail": True}, max_attempts=1)
        for job in (done, failed):
            client.wait(job.id, timeout=30)
    for job, code in ((done, 0), (failed, 1)):
        for form in (("tail", str(job.id)), ("tail", str(job.id), "--json")):
            fast, slow = both(daemon, *form)
            assert fast == slow, form
            assert fast.code == code and fast.out.count("line ") >= 2, form
        fast, slow = both(daemon, "tail", str(job.id))
        assert fast.err.startswith(f"--- job {job.id} "), fast.err  # how it ended, on stderr
    for form in (("tail", "4242"), ("tail", "0")):
        fast, slow = both(daemon, *form)
        assert fast == slow, form
        assert fast.code in (2, 5) and fast.out == "" and fast.err.startswith("semctl: ")


def test_tail_without_id_ends_quietly_on_ctrl_c(daemon: Daemon) -> None:
    events = Lines([SEMCTL, "tail"], daemon.env())
    try:
        with daemon.client() as client:
            while events.poll(0.5) is None:  # until the stream is open
                client.enqueue("NOOP", queue="probe")
        events.proc.send_signal(signal.SIGINT)
        assert events.proc.wait(15) == 0
    finally:
        events.close()


def _words(text: str) -> list[str]:
    """Each line's words, every number as N (uptime, rates and CPU move between runs)."""
    return [" ".join(re.sub(r"[0-9][0-9.:,]*", "N", line).split()) for line in text.splitlines()]


def test_top_prints_and_exits_the_same_both_ways(daemon: Daemon) -> None:
    assert daemon.semctl("pause", "--create", "later").code == 0
    fast, slow = both(daemon, "top", "--once")
    assert (fast.code, fast.err, slow.code, slow.err) == (0, "", 0, "")
    assert _words(fast.out) == _words(slow.out) and "later" in fast.out
    fast, slow = both(daemon, "top", "--json")
    assert (fast.code, fast.err, slow.code, slow.err) == (0, "", 0, "")
    assert json.loads(fast.out).keys() == json.loads(slow.out).keys()
    fast, slow = both(daemon, "top")  # into a pipe: one frame, as --once
    assert (fast.code, slow.code) == (0, 0) and _words(fast.out) == _words(slow.out)
