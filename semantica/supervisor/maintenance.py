"""Maintenance: old jobs and their logs go, the WAL is folded in, free space given back.

Every ``SEMANTICA_MAINTENANCE_HOURS`` (24) and on ``semctl maintenance``:

1. delete finished jobs (DONE, FAILED, CANCELLED, SUPERSEDED) that finished more
   than ``SEMANTICA_RETENTION_DAYS`` ago, with their log files;
2. forget queues that have no job left and no setting (not paused, no limit);
   delete log files that belong to no job;
3. flush the store's journal (SQLite: ``PRAGMA wal_checkpoint(TRUNCATE)``);
4. give free space back when there is much (SQLite: over 10 % of the file,
   ``incremental_vacuum`` a few hundred pages at a time), or rewrite the whole
   store when forced (``VACUUM``);
5. check the store's integrity (SQLite: ``PRAGMA quick_check``).

On a store shared by several nodes one of them runs it at a time
(:meth:`StoreUpkeep.lead`): a run that finds another under way does nothing
and says so (``skipped``).

All of it runs in a thread, on the store's upkeep handle
(:class:`~semantica.supervisor.store.StoreUpkeep`), in short steps. On a store
whose write steps hold off its other writers (:attr:`StoreUpkeep.exclusive`:
SQLite has one write lock), each step that writes (a batch of deletes, a
flush, a compacting step, a full rewrite for as long as it takes) runs with the
:class:`StoreGate` closed: the supervisor's writers wait for it there, off the
event loop, and go first between two steps, so dispatch and the socket keep
going.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
import trio

from semantica.protocol import MaintenanceReport
from semantica.supervisor.joblogs import Logs
from semantica.supervisor.store import JobStore, StoreUpkeep

log = structlog.get_logger("semantica.maintenance")

#: Finished jobs deleted per transaction (a few ms each).
DELETE_BATCH = 500

T = TypeVar("T")


class StoreGate:
    """Closed while a VACUUM holds the store: writers on the event loop wait here."""

    def __init__(self) -> None:
        self._open = trio.Event()
        self._open.set()

    @property
    def is_open(self) -> bool:
        """Whether a writer may pass now (the scheduler leases in a waker's step only then)."""
        return self._open.is_set()

    async def passage(self) -> None:
        """Return at once, or when the gate opens again.

        An open gate is not a checkpoint: every write of every request passes
        here, and the callers reach one soon after (a reply, a commit wait).
        """
        if not self._open.is_set():
            await self._open.wait()

    @asynccontextmanager
    async def closed(self) -> AsyncIterator[None]:
        self._open = trio.Event()
        try:
            yield
        finally:
            self._open.set()


class Maintenance:
    """Runs maintenance on a timer and on request, one run at a time."""

    def __init__(
        self,
        store: JobStore,
        logs: Logs,
        gate: StoreGate,
        retention_days: float,
        interval_hours: float,
    ) -> None:
        self.store = store
        self.logs = logs
        self.gate = gate
        self.retention_days = retention_days
        self.interval_hours = interval_hours
        self.last_run: datetime | None = None
        self._lock = trio.Lock()

    async def run_periodically(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run every ``interval_hours`` (the first run one interval after start)."""
        task_status.started()
        while True:
            await trio.sleep(self.interval_hours * 3600)
            try:
                await self.run_once()
            except Exception:
                log.exception("maintenance failed")

    async def run_once(self, force_vacuum: bool = False) -> MaintenanceReport:
        """One full run; returns its report."""
        async with self._lock:
            started = time.perf_counter()
            side = await trio.to_thread.run_sync(self.store.upkeep)
            try:
                if await trio.to_thread.run_sync(side.lead):
                    report = await self._run(side, force_vacuum)
                else:
                    report = _skipped(side.size_bytes())
            finally:
                await trio.to_thread.run_sync(side.close)
            report.duration_ms = round((time.perf_counter() - started) * 1000, 1)
            self.last_run = datetime.now(UTC)
            log.info(
                "maintenance",
                **{f: getattr(report, f) for f in report.__struct_fields__ if f != "rid"},
            )
            return report

    async def _run(self, side: StoreUpkeep, force_vacuum: bool) -> MaintenanceReport:
        before = side.size_bytes()
        cutoff = self.store.clock.time() - self.retention_days * 86400
        deleted: list[int] = []
        while True:
            ids = await self._locked_step(side, side.delete_finished, cutoff, DELETE_BATCH)
            deleted.extend(ids)
            if len(ids) < DELETE_BATCH:
                break
        queues_forgotten = 0
        after: str | None = ""
        while after is not None:  # (a batch of queue names at a time, in order)
            forgotten, after = await self._locked_step(
                side, side.forget_queues, after, DELETE_BATCH
            )
            queues_forgotten += forgotten
        logs_deleted = await trio.to_thread.run_sync(self._delete_logs, side, deleted)
        await self._locked_step(side, side.flush_journal)
        vacuumed = False
        if force_vacuum:
            await self._locked_step(side, side.compact_fully)
            vacuumed = True
        elif await trio.to_thread.run_sync(side.wants_compacting):
            while await self._locked_step(side, side.compact_step):
                vacuumed = True
        if vacuumed:
            await self._locked_step(side, side.flush_journal)
        integrity = await trio.to_thread.run_sync(side.check)
        return MaintenanceReport(
            db_bytes_before=before,
            db_bytes_after=side.size_bytes(),
            jobs_deleted=len(deleted),
            logs_deleted=logs_deleted,
            queues_forgotten=queues_forgotten,
            vacuumed=vacuumed,
            integrity=integrity,
            duration_ms=0.0,
        )

    async def _locked_step(self, side: StoreUpkeep, step: Callable[..., T], *args: Any) -> T:
        """One step that writes (a batch of deletes, a flush, a compacting step, a
        full rewrite), in a thread; with the store gate closed if the step holds
        off the store's other writers (``side.exclusive``).

        The supervisor's own writers then wait at the gate, off the event loop,
        instead of failing on the lock; and between two steps they go first, so
        back-to-back steps cannot starve them (for 100,000 jobs, the deletes
        alone once held the lock for most of a second).
        """
        if not side.exclusive:
            return await trio.to_thread.run_sync(step, *args)
        async with self.gate.closed():
            result = await trio.to_thread.run_sync(step, *args)
        await trio.lowlevel.checkpoint()  # the writers that waited go before the next step
        return result

    def _delete_logs(self, side: StoreUpkeep, deleted: list[int]) -> int:
        """Remove the logs of deleted jobs and logs of no job; return how many (thread)."""
        on_disk = self.logs.job_ids_on_disk()
        gone = set(deleted) | (on_disk - side.existing(sorted(on_disk)))
        removed = 0
        for job_id in gone & on_disk:
            self.logs.remove_files(job_id)
            removed += 1
        return removed


def _skipped(size: int) -> MaintenanceReport:
    """The report of a run that found another (on another node) under way."""
    return MaintenanceReport(
        db_bytes_before=size,
        db_bytes_after=size,
        jobs_deleted=0,
        logs_deleted=0,
        vacuumed=False,
        integrity="",
        duration_ms=0.0,
        skipped="another node is running maintenance on this store now",
    )
