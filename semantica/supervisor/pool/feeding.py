"""Feeding a worker: lease jobs, hand them over, record what it reported.

The feeder (:meth:`Feeding._feed`) runs in the slot's task. While its worker
is idle it waits in the scheduler for a job; it hands over what it leased
once the leases are committed; it records the ends and the returns the reader
queued, and leases the worker's next jobs in the same step, so one commit
carries both (:meth:`Feeding._record`). Ends are recorded once the worker runs
low (half its batch left), gave jobs back, retires or the pool drains, and
otherwise at most ``RECORD_DELAY_S`` after they came (:meth:`Feeding._record_now`):
a batch of short jobs then costs a few steps rather than one per job.

**Prefetch.** A worker whose recent jobs were short is handed several at once
(as many as fit in ``PREFETCH_BUDGET_S`` of its average run time, at most
``MAX_PREFETCH``); it runs them in order and reports each. The supervisor's
work per job (a report read, an end recorded, a lease taken, a commit) then
happens in batches. A handed-over job is RUNNING in the store. A prefetched
job is never held back for long: when the job ahead of it has run for
``HOLD_LIMIT_S`` (handle.py; the watchdog sees to it), or when another worker
goes idle with nothing to lease (:meth:`Feeding._rebalance`), the supervisor
asks for the not-yet-started jobs back (``GiveBack``) and puts them back in
the queue without spending an attempt. The same happens to them at a drain,
and when their worker dies.

Promises: a job is handed over only once its lease is committed, and every
end is durable before a job that follows it is handed over. Fails: if the
commit of a step fails, all of it is undone; the ends and returns are then
recorded alone, retried until the store takes them (``settle``), and the next
jobs wait for the scheduler. A worker that dies as it is written to ends the
serving (the reader sees EOF).
"""

from __future__ import annotations

import functools
import math

import trio

from semantica.errors import StoreError
from semantica.models import JobError
from semantica.protocol import GiveBack, RunJob, encode
from semantica.supervisor.pool.base import PoolBase
from semantica.supervisor.pool.handle import (
    HandedOver,
    WorkerHandle,
    WorkerState,
    take_unannounced,
)
from semantica.supervisor.pool.settling import interrupted, settle
from semantica.supervisor.pool.watchdog import HEARTBEATS_PER_TIMEOUT
from semantica.supervisor.store import Lease

#: Prefetch: hand a worker as many jobs as fit in this much of its average run time...
PREFETCH_BUDGET_S = 0.005
#: ... but never more than this many at once.
MAX_PREFETCH = 64
#: The longest a reported end waits to be recorded with the ones after it (see
#: Feeding._record_now): a batch's ends then cost one step, not one each.
RECORD_DELAY_S = 0.002


def _hold(worker: WorkerHandle, leases: list[Lease]) -> None:
    """Leases taken for an idle worker while its feeder waits: its unsent jobs (if it
    dies before they are handed over, the reaper puts them back)."""
    worker.unsent = leases


