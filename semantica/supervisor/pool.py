"""The worker pool: N worker processes, each running one job at a time, replaced when they die.

Each slot is a task that spawns a worker (``python -m semantica.worker``) with
one end of a socket pair, waits for its hello, then serves it with three
tasks: the *feeder* leases jobs and hands them over, and records the ends the
worker reported (the ends and the next leases share one commit); the *reader*
takes the worker's messages; the *watchdog* enforces the running job's timeout
and the worker's heartbeat. The worker's exit, or EOF on its channel, ends the
serving (the exit alone may have to do: a process the worker started can hold
its end of the channel open); the slot then reaps the process (SIGKILL if it
lingers), settles its jobs, and spawns a replacement.

**Prefetch.** A worker whose recent jobs were short is handed several at once
(as many as fit in ``PREFETCH_BUDGET_S`` of its average run time, at most
``MAX_PREFETCH``); it runs them in order and reports each. The supervisor's
work per job (a report read, an end recorded, a lease taken, a commit) then
happens in batches. A handed-over job is RUNNING in the store. A prefetched
job is never held back for long: when the job ahead of it has run for
``HOLD_LIMIT_S``, or when another worker goes idle with nothing to lease, the
supervisor asks for the not-yet-started jobs back (``GiveBack``) and puts them
back in the queue without spending an attempt. The same happens to them at a
drain, and when their worker dies.

Workers run in a session of their own, so a Ctrl-C in the supervisor's
terminal reaches only the supervisor, which then drains.

**What a job started.** A worker ends what each job started when the job
ends, but a worker that dies (SIGKILL, the OOM killer) cannot. On Linux the
supervisor is a child subreaper: the processes of a dead worker's job are
re-parented to the supervisor, and the reaper SIGKILLs them (every process
below the supervisor that is not a worker) before it settles the job. What
was below the supervisor before it became a subreaper, and what is below
that, is not the supervisor's: a process exec'd into semanticad keeps the
children its pid had (``sh -c 'log-shipper & exec semanticad'``). The
reaper never touches those.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import functools
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import psutil
import structlog
import trio

from semantica import proctree
from semantica.errors import ProtocolError, SemanticaError, StoreError
from semantica.framed import FramedStream
from semantica.models import ErrorKind, JobError
from semantica.protocol import (
    PROTOCOL_VERSION,
    WORKER_MAX_FRAME,
    CancelJob,
    FromWorker,
    GiveBack,
    GivenBack,
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
from semantica.supervisor import worker_output
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.scheduler import Gate, Scheduler
from semantica.supervisor.store import Lease
from semantica.supervisor.store_retry import Backoff, retry_store

log = structlog.get_logger("semantica.pool")

#: A worker must say hello within this long of being spawned.
HELLO_TIMEOUT = 30.0
#: A worker sent SIGTERM (the end of a drain) stops its job as a cancel would, and
#: ends what the job started: it gets the cancel grace and this much more to exit,
#: then it is SIGKILLed (and the supervisor kills what its job left).
EXIT_MARGIN = 0.5
#: Heartbeats a worker sends within one heartbeat timeout.
HEARTBEATS_PER_TIMEOUT = 4
#: How long past the heartbeat deadline the reader gets to take heartbeats that
#: arrived while the supervisor itself was stalled, before the worker is killed.
SILENCE_CONFIRM_S = 0.2
#: Waking this much later than a deadline means the supervisor's loop was stalled.
STALL_TOLERANCE_S = 0.5
#: After a stopped job's grace period, how long its worker has to report before it is killed.
STOP_MARGIN = 2.0
#: How often the reaper tries to record a dead worker's job while the store is failing,
#: before the slot spawns a replacement and the write goes on in the background.
REAP_STORE_TRIES = 20
#: Delays between two tries of a write the store refused (settle): doubling from the
#: first to the second.
SETTLE_DELAY_MIN = 0.1
SETTLE_DELAY_MAX = 5.0
#: Once a worker has exited, how long the reader gets to take what it sent before (a
#: process still holding its channel might write on for ever).
EXIT_READ_S = 1.0
#: After a worker is reaped, how long what still holds its output (on macOS, an
#: orphan of its job) may keep the relay of that output open.
OUTPUT_LINGER_S = 1.0
#: Prefetch: hand a worker as many jobs as fit in this much of its average run time...
PREFETCH_BUDGET_S = 0.005
#: ... but never more than this many at once.
MAX_PREFETCH = 64
#: A prefetched job waits at most about this long behind a job that runs on: then it is
#: handed back to the queue for any worker.
HOLD_LIMIT_S = 0.005
#: Weight of the latest run time in a worker's average.
AVERAGE_WEIGHT = 0.25
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
    sock: trio.socket.SocketType | None = None  # the channel's socket, to see what is unread
    state: WorkerState = WorkerState.STARTING
    #: Jobs handed over, in the order the worker runs them: the first one runs now.
    inflight: deque[Lease] = field(default_factory=deque)
    #: Jobs leased for it but not yet handed over (their leases await their commit).
    unsent: list[Lease] = field(default_factory=list)
    #: Ends it reported that are not yet recorded: (lease, report, run time).
    ends: list[tuple[Lease, JobFinished, float]] = field(default_factory=list)
    #: Jobs it gave back unstarted, not yet put back in the queue.
    returned: list[Lease] = field(default_factory=list)
    giving_back: bool = False  # a GiveBack is unanswered
    activity: trio.Event = field(default_factory=trio.Event)  # ends or returns to record
    announced: int = 0  # lease id of the last job announced as started
    started: float = 0.0  # trio time the running job started
    average_s: float | None = None  # its recent jobs' run time, for the prefetch
    interrupt_reason: str | None = None  # set: its jobs go back without spending an attempt
    #: It said its last report is sent and it exits: it runs nothing more, and
    #: the jobs it still holds go back unspent.
    retiring: bool = False
    job_pgids: dict[int, int] = field(default_factory=dict)  # lease id -> its exec job's group
    stops: dict[int, JobError] = field(default_factory=dict)  # lease id -> how it must end
    last_beat: float = 0.0  # trio time of its last sign of life while running a job
    progress: float | None = None  # what its running job last reported
    watch_until: float = math.inf  # when its watchdog wakes next
    watch_poke: trio.Event = field(default_factory=trio.Event)  # wakes the watchdog earlier
    nursery: trio.Nursery | None = None  # where its watchdog runs
    #: The relay of its stdout and stderr into the log (worker_output.py), and its end.
    output: trio.CancelScope = field(default_factory=trio.CancelScope)
    output_done: trio.Event = field(default_factory=trio.Event)

    @property
    def lease(self) -> Lease | None:
        """The job it runs now."""
        return self.inflight[0] if self.inflight else None

    def holds(self, lease: Lease) -> bool:
        """Whether this lease's job is with this worker, or ended and not yet recorded."""
        return (
            lease in self.inflight
            or lease in self.unsent
            or lease in self.returned
            or any(end[0] is lease for end in self.ends)
        )

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
        max_prefetch: int = MAX_PREFETCH,
    ) -> None:
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
        #: Pids of the worker processes started and not yet reaped (by trio): never orphans.
        self._children: set[int] = set()
        #: Held while a worker is spawned, and while orphans are ended: a worker being
        #: spawned is a child of the supervisor before its pid is in ``_children``.
        self._spawning = trio.Lock()
        self._adopting = False  # the supervisor is a child subreaper (see _end_orphans)
        #: What was below the supervisor when it became a subreaper (not its own: see
        #: _end_orphans), by key.
        self._foreign: frozenset[tuple[int, float]] = frozenset()
        self._stopping = False
        self._ready_slots = 0  # slots whose first worker said hello
        # Where store writes the reaper could not finish go on (see _settle_dead).
        self._background: trio.Nursery | None = None
        self._changed = trio.Event()

    # ------------------------------------------------------------------ public

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
            _signal(worker.process, signal.SIGKILL)

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
            _signal(worker.process, signal.SIGTERM)
        with trio.move_on_after(self.cancel_grace + EXIT_MARGIN):
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
        env["SEMANTICA_CANCEL_GRACE"] = str(self.cancel_grace)  # for what a job leaves running
        async with self._spawning:
            if not self._adopting:
                # From the first worker on, orphans below the supervisor are its own...
                self._adopting = proctree.become_subreaper()
                if self._adopting:
                    # ... but not what it already had below it (it started none).
                    self._foreign = await trio.to_thread.run_sync(_present)
            try:
                process = await trio.lowlevel.open_process(
                    # -P: the supervisor's working directory is not put on the import
                    # path, so a stray msgspec.py there cannot run in every worker.
                    # (Handler modules come from PYTHONPATH or installed packages.)
                    [sys.executable, "-P", "-m", "semantica.worker"],
                    pass_fds=(theirs.fileno(),),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    # Its output comes to us (worker_output.py), never to our stderr,
                    # where a reader that stopped would block the worker.
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    umask=self.child_umask,
                )
            except OSError as exc:
                ours.close()
                raise WorkerStartError(f"cannot start a worker process: {exc}") from None
            finally:
                theirs.close()
            self._children.add(process.pid)
        return process, trio.SocketStream(trio.socket.from_stdlib_socket(ours))

    async def _spawn(self) -> WorkerHandle:
        process, stream = await self._start_process()
        channel = FramedStream(stream, FromWorker, WORKER_MAX_FRAME)
        worker = WorkerHandle(process=process, channel=channel, sock=stream.socket)
        self._relay_output(worker)
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
            nursery.start_soon(self._watch_exit, worker, nursery.cancel_scope)
            nursery.start_soon(self._watch, worker)
            try:
                await self._feed(worker)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # it died as we wrote to it; the reader's EOF ends this nursery
            await trio.sleep_forever()

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
        if worker.inflight and (gave_back or trio.current_time() - worker.started >= HOLD_LIMIT_S):
            return 0
        return self._depth(worker) - len(worker.inflight)

    def _lease_more(self, worker: WorkerHandle, room: int) -> list[Lease]:
        """Lease up to ``room`` jobs for the worker without waiting (same step as the gate)."""
        return self.scheduler.lease_many(worker.pid, room)

    async def _feed(self, worker: WorkerHandle) -> None:
        """Lease jobs for the worker, hand them over, and record what it reports."""
        while True:
            if worker.ends or worker.returned:
                await self._record(worker)
            elif worker.retiring:
                await trio.sleep_forever()  # its EOF ends the serving; the reaper settles
            elif not worker.inflight:
                worker.state = WorkerState.IDLE
                self._notify()
                await self._rebalance(worker)
                lease = await self.scheduler.next_lease(worker.pid)
                worker.unsent = [lease, *self._lease_more(worker, self._depth(worker) - 1)]
                try:
                    await self.durable()  # jobs are handed out only once their leases are committed
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
        unseen = _take_unannounced(worker, [lease for lease, _, _ in ends])
        try:
            finished = [end for end in ends if not _interrupted(end[1])]
            self.jobs.finished_many(finished, unseen, worker.pid)
            for lease, report, elapsed in ends:
                if _interrupted(report):
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
        self.jobs.started_many(_take_unannounced(worker, leases), worker.pid)

    async def _hand_over(self, worker: WorkerHandle) -> None:
        """Send the worker the jobs leased for it (their leases are committed)."""
        batch = worker.unsent
        if not batch:
            return
        if not worker.inflight:
            worker.started = worker.last_beat = trio.current_time()
            worker.progress = None
        worker.inflight.extend(batch)
        worker.unsent = []
        # Stops asked for while these were unsent; from now on a stop is sent at once.
        stops = [
            (lease, worker.stops[lease.lease_id])
            for lease in batch
            if lease.lease_id in worker.stops
        ]
        self._announce(worker)
        heartbeat = self.heartbeat_timeout / HEARTBEATS_PER_TIMEOUT
        await worker.channel.send_many(
            [
                RunJob(
                    lease=lease.lease_id,
                    job_id=lease.job_id,
                    type=lease.type,
                    payload=lease.payload,
                    attempt=lease.attempt,
                    max_attempts=lease.max_attempts,
                    timeout=lease.timeout,
                    heartbeat=heartbeat,
                )
                for lease in batch
            ]
        )
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
            deadline = min(deadline, worker.started + HOLD_LIMIT_S)
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
            if len(worker.inflight) > 1 and now >= worker.started + HOLD_LIMIT_S:
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
        _signal(worker.process, signal.SIGKILL)
        await trio.sleep_forever()  # the reader's EOF ends the serving

    async def _read(self, worker: WorkerHandle, serving: trio.CancelScope) -> None:
        """Take the worker's messages; when its channel ends, stop serving it."""
        try:
            while True:
                msg = await worker.channel.receive()
                now = worker.last_beat = trio.current_time()
                match msg:
                    case JobFinished():
                        self._reported(worker, msg, now)
                    case GivenBack():
                        self._given_back(worker, msg.leases)
                    case Heartbeat():
                        pass  # any message counts as a sign of life, above
                    case JobLog() | JobProcess() | JobProgress():
                        # The job that sent it may be one after the running one: the
                        # worker went on before this supervisor read the end before it.
                        held = _held(worker, msg.lease)
                        if held is None:
                            log.warning(
                                "message for a job this worker does not hold",
                                worker_pid=worker.pid,
                                message=type(msg).__name__,
                            )
                            continue
                        if isinstance(msg, JobLog):
                            self.jobs.log(held, msg.lines)
                        elif isinstance(msg, JobProcess):
                            worker.job_pgids[held.lease_id] = msg.pgid
                        else:
                            worker.progress = msg.fraction
                            self.jobs.progress(held, msg.fraction, msg.message)
                    case _:
                        log.warning(
                            "unexpected worker message",
                            worker_pid=worker.pid,
                            message=type(msg).__name__,
                        )
        except (trio.EndOfChannel, trio.BrokenResourceError, ProtocolError, OSError):
            pass
        serving.cancel()

    async def _watch_exit(self, worker: WorkerHandle, serving: trio.CancelScope) -> None:
        """When the worker process exits, stop serving it, even if its channel stays open.

        EOF on the channel does not always come: a process the worker started
        may hold the worker's end (a fork keeps every descriptor). What the
        worker sent before it exited is in the socket already; the reader takes
        that first, so a last report is recorded as usual.
        """
        await worker.process.wait()
        with trio.move_on_after(EXIT_READ_S):
            # Polled: nothing signals "all read". Once per worker death, and brief.
            while _unread(worker.sock):  # noqa: ASYNC110  # (see above)
                await trio.sleep(0.001)  # the reader's turn
        serving.cancel()

    def _reported(self, worker: WorkerHandle, report: JobFinished, now: float) -> None:
        """The worker ended a job: queue its end for the feeder; the next job has started."""
        lease = next((held for held in worker.inflight if held.lease_id == report.lease), None)
        if lease is None:
            log.warning("report for a job this worker does not hold", worker_pid=worker.pid)
            return
        elapsed = 0.0
        if lease is worker.inflight[0]:
            elapsed = now - worker.started
            # The worker's own measure: the supervisor's includes its own delays.
            ran = report.run_s if report.run_s > 0 else elapsed
            average = worker.average_s
            worker.average_s = (
                ran if average is None else average + AVERAGE_WEIGHT * (ran - average)
            )
            worker.started, worker.progress = now, None
        worker.job_pgids.pop(lease.lease_id, None)  # its commands ended with it
        worker.inflight.remove(lease)
        worker.ends.append((lease, _how_it_ended(worker, lease, report), elapsed))
        if report.last:
            worker.retiring = True
            worker.state = WorkerState.STOPPING
        worker.activity.set()
        self._poke_watch(worker)  # the next job may have an earlier deadline

    def _given_back(self, worker: WorkerHandle, lease_ids: list[int]) -> None:
        worker.giving_back = False
        wanted = set(lease_ids)
        for lease in [held for held in worker.inflight if held.lease_id in wanted]:
            worker.inflight.remove(lease)
            worker.returned.append(lease)
        worker.activity.set()
        self._poke_watch(worker)

    async def _reap(self, worker: WorkerHandle) -> int | None:
        """Make sure the process is gone, settle its jobs, forget it. Returns its exit status."""
        with trio.move_on_after(1.0):  # its socket closed: it is exiting
            await worker.process.wait()
        if worker.process.returncode is None:
            _signal(worker.process, signal.SIGKILL)
            await worker.process.wait()
        status = worker.process.returncode
        self._children.discard(worker.pid)
        if not self._adopting:
            # An exec job's commands run in a group of their own; they must not
            # outlive the worker that ran them. Where there is no subreaper this is
            # all that reaches them. (With one, _end_orphans does, each checked: a
            # group's number is another's once the group has emptied, which it may
            # have done before its worker died.)
            for pgid in worker.job_pgids.values():
                _kill_group(pgid)
        worker.job_pgids.clear()
        await self._end_orphans(worker)  # before its job is settled, and may run again
        # Its last words (a traceback, say) are logged before its end is. What still
        # holds its output once it and its orphans are gone gets a moment, no more.
        with trio.move_on_after(OUTPUT_LINGER_S):
            await worker.output_done.wait()
        worker.output.cancel()
        await worker.channel.aclose()
        # A retiring worker started nothing after its last report.
        running = None if worker.retiring else worker.lease
        # Handed over but never started, never handed over, or given back: back to
        # the queue, attempt not spent.
        held = list(worker.inflight) if worker.retiring else list(worker.inflight)[1:]
        unstarted = [*held, *worker.unsent, *worker.returned]
        ends = worker.ends
        # Jobs it ran whose start was never announced: announced now, before their ends.
        ran = [lease for lease, _, _ in ends] + ([] if running is None else [running])
        self.jobs.started_many(_take_unannounced(worker, ran), worker.pid)
        worker.inflight, worker.unsent, worker.returned, worker.ends = deque(), [], [], []
        for lease, report, elapsed in ends:  # it reported them just before dying
            await self._settle_dead(
                "recording the end of an attempt",
                functools.partial(self._end, lease, report, elapsed),
            )
        if running is not None:
            await self._settle_dead(
                "settling the job of a worker that exited",
                functools.partial(self._settle_orphan, worker, running, status),
            )
        if unstarted:
            await self._settle_dead(
                "putting back jobs a worker never started",
                functools.partial(self._give_back_unstarted, unstarted),
            )
        if worker in self.workers:
            self.workers.remove(worker)
            log.info("worker exited", worker_pid=worker.pid, status=status)
        self._notify()
        return status

    async def _settle_dead(self, what: str, record: Callable[[], None]) -> None:
        """Record what became of a dead worker's job. The slot waits for a few tries
        (REAP_STORE_TRIES) before it spawns a replacement; if the store still fails (a
        disk that stays full), the write goes on in the background until the store
        takes it, so the job does not stay RUNNING until a restart once there is space
        (nor keep a place of its queue's limit, or its subject, meanwhile).
        """
        if await settle(what, record, self.durable, tries=REAP_STORE_TRIES):
            return
        log.warning("store fault; will keep trying in the background", what=what)
        assert self._background is not None
        self._background.start_soon(settle, what, record, self.durable)

    def _give_back_unstarted(self, leases: list[Lease]) -> None:
        self.jobs.given_back(leases)
        self.scheduler.wake()  # they may start now (whenever this write gets through)

    def _relay_output(self, worker: WorkerHandle) -> None:
        """Log what the worker writes to stdout and stderr, until :meth:`_reap` ends it."""
        stdout = getattr(worker.process, "stdout", None)  # (a fake in tests has none)
        if stdout is None or self._background is None:
            worker.output_done.set()
            return

        def running() -> int | None:
            lease = worker.lease
            return None if lease is None else lease.job_id

        async def relay() -> None:
            try:
                with worker.output:
                    await worker_output.relay(stdout, worker.pid, running)
            finally:
                with trio.CancelScope(shield=True):
                    await stdout.aclose()
                worker.output_done.set()

        self._background.start_soon(relay)

    async def _end_orphans(self, worker: WorkerHandle) -> None:
        """SIGKILL and reap every process below the supervisor that is not a worker,
        nor was there before the first worker (nor is below one of those).

        The supervisor is a child subreaper (Linux): when a worker dies, what its
        job started (an exec command, a handler's child, a daemon) is re-parented
        to the supervisor. A worker ends its jobs' processes itself, unless it was
        killed; then they are ended here, at once: their worker is gone.

        What was below the supervisor before it became a subreaper it did not
        start (a process exec'd into semanticad keeps its pid's children): those
        and what runs below them are left alone. (One of them whose parent exits
        later is re-parented to the supervisor too, and then looks like any orphan.)
        """
        if not self._adopting:
            return
        async with self._spawning:
            workers = frozenset(self._children)
            ended = await trio.to_thread.run_sync(_end_orphans_now, workers, self._foreign)
        if ended:
            log.warning(
                "ended processes a dead worker's job left running",
                worker_pid=worker.pid,
                count=ended,
            )

    def _end(self, lease: Lease, report: JobFinished, elapsed: float) -> None:
        """Record a reported end (see _how_it_ended): an interrupted job goes back to the
        queue, attempt not spent."""
        if _interrupted(report):
            assert report.error is not None
            self.jobs.interrupted(lease, report.error.message)
        else:
            self.jobs.finished(lease, report, elapsed)

    def _settle_orphan(self, worker: WorkerHandle, lease: Lease, status: int | None) -> None:
        """Record how the job of a worker that is gone ended: as the supervisor asked if it
        asked it to stop (it was killed because it did not stop in time), as interrupted
        if the worker was stopped by the drain, else as lost with its worker."""
        elapsed = trio.current_time() - worker.started
        stop = worker.stops.get(lease.lease_id)
        if stop is not None:
            self.jobs.finished(lease, JobFinished(lease=lease.lease_id, error=stop), elapsed)
        elif worker.interrupt_reason is not None:
            self.jobs.interrupted(lease, worker.interrupt_reason)
        else:
            self.jobs.worker_lost(lease, worker.pid, status, elapsed)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_changed(self) -> None:
        await self._changed.wait()


