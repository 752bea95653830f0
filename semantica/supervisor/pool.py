"""The worker pool: N worker processes, each fed one job at a time, replaced when they die.

Each slot is a task that spawns a worker (``python -m semantica.worker``) with
one end of a socket pair, waits for its hello, then loops: lease a job from the
scheduler, send it, wait for the worker's report. A second task per worker
reads its channel; EOF there means the worker died, which cancels the slot's
loop. The slot then reaps the process (SIGKILL if it lingers), settles the job
it was running, and spawns a replacement.

Workers run in a session of their own, so a Ctrl-C in the supervisor's
terminal reaches only the supervisor, which then drains.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import psutil
import structlog
import trio

from semantica.errors import ProtocolError, SemanticaError, StoreError
from semantica.framed import FramedStream
from semantica.models import ErrorKind, JobError
from semantica.protocol import (
    PROTOCOL_VERSION,
    WORKER_MAX_FRAME,
    CancelJob,
    FromWorker,
    Heartbeat,
    JobFinished,
    JobLog,
    JobProcess,
    JobProgress,
    RunJob,
    WorkerHello,
    WorkerInfo,
    WorkerTop,
)
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.scheduler import Gate, Scheduler
from semantica.supervisor.store import Lease

log = structlog.get_logger("semantica.pool")

#: A worker must say hello within this long of being spawned.
HELLO_TIMEOUT = 30.0
#: A worker sent SIGTERM gets this long to end its job (an exec job's group gets
#: 0.5 s between SIGTERM and SIGKILL) before it is SIGKILLed itself.
STOP_GRACE = 3.0
#: Heartbeats a worker sends within one heartbeat timeout.
HEARTBEATS_PER_TIMEOUT = 4
#: How long past the heartbeat deadline the reader gets to take heartbeats that
#: arrived while the supervisor itself was stalled, before the worker is killed.
SILENCE_CONFIRM_S = 0.2
#: Waking this much later than a deadline means the supervisor's loop was stalled.
STALL_TOLERANCE_S = 0.5
#: After a stopped job's grace period, how long its worker has to report before it is killed.
STOP_MARGIN = 2.0
#: How often the reaper tries to record a dead worker's job while the store is failing.
REAP_STORE_TRIES = 20
#: A worker that dies younger than this counts towards respawn backoff.
YOUNG_DEATH = 1.0
MAX_RESPAWN_DELAY = 5.0


async def _nothing_to_wait_for() -> None:
    return None


class WorkerStartError(SemanticaError):
    """A worker process exited or stayed silent before it was ready."""

    code = "worker_start"


class WorkerState(enum.StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"


class WorkerProcess(Protocol):
    """What the pool needs of a worker process (a ``trio.Process``; a fake in tests)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def send_signal(self, sig: int) -> None: ...


@dataclass(eq=False)
class WorkerHandle:
    """One live worker process and what it is doing."""

    process: WorkerProcess
    channel: FramedStream
    state: WorkerState = WorkerState.STARTING
    lease: Lease | None = None
    #: A job leased for it but not yet handed over (its lease awaits its commit).
    next_lease: Lease | None = None
    started: float = 0.0  # trio time the current job started
    report: JobFinished | None = None
    report_ready: trio.Event = field(default_factory=trio.Event)
    interrupt_reason: str | None = None  # set: the job goes back without spending an attempt
    job_pgid: int | None = None  # the process group of the exec job it runs, if any
    stop: JobError | None = None  # the job was asked to stop (cancel, timeout): how it ends
    last_beat: float = 0.0  # trio time of its last sign of life while running a job
    progress: float | None = None  # what its job last reported
    nursery: trio.Nursery | None = None  # where its watchdog runs

    _ps: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def usage(self) -> tuple[float, int]:
        """CPU percent since the last call and RSS bytes, of the worker and its children."""
        cpu, rss = 0.0, 0
        try:
            me = self._ps.get(self.pid) or psutil.Process(self.pid)
            alive = {self.pid}
            for found in (me, *me.children(recursive=True)):
                alive.add(found.pid)
                with contextlib.suppress(psutil.Error):
                    known = self._ps.get(found.pid)
                    if known is None:
                        # First sight: the average since it started (cpu_percent's
                        # first answer would be a meaningless 0).
                        self._ps[found.pid] = found
                        found.cpu_percent(None)
                        times = found.cpu_times()
                        age = max(time.time() - found.create_time(), 0.01)
                        cpu += 100 * (times.user + times.system) / age
                    else:
                        cpu += known.cpu_percent(None)
                    rss += found.memory_info().rss
            for pid in set(self._ps) - alive:
                del self._ps[pid]
        except psutil.Error:
            pass
        return round(cpu, 1), rss


