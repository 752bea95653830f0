"""The watchdog: the running job's timeout, the worker's heartbeat, the hold limit; and stops.

One watchdog task per worker (:meth:`Watchdog._watch`) sleeps until the
earliest deadline of the running job: its timeout, the worker's heartbeat
deadline (a worker running a job sends ``HEARTBEATS_PER_TIMEOUT`` heartbeats
per heartbeat timeout; any message counts), and the hold limit of the jobs
handed over behind it. Whoever changes one of these pokes it
(:meth:`Watchdog._poke_watch`). Times are trio's, which do not advance while
the machine is suspended: a closed lid counts neither as silence nor as run
time.

* Past the timeout the job is asked to stop (and its report, a timeout,
  still comes).
* A worker silent for the heartbeat timeout is SIGKILLed: its reader then
  sees EOF and ends the serving, and the reaper re-queues the job only after
  the process is gone, so two copies never run. Heartbeats that wait unread
  get ``SILENCE_CONFIRM_S`` to be read first.
* Jobs waiting behind one that ran past ``HOLD_LIMIT_S`` are asked back.

A stop (a cancel, a timeout, a running job superseded) goes to the worker as
``CancelJob`` with the cancel grace; a worker that has not reported
``STOP_MARGIN`` after the grace is SIGKILLed, and the job still ends as asked
(settling.py).

A supervisor whose own loop was stalled (it woke more than
``STALL_TOLERANCE_S`` late) does not blame its workers: their silence is
counted afresh from then.
"""

from __future__ import annotations

import math
import signal

import structlog
import trio

from semantica.models import ErrorKind, JobError
from semantica.protocol import CancelJob
from semantica.supervisor.pool.base import PoolBase
from semantica.supervisor.pool.handle import WorkerHandle, signal_process
from semantica.supervisor.store import Lease

log = structlog.get_logger("semantica.pool")

#: Heartbeats a worker sends within one heartbeat timeout.
HEARTBEATS_PER_TIMEOUT = 4
#: How long past the heartbeat deadline the reader gets to take heartbeats that
#: arrived while the supervisor itself was stalled, before the worker is killed.
SILENCE_CONFIRM_S = 0.2
#: Waking this much later than a deadline means the supervisor's loop was stalled.
STALL_TOLERANCE_S = 0.5
#: After a stopped job's grace period, how long its worker has to report before it is killed.
STOP_MARGIN = 2.0


class Watchdog(PoolBase):
    """Watches each worker's running job, and stops jobs."""

    async def _request_stop(self, worker: WorkerHandle, lease: Lease, error: JobError) -> None:
        if lease.lease_id in worker.stops:
            return  # ending already
        worker.stops[lease.lease_id] = error
        if lease in worker.inflight:  # otherwise the feeder sends the stop with the job
            await self._send_stop(worker, lease, error)

    async def _send_stop(self, worker: WorkerHandle, lease: Lease, error: JobError) -> None:
        try:
            await worker.channel.send(
                CancelJob(
                    lease=lease.lease_id,
                    kind=error.kind,
                    message=error.message,
                    grace=self.cancel_grace,
                )
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return  # it died: the reaper settles the job as stopped
        assert worker.nursery is not None
        worker.nursery.start_soon(self._kill_if_silent, worker, lease)

    async def _kill_if_silent(self, worker: WorkerHandle, lease: Lease) -> None:
        # Past the grace period a blocking handler's worker reports and exits on
        # its own; this is for a worker that cannot even do that.
        await trio.sleep(self.cancel_grace + STOP_MARGIN)
        if lease in worker.inflight:
            log.warning(
                "worker did not stop its job in time; killing it",
                worker_pid=worker.pid,
                job_id=lease.job_id,
            )
            signal_process(worker.process, signal.SIGKILL)

    def _poke_watch(self, worker: WorkerHandle) -> None:
        """Wake the watchdog if the running job needs it sooner than it planned."""
        if self._watch_deadline(worker) < worker.watch_until:
            worker.watch_poke.set()

    def _watch_deadline(self, worker: WorkerHandle) -> float:
        lease = worker.lease
        if lease is None:
            return math.inf
        deadline = worker.last_beat + self.heartbeat_timeout
        if lease.timeout and lease.lease_id not in worker.stops:
            deadline = min(deadline, worker.started + lease.timeout)
        if len(worker.inflight) > 1 and not worker.giving_back:
            deadline = min(deadline, worker.hold_until)
        return deadline

    async def _watch(self, worker: WorkerHandle) -> None:
        """Enforce the running job's timeout, the worker's heartbeat and the hold limit.

        Past the timeout the job is asked to stop (and the report, a timeout,
        still comes). A worker silent for the heartbeat timeout is SIGKILLed:
        its reader then sees EOF and ends the serving, and the reaper re-queues
        the job only after the process is gone, so two copies never run. Jobs
        waiting behind one that ran past ``HOLD_LIMIT_S`` are asked back.
        Times are trio's, which do not advance while the machine is suspended.
        """
        while True:
            deadline = worker.watch_until = self._watch_deadline(worker)
            poke = worker.watch_poke = trio.Event()
            due = max(deadline, trio.current_time())
            with trio.move_on_at(deadline):
                await poke.wait()
            worker.watch_until = math.inf
            now = trio.current_time()
            if poke.is_set() or now < self._watch_deadline(worker):
                continue  # something changed, or a sign of life moved the deadline
            if now - due > STALL_TOLERANCE_S:
                # Waking this late means this supervisor's own loop was stalled (SQLite
                # waiting out another process's write lock, say): its silence is not
                # the worker's, so the worker's silence is counted afresh from now.
                log.warning(
                    "the supervisor was stalled; worker silence counted afresh",
                    worker_pid=worker.pid,
                    stalled_s=round(now - due, 1),
                )
                worker.last_beat = max(worker.last_beat, now)
                continue
            lease = worker.lease
            assert lease is not None
            if now >= worker.last_beat + self.heartbeat_timeout:
                await self._kill_if_still_silent(worker, lease)
                continue
            if lease.timeout and now >= worker.started + lease.timeout:
                timeout = JobError(ErrorKind.TIMEOUT.value, f"timed out after {lease.timeout} s")
                await self._request_stop(worker, lease, timeout)
            if len(worker.inflight) > 1 and now >= worker.hold_until:
                await self._give_back(worker, list(worker.inflight)[1:])

    async def _kill_if_still_silent(self, worker: WorkerHandle, lease: Lease) -> None:
        # Heartbeats that came while this supervisor was busy wait unread in the
        # worker's socket, and this task may run before the reader that would
        # take them: give the reader a moment before judging.
        due = trio.current_time() + SILENCE_CONFIRM_S
        await trio.sleep_until(due)
        now = trio.current_time()
        if now - due > STALL_TOLERANCE_S:
            worker.last_beat = max(worker.last_beat, now)  # stalled ourselves: not its fault
            return
        if worker.lease is not lease or now < worker.last_beat + self.heartbeat_timeout:
            return
        log.warning(
            "worker stopped answering; killing it",
            worker_pid=worker.pid,
            job_id=lease.job_id,
            silent_s=round(now - worker.last_beat, 1),
        )
        signal_process(worker.process, signal.SIGKILL)
        await trio.sleep_forever()  # the reader's EOF ends the serving