def _how_it_ended(worker: WorkerHandle, lease: Lease, report: JobFinished) -> JobFinished:
    """The end a worker reported, as it is to be recorded.

    A worker stopped by the drain (:meth:`WorkerPool.stop`) stops its job as a
    cancel would, and reports it: if that job did not end DONE, and the
    supervisor had not asked it to stop (a cancel, a timeout: it ends as
    asked), it was interrupted: back to the queue, attempt not spent, with the
    drain's reason. A worker stopped by another's SIGTERM says ``interrupted``
    itself. (A job that really ended in time is recorded as it ended.)
    """
    if report.error is None or worker.interrupt_reason is None or lease.lease_id in worker.stops:
        return report
    error = JobError(ErrorKind.INTERRUPTED.value, worker.interrupt_reason)
    return JobFinished(
        lease=report.lease,
        error=error,
        run_s=report.run_s,
        started_at=report.started_at,
        last=report.last,
    )


def _interrupted(report: JobFinished) -> bool:
    return report.error is not None and report.error.kind == ErrorKind.INTERRUPTED


def _take_unannounced(worker: WorkerHandle, leases: list[Lease]) -> list[Lease]:
    """Those of ``leases`` (in the order the worker ran them) not yet announced as started.

    A worker runs its jobs in lease order, so the announced ones are exactly
    those up to ``worker.announced``; that mark moves past the ones returned,
    which the caller announces.
    """
    unseen = [lease for lease in leases if lease.lease_id > worker.announced]
    if unseen:
        worker.announced = unseen[-1].lease_id
    return unseen


