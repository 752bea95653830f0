"""A full disk under the worker pool: it neither spins nor gives up while the store refuses
its commits, and once there is space again the jobs go on, without a restart.

The pool's workers run in-process (test_pool's rig pieces) and trio's autojump
clock drives the minutes a disk stays full. The store is real; only its
COMMITs fail, with SQLITE_FULL, while the test says the disk is full: every
write of the supervisor then goes into a batch (group commit, as in the
supervisor) that is rolled back.
"""

from __future__ import annotations

import signal
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
import trio.testing
from test_pool import GRACE, HEARTBEAT_TIMEOUT, InProcessPool, TrioWallClock

from semantica.models import JobSpec, JobState
from semantica.supervisor.committer import Committer
from semantica.supervisor.events import JobEvents
from semantica.supervisor.joblogs import JobLogs
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.scheduler import FAULT_DELAY_MAX, Scheduler
from semantica.supervisor.store import Lease
from semantica.supervisor.store.sqlite import SQLiteStore

#: Trio seconds any one test may take: far more than the longest needs.
LIMIT_S = 2_000.0


class Disk:
    """The store's connection; its COMMITs fail with SQLITE_FULL while ``full``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.full = False
        self.refused = 0  # commits refused so far

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if self.full and sql.lstrip().upper().startswith("COMMIT"):
            self.refused += 1
            exc = sqlite3.OperationalError("database or disk is full")
            exc.sqlite_errorname = "SQLITE_FULL"  # type: ignore[misc]
            raise exc
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class FullRig:
    """Store (group commit), scheduler, lifecycle and an in-process pool."""

    def __init__(self, tmp_path: Path, nursery: trio.Nursery, size: int) -> None:
        self.store = SQLiteStore(tmp_path / "semantica.db", TrioWallClock())
        self.disk = Disk(self.store._conn)
        self.store._conn = self.disk  # type: ignore[assignment]
        self.committer = Committer(self.store)
        self.events = JobEvents()
        self.scheduler = Scheduler(self.store)
        self.jobs = JobLifecycle(
            self.store, JobLogs(tmp_path / "logs", 1 << 20), self.events, self.scheduler
        )
        self.pool = InProcessPool(
            nursery,
            size=size,
            handlers=(),
            scheduler=self.scheduler,
            jobs=self.jobs,
            cancel_grace=GRACE,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            durable=self.committer.durable,
        )
        self._started: defaultdict[int, trio.Event] = defaultdict(trio.Event)
        self.jobs.started = self._on_started  # type: ignore[method-assign]

    async def enqueue(self, **spec: Any) -> int:
        job_id = self.jobs.enqueue([JobSpec(**spec)]).jobs[0].id
        await self.committer.durable()
        return job_id

    async def running(self, job_id: int) -> None:
        await self._started[job_id].wait()

    async def finished(self, job_id: int) -> None:
        if self.store.state(job_id) in (JobState.QUEUED, JobState.RUNNING):
            await self.events.all_finished({job_id}).wait()

    def _on_started(self, lease: Lease, worker_pid: int) -> None:
        JobLifecycle.started(self.jobs, lease, worker_pid)
        self._started[lease.job_id].set()


@asynccontextmanager
async def full_rig(tmp_path: Path, size: int = 1) -> AsyncIterator[FullRig]:
    async with trio.open_nursery() as workers, trio.open_nursery() as services:
        r = FullRig(tmp_path, workers, size)
        await services.start(r.committer.run)
        await services.start(r.scheduler.run_timer)
        await services.start(r.pool.run)
        try:
            with trio.fail_after(LIMIT_S):
                yield r
        finally:
            r.disk.full = False
            with trio.CancelScope(shield=True), trio.move_on_after(LIMIT_S):
                await r.pool.stop("test over")
            services.cancel_scope.cancel()
            workers.cancel_scope.cancel()
            r.jobs.logs.close_all()
            r.store.close()


async def test_idle_workers_back_off_while_the_disk_is_full_and_start_when_it_is_not(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A job comes due while the disk is full: its lease cannot be committed, so it stays
    QUEUED. Idle workers then try again less and less often (up to every few seconds),
    not ten times a second for as long as the disk stays full; once there is space, the
    job starts within that interval, with no restart."""
    async with full_rig(tmp_path, size=2) as r:
        job_id = await r.enqueue(type="UP_SLEEP", payload={"seconds": 0}, delay=10)
        r.disk.full = True
        await trio.sleep(10 + 120)  # due at 10 s; the disk stays full two minutes more
        assert r.store.state(job_id) == JobState.QUEUED
        # Backing off from 0.1 s to FAULT_DELAY_MAX: a handful of tries, then one
        # every FAULT_DELAY_MAX (120 s / 5 s = 24) for each of the two workers.
        assert 1 <= r.disk.refused <= 2 * (10 + 120 / FAULT_DELAY_MAX), r.disk.refused
        r.disk.full = False
        space_back = trio.current_time()
        await r.finished(job_id)
        assert trio.current_time() - space_back <= FAULT_DELAY_MAX + 0.5
        assert r.store.state(job_id) == JobState.DONE


async def test_a_job_whose_worker_died_on_a_full_disk_runs_again_once_there_is_space(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A worker is killed while the disk is full, and the disk stays full for minutes:
    the end of its job cannot be recorded meanwhile. Once there is space it is, without
    a restart: the job is retried and ends DONE, and the job queued behind it (a queue
    that runs one job at a time) runs too. Until then the job stays RUNNING, as the
    store last had it."""
    async with full_rig(tmp_path) as r:
        r.store.set_queue("one", limit=1)
        first = await r.enqueue(
            type="UP_SLEEP", queue="one", payload={"seconds": 20}, max_attempts=2, backoff=0
        )
        await r.running(first)
        behind = await r.enqueue(type="UP_SLEEP", queue="one", payload={"seconds": 0})
        r.disk.full = True
        r.pool.processes[0].send_signal(signal.SIGKILL)
        await trio.sleep(600)  # ten minutes of full disk
        assert r.store.state(first) == JobState.RUNNING
        assert r.store.state(behind) == JobState.QUEUED
        r.disk.full = False
        space_back = trio.current_time()
        with trio.fail_after(FAULT_DELAY_MAX + 20 + 10):  # recorded, the 20 s run, slack
            await r.finished(first)
            await r.finished(behind)
        job = r.store.get(first)
        assert job.state == JobState.DONE and job.attempts == 2, job.error
        assert r.store.get(behind).state == JobState.DONE
        assert trio.current_time() - space_back >= 20  # the second attempt ran whole
