"""Chaos scenarios of things the supervisor does not own: its stderr's reader, the wall clock.

* ``unread_stderr``: the supervisor's stderr is a pipe nobody reads (a paused
  pager, a parent that never reads): it keeps serving, and jobs run;
* ``clock_jump``: the supervisor's wall clock jumps an hour ahead (an NTP step,
  or what a suspend looks like to the wall clock): the jobs due in the skipped
  hour start within a second, delays, ``--at`` and retry backoffs alike; none
  due later starts early.

The clock is moved for the supervisor (and its workers) alone, with
libfaketime (``LD_PRELOAD``, Debian package ``libfaketime``, installed by
``make chaos``); its monotonic clock is left alone, as a real jump leaves it.
Each scenario returns a one-line summary, as those of ``chaos_scenarios.py``.
"""

from __future__ import annotations

import glob
import os
import select
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chaos_ledger import Ledger
from chaos_scenarios import MakeDaemon, events
from invariants import check_after, wait_all

from semantica.models import JobState
from semantica.protocol import WorkerInfo

#: Where Debian puts libfaketime (any architecture).
LIBFAKETIME = "/usr/lib/*/faketime/libfaketime.so.1"


def libfaketime() -> str | None:
    """The path of libfaketime, if it is installed."""
    found = sorted(glob.glob(LIBFAKETIME))
    return found[0] if found else None


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not seen on stderr within {timeout} s"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 1 << 16)
            assert chunk, "stderr closed"
            data += chunk
    return data


def _all_idle(listed: list[WorkerInfo], size: int) -> bool:
    return len(listed) == size and all(w.state == "idle" for w in listed)


# ---------------------------------------------------------------------- stderr


def unread_stderr(
    make_daemon: MakeDaemon, ledger_path: Path, *, jobs: int, status_limit: float = 1.0
) -> str:
    """``jobs`` jobs while the supervisor's stderr is a pipe nobody reads.

    Every ``status`` meanwhile answers within ``status_limit``; every job ends
    DONE; daemon.log has every line; the metric counts what stderr missed, and
    once the pipe is read again a line says how many.
    """
    began = time.monotonic()
    read_end, write_end = os.pipe()
    try:
        d = make_daemon(stderr=write_end)
    finally:
        os.close(write_end)  # the supervisor has its own copy
    ledger = Ledger(ledger_path)
    try:
        with d.client() as client:
            payload = {"ledger": str(ledger_path)}
            specs = [{"type": "CHAOS_ASYNC", "payload": payload}] * jobs
            acked = [
                job.id
                for start in range(0, jobs, 1000)
                for job in client.enqueue_many(specs[start : start + 1000])
            ]
            slowest = 0.0
            calls = 0
            deadline = time.monotonic() + 120
            while True:
                asked = time.monotonic()
                status = client.status()
                slowest = max(slowest, time.monotonic() - asked)
                calls += 1
                if status.counts["DONE"] == jobs:
                    break
                assert time.monotonic() < deadline, f"jobs did not finish: {status.counts}"
                time.sleep(0.05)
            wait_all(client, acked, timeout=60)
            text = client.metrics()
        [dropped] = [
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("semantica_log_lines_dropped_total ")
        ]
        assert dropped > 0, "stderr missed nothing: the pipe never filled"
        log_lines = (d.home / "daemon.log").read_text().count('"event":"job done"')
        assert log_lines == jobs, f"daemon.log has {log_lines} of {jobs} job ends"
        assert slowest < status_limit, f"status took {slowest:.2f} s with stderr unread"
        # The reader comes back: the queued lines, then how many were dropped.
        _read_until(read_end, b"log lines dropped", timeout=30)
    finally:
        os.close(read_end)
    checked = check_after(d, acked, ledger, expect_done=acked)
    assert checked.lost == 0
    return (
        f"unread stderr: jobs={jobs} all DONE, {calls} status calls, slowest {slowest:.3f}s; "
        f"stderr missed {dropped:.0f} lines (daemon.log has all), then said so; "
        f"lost={checked.lost} time={time.monotonic() - began:.1f}s"
    )


# ---------------------------------------------------------------------- the wall clock