class Feeding(PoolBase):
    """Leases jobs for each worker, hands them over, and records their ends."""

    def _depth(self, worker: WorkerHandle) -> int:
        """How many jobs this worker should hold: more when its jobs are short."""
        average = worker.average_s
        if average is None or self.max_prefetch <= 1:
            return 1
        return max(1, min(self.max_prefetch, int(PREFETCH_BUDGET_S / max(average, 1e-6))))

    def _room(self, worker: WorkerHandle, gave_back: bool) -> int:
        """How many more jobs the worker should be handed now.

        None behind a job that already runs long, nor in the step that records
        jobs it gave back (they would only come straight back to it).
        """
        if worker.inflight and (gave_back or trio.current_time() >= worker.hold_until):
            return 0
        return self._depth(worker) - len(worker.inflight)

    def _lease_more(self, worker: WorkerHandle, room: int) -> list[Lease]:
        """Lease up to ``room`` jobs for the worker without waiting (same step as the gate)."""
        return self.scheduler.lease_many(worker.pid, room)

    async def _feed(self, worker: WorkerHandle) -> None:
        """Lease jobs for the worker, hand them over, and record what it reports."""
        record_by = math.inf  # when the ends waiting now must be recorded at the latest
        while True:
            if worker.ends or worker.returned:
                now = trio.current_time()
                record_by = min(record_by, now + RECORD_DELAY_S)
                if now < record_by and not self._record_now(worker):
                    # More ends will come before the worker runs low: record them
                    # together (woken by the next report, or by the deadline).
                    worker.activity = trio.Event()
                    with trio.move_on_at(record_by):
                        await worker.activity.wait()
                    continue
                record_by = math.inf
                await self._record(worker)
            elif worker.retiring:
                await trio.sleep_forever()  # its EOF ends the serving; the reaper settles
            elif not worker.inflight:
                worker.state = WorkerState.IDLE
                self._notify()
                await self._rebalance(worker)
                # (Leased by this task, or by an enqueue's, in its step, and then handed
                # over in the step of their commit: see scheduler.py.)
                leased = await self.scheduler.next_leases(
                    worker.pid,
                    functools.partial(self._depth, worker),
                    functools.partial(_hold, worker),
                    functools.partial(self._hand_over_now, worker),
                )
                if worker.sent_now is not None:
                    await self._handed_over(worker)
                    continue
                worker.unsent = leased.leases
                if not leased.committed:
                    try:
                        await self.durable()  # jobs are handed out once their leases are committed
                    except StoreError:
                        worker.unsent = []
                        await self.scheduler.lease_undone()  # backs off while the store fails
                        continue
                    self.scheduler.lease_committed()
            else:
                await worker.activity.wait()
                worker.activity = trio.Event()
                continue
            await self._hand_over(worker)

    def _record_now(self, worker: WorkerHandle) -> bool:
        """Whether the worker's reported ends are recorded now rather than with the next.

        Now when it runs low (half its batch or less left: it is leased more in the
        same step, before it runs dry), when it gave jobs back, when it retires, and
        when the pool drains. Otherwise its next ends join them, for at most
        ``RECORD_DELAY_S`` (a worker busy with a long job is not kept waiting).
        """
        return (
            len(worker.inflight) <= self._depth(worker) // 2
            or bool(worker.returned)
            or worker.retiring
            or self.scheduler.draining
        )

    async def _record(self, worker: WorkerHandle) -> None:
        """Record the ends and returns the worker reported; lease its next jobs; commit once.

        The next jobs are leased in the same step as the ends are recorded, so
        one commit carries both: every end is durable before a job that follows
        it is handed over, and a busy worker costs one commit per batch of
        reports. If that commit fails, all of it is undone; the ends and returns
        are then recorded alone, retried until the store takes them (the
        worker's jobs stay held meanwhile, so no report is lost), and the next
        jobs wait for the scheduler as usual.
        """
        if self.gate is not None:
            await self.gate.passage()
        # They stay on the worker until durable: if it dies meanwhile, the reaper
        # records them (again: a second record of one end is refused as stale).
        ends, returned = list(worker.ends), list(worker.returned)
        unseen = take_unannounced(worker, [lease for lease, _, _ in ends])
        try:
            finished = [end for end in ends if not interrupted(end[1])]
            self.jobs.finished_many(finished, unseen, worker.pid)
            for lease, report, elapsed in ends:
                if interrupted(report):
                    self._end(lease, report, elapsed)
            if returned:
                self.jobs.given_back(returned)
            self._announce(worker)
            if not worker.retiring:
                worker.unsent = self._lease_more(worker, self._room(worker, bool(returned)))
            await self.durable()
        except StoreError:
            worker.unsent = []
            for lease, report, elapsed in ends:
                await settle(
                    "recording the end of an attempt",
                    functools.partial(self._end, lease, report, elapsed),
                    self.durable,
                )
            if returned:
                await settle(
                    "putting back jobs a worker gave back",
                    functools.partial(self.jobs.given_back, returned),
                    self.durable,
                )
        del worker.ends[: len(ends)], worker.returned[: len(returned)]
        for lease, _, _ in ends:
            worker.stops.pop(lease.lease_id, None)
        if returned:
            self.scheduler.wake()
        self._notify()

    def _announce(self, worker: WorkerHandle) -> None:
        """Announce the start of the worker's running job, once.

        Jobs before it whose ends wait to be recorded started before it: they
        are announced first (their ends follow when they are recorded).
        """
        lease = worker.lease
        if lease is None or worker.retiring or lease.lease_id <= worker.announced:
            return  # (a retiring worker starts nothing after its last report)
        worker.state = WorkerState.BUSY
        leases = [*(held for held, _, _ in worker.ends), lease]
        self.jobs.started_many(take_unannounced(worker, leases), worker.pid)

    def _take_unsent(self, worker: WorkerHandle) -> HandedOver:
        """Move the worker's unsent jobs in flight, to be written now; with the stops asked
        for while they were unsent (from now on a stop is sent at once)."""
        batch = worker.unsent
        if not worker.inflight:
            worker.started = worker.last_beat = trio.current_time()
            worker.progress = worker.progress_message = None
        worker.inflight.extend(batch)
        worker.unsent = []
        stops = [
            (lease, worker.stops[lease.lease_id])
            for lease in batch
            if lease.lease_id in worker.stops
        ]
        return batch, stops

    def _run_frames(self, batch: list[Lease]) -> bytes:
        heartbeat = self.heartbeat_timeout / HEARTBEATS_PER_TIMEOUT
        return b"".join(
            encode(
                RunJob(
                    lease=lease.lease_id,
                    job_id=lease.job_id,
                    type=lease.type,
                    payload=lease.payload,
                    attempt=lease.attempt,
                    max_attempts=lease.max_attempts,
                    timeout=lease.timeout,
                    heartbeat=heartbeat,
                    lease_for=self.lease_for,
                )
            )
            for lease in batch
        )

    async def _hand_over(self, worker: WorkerHandle) -> None:
        """Send the worker the jobs leased for it (their leases are committed)."""
        if not worker.unsent:
            return
        batch, stops = self._take_unsent(worker)
        # Written at once (no pass through the scheduler), and before the start is
        # announced: its event and log line are not on the path of the job's start.
        # (Nothing this task records comes between: the reader only queues reports.)
        await worker.channel.send_frames(self._run_frames(batch))
        await self._after_hand_over(worker, stops)

    def _hand_over_now(self, worker: WorkerHandle) -> None:
        """Write the worker its jobs in the step that committed their leases (taken for
        it in an enqueue's step: see scheduler.py), before that step's reply to the
        enqueue; the feeder finishes the hand-over when it wakes (:meth:`_handed_over`).

        Called back by the committer: it never raises nor waits. If the channel is
        being written to, or the worker is gone, the feeder hands them over as usual.
        """
        if not worker.unsent or worker.inflight or worker.sent_now is not None:
            return
        data = self._run_frames(worker.unsent)
        try:
            if not worker.channel.send_now(data):
                return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # its reader ends the serving; the reaper puts the jobs back
        worker.sent_now = self._take_unsent(worker)

    async def _handed_over(self, worker: WorkerHandle) -> None:
        """The rest of a hand-over :meth:`_hand_over_now` wrote: the rest of its write if
        the socket did not take it all, the start announced, the stops sent."""
        assert worker.sent_now is not None
        _, stops = worker.sent_now
        worker.sent_now = None
        await worker.channel.flush()
        await self._after_hand_over(worker, stops)

    async def _after_hand_over(
        self, worker: WorkerHandle, stops: list[tuple[Lease, JobError]]
    ) -> None:
        """Once the worker's jobs are written: their start announced, the stops asked for
        while they were unsent sent, the watchdog told."""
        self._announce(worker)
        for lease, stop in stops:
            await self._send_stop(worker, lease, stop)
        self._poke_watch(worker)

    async def _give_back(self, worker: WorkerHandle, leases: list[Lease]) -> None:
        """Ask the worker for these not-yet-started jobs back (it answers with GivenBack)."""
        if not leases or worker.giving_back:
            return
        worker.giving_back = True
        try:
            await worker.channel.send(GiveBack(leases=[lease.lease_id for lease in leases]))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # it died: the reaper puts them back

    async def _rebalance(self, idle: WorkerHandle) -> None:
        """A worker is idle: take back half of the jobs waiting in the busiest other worker.

        They go back to the queue, where the idle worker (or any) leases them.
        """
        others = [w for w in self.workers if w is not idle and len(w.inflight) > 1]
        if others and not self.scheduler.draining:
            busiest = max(others, key=lambda w: len(w.inflight))
            waiting = list(busiest.inflight)[1:]
            await self._give_back(busiest, waiting[len(waiting) // 2 :])