def _held(worker: WorkerHandle, lease_id: int) -> Lease | None:
    """The handed-over job of this lease id, if the worker still holds it (most often its first)."""
    for lease in worker.inflight:
        if lease.lease_id == lease_id:
            return lease
    return None


def _present() -> frozenset[tuple[int, float]]:
    """The keys of the processes below this one now (one system call if none); blocks."""
    return (
        frozenset(proc.key for proc in proctree.below()) if proctree.has_children() else frozenset()
    )


def _end_orphans_now(workers: frozenset[int], foreign: frozenset[tuple[int, float]]) -> int:
    """SIGKILL the processes below this one but the ``workers`` and the ``foreign`` ones
    (and those below them); blocks. A foreign child that has exited is reaped: this
    process is its parent now (it was exec'd into its old parent's pid)."""

    def skip(proc: proctree.Proc) -> bool:
        return proc.pid in workers or (proc.key in foreign and not proc.zombie)

    def orphans() -> list[proctree.Proc]:
        return proctree.below(skip=skip)

    return proctree.end(orphans, deadline=lambda: 0.0)


def _unread(sock: trio.socket.SocketType | None) -> int:
    """How many bytes wait in ``sock`` to be read (0 once it is closed)."""
    if sock is None or sock.fileno() == -1:
        return 0
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("i", buf)[0])


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
) -> bool:
    """Run a store write until it is durable, retrying with backoff while the store fails.

    Returns True once it is durable; False after ``tries`` failures (nothing
    of it happened: the caller decides what comes next).
    """

    async def write() -> None:
        record()
        await durable()

    def warn(exc: StoreError, delay: float) -> None:
        log.warning("store fault; will retry", what=what, error=exc.message, retry_in_s=delay)

    try:
        await retry_store(
            write, Backoff(SETTLE_DELAY_MIN, SETTLE_DELAY_MAX), tries=tries, on_retry=warn
        )
    except StoreError:
        return False
    return True