def clock_jump(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    clock_file: Path,
    *,
    jump: float = 3600.0,
    start_limit: float = 1.0,
    later_watch: float = 3.0,
    workers: int = 4,
) -> str:
    """The supervisor's wall clock jumps ``jump`` seconds ahead.

    Before the jump: a job with ``--delay`` half the jump, one with ``--at``
    three quarters into it, one waiting for its retry (the first attempt killed
    its worker; backoff 600 s, at most 720 s with jitter), and one with
    ``--delay`` twice the jump. After it, the first three start within
    ``start_limit``; the last does not start in ``later_watch`` seconds and
    still waits for its time. The pool is full and idle at the jump, so that each
    due job has a worker at once.
    """
    lib = libfaketime()
    assert lib is not None, "libfaketime is not installed"
    began = time.monotonic()
    clock_file.write_text("+0\n")
    d = make_daemon(
        LD_PRELOAD=lib,
        FAKETIME_TIMESTAMP_FILE=str(clock_file),
        FAKETIME_NO_CACHE="1",  # the file is read at every clock read: the jump is seen at once
        FAKETIME_DONT_FAKE_MONOTONIC="1",  # awake time is left alone, as a real jump leaves it
        workers=workers,
    )
    ledger = Ledger(ledger_path)
    payload = {"ledger": str(ledger_path)}
    with d.client() as client:
        delayed = client.enqueue("CHAOS_ASYNC", payload, delay=jump / 2).id
        at = datetime.now(UTC) + timedelta(seconds=jump * 3 / 4)
        timed = client.enqueue("CHAOS_ASYNC", payload, at=at).id
        later = client.enqueue("CHAOS_ASYNC", payload, delay=jump * 2).id
        retried = client.enqueue("CHAOS_POISON", payload, backoff=600, max_attempts=2).id
        ledger.wait_for(lambda lg: lg.started(retried), what="the poison job's first attempt")
        deadline = time.monotonic() + 30
        while (job := client.get(retried)).waiting_for != "retry_backoff":
            assert time.monotonic() < deadline, f"no retry pending: {job}"
            time.sleep(0.05)
        while not _all_idle(client.status().workers, workers):  # the killed one replaced
            assert time.monotonic() < deadline, "the pool did not get back to full size"
            time.sleep(0.05)
        assert not any(ledger.read().started(j) for j in (delayed, timed, later))
        clock_file.write_text(f"+{jump:.0f}\n")
        jumped = time.monotonic()
        due = {"--delay": delayed, "--at": timed, "retry": retried}
        starts: dict[str, float] = {}
        while len(starts) < len(due):
            ledger.read()
            now = time.monotonic()
            for what, job_id in due.items():
                if what not in starts and len(ledger.started(job_id)) == (
                    2 if what == "retry" else 1
                ):
                    starts[what] = now - jumped
            assert now - jumped < 30, f"jobs due in the skipped hour did not start: {starts}"
            time.sleep(0.005)
        # The supervisor's own clock did jump (a new job is stamped an hour ahead).
        stamped = client.enqueue("CHAOS_ASYNC", payload).created_at
        assert stamped - datetime.now(UTC) > timedelta(seconds=jump * 0.9), stamped
        time.sleep(later_watch)
        waiting = client.get(later)
        assert not ledger.read().started(later), "a job due after the skipped hour started"
        assert waiting.state == JobState.QUEUED and waiting.waiting_for == "run_after"
        wait_all(client, [delayed, timed, retried], timeout=60)
        acked = [delayed, timed, later, retried]
    kills = events(d, "job failed")
    checked = check_after(d, acked, ledger, expect_done=[delayed, timed])
    assert checked.lost == 0
    slowest = max(starts.values())
    assert slowest <= start_limit, f"started {starts} s after the jump (limit {start_limit} s)"
    return (
        f"wall-clock jump of {jump:.0f}s: due in the skipped hour started after "
        + ", ".join(f"{what} {s:.2f}s" for what, s in starts.items())
        + f"; due after it still waiting {later_watch:.0f}s on; failed={len(kills)} "
        f"lost={checked.lost} time={time.monotonic() - began:.1f}s"
    )
