"""The chaos scenarios, with their sizes as arguments.

``test_chaos.py`` runs them at full size (``make chaos``); ``test_chaos_smoke.py``
runs a few of them small, in ``make test``. Each scenario drives a real
supervisor (or, for injected SQL faults, the store in-process), asserts its
figures, ends with the invariant checks of :mod:`invariants`, and returns a
one-line summary: what it did and the counts.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import trio
import trio.testing
from chaos_ledger import Ledger
from harness import Daemon, write_locked
from invariants import (
    check_after,
    check_live,
    check_offline,
    fetch,
    open_ro,
    processes_of,
    read_rows,
    wait_all,
)

from semantica import Client
from semantica.clock import FakeClock
from semantica.errors import StoreBusy, StoreError, StoreFull, Unreachable
from semantica.models import TERMINAL_STATES, JobError, JobSpec, JobState
from semantica.protocol import JobFinished, WorkerInfo
from semantica.supervisor.committer import Committer
from semantica.supervisor.events import JobEvents
from semantica.supervisor.joblogs import JobLogs
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.scheduler import Scheduler
from semantica.supervisor.store import Lease, StaleLease, prepare
from semantica.supervisor.store.sqlite import SQLiteStore

MakeDaemon = Callable[..., Daemon]


# ---------------------------------------------------------------------- helpers


def job_spec(
    rng: random.Random, ledger: Path, seconds: tuple[float, float], **options: Any
) -> dict[str, Any]:
    """A ledger job sleeping a random time in ``seconds``, blocking or async at random."""
    return {
        "type": rng.choice(("CHAOS_SLEEP", "CHAOS_ASYNC")),
        "payload": {"ledger": str(ledger), "seconds": round(rng.uniform(*seconds), 3)},
        "backoff": 0,
        **options,
    }


def oldest_busy(workers: list[WorkerInfo]) -> WorkerInfo | None:
    """The busy worker that has lived longest, if any is busy.

    The oldest: a slot whose workers die young backs off before respawning (crash
    loop protection), which is not what the kill scenarios measure.
    """
    busy = []
    for worker in workers:
        if worker.state == "busy" and worker.job is not None:
            with contextlib.suppress(psutil.Error):
                busy.append((psutil.Process(worker.pid).create_time(), worker.pid, worker))
    return min(busy)[2] if busy else None


def busy_worker(client: Client, timeout: float = 2.0) -> WorkerInfo | None:
    """The oldest busy worker (None if none is busy for ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        victim = oldest_busy(client.status().workers)
        if victim is not None or time.monotonic() > deadline:
            return victim
        time.sleep(0.005)


def wait_full(client: Client, size: int, gone: int, timeout: float = 10.0) -> float:
    """Seconds until the pool lists ``size`` ready workers again, ``gone`` not among them."""
    began = time.monotonic()
    while True:
        pids = {w.pid for w in client.status().workers}
        if len(pids) == size and gone not in pids:
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise AssertionError(f"the pool did not get back to {size} workers in {timeout} s")
        time.sleep(0.01)


def wait_gone(procs: list[psutil.Process], timeout: float) -> float:
    """Seconds until every process of ``procs`` is gone (zombies count as gone)."""
    began = time.monotonic()
    while True:
        alive = []
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        if not alive:
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise AssertionError(f"orphans still running {timeout} s after the supervisor died")
        time.sleep(0.005)


def events(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    """The supervisor's log events (of its latest start) called ``name``."""
    return [e for e in daemon.events() if e.get("event") == name]


def attempts_spent(rows: dict[int, tuple[str, int, str | None]], ids: list[int]) -> int:
    return sum(rows[job_id][1] - 1 for job_id in ids)


# ---------------------------------------------------------------------- worker kills


def worker_kills(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    *,
    jobs: int,
    kills: int,
    every: float,
    workers: int,
    seconds: tuple[float, float] = (0.02, 0.2),
    refill_limit: float = 1.0,
    seed: int = 1,
) -> str:
    """``jobs`` jobs while the oldest busy worker is SIGKILLed every ``every`` s, ``kills`` times.

    Nothing is lost, every interrupted job runs again on another worker, and the
    pool is back to full size within ``refill_limit`` of each kill.
    """
    rng = random.Random(seed)
    began = time.monotonic()
    d = make_daemon(workers=workers)
    ledger = Ledger(ledger_path)
    specs = [job_spec(rng, ledger_path, seconds, max_attempts=10) for _ in range(jobs)]
    victims: list[WorkerInfo] = []
    killed_at: list[float] = []
    appeared: list[float] = []  # when each new worker was first listed, in order
    with d.client() as client:
        acked = [
            job.id
            for start in range(0, len(specs), 1000)  # a request's frame is at most 1 MiB
            for job in client.enqueue_many(specs[start : start + 1000])
        ]
        seen = {w.pid for w in client.status().workers}
        start = time.monotonic()
        # One loop polls the pool every 10 ms, noting each new worker, and kills on
        # the clock. The k-th replacement to appear answers the k-th kill.
        while len(appeared) < kills:
            now = time.monotonic()
            listed = client.status().workers
            for worker in listed:
                if worker.pid not in seen:
                    seen.add(worker.pid)
                    appeared.append(now)
            if len(victims) < kills and now >= start + len(victims) * every:
                victim = oldest_busy(listed)
                if victim is not None:
                    os.kill(victim.pid, signal.SIGKILL)
                    victims.append(victim)
                    killed_at.append(now)
                else:
                    assert now < start + len(victims) * every + 2, (
                        f"no busy worker for kill {len(victims) + 1} of {kills}: the jobs "
                        "ran out; more jobs or fewer workers"
                    )
            assert now < start + kills * every + 30, "killed workers were not replaced"
            time.sleep(0.01)
        refills = [up - down for up, down in zip(appeared, killed_at, strict=True)]
        assert wait_full(client, workers, gone=-1) < 5
        kill_s = time.monotonic() - start
        wait_all(client, acked, timeout=jobs * seconds[1] / workers * 3 + 60)
    checked = check_after(d, acked, ledger, expect_done=acked)
    rows = read_rows(d.home / "semantica.db")
    ledger.read()
    # The job each victim was running when it died: its last ledger line is a start.
    # (A victim may also die after its job was sent but before the handler wrote
    # its start line, or between jobs: status named its job; it ended DONE too.)
    last: dict[int, tuple[int, int, str]] = {}
    for entry in ledger.entries:
        last[entry.pid] = (entry.job, entry.attempt, entry.what)
    interrupted = [
        (v.pid, *last[v.pid][:2]) for v in victims if v.pid in last and last[v.pid][2] == "start"
    ]
    rerun = 0
    for pid, job_id, attempt in interrupted:
        later = [s for s in ledger.started(job_id) if s.attempt > attempt and s.pid != pid]
        assert later, f"job {job_id}, interrupted on worker {pid}, never ran again"
        rerun += 1
    assert all(rows[v.job][0] == "DONE" for v in victims if v.job is not None)
    spent = attempts_spent(rows, acked)
    # A kill spends the attempt of the job it interrupts (also one whose handler had
    # just written its end line but not yet reported); a kill between jobs spends none.
    assert len(interrupted) <= spent <= kills, (len(interrupted), spent, kills)
    assert max(refills) < refill_limit, f"pool refilled in {max(refills):.2f} s after a kill"
    assert checked.lost == 0
    return (
        f"worker kills: jobs={jobs} workers={workers} kills={kills} in {kill_s:.1f}s "
        f"interrupted={len(interrupted)} re-run={rerun} attempts-spent={spent} "
        f"lost={checked.lost} pool full again after a kill: median "
        f"{statistics.median(refills):.2f}s max {max(refills):.2f}s "
        f"time={time.monotonic() - began:.1f}s"
    )


# ---------------------------------------------------------------------- SIGSTOP


def stopped_worker(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    *,
    heartbeat: float,
    job_seconds: float,
    others: int,
) -> str:
    """A worker SIGSTOPped mid-job is killed after the heartbeat timeout; its job runs to DONE
    on another worker; a completion under the old lease is refused."""
    began = time.monotonic()
    d = make_daemon("--heartbeat-timeout", str(heartbeat), workers=2)
    ledger = Ledger(ledger_path)
    payload = {"ledger": str(ledger_path)}
    with d.client() as client:
        target = client.enqueue(
            "CHAOS_SLEEP", {**payload, "seconds": job_seconds}, backoff=0, max_attempts=3
        ).id
        rest = [
            job.id
            for job in client.enqueue_many(
                [{"type": "CHAOS_ASYNC", "payload": {**payload, "seconds": 0.05}}] * others
            )
        ]
        first = ledger.wait_for(lambda lg: lg.started(target), what="the start").started(target)[0]
        os.kill(first.pid, signal.SIGSTOP)
        # Watch for the re-run while the stopped worker may still exist: it must be
        # gone before its job runs again, or two copies would run.
        stopped = time.monotonic()
        killed_after = None
        while True:
            second = ledger.read().started(target)[1:]
            try:
                gone = psutil.Process(first.pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                gone = True
            if gone and killed_after is None:
                killed_after = time.monotonic() - stopped
            assert not second or killed_after is not None, "the job re-ran beside its worker"
            if second:
                break
            assert time.monotonic() - stopped < heartbeat + 10, (
                "the stopped worker was never killed"
            )
            time.sleep(0.005)
        jobs = wait_all(client, [target, *rest], timeout=60)
    assert killed_after is not None
    assert heartbeat * 0.7 <= killed_after <= heartbeat + 1.5, killed_after
    assert second[0].pid != first.pid and second[0].attempt == 2
    assert jobs[target].state == JobState.DONE and jobs[target].attempts == 2
    kills = events(d, "worker stopped answering; killing it")
    assert [(e["worker_pid"], e["job_id"]) for e in kills] == [(first.pid, target)]
    checked = check_after(d, [target, *rest], ledger, expect_done=[target, *rest])
    assert not ledger.ended(target, 1) and ledger.ended(target, 2)
    refused = late_completions_refused(d.home / "semantica.db", target)
    assert checked.lost == 0
    return (
        f"stopped worker: jobs={1 + others} SIGSTOP=1 killed after {killed_after:.2f}s "
        f"(heartbeat timeout {heartbeat}s) job DONE on attempt 2 elsewhere, "
        f"late completions refused={refused} lost={checked.lost} "
        f"time={time.monotonic() - began:.1f}s"
    )


def late_completions_refused(db: Path, job_id: int) -> int:
    """On a copy of a stopped supervisor's database, a worker's late report is refused.

    First the scenario's own job: every lease before its current one is refused
    (one of them is the stopped worker's). Then the scenario's sequence replayed
    on a new job: lease, the worker is given up on (worker_lost, retry at once), the
    job is leased again, and the first lease's completion arrives: refused, while
    the second attempt stays RUNNING and can still complete.

    Returns how many late completions were refused.
    """
    copy = db.with_name("late-completion.db")
    source = open_ro(db)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
        (current,) = source.execute("SELECT lease_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        source.close()
        target.close()
    store = SQLiteStore(copy)
    refused = 0
    try:
        before = store.get(job_id)
        for lease_id in range(1, current):
            old = Lease(lease_id, job_id, before.type, before.queue, b"{}", 1, 3, None, 0)
            try:
                store.complete(old, b'"late"')
            except StaleLease:
                refused += 1
            else:
                raise AssertionError(f"a completion under old lease {lease_id} was taken")
        assert store.get(job_id) == before
        (new,) = store.insert(prepare([JobSpec(type=before.type, payload={})])).jobs
        first = store.lease(1)
        assert first is not None and first.job_id == new.id
        store.fail(first, _lost(first), retry_at=0.0)
        second = store.lease(2)
        assert second is not None and second.job_id == new.id and second.attempt == 2
        try:
            store.complete(first, b'"late"')
        except StaleLease:
            refused += 1
        else:
            raise AssertionError("a completion under the old lease was taken")
        job = store.get(new.id)
        assert job.state == JobState.RUNNING and job.attempts == 2 and job.result is None
        store.complete(second, b'"on time"')
        assert store.get(new.id).result == "on time"
    finally:
        store.close()
    return refused


def _lost(lease: Lease) -> JobError:
    return JobError("worker_lost", f"worker of lease {lease.lease_id} stopped answering")


# ---------------------------------------------------------------------- supervisor kills


class Enqueuer(threading.Thread):
    """A client enqueueing one job per request until the supervisor goes away.

    ``acked`` holds the ids whose enqueue returned: acknowledged, so committed.
    """

    def __init__(
        self, home: Path, ledger: Path, seed: int, seconds: tuple[float, float], pace: float
    ) -> None:
        super().__init__(daemon=True)
        self.home, self.ledger, self.seconds, self.pace = home, ledger, seconds, pace
        self.rng = random.Random(seed)
        self.acked: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        client = Client(home=self.home)
        try:
            while True:
                spec = job_spec(self.rng, self.ledger, self.seconds)
                job = client.enqueue(spec.pop("type"), spec.pop("payload"), **spec)
                self.acked.append(job.id)
                time.sleep(self.pace)
        except Unreachable:
            pass  # the supervisor died: what it acknowledged is in self.acked
        except BaseException as exc:  # noqa: BLE001  # reported by the test
            self.error = exc
        finally:
            client.close()


def supervisor_kills(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    *,
    rounds: int,
    load: tuple[float, float] = (1.0, 3.0),
    clients: int = 2,
    pace: float = 0.005,
    seconds: tuple[float, float] = (0.0, 0.01),
    orphan_limit: float = 1.5,
    seed: int = 2,
) -> str:
    """The supervisor SIGKILLed 1-3 s into an enqueue load, ``rounds`` times.

    The load: ``clients`` clients, each enqueueing one job per request with
    ``pace`` seconds between requests (so that the workers keep up and the run
    stays short), jobs of ``seconds``.

    After each kill: its workers are gone (no orphans), the database is intact and
    holds every acknowledged job; after each restart the jobs that were RUNNING
    are re-queued without spending their attempt. At the end every job is DONE,
    each on its first attempt (no worker ever failed).
    """
    rng = random.Random(seed)
    began = time.monotonic()
    d = make_daemon(workers=2)
    ledger = Ledger(ledger_path)
    acked: list[int] = []
    running_at_kill = requeued = running = 0
    orphan_s: list[float] = []
    for round_ in range(rounds):
        if round_:
            d.start()
            found = events(d, "re-queued jobs that were running when the last supervisor stopped")
            count = found[0]["count"] if found else 0
            assert count == running, f"{running} jobs were RUNNING; {count} re-queued"
            requeued += count
            check_live(d, acked)
        enqueuers = [
            Enqueuer(d.home, ledger_path, rng.randrange(1 << 30), seconds, pace)
            for _ in range(clients)
        ]
        for e in enqueuers:
            e.start()
        time.sleep(rng.uniform(*load))
        tree = d.process_tree()
        d.stop(signal.SIGKILL)
        orphan_s.append(wait_gone(tree[1:], timeout=10))
        for e in enqueuers:
            e.join(30)
            assert not e.is_alive(), "an enqueuer hung after the supervisor died"
            assert e.error is None, f"an enqueue failed other than by the kill: {e.error!r}"
            acked += e.acked
        assert not processes_of(d.home), "processes of the killed supervisor are left"
        _, rows = check_offline(d, acked, None, running_allowed=True)
        running = sum(1 for state, _, _ in rows.values() if state == "RUNNING")
        running_at_kill += running
    d.start()
    found = events(d, "re-queued jobs that were running when the last supervisor stopped")
    assert (found[0]["count"] if found else 0) == running
    requeued += running
    with d.client() as client:
        wait_all(client, acked, timeout=len(acked) * seconds[1] + 120)
    checked = check_after(d, acked, ledger, expect_done=acked)
    rows = read_rows(d.home / "semantica.db")
    respent = [job_id for job_id in acked if rows[job_id][1] != 1]
    assert not respent, f"jobs that spent more than one attempt: {respent[:10]}"
    assert max(orphan_s) <= orphan_limit, f"workers outlived the supervisor by {max(orphan_s)} s"
    assert checked.lost == 0
    return (
        f"supervisor kills: kills={rounds} acknowledged={len(acked)} "
        f"(all present after every restart) RUNNING at kill={running_at_kill} "
        f"re-queued={requeued} workers gone within {max(orphan_s):.2f}s "
        f"lost={checked.lost} time={time.monotonic() - began:.1f}s"
    )


# ---------------------------------------------------------------------- SIGTERM


def sigterm_drain(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    *,
    drain: float,
    grace: float,
    workers: int,
    short_s: float,
    long_s: float,
    queued: int,
) -> str:
    """SIGTERM with short and long jobs running: the short ones end DONE, the long one goes
    back to the queue without spending its attempt, nothing new starts, exit 0 within
    the drain timeout + the cancel grace (the long one, a plain handler that does not
    look at its stop, gets it) + 1 s."""
    began = time.monotonic()
    d = make_daemon(
        "--drain-timeout", str(drain), workers=workers, SEMANTICA_CANCEL_GRACE=str(grace)
    )
    ledger = Ledger(ledger_path)
    payload = {"ledger": str(ledger_path)}
    with d.client() as client:
        # max_attempts 1: were the attempt spent, the job would end FAILED.
        long = client.enqueue("CHAOS_SLEEP", {**payload, "seconds": long_s}, max_attempts=1).id
        shorts = [
            client.enqueue(kind, {**payload, "seconds": short_s}).id
            for kind in ["CHAOS_SLEEP", "CHAOS_ASYNC"] * (workers // 2)
        ][: workers - 1]
        ledger.wait_for(
            lambda lg: all(lg.started(job_id) for job_id in [long, *shorts]), what="the starts"
        )
        waiting = [
            job.id
            for job in client.enqueue_many([{"type": "CHAOS_ASYNC", "payload": payload}] * queued)
        ]
    assert d.proc is not None
    d.remember()
    sent = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    code = d.proc.wait(drain + 30)
    took = time.monotonic() - sent
    acked = [long, *shorts, *waiting]
    check_after(d, acked, ledger)
    rows = read_rows(d.home / "semantica.db")
    assert code == 0, f"exit status {code}"
    assert all(rows[job_id][:2] == ("DONE", 1) for job_id in shorts), [rows[j] for j in shorts]
    assert rows[long] == ("QUEUED", 0, "interrupted"), rows[long]
    assert ledger.started(long) and not ledger.ended(long, 1)
    assert all(rows[job_id][:2] == ("QUEUED", 0) for job_id in waiting)
    assert not any(ledger.started(job_id) for job_id in waiting), "a job started while draining"
    assert took <= drain + grace + 1.0, (
        f"exited {took:.2f} s after SIGTERM (drain timeout {drain} s, cancel grace {grace} s)"
    )
    return (
        f"SIGTERM drain: running={len(shorts)} short ({short_s}s, DONE) + 1 long ({long_s}s, "
        f"re-queued, attempts=0) queued={queued} (not started) exit={code} "
        f"in {took:.2f}s (drain {drain}s + grace {grace}s) lost=0 "
        f"time={time.monotonic() - began:.1f}s"
    )


# ---------------------------------------------------------------------- poison


def poison(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    *,
    normal: int,
    max_attempts: int = 3,
    seconds: tuple[float, float] = (0.0, 0.02),
    seed: int = 3,
) -> str:
    """A job that kills its worker (``os._exit``) beside ``normal`` jobs: it fails after
    exactly ``max_attempts`` worker deaths; the others all end DONE on their first attempt."""
    rng = random.Random(seed)
    began = time.monotonic()
    workers = 2
    d = make_daemon(workers=workers)
    ledger = Ledger(ledger_path)
    with d.client() as client:
        bad = client.enqueue(
            "CHAOS_POISON", {"ledger": str(ledger_path)}, max_attempts=max_attempts, backoff=0
        ).id
        others = [
            job.id
            for job in client.enqueue_many(
                [job_spec(rng, ledger_path, seconds) for _ in range(normal)]
            )
        ]
        jobs = wait_all(client, [bad, *others], timeout=normal * seconds[1] + 60)
        deadline = time.monotonic() + 5
        while len(client.status().workers) < workers:
            assert time.monotonic() < deadline, "the pool did not get back to full size"
            time.sleep(0.01)
    job = jobs[bad]
    assert job.state == JobState.FAILED and job.attempts == max_attempts, job
    assert job.error is not None and job.error.kind == "worker_lost", job.error
    checked = check_after(d, [bad, *others], ledger, expect_done=others)
    starts = ledger.started(bad)
    assert [s.attempt for s in starts] == list(range(1, max_attempts + 1)), starts
    assert len({s.pid for s in starts}) == max_attempts, "a poisoned worker ran a job again"
    assert not any(ledger.ended(bad, n) for n in range(1, max_attempts + 1))
    rows = read_rows(d.home / "semantica.db")
    assert attempts_spent(rows, others) == 0, "a normal job lost an attempt to the poison"
    assert checked.lost == 0
    return (
        f"poison: jobs={normal} + 1 poison, worker deaths={len(starts)} poison FAILED after "
        f"{job.attempts} attempts (worker_lost), others DONE={normal - checked.lost} "
        f"lost={checked.lost} time={time.monotonic() - began:.1f}s"
    )


# ---------------------------------------------------------------------- injected SQL faults


class FaultyConnection:
    """A ``sqlite3.Connection`` whose ``execute`` raises ``fault`` on call number ``fail_at``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.calls = 0
        self.fail_at: int | None = None
        self.fault: Fault | None = None
        self.statements: list[str] = []

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.calls += 1
        self.statements.append(" ".join(sql.split()[:2]))
        if self.calls == self.fail_at:
            assert self.fault is not None
            if self.fault.rolls_back and self._conn.in_transaction:
                self._conn.execute("ROLLBACK")  # as SQLite does itself on some errors
            raise self.fault.make()
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@dataclass(frozen=True)
class Fault:
    """An injected SQLite error and the StoreError the store must turn it into.

    ``rolls_back``: SQLite has rolled the whole transaction back by the time the
    error is raised, as it may for SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY.
    """

    name: str
    message: str
    errorname: str | None
    expected: type[StoreError]
    rolls_back: bool = False

    def make(self) -> sqlite3.OperationalError:
        exc = sqlite3.OperationalError(self.message)
        if self.errorname is not None:
            exc.sqlite_errorname = self.errorname  # type: ignore[misc]
        return exc


FAULTS = (
    Fault("io", "disk I/O error", "SQLITE_IOERR", StoreError),
    Fault("busy", "database is locked", "SQLITE_BUSY", StoreBusy),
    Fault("full", "database or disk is full", "SQLITE_FULL", StoreFull),
    Fault("bare", "injected fault", None, StoreError),
    Fault("full-rolled-back", "database or disk is full", "SQLITE_FULL", StoreFull, True),
)
OPS = ("enqueue", "lease", "complete")


class StorePath:
    """The store and lifecycle of a supervisor, in-process, driving one job's path:
    enqueue (a batch: one job superseding a queued one, one plain) -> lease -> complete.

    ``group``: writes are committed in groups as the supervisor does when it has a
    Committer: each operation waits until its writes are durable.
    """

    def __init__(self, db: Path, group: bool) -> None:
        self.db = db
        self.store = SQLiteStore(db, FakeClock())
        self.conn = FaultyConnection(self.store._conn)
        self.store._conn = self.conn  # type: ignore[assignment]
        (self.older,) = self.store.insert(prepare([JobSpec(type="T", subject="s")])).jobs
        self.committer = Committer(self.store) if group else None
        scheduler = Scheduler(self.store)
        self.jobs = JobLifecycle(
            self.store, JobLogs(db.parent / "logs", 1 << 20), JobEvents(), scheduler
        )
        self.lease: Lease | None = None
        self.ids: list[int] = []

    async def run(self, op: str) -> None:
        """One operation, returning once its writes are durable (as a request's reply does)."""
        if op == "enqueue":
            result = self.jobs.enqueue(
                [JobSpec(type="T", subject="s", payload={"n": 1}), JobSpec(type="U", payload=[2])]
            )
            ids = [job.id for job in result.jobs]
        elif op == "lease":
            lease = self.store.lease(4242)
            assert lease is not None and lease.job_id == self.ids[0]
        else:
            assert self.lease is not None
            report = JobFinished(lease=self.lease.lease_id, result=b'{"ok": true}')
            self.jobs.finished(self.lease, report, 0.01)
        if self.committer is not None:
            error: StoreError | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.committer.run)
                try:
                    await self.committer.durable()
                except StoreError as exc:
                    error = exc
                nursery.cancel_scope.cancel()
            if error is not None:
                raise error
        if op == "enqueue":
            self.ids = ids
        elif op == "lease":
            self.lease = lease

    async def idle(self) -> None:
        """Let the committer run as it would in a live supervisor, until nothing happens."""
        if self.committer is not None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.committer.run)
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()

    def snapshot(self) -> list[Any]:
        """What is committed (another connection's view)."""
        conn = open_ro(self.db)
        try:
            return [
                conn.execute("SELECT * FROM jobs ORDER BY id").fetchall(),
                conn.execute("SELECT * FROM queues ORDER BY name").fetchall(),
                conn.execute("SELECT * FROM sqlite_sequence").fetchall(),
            ]
        finally:
            conn.close()

    def check_end(self) -> None:
        assert not self.conn.in_transaction, "a transaction is left open"
        older = self.store.get(self.older.id)
        new, plain = (self.store.get(job_id) for job_id in self.ids)
        assert older.state == JobState.SUPERSEDED and older.superseded_by == new.id
        assert new.state == JobState.DONE and new.result == {"ok": True} and new.attempts == 1
        assert plain.state == JobState.QUEUED and plain.payload == [2]
        conn = open_ro(self.db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            rows = conn.execute("SELECT id, state FROM jobs ORDER BY id").fetchall()
            assert rows == [
                (self.older.id, "SUPERSEDED"),
                (new.id, "DONE"),
                (plain.id, "QUEUED"),
            ], rows
        finally:
            conn.close()

    def close(self) -> None:
        self.store.close()


async def injected_faults(
    tmp: Path,
    *,
    group: bool = False,
    faults: tuple[Fault, ...] = FAULTS,
    only: Callable[[str, int], bool] | None = None,
) -> str:
    """An sqlite3.OperationalError injected at each statement of enqueue -> lease -> complete.

    Each time: the operation raises the matching StoreError, the database is as
    before it, the same operation succeeds once the fault clears, the path ends
    as it should and integrity_check is ok. ``group``: the writes are committed
    in groups, as a supervisor with a Committer does. Runs under ``trio.run``
    (the lifecycle reads trio's clock).

    No transaction may be left open after the failure: it would hold the write
    lock until some later write.
    """
    began = time.monotonic()
    runs = 0
    problems: list[str] = []
    mode = "group commit" if group else "one transaction per write"
    dry = StorePath(tmp / "dry.db", group)
    counts: dict[str, list[str]] = {}
    for op in OPS:
        before = dry.conn.calls
        await dry.run(op)
        counts[op] = dry.conn.statements[before:]
    dry.check_end()
    dry.close()
    for fault in faults:
        for op_index, op in enumerate(OPS):
            for n, statement in enumerate(counts[op], 1):
                if only is not None and not only(op, n):
                    continue
                runs += 1
                where = tmp / f"{fault.name}-{op}-{n}"
                where.mkdir()
                path = StorePath(where / "semantica.db", group)
                at = f"{fault.name} at {op} #{n} ({statement})"
                try:
                    for earlier in OPS[:op_index]:
                        await path.run(earlier)
                    before = path.snapshot()
                    path.conn.fail_at, path.conn.fault = path.conn.calls + n, fault
                    try:
                        await path.run(op)
                    except StoreError as exc:
                        if type(exc) is not fault.expected:
                            problems.append(f"{at}: raised {type(exc).__name__}")
                    else:
                        raise AssertionError(f"{at}: the operation did not fail")
                    await path.idle()
                    path.conn.fail_at = None
                    if path.snapshot() != before:
                        problems.append(f"{at}: the failed operation changed the database")
                    if path.conn.in_transaction:
                        problems.append(f"{at}: a transaction (and the write lock) was left open")
                    try:
                        for later in OPS[op_index:]:
                            await path.run(later)
                        path.check_end()
                    except (StoreError, AssertionError) as exc:
                        problems.append(f"{at}: once the fault cleared: {exc!r}")
                finally:
                    path.close()
                shutil.rmtree(where)
    summary = (
        f"injected SQL faults ({mode}): statements="
        + ", ".join(f"{op} {len(counts[op])}" for op in OPS)
        + f" kinds={len(faults)} runs={runs}: typed StoreError, db unchanged, retry ok, "
        f"integrity ok, no transaction left open; problems={len(problems)} "
        f"time={time.monotonic() - began:.1f}s"
    )
    if problems:
        raise AssertionError(summary + "\n" + "\n".join(problems))
    return summary


# ---------------------------------------------------------------------- disk full


def _fill(daemon: Daemon, ledger_path: Path, limit_jobs: int) -> tuple[list[int], StoreError]:
    """Enqueue (one job per request, a padded payload) until the store refuses; the
    acknowledged ids and the refusal."""
    acked: list[int] = []
    pad = "x" * 400
    with daemon.client() as client:
        for _ in range(limit_jobs):
            try:
                job = client.enqueue(
                    "CHAOS_ASYNC", {"ledger": str(ledger_path), "pad": pad}, queue="chaos"
                )
            except StoreError as exc:
                return acked, exc
            acked.append(job.id)
    raise AssertionError(f"{limit_jobs} jobs enqueued and the store never filled up")


def _after_full(
    daemon: Daemon, ledger_path: Path, acked: list[int], refusal: StoreError
) -> tuple[bool, str]:
    """The checks while the store is full: earlier jobs intact, reads work, enqueues keep
    being refused cleanly. Returns (the refusal said "full" as documented, semctl's text)."""
    with daemon.client() as client:
        jobs = fetch(client, acked)
        assert all(job.state == JobState.QUEUED for job in jobs.values())
        assert all(job.payload["pad"] == "x" * 400 for job in jobs.values())
        assert client.status().counts["QUEUED"] >= len(acked)
        assert len(client.list(queue="chaos", limit=10)) == min(10, len(acked))
    status = daemon.semctl("status", "--json")
    assert status.code == 0, status.err
    listed = daemon.semctl("list", "--json", "--limit", "5")
    assert listed.code == 0 and len(listed.json()) == min(5, len(acked)), listed.err
    payload = json.dumps({"ledger": str(ledger_path)})
    again = daemon.semctl("enqueue", "CHAOS_ASYNC", "--queue", "chaos", "--payload", payload)
    assert again.code == 1, (again.code, again.err)
    full = isinstance(refusal, StoreFull) and "disk is full" in again.err
    return full, again.err.strip()


def _restart_and_run(daemon: Daemon, ledger: Ledger, acked: list[int]) -> Any:
    """Restart without the limit: every acknowledged job is there and runs to DONE."""
    daemon.start()
    with daemon.client() as client:
        client.resume("chaos")
        wait_all(client, acked, timeout=len(acked) * 0.05 + 60)
    return check_after(daemon, acked, ledger, expect_done=acked)


def disk_full_rlimit(
    make_daemon: MakeDaemon, ledger_path: Path, *, margin: int, limit_jobs: int = 20_000
) -> str:
    """RLIMIT_FSIZE a little above the supervisor's files after start: enqueues until the
    store refuses; earlier jobs intact, reads work; after a restart without the limit
    every acknowledged job is there and runs.

    (The limit is set on the running supervisor with prlimit, which is what a
    preexec_fn would do, but after start so that it sits just above its files.)
    """
    began = time.monotonic()
    d = make_daemon(workers=1)
    ledger = Ledger(ledger_path)
    with d.client() as client:
        client.pause("chaos")  # nothing runs: the supervisor's own log stays small
    assert d.proc is not None and d.output is not None
    files = [d.home / "semantica.db", d.home / "semantica.db-wal", d.output]
    limit = max(f.stat().st_size for f in files if f.exists()) + margin
    resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (limit, limit))
    acked, refusal = _fill(d, ledger_path, limit_jobs)
    full, said = _after_full(d, ledger_path, acked, refusal)
    assert d.proc.poll() is None, "the supervisor died of the file size limit"
    d.remember()
    code = d.stop(signal.SIGTERM)
    assert code == 0, f"exit status {code} after the disk filled up"
    check_offline(d, acked, ledger)
    checked = _restart_and_run(d, ledger, acked)
    summary = (
        f"disk full (RLIMIT_FSIZE={limit // 1024} KiB): acknowledged={len(acked)} then refused "
        f"({type(refusal).__name__}: {refusal.message[-60:]!r}), reads ok, restart: all DONE "
        f"lost={checked.lost} time={time.monotonic() - began:.1f}s"
    )
    assert checked.lost == 0
    if not full:
        raise AssertionError(
            f"{summary}\nA file size limit made the store fail, but the refusal is "
            f"{type(refusal).__name__} and semctl says {said!r}, not store_full / 'disk is full'"
        )
    return summary


@contextlib.contextmanager
def small_filesystem(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only); unmounted afterwards."""
    where.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        check=True,
        capture_output=True,
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = Path(f"/tmp/chaos-mount-probe-{os.getpid()}")
    try:
        with small_filesystem(probe, "64k"):
            return True
    except (subprocess.CalledProcessError, OSError):
        return False
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


def disk_full_small_fs(
    make_daemon: MakeDaemon, ledger_path: Path, mount_at: Path, *, size_kib: int
) -> str:
    """The state directory on a tiny tmpfs: enqueues until the disk is full (store_full,
    "disk is full"); earlier jobs intact, reads work; once the file system has grown
    the restarted supervisor has every acknowledged job and runs them."""
    began = time.monotonic()
    ledger = Ledger(ledger_path)  # outside the small file system
    with small_filesystem(mount_at, f"{size_kib}k"):
        d = make_daemon(workers=1, home=mount_at)
        with d.client() as client:
            client.pause("chaos")
        acked, refusal = _fill(d, ledger_path, 100_000)
        full, said = _after_full(d, ledger_path, acked, refusal)
        assert d.proc is not None and d.proc.poll() is None, "the supervisor died of a full disk"
        d.remember()
        code = d.stop(signal.SIGTERM)
        assert code == 0, f"exit status {code} after the disk filled up"
        check_offline(d, acked, ledger)
        subprocess.run(
            ["mount", "-o", "remount,size=64m", str(mount_at)], check=True, capture_output=True
        )
        checked = _restart_and_run(d, ledger, acked)
    summary = (
        f"disk full (tmpfs of {size_kib} KiB): acknowledged={len(acked)} then refused "
        f"({type(refusal).__name__}: {said!r}), reads ok, restart: all DONE "
        f"lost={checked.lost} time={time.monotonic() - began:.1f}s"
    )
    assert checked.lost == 0
    assert full, summary
    return summary


# ---------------------------------------------------------------------- write lock


def timed(run: Callable[[], Any]) -> tuple[Any, float]:
    began = time.monotonic()
    result = run()
    return result, time.monotonic() - began


def write_lock(
    make_daemon: MakeDaemon, ledger_path: Path, *, busy_timeout: float = 5.0, jobs: int = 20
) -> str:
    """Another process holds the database's write lock longer than the busy timeout: an
    enqueue meanwhile is refused with store_busy ("locked") after the busy timeout,
    reads still answer, a job ending meanwhile is recorded once the lock is gone, and
    afterwards the supervisor works as before."""
    began = time.monotonic()
    d = make_daemon(workers=2)
    ledger = Ledger(ledger_path)
    payload = {"ledger": str(ledger_path)}
    spec = {"type": "CHAOS_ASYNC", "payload": payload}
    with d.client() as client:
        acked = [job.id for job in client.enqueue_many([spec] * jobs)]
        wait_all(client, acked, timeout=30)
        across = client.enqueue("CHAOS_SLEEP", {**payload, "seconds": 1.0}).id
        acked.append(across)
        ledger.wait_for(lambda lg: lg.started(across), what="the job across the lock")
        with write_locked(d.home / "semantica.db") as locked:
            refused, refused_after = timed(
                lambda: d.semctl("enqueue", "CHAOS_ASYNC", "--payload", json.dumps(payload))
            )
            assert refused.code == 1 and "locked" in refused.err, (refused.code, refused.err)
            status, status_s = timed(lambda: d.semctl("status", "--json"))
            assert status.code == 0, status.err
            listed, list_s = timed(lambda: d.semctl("list", "--json", "--limit", "3"))
            assert listed.code == 0, listed.err
            try:
                client.enqueue("CHAOS_ASYNC", payload)
            except StoreBusy:
                pass
            else:
                raise AssertionError("an enqueue was acknowledged while another held the lock")
            held = time.monotonic() - locked
        assert held > busy_timeout
        acked += [job.id for job in client.enqueue_many([spec] * jobs)]
        done = wait_all(client, acked, timeout=60)
        assert done[across].state == JobState.DONE and done[across].attempts == 1
    checked = check_after(d, acked, ledger, expect_done=acked)
    assert refused_after >= busy_timeout - 0.2, f"refused after {refused_after:.2f} s"
    assert checked.lost == 0
    return (
        f"write lock: held {held:.1f}s by another process (busy timeout {busy_timeout}s): "
        f"enqueue refused store_busy after {refused_after:.1f}s; reads answered in "
        f"{status_s:.1f}s (status) and {list_s:.1f}s (list); a job ending meanwhile DONE after "
        f"the release; jobs={len(acked)} lost={checked.lost} time={time.monotonic() - began:.1f}s"
    )


def write_lock_heartbeat(
    make_daemon: MakeDaemon, ledger_path: Path, *, heartbeat: float, stalls: int
) -> str:
    """A job runs (its worker beating) while another process holds the write lock and
    enqueues wait out the busy timeout, longer than the heartbeat timeout, up to
    ``stalls`` times: the worker was never silent, so it must not be killed.

    (When the supervisor's writes sat in SQLite's busy wait on its event loop, the
    loop stalled 5 s each time; after such a stall the watchdog and the reader of
    the worker's queued heartbeats woke in the same scheduling batch, in random
    order, so one stall showed the fault about half the time; hence several.)
    """
    began = time.monotonic()
    d = make_daemon("--heartbeat-timeout", str(heartbeat), workers=1)
    ledger = Ledger(ledger_path)
    payload = {"ledger": str(ledger_path)}
    killed: list[dict[str, Any]] = []
    with d.client() as client:
        job_id = client.enqueue("CHAOS_ASYNC", {**payload, "seconds": 600}).id
        ledger.wait_for(lambda lg: lg.started(job_id), what="the start")
        stall = 0
        with write_locked(d.home / "semantica.db"):
            while stall < stalls and not killed:
                stall += 1
                refused = d.semctl("enqueue", "CHAOS_ASYNC", "--payload", json.dumps(payload))
                assert refused.code == 1 and "locked" in refused.err, (refused.code, refused.err)
                killed = events(d, "worker stopped answering; killing it")
        client.cancel(job_id)  # it would run for ten minutes
        job = client.get(job_id)
    checked = check_after(d, [job_id], ledger)
    summary = (
        f"write lock vs heartbeat: heartbeat timeout {heartbeat}s, {stall} enqueue(s) "
        f"refused after waiting 5 s for the lock: beating workers killed={len(killed)} (the job's "
        f"attempts: {job.attempts}) lost={checked.lost} time={time.monotonic() - began:.1f}s"
    )
    if killed:
        raise AssertionError(
            f"{summary}\nThe supervisor's own stall counted as the worker's silence: {killed}"
        )
    assert job.attempts == 1
    return summary


# ---------------------------------------------------------------------- soak


def soak(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    *,
    jobs: int,
    wave: int,
    kills_per_minute: float,
    warmup: int,
    workers: int = 2,
    rss_growth: float = 0.10,
    fd_slack: int = 2,
) -> str:
    """``jobs`` no-op jobs in waves, a busy worker SIGKILLed ``kills_per_minute`` times a
    minute: supervisor RSS flat within ``rss_growth`` after ``warmup`` jobs, open fds
    stable, no zombies, nothing lost."""
    began = time.monotonic()
    d = make_daemon(workers=workers)
    ledger = Ledger(ledger_path)
    assert d.proc is not None
    sup = psutil.Process(d.proc.pid)
    at_start = sup.memory_info().rss
    interval = 60.0 / kills_per_minute
    next_kill = time.monotonic() + interval
    acked: list[int] = []
    kills = 0
    baseline: tuple[int, int] | None = None
    spec = {"type": "CHAOS_ASYNC", "payload": {"ledger": str(ledger_path)}, "backoff": 0}
    with d.client() as client:
        while len(acked) < jobs:
            ids = [job.id for job in client.enqueue_many([spec] * min(wave, jobs - len(acked)))]
            acked += ids
            while True:
                left = max(next_kill - time.monotonic(), 0.0)
                if all(job.state in TERMINAL_STATES for job in client.wait_many(ids, left)):
                    break
                if time.monotonic() >= next_kill:
                    victim = busy_worker(client, timeout=1.0)
                    if victim is not None:
                        os.kill(victim.pid, signal.SIGKILL)
                        kills += 1
                    next_kill += interval
            if baseline is None and len(acked) >= warmup:
                baseline = (sup.memory_info().rss, sup.num_fds())
        wait_all(client, acked, timeout=60)
        wait_full(client, workers, gone=-1)
        final = (sup.memory_info().rss, sup.num_fds())
        deadline = time.monotonic() + 2
        while zombies := [c for c in sup.children() if c.status() == psutil.STATUS_ZOMBIE]:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert baseline is not None
    checked = check_after(d, acked, ledger, expect_done=acked)
    growth = final[0] / baseline[0] - 1
    mib = 1 << 20
    summary = (
        f"soak: jobs={len(acked)} kills={kills} ({kills_per_minute}/min) "
        f"RSS {at_start / mib:.1f} at start, {baseline[0] / mib:.1f} after {warmup} warm-up "
        f"jobs -> {final[0] / mib:.1f} MiB at the end ({growth:+.1%}) "
        f"fds {baseline[1]} -> {final[1]} zombies={len(zombies)} "
        f"lost={checked.lost} time={time.monotonic() - began:.1f}s"
    )
    assert checked.lost == 0
    assert kills > 0, f"no worker was killed: the soak ended before the first kill ({summary})"
    assert not zombies, f"zombies: {zombies}"
    assert growth <= rss_growth, summary
    assert abs(final[1] - baseline[1]) <= fd_slack, summary
    return summary
