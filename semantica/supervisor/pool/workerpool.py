"""The worker pool as the rest of the supervisor sees it: :class:`WorkerPool`.

It runs ``size`` slots (slots.py) and offers what a request or the drain
needs: the views (``info``, ``top``, ``worker_counts``, ``worker_pids``,
``busy``), the stop of one running job (``stop_job``, which returns once the
job has ended), and the steps of a drain: ``give_back_all``, ``wait_idle``,
``stop``. ``stop`` returns within the cancel grace, ``EXIT_MARGIN`` and the
time to reap, whatever the jobs do.

Fails: ``run`` raises ``WorkerStartError`` if a first worker does not start.
A worker that dies later is replaced (slots.py), and a write the store
refuses is retried where it is made (feeding.py, settling.py).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Awaitable, Callable

import trio

from semantica.models import JobError
from semantica.protocol import Renew, WorkerInfo, WorkerTop
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.pool.base import nothing_to_wait_for
from semantica.supervisor.pool.feeding import MAX_PREFETCH, Feeding
from semantica.supervisor.pool.handle import WorkerHandle, WorkerState, signal_process
from semantica.supervisor.pool.orphans import Orphans
from semantica.supervisor.pool.reader import Reader
from semantica.supervisor.pool.settling import Settling
from semantica.supervisor.pool.slots import Slots
from semantica.supervisor.pool.watchdog import Watchdog
from semantica.supervisor.scheduler import Gate, Scheduler

#: A worker sent SIGTERM (the end of a drain) stops its job as a cancel would, and
#: ends what the job started: it gets the cancel grace and this much more to exit,
#: then it is SIGKILLed (and the supervisor kills what its job left).
EXIT_MARGIN = 0.5


#: A progress message is cut to this for a top row (as top's other texts, topview.ROW_TEXT):
#: every node's workers travel in its heartbeat, and a row shows one line.
PROGRESS_TEXT = 200


def _row_text(text: str | None) -> str | None:
    return text if text is None or len(text) <= PROGRESS_TEXT else text[: PROGRESS_TEXT - 1] + "…"


class WorkerPool(Slots, Feeding, Reader, Watchdog, Settling, Orphans):
    """Keeps ``size`` workers alive and feeds them jobs."""

    def __init__(
        self,
        size: int,
        handlers: tuple[str, ...],
        scheduler: Scheduler,
        jobs: JobLifecycle,
        child_umask: int = 0o022,
        cancel_grace: float = 5.0,
        heartbeat_timeout: float = 10.0,
        gate: Gate | None = None,
        durable: Callable[[], Awaitable[None]] = nothing_to_wait_for,
        max_prefetch: int = MAX_PREFETCH,
    ) -> None:
        # (What each of these is for: see PoolBase, base.py.)
        self.size = size
        self.max_prefetch = max_prefetch
        self.cancel_grace = cancel_grace
        self.heartbeat_timeout = heartbeat_timeout
        self.gate = gate
        self.durable = durable
        self.handlers = handlers
        self.scheduler = scheduler
        self.jobs = jobs
        self.child_umask = child_umask
        self.workers: list[WorkerHandle] = []
        self._children = set()
        self._spawning = trio.Lock()
        self._adopting = False
        self._foreign = frozenset()
        self._stopping = False
        self._ready_slots = 0
        self._background = None
        self._changed = trio.Event()
        #: On a shared store, how long a job handed over may run without a renewal from
        #: this node (cluster.py renews after each heartbeat; worker/fence.py enforces it);
        #: 0: no bound.
        self.lease_for = 0.0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the pool until :meth:`stop`; ``started`` once every first worker said hello.

        Raises:
            WorkerStartError: a first worker failed to start (a handler module does not
                import, say); the supervisor should not run half-configured.
        """
        async with trio.open_nursery() as nursery:
            self._background = nursery
            for slot in range(self.size):
                nursery.start_soon(self._run_slot, slot)
            while self._ready_slots < self.size:
                await self._wait_changed()
            task_status.started()

    def info(self) -> list[WorkerInfo]:
        """Each live worker: pid, state, and the job it runs."""
        return [
            WorkerInfo(pid=w.pid, state=w.state.value, job=w.lease.job_id if w.lease else None)
            for w in self.workers
        ]

    def top(self) -> list[WorkerTop]:
        """Each live worker with its job, how long that has run, and CPU and memory.

        CPU is the worker's and its children's (an exec job's command) since the
        previous call.
        """
        now = trio.current_time()
        rows = []
        for w in self.workers:
            cpu, rss = w.usage()
            lease = w.lease
            rows.append(
                WorkerTop(
                    pid=w.pid,
                    state=w.state.value,
                    job=lease.job_id if lease else None,
                    job_type=lease.type if lease else None,
                    running_s=round(now - w.started, 3) if lease else None,
                    progress=w.progress if lease else None,
                    progress_message=_row_text(w.progress_message) if lease else None,
                    cpu_percent=cpu,
                    rss_bytes=rss,
                )
            )
        return rows

    def worker_counts(self) -> dict[str, int]:
        """How many workers are in each state (for metrics)."""
        counts = {state.value: 0 for state in WorkerState}
        for w in self.workers:
            counts[w.state.value] += 1
        return counts

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    async def stop_job(self, job_id: int, kind: str, message: str) -> bool:
        """Stop the running job ``job_id`` and return once it has ended; False if not running.

        The worker is asked to stop it (see CancelJob); if it has not reported
        a little after the grace period it is killed, and the job still ends
        with ``kind``. A job handed over but not started ends at once.
        """
        for worker in self.workers:
            lease = next(
                (held for held in (*worker.inflight, *worker.unsent) if held.job_id == job_id),
                None,
            )
            if lease is not None:
                break
        else:
            return False
        await self._request_stop(worker, lease, JobError(kind, message))
        while worker.holds(lease) and worker in self.workers:
            await self._wait_changed()
        return True

    def renew(self) -> None:
        """Tell every worker holding jobs that this node still holds their leases (a shared
        store: see ``lease_for``); the sends go on in the background."""
        if self.lease_for <= 0 or self._background is None:
            return
        for worker in self.workers:
            if worker.inflight:
                self._background.start_soon(self._send_renewal, worker)

    async def _send_renewal(self, worker: WorkerHandle) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await worker.channel.send(Renew(for_s=self.lease_for))

    def fence(self, reason: str) -> int:
        """Kill every worker that holds a job, at once (SIGKILL; what their jobs started
        ends with them); return how many. Their slots start new workers.

        For a node that may no longer run its jobs (see cluster.py): they run again
        elsewhere, so no grace is given. Each job is recorded interrupted (back to the
        queue, attempt not spent) if the store still takes that write; a lease the
        others took over meanwhile refuses it, which is the point.
        """
        killed = 0
        for worker in self.workers:
            if worker.inflight or worker.unsent:
                worker.interrupt_reason = reason
                signal_process(worker.process, signal.SIGKILL)
                killed += 1
        return killed

    @property
    def busy(self) -> int:
        """How many workers hold jobs (running, handed over, or ended and not yet recorded)."""
        return sum(1 for w in self.workers if w.inflight or w.unsent or w.ends or w.returned)

    async def wait_idle(self) -> None:
        """Return once no worker holds a job."""
        while self.busy:
            await self._wait_changed()

    async def give_back_all(self) -> None:
        """Ask every worker for the jobs it was handed and has not started (at a drain)."""
        for worker in list(self.workers):
            await self._give_back(worker, list(worker.inflight)[1:])

    async def stop(self, reason: str) -> None:
        """Stop every worker and return when all are reaped: within the cancel grace and
        ``EXIT_MARGIN``, and the time to reap them, whatever their jobs do.

        A job still running is stopped and goes back to the queue without
        spending an attempt (``reason`` becomes its ``interrupted`` message).
        """
        self._stopping = True
        for worker in self.workers:
            if worker.inflight:
                worker.interrupt_reason = reason
            worker.state = WorkerState.STOPPING
            signal_process(worker.process, signal.SIGTERM)
        with trio.move_on_after(self.cancel_grace + EXIT_MARGIN):
            while self.workers:
                await self._wait_changed()
        # Whoever is left does not answer (a handler blocking its event loop, say).
        for worker in self.workers:
            signal_process(worker.process, signal.SIGKILL)
        while self.workers:
            await self._wait_changed()