class WorkerPool:
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
        durable: Callable[[], Awaitable[None]] = _nothing_to_wait_for,
    ) -> None:
        self.size = size
        self.cancel_grace = cancel_grace
        self.heartbeat_timeout = heartbeat_timeout
        self.gate = gate
        self.durable = durable
        self.handlers = handlers
        self.scheduler = scheduler
        self.jobs = jobs
        self.child_umask = child_umask
        self.workers: list[WorkerHandle] = []
        self._stopping = False
        self._ready_slots = 0  # slots whose first worker said hello
        self._changed = trio.Event()

    # ------------------------------------------------------------------ public

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the pool until :meth:`stop`; ``started`` once every first worker said hello.

        Raises:
            WorkerStartError: a first worker failed to start (a handler module does not
                import, say); the supervisor should not run half-configured.
        """
        async with trio.open_nursery() as nursery:
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
        with ``kind``.
        """
        worker = next((w for w in self.workers if w.lease and w.lease.job_id == job_id), None)
        if worker is None or worker.lease is None:
            return False
        lease = worker.lease
        await self._request_stop(worker, JobError(kind, message))
        while worker.lease is lease:
            await self._wait_changed()
        return True

    async def _request_stop(self, worker: WorkerHandle, error: JobError) -> None:
        lease = worker.lease
        if lease is None or worker.stop is not None:
            return  # ending already
        worker.stop = error
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
        if worker.lease is lease and worker.report is None:
            log.warning(
                "worker did not stop its job in time; killing it",
                worker_pid=worker.pid,
                job_id=lease.job_id,
            )
            _signal(worker.process, signal.SIGKILL)

    @property
    def busy(self) -> int:
        return sum(1 for w in self.workers if w.lease is not None)

    async def wait_idle(self) -> None:
        """Return once no worker runs a job."""
        while self.busy:
            await self._wait_changed()

    async def stop(self, reason: str) -> None:
        """Stop every worker and return when all are reaped.

        A job still running is stopped and goes back to the queue without
        spending an attempt (``reason`` becomes its ``interrupted`` message).
        """
        self._stopping = True
        for worker in self.workers:
            if worker.lease is not None:
                worker.interrupt_reason = reason
            worker.state = WorkerState.STOPPING
            _signal(worker.process, signal.SIGTERM)
        with trio.move_on_after(STOP_GRACE):
            while self.workers:
                await self._wait_changed()
        # Whoever is left does not answer (a handler blocking its event loop, say).
        for worker in self.workers:
            _signal(worker.process, signal.SIGKILL)
        while self.workers:
            await self._wait_changed()

    # ------------------------------------------------------------------ slots

    async def _run_slot(self, slot: int) -> None:
        delay = 0.0
        first = True
        while not self._stopping:
            born = trio.current_time()
            try:
                worker = await self._spawn()
            except WorkerStartError:
                if first:
                    raise
                log.exception("worker failed to start", slot=slot)
                worker = None
            if worker is not None:
                if first:
                    self._ready_slots += 1
                if self._stopping:  # stop() ran while this one was starting
                    worker.state = WorkerState.STOPPING
                    _signal(worker.process, signal.SIGTERM)
                self.workers.append(worker)
                self._notify()
                first = False
                try:
                    await self._serve(worker)
                finally:
                    with trio.CancelScope(shield=True):
                        await self._reap(worker)
            if self._stopping:
                return
            # Respawn at once after a worker that lived a while; back off after young deaths.
            delay = (
                min(max(delay * 2, 0.1), MAX_RESPAWN_DELAY)
                if (trio.current_time() - born < YOUNG_DEATH)
                else 0.0
            )
            await trio.sleep(delay)

    async def _start_process(self) -> tuple[WorkerProcess, trio.SocketStream]:
        """Start ``python -m semantica.worker`` on one end of a new socket pair."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        env["SEMANTICA_WORKER_FD"] = str(theirs.fileno())
        env["SEMANTICA_HANDLERS"] = ",".join(self.handlers)
        try:
            process = await trio.lowlevel.open_process(
                # -P: the supervisor's working directory is not put on the import
                # path, so a stray msgspec.py there cannot run in every worker.
                # (Handler modules come from PYTHONPATH or installed packages.)
                [sys.executable, "-P", "-m", "semantica.worker"],
                pass_fds=(theirs.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                umask=self.child_umask,
            )
        except OSError as exc:
            ours.close()
            raise WorkerStartError(f"cannot start a worker process: {exc}") from None
        finally:
            theirs.close()
        return process, trio.SocketStream(trio.socket.from_stdlib_socket(ours))

    async def _spawn(self) -> WorkerHandle:
        process, stream = await self._start_process()
        channel = FramedStream(stream, FromWorker, WORKER_MAX_FRAME)
        worker = WorkerHandle(process=process, channel=channel)
        hello = None
        try:
            with trio.move_on_after(HELLO_TIMEOUT):
                try:
                    hello = await channel.receive()
                except (trio.EndOfChannel, trio.BrokenResourceError, ProtocolError, OSError):
                    pass
        except BaseException:  # cancelled (the pool is stopping): take it down with us
            _signal(process, signal.SIGKILL)
            with trio.CancelScope(shield=True):
                await self._reap(worker)
            raise
        if not isinstance(hello, WorkerHello) or hello.version != PROTOCOL_VERSION:
            with trio.CancelScope(shield=True):
                status = await self._reap(worker)
            raise WorkerStartError(
                f"worker {process.pid} exited with status {status} before it was ready "
                "(its error is printed above)"
            )
        types = frozenset(hello.types)
        if self.jobs.known_types is None:
            self.jobs.known_types = types
        worker.state = WorkerState.IDLE
        log.info("worker started", worker_pid=process.pid)
        return worker

    async def _serve(self, worker: WorkerHandle) -> None:
        """Feed the worker jobs until it dies or the pool stops."""
        async with trio.open_nursery() as nursery:
            worker.nursery = nursery
            nursery.start_soon(self._read, worker, nursery.cancel_scope)
            try:
                await self._feed(worker)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # it died as we wrote to it; the reader's EOF ends this nursery
            await trio.sleep_forever()

    async def _feed(self, worker: WorkerHandle) -> None:
        lease: Lease | None = None
        while True:
            if lease is None:
                worker.state = WorkerState.IDLE
                self._notify()
                lease = worker.next_lease = await self.scheduler.next_lease(worker.pid)
                try:
                    await self.durable()  # the job is handed out only once its lease is committed
                except StoreError:
                    lease = worker.next_lease = None
                    await trio.sleep(0.1)  # the lease was undone; the scheduler retries the store
                    continue
            worker.lease, worker.next_lease, worker.state = lease, None, WorkerState.BUSY
            worker.report, worker.report_ready, worker.stop = None, trio.Event(), None
            worker.progress = None
            worker.started = worker.last_beat = trio.current_time()
            self.jobs.started(lease, worker.pid)
            await worker.channel.send(
                RunJob(
                    lease=lease.lease_id,
                    job_id=lease.job_id,
                    type=lease.type,
                    payload=lease.payload,
                    attempt=lease.attempt,
                    max_attempts=lease.max_attempts,
                    timeout=lease.timeout,
                    heartbeat=self.heartbeat_timeout / HEARTBEATS_PER_TIMEOUT,
                )
            )
            await self._await_report(worker, lease)
            lease = await self._record_end(worker, lease)

    async def _record_end(self, worker: WorkerHandle, lease: Lease) -> Lease | None:
        """Record the end of the worker's attempt, durably; return its next lease, if any.

        The next job is leased in the same step as the end is recorded, so one
        commit carries both: the end is durable before the next job starts, and
        a busy worker costs one commit per job, not two. If that commit fails,
        both are undone; the end is then recorded on its own, retried until the
        store takes it (the worker stays busy meanwhile, so its report is not
        lost), and the next job waits for the scheduler as usual.
        """
        report, elapsed = worker.report, trio.current_time() - worker.started
        assert report is not None
        if self.gate is not None:
            await self.gate.passage()
        try:
            self.jobs.finished(lease, report, elapsed)
            worker.next_lease = self.scheduler.lease_now(worker.pid)
            await self.durable()
        except StoreError:
            worker.next_lease = None
            await settle(
                "recording the end of an attempt",
                functools.partial(self.jobs.finished, lease, report, elapsed),
                self.durable,
            )
        worker.lease, worker.job_pgid, worker.stop = None, None, None
        self._notify()
        return worker.next_lease

    async def _await_report(self, worker: WorkerHandle, lease: Lease) -> None:
        """Wait for the job's report, enforcing its timeout and the worker's heartbeat.

        Past the timeout the job is asked to stop (and the report, a timeout,
        still comes). A worker silent for the heartbeat timeout is SIGKILLed:
        its reader then sees EOF and cancels this wait, and the reaper re-queues
        the job only after the process is gone, so two copies never run.
        Times are trio's, which do not advance while the machine is suspended.
        """
        job_deadline = worker.started + lease.timeout if lease.timeout else math.inf
        while worker.report is None:
            beat_deadline = worker.last_beat + self.heartbeat_timeout
            if not await self._wait_report_until(worker, min(job_deadline, beat_deadline)):
                continue  # this supervisor was stalled: the worker gets a fresh period
            now = trio.current_time()
            if worker.report is not None:
                return
            if now >= worker.last_beat + self.heartbeat_timeout:
                # Heartbeats that came while this supervisor was busy wait unread in
                # the worker's socket, and this task may run before the reader that
                # would take them: give the reader a moment before judging.
                if not await self._wait_report_until(worker, now + SILENCE_CONFIRM_S):
                    continue
                if worker.report is not None:
                    return
                now = trio.current_time()
                if now < worker.last_beat + self.heartbeat_timeout:
                    continue
                log.warning(
                    "worker stopped answering; killing it",
                    worker_pid=worker.pid,
                    job_id=lease.job_id,
                    silent_s=round(now - worker.last_beat, 1),
                )
                _signal(worker.process, signal.SIGKILL)
                await trio.sleep_forever()  # the reader's EOF ends this
            if now >= job_deadline and worker.stop is None:
                job_deadline = math.inf
                await self._request_stop(
                    worker, JobError(ErrorKind.TIMEOUT.value, f"timed out after {lease.timeout} s")
                )

    async def _wait_report_until(self, worker: WorkerHandle, deadline: float) -> bool:
        """Wait for the report until ``deadline``; False if this supervisor woke late.

        Waking much later than asked means the supervisor's own loop was stalled
        (SQLite waiting out another process's write lock, say): its silence is
        not the worker's, so the worker's silence is counted afresh from now.
        """
        due = max(deadline, trio.current_time())
        with trio.move_on_at(deadline):
            await worker.report_ready.wait()
        now = trio.current_time()
        if worker.report is None and now - due > STALL_TOLERANCE_S:
            log.warning(
                "the supervisor was stalled; worker silence counted afresh",
                worker_pid=worker.pid,
                stalled_s=round(now - due, 1),
            )
            worker.last_beat = max(worker.last_beat, now)
            return False
        return True

    async def _read(self, worker: WorkerHandle, serving: trio.CancelScope) -> None:
        """Take the worker's messages; when its channel ends, stop serving it."""
        try:
            while True:
                msg = await worker.channel.receive()
                lease = worker.lease
                worker.last_beat = trio.current_time()
                match msg:
                    case JobLog() if lease is not None and msg.lease == lease.lease_id:
                        self.jobs.log(lease, msg.lines)
                    case JobFinished() if lease is not None and msg.lease == lease.lease_id:
                        worker.report = msg
                        worker.report_ready.set()
                    case JobProcess() if lease is not None and msg.lease == lease.lease_id:
                        worker.job_pgid = msg.pgid
                    case JobProgress() if lease is not None and msg.lease == lease.lease_id:
                        worker.progress = msg.fraction
                        self.jobs.progress(lease, msg.fraction, msg.message)
                    case Heartbeat() if lease is not None and msg.lease == lease.lease_id:
                        pass  # any message counts as a sign of life, below
                    case Heartbeat():
                        continue  # a late beat of a finished job
                    case _:
                        log.warning(
                            "unexpected worker message",
                            worker_pid=worker.pid,
                            message=type(msg).__name__,
                        )
        except (trio.EndOfChannel, trio.BrokenResourceError, ProtocolError, OSError):
            pass
        serving.cancel()

    async def _reap(self, worker: WorkerHandle) -> int | None:
        """Make sure the process is gone, settle its job, forget it. Returns its exit status."""
        with trio.move_on_after(1.0):  # its socket closed: it is exiting
            await worker.process.wait()
        if worker.process.returncode is None:
            _signal(worker.process, signal.SIGKILL)
            await worker.process.wait()
        status = worker.process.returncode
        if worker.job_pgid is not None:
            # An exec job's commands run in a group of their own; they must not
            # outlive the worker that ran them.
            _kill_group(worker.job_pgid)
            worker.job_pgid = None
        await worker.channel.aclose()
        lease, unsent = worker.lease, worker.next_lease
        worker.lease = worker.next_lease = None
        if lease is not None:
            await settle(
                "settling the job of a worker that exited",
                functools.partial(self._settle_orphan, worker, lease, status),
                self.durable,
                tries=REAP_STORE_TRIES,
            )
        if unsent is not None:
            # Leased for it, never handed over: back to the queue, attempt not spent.
            await settle(
                "putting back a job its worker never got",
                functools.partial(
                    self.jobs.interrupted,
                    unsent,
                    f"worker {worker.pid} exited before it got the job",
                ),
                self.durable,
                tries=REAP_STORE_TRIES,
            )
        if worker in self.workers:
            self.workers.remove(worker)
            log.info("worker exited", worker_pid=worker.pid, status=status)
        self._notify()
        return status

    def _settle_orphan(self, worker: WorkerHandle, lease: Lease, status: int | None) -> None:
        """Record how the job of a worker that is gone ended."""
        elapsed = trio.current_time() - worker.started
        if worker.report is not None:  # it reported just before dying
            self.jobs.finished(lease, worker.report, elapsed)
        elif worker.interrupt_reason is not None:
            self.jobs.interrupted(lease, worker.interrupt_reason)
        elif worker.stop is not None:  # killed because it did not stop in time
            self.jobs.finished(lease, JobFinished(lease=lease.lease_id, error=worker.stop), elapsed)
        else:
            self.jobs.worker_lost(lease, worker.pid, status, elapsed)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_changed(self) -> None:
        await self._changed.wait()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _signal(process: WorkerProcess, sig: int) -> None:
    try:
        process.send_signal(sig)
    except ProcessLookupError:
        pass


async def settle(
    what: str,
    record: Callable[[], None],
    durable: Callable[[], Awaitable[None]] = _nothing_to_wait_for,
    tries: float = math.inf,
) -> None:
    """Run a store write until it is durable, retrying with backoff while the store fails.

    After ``tries`` failures it gives up: the job stays RUNNING in the store,
    and the next start re-queues it (nothing acknowledged is lost).
    """
    delay, failures = 0.1, 0
    while True:
        try:
            record()
            await durable()
            return
        except StoreError as exc:
            failures += 1
            if failures >= tries:
                log.error("store fault: giving up", what=what, error=exc.message)
                return
            log.warning("store fault; will retry", what=what, error=exc.message, retry_in_s=delay)
            await trio.sleep(delay)
            delay = min(delay * 2, 5.0)
