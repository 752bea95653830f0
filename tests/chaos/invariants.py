"""The invariants every chaos scenario ends with.

While the supervisor runs, only it touches SQL: the live checks go through the
client (``wait_many`` with a zero timeout reads jobs without waiting, ``status``
lists the workers). Once it has stopped (or died), the database is opened
read-only (``file:...?mode=ro``) for the rest.

* ``PRAGMA integrity_check`` is ``ok``;
* every acknowledged job exists, once, in exactly one known state;
* no job is RUNNING without a live worker running it;
* no job is DONE without the ledger's ``end`` line for its last attempt;
* no process of the supervisor is left behind.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from chaos_ledger import Ledger
from harness import Daemon

from semantica import Client
from semantica.errors import NoSuchJob
from semantica.models import Job, JobState

STATES = frozenset(state.value for state in JobState)
CHUNK = 2000  # ids per wait_many request (the supervisor takes at most 10,000)


@dataclass
class Checked:
    """What the checks saw."""

    jobs: int = 0
    by_state: Counter[str] = field(default_factory=Counter)
    lost: int = 0  # acknowledged jobs missing, or not DONE among those expected DONE

    def states(self) -> str:
        return " ".join(f"{state}={n}" for state, n in sorted(self.by_state.items()))


# ---------------------------------------------------------------------- live (through the socket)


def fetch(client: Client, ids: Iterable[int]) -> dict[int, Job]:
    """The jobs as they are now, by id, without waiting; fails naming a missing id."""
    wanted = list(dict.fromkeys(ids))
    found: dict[int, Job] = {}
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        try:
            jobs = client.wait_many(chunk, timeout=0)
        except NoSuchJob as exc:
            raise AssertionError(f"an acknowledged job is missing: {exc.message}") from None
        assert [job.id for job in jobs] == chunk, "wait_many answered other jobs than asked"
        found.update((job.id, job) for job in jobs)
    return found


def wait_all(client: Client, ids: Iterable[int], timeout: float) -> dict[int, Job]:
    """Wait until every job has finished (or ``timeout``); return them as they are then."""
    deadline = time.monotonic() + timeout
    wanted = list(dict.fromkeys(ids))
    for start in range(0, len(wanted), CHUNK):
        left = max(deadline - time.monotonic(), 0.0)
        client.wait_many(wanted[start : start + CHUNK], timeout=left)
    return fetch(client, wanted)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _without_worker(client: Client, jobs: Iterable[Job]) -> list[Job]:
    """The RUNNING jobs among ``jobs`` that no live worker of the supervisor runs."""
    running = [job for job in jobs if job.state == JobState.RUNNING]
    if not running:
        return []
    workers = {w.pid: w.job for w in client.status().workers}
    return [
        job
        for job in running
        if job.worker_pid is None
        or workers.get(job.worker_pid) != job.id
        or not _alive(job.worker_pid)
    ]


def check_live(
    daemon: Daemon, acked: Collection[int], settle: float = 2.0
) -> tuple[Checked, dict[int, Job]]:
    """Check the running supervisor: every acknowledged job is there, in one state, and
    each RUNNING one has a live worker.

    A job may be RUNNING on a worker that was killed a moment ago: the supervisor
    notices within a second. So a RUNNING job without a live worker is a violation
    only if it is still so, under the same worker and attempt, ``settle`` seconds on.
    """
    checked = Checked()
    with daemon.client() as client:
        jobs = fetch(client, acked)
        suspects = _without_worker(client, jobs.values())
        deadline = time.monotonic() + settle
        while suspects and time.monotonic() < deadline:
            time.sleep(0.05)
            now = fetch(client, [job.id for job in suspects])
            same = [
                now[job.id]
                for job in suspects
                if now[job.id].state == JobState.RUNNING
                and (now[job.id].worker_pid, now[job.id].attempts) == (job.worker_pid, job.attempts)
            ]
            suspects = _without_worker(client, same)
    assert not suspects, f"RUNNING jobs without a live worker: {suspects[:5]}"
    assert len(jobs) == len(set(acked))
    for job in jobs.values():
        assert job.state.value in STATES, f"job {job.id} is in no known state: {job.state!r}"
    checked.jobs = len(jobs)
    checked.by_state = Counter(job.state.value for job in jobs.values())
    return checked, jobs


# ---------------------------------------------------------------------- offline (read-only SQL)


def open_ro(db: Path) -> sqlite3.Connection:
    """The database, read-only: only for a stopped (or dead) supervisor."""
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def read_rows(db: Path) -> dict[int, tuple[str, int, str | None]]:
    """Every job as ``id -> (state, attempts, error_kind)``, after an integrity check."""
    conn = open_ro(db)
    try:
        (result,) = conn.execute("PRAGMA integrity_check").fetchone()
        assert result == "ok", f"integrity_check: {result}"
        rows = conn.execute("SELECT id, state, attempts, error_kind FROM jobs").fetchall()
    finally:
        conn.close()
    return {job_id: (state, attempts, kind) for job_id, state, attempts, kind in rows}


def check_offline(
    daemon: Daemon,
    acked: Collection[int],
    ledger: Ledger | None,
    *,
    running_allowed: bool = False,
    expect_done: Collection[int] | None = None,
) -> tuple[Checked, dict[int, tuple[str, int, str | None]]]:
    """Check the database of a supervisor that is not running.

    ``running_allowed``: it died (the next start re-queues what was RUNNING); after a
    clean stop no job may be RUNNING, since no worker is left to run it.
    ``expect_done``: these jobs must have ended DONE; any that did not counts as lost.
    """
    assert daemon.proc is None or daemon.proc.poll() is not None, "the supervisor still runs"
    rows = read_rows(daemon.home / "semantica.db")
    checked = Checked(jobs=len(rows))
    checked.by_state = Counter(state for state, _, _ in rows.values())
    missing = [job_id for job_id in acked if job_id not in rows]
    assert not missing, f"acknowledged jobs missing from the database: {missing[:10]}"
    for job_id, (state, attempts, _) in rows.items():
        assert state in STATES, f"job {job_id} is in no known state: {state!r}"
        assert running_allowed or state != "RUNNING", f"job {job_id} RUNNING with no supervisor"
        assert attempts >= 0, f"job {job_id} has {attempts} attempts"
    if ledger is not None:
        ledger.read()
        undone = [
            (job_id, attempts)
            for job_id, (state, attempts, _) in rows.items()
            if state == "DONE" and not ledger.ended(job_id, attempts)
        ]
        assert not undone, f"DONE jobs without their ledger end line (job, attempt): {undone[:10]}"
    if expect_done is not None:
        checked.lost = sum(1 for job_id in expect_done if rows[job_id][0] != "DONE")
    return checked, rows


# ---------------------------------------------------------------------- processes


def processes_of(home: Path) -> list[psutil.Process]:
    """Live (non-zombie) Semantica processes started for ``home``: supervisor, workers."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "semantica" not in " ".join(proc.info["cmdline"] or []):
                continue
            if proc.environ().get("SEMANTICA_HOME") != str(home):
                continue
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def wait_no_processes(home: Path, timeout: float = 5.0) -> list[psutil.Process]:
    """Wait until no process of ``home`` runs; return those still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = processes_of(home)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


# ---------------------------------------------------------------------- all of it


def check_after(
    daemon: Daemon,
    acked: Collection[int],
    ledger: Ledger | None,
    expect_done: Collection[int] | None = None,
) -> Checked:
    """The end of a scenario: live checks, a clean stop (exit 0), offline checks, no process.

    Returns the offline view (counts by state, lost).
    """
    if daemon.proc is not None and daemon.proc.poll() is None:
        check_live(daemon, acked)
        daemon.remember()
        code = daemon.stop(signal.SIGTERM, timeout=60)
        assert code == 0, f"semanticad exited {code} on SIGTERM:\n{daemon.log()[-3000:]}"
    checked, _ = check_offline(daemon, acked, ledger, expect_done=expect_done)
    left = wait_no_processes(daemon.home)
    assert not left, f"processes left behind: {left}"
    return checked
