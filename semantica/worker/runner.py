"""The worker process's main loop: take a job from the supervisor, run it, report.

The worker talks only to the supervisor that started it, over the socket pair
whose end it inherited (``SEMANTICA_WORKER_FD``); it never touches the store.
It runs one job at a time, in the order they came: the supervisor may hand
over several short jobs at once (a prefetch), and may ask for the ones not yet
started back (:class:`~semantica.protocol.GiveBack`). When the supervisor goes
away (the socket reaches EOF, which the kernel guarantees even when the
supervisor is SIGKILLed, or a write to it fails: it died as the worker wrote),
the worker stops what it runs, including an exec job's process group, and
exits. When the supervisor sends SIGTERM (the end of a drain), the worker
stops its job as a CancelJob would and exits once the job's last lines and
report are sent (:meth:`Worker.shut_down`). On a shared store a job runs only
while the supervisor keeps renewing its lease (:mod:`semantica.worker.fence`):
a worker whose supervisor is frozen kills its job and exits. However it exits,
it ends every process below it first.

Every process a job started is ended when the job ends, before its end is
reported, and every process below the worker when it exits
(:mod:`semantica.worker.containment`).

Outcome of an attempt, as reported in :class:`~semantica.protocol.JobFinished`:

* the handler returned: success, its return value as JSON is the result;
* it raised :class:`~semantica.errors.PermanentError`: failed, no retry;
* it raised anything else: failed, retried while attempts remain;
* the type has no handler: failed with ``unknown_type``, no retry.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any

import msgspec
import trio

from semantica import proctree
from semantica.errors import PermanentError, ProtocolError
from semantica.framed import FramedStream
from semantica.models import ErrorKind, JobError
from semantica.protocol import (
    PROTOCOL_VERSION,
    WORKER_MAX_FRAME,
    CancelJob,
    GiveBack,
    GivenBack,
    Heartbeat,
    JobFinished,
    JobLog,
    JobProcess,
    JobProgress,
    Renew,
    RunJob,
    ToWorker,
    WorkerHello,
    encode,
)
from semantica.worker import registry
from semantica.worker.containment import Containment
from semantica.worker.context import JobContext, LogBuffer, ProgressSlot
from semantica.worker.exec_job import KILL_GRACE, ExecFailed, InvalidPayload, run_exec
from semantica.worker.fence import Fence
from semantica.worker.handler_thread import HandlerThread
from semantica.worker.outcomes import (
    blocking_handler,
    call_blocking,
    failed,
    handler_failed,
    note_ended,
    succeeded,
)

FD_ENV = "SEMANTICA_WORKER_FD"
#: The least time between two progress reports of one job.
PROGRESS_INTERVAL = 0.5


#: When the supervisor is gone, an exec job's group and what the job started get
#: this long between SIGTERM and SIGKILL, so the worker is gone within a second.
#: (Stopped by SIGTERM, the end of a drain, they get the cancel grace.)
EXIT_GRACE = 0.5
#: A plain handler stopped returns within its grace; the processes it started may take
#: a moment more to end before its report goes. Past this too, it counts as stuck.
#: (Under the supervisor's STOP_MARGIN, after which it kills a worker that has not reported.)
REPORT_MARGIN = 0.5
#: A worker stopped by SIGTERM (the end of a drain) waits this long past the cancel grace
#: for its job's last report to go, then exits anyway. (Under the supervisor's
#: EXIT_MARGIN, after which it kills a worker still there.)
EXIT_REPORT_MARGIN = 0.25
#: How a job stopped because its worker was (SIGTERM) ends, unless it was asked to stop
#: before: the supervisor puts it back in the queue, attempt not spent.
EXIT_STOP_MESSAGE = "its worker was stopped (SIGTERM)"


class _Attempt:
    """The job this worker is running, and the request to stop it if one came."""

    def __init__(
        self,
        job: RunJob,
        ctx: JobContext,
        logs: LogBuffer,
        progress: ProgressSlot,
        scope: trio.CancelScope,
    ) -> None:
        self.job = job
        self.ctx = ctx
        self.logs = logs
        self.progress = progress
        self.scope = scope  # cancelled to stop it
        self.stop: CancelJob | None = None
        #: Its handler (or command) has ended; what it left running is being ended. A stop
        #: now changes only how soon, not the outcome.
        self.returned = False
        self.command: trio.Process | None = None  # an exec job's command, once it runs
        self.began = time.monotonic()
        self.began_at = time.time()  # (the wall clock, for the job's started_at)
        self.ran_s = 0.0

    def over(self) -> bool:
        """Whether it has ended, so that a stop now changes only how soon what it left
        running ends, not how it ends: its handler returned, or its command exited.

        (An exec job's command may have exited a moment before the worker's loop
        has seen it; a cancel or a SIGTERM taken first must not make a command
        that ended on its own a stopped job.)
        """
        return self.returned or (self.command is not None and self.command.poll() is not None)


class Worker:
    """One worker process's connection and the job it runs."""

    def __init__(self, channel: FramedStream, containment: Containment | None = None) -> None:
        self.channel = channel
        #: Ends what each job started. (By default only exec commands' process groups: a
        #: Worker run inside another program, as in tests, must not end that program's
        #: other processes. ``main`` gives it the whole process tree.)
        self.containment = containment or Containment(KILL_GRACE, whole_tree=False)
        self.current: _Attempt | None = None
        #: Jobs handed over and not started yet, in order.
        self.pending: deque[RunJob] = deque()
        self._has_work = trio.Event()
        # A plain handler's thread runs the plain jobs that follow it too, so it
        # takes jobs from `pending` and sets `current` itself: this lock guards
        # both, and the stop requests on `current`.
        self._lock = threading.Lock()
        self._trio_thread = threading.get_ident()  # made in the trio thread
        #: Ended attempts, in order, for _send_reports.
        self._outbox: deque[tuple[_Attempt, JobFinished | None]] = deque()
        self._outbox_ready = trio.Event()
        # The helpers below live as long as the worker (not one set per job: starting
        # tasks costs more than a short job). These events wake them.
        self._busy = trio.Event()  # a job started
        self._lines_ready = trio.Event()  # the running job logged
        self._progress_ready = trio.Event()  # the running job reported progress
        self._heartbeat = 0.0
        #: How long a stopped job gets to end (see CancelJob.grace).
        self.grace = KILL_GRACE
        #: A blocking handler ignored its stop: report, then end the process (and its thread).
        self.exit_after_report = False
        #: The worker began to exit (SIGTERM, the supervisor gone): no job starts from now
        #: on, not even in a plain handler's thread that outlives the event loop.
        self._exiting = False
        #: Attempts begun whose end is not yet queued for its report (under the lock: a
        #: plain handler's thread begins the jobs that follow its first).
        self._unposted = 0
        #: Reports a plain handler's thread posted, not yet taken by the trio thread, and
        #: whether a wake-up to take them is on its way (both under the lock).
        self._posted: list[tuple[_Attempt, JobFinished]] = []
        self._take_due = False
        #: Where plain handlers run (started with the first plain job).
        self._handler_thread = HandlerThread()
        #: The wait for a stopped plain handler's thread to end (see _run_blocking).
        self._abandoned: trio.CancelScope | None = None
        self._serving: trio.CancelScope | None = None  # cancelled: serve() returns
        #: On a shared store a job runs only while the supervisor renews its lease (fence.py).
        self.fence = Fence(
            busy=lambda: self.current is not None or bool(self.pending),
            end_all=self._end_all_now,
        )

    def _end_all_now(self) -> None:
        """Kill every process this worker started, at once (the fence: see fence.py)."""
        self.containment.exiting(0.0)
        self.containment.end_all()

    async def _send(self, *frames: msgspec.Struct) -> bool:
        """Send frames to the supervisor in one write; False if it is gone.

        A write fails (BrokenResourceError: EPIPE, ECONNRESET) when the supervisor
        died, possibly before the EOF that says so is read: that is its end too, as
        EOF is (:meth:`_supervisor_gone`), not an error of this worker.

        Written at once when the socket takes it (``send_frames``): a report or a
        heartbeat costs one ``write`` and no pass through the scheduler.
        """
        data = b"".join(encode(frame) for frame in frames)
        try:
            with trio.CancelScope(shield=True):  # never cut a frame in half
                await self.channel.send_frames(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self._supervisor_gone()
            return False
        return True

    def _supervisor_gone(self) -> None:
        """Stop: the job's processes get EXIT_GRACE, and serve() returns."""
        self.grace = EXIT_GRACE
        self._stopping_all(EXIT_GRACE)
        if self._serving is not None:
            self._serving.cancel()

    async def serve(self) -> None:
        """Say hello, then run jobs as they come until the supervisor goes away."""
        hello = WorkerHello(
            version=PROTOCOL_VERSION, pid=os.getpid(), types=registry.registered_types()
        )
        if not await self._send(hello):
            return
        async with trio.open_nursery() as nursery:
            self._serving = nursery.cancel_scope
            if self._exiting:
                return  # shut down before it served: nothing runs
            nursery.start_soon(self._exit_on_signals)
            # Jobs run in a task of their own, so that EOF, CancelJob and GiveBack
            # are noticed while one runs.
            nursery.start_soon(self._run_jobs)
            nursery.start_soon(self._send_reports, nursery.cancel_scope)
            nursery.start_soon(self._pump_logs)
            nursery.start_soon(self._pump_progress)
            nursery.start_soon(self._beat)
            while True:
                try:
                    msg = await self.channel.receive()
                except (trio.EndOfChannel, trio.BrokenResourceError, ProtocolError, OSError):
                    # The supervisor is gone (or speaks nonsense: the same).
                    self._supervisor_gone()
                    break
                match msg:
                    case RunJob():
                        if msg.lease_for > 0:
                            self.fence.hold_until(msg.lease_for)
                        with self._lock:
                            self.pending.append(msg)
                        self._has_work.set()
                    case Renew():
                        self.fence.hold_until(msg.for_s)
                    case CancelJob():
                        await self._stop(msg)
                    case GiveBack():
                        await self._give_back(msg)
            nursery.cancel_scope.cancel()

    async def _run_jobs(self) -> None:
        while True:
            while not self.pending:
                self._has_work = trio.Event()
                await self._has_work.wait()
            with self._lock:
                if self._exiting:
                    return
                job = self.pending.popleft()
            fn = blocking_handler(job)
            if fn is None:
                await self.run_job(job)
            else:
                await self._run_blocking(job, fn)
            if self.exit_after_report:
                # A handler's thread ignored its stop: this process ends after that
                # report (the supervisor hands it nothing more) and starts nothing else.
                await trio.sleep_forever()

    def _take_pending(self, leases: set[int]) -> list[RunJob]:
        """Remove the not-started jobs of these leases; return them. Hold the lock."""
        taken = [job for job in self.pending if job.lease in leases]
        if taken:
            self.pending = deque(job for job in self.pending if job.lease not in leases)
        return taken

    async def _give_back(self, request: GiveBack) -> None:
        with self._lock:
            taken = self._take_pending(set(request.leases))
        await self._send(GivenBack(leases=[job.lease for job in taken]))

    async def _stop(self, request: CancelJob) -> None:
        with self._lock:
            taken = self._take_pending({request.lease})
            current = self.current
            if taken or current is None or current.job.lease != request.lease:
                current = None  # not started, or it ended meanwhile (its report is on the way)
            elif current.over():
                # It ended in time; only what it left running remains: that ends sooner
                # (if it has not been ended yet).
                self.containment.stopping(request.lease, request.grace)
                current = None
            else:
                current.stop = request
        for job in taken:
            # Not started: it ends at once, as asked.
            error = JobError(request.kind, request.message)
            await self._send(JobFinished(lease=job.lease, error=error, permanent=True))
        if current is not None:
            self.grace = request.grace
            self.containment.stopping(request.lease, request.grace)
            current.ctx._cancel()
            current.scope.cancel()

    async def _exit_on_signals(self) -> None:
        # (No PR_SET_PDEATHSIG: trio spawns processes from a helper thread, and Linux
        # sends that signal when the *thread* exits. The supervisor's death closes our
        # socket instead.)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:
            async for _ in signals:
                break
        await self.shut_down()

    async def shut_down(self) -> None:
        """Stop the running job, let its report go, then end serve(): what SIGTERM does.

        The pool stops a worker with SIGTERM at the end of a drain. The job is
        stopped exactly as by a CancelJob, with the cancel grace: its handler sees
        ctx.cancelled, an async one is cancelled, an exec command's group gets
        SIGTERM. Nothing else starts. Once the job has ended (within the grace), its
        last log lines and its report go, marked the last (its stop's kind is
        ``interrupted``: the supervisor puts it back in the queue), and serve()
        returns; main() then ends what is left. A job that does not end in time is
        reported as stopped all the same, and serve() returns a little after the
        grace (the pool SIGKILLs a worker still there a little after that). A job
        that had ended already, or had been asked to stop, is reported as it ended.
        """
        serving = self._serving
        if serving is None:
            self._exiting = True  # not serving yet: serve() returns once it would begin
            return
        self.grace = grace = self.containment.grace
        self.containment.exiting(grace)
        with self._lock:
            self._exiting = True
            due = self._unposted > 0 or bool(self._outbox)
            current = self.current
            if current is None or current.over() or current.stop is not None:
                current = None  # its end is on its way: as it ended, or as asked before
            else:
                current.stop = CancelJob(
                    lease=current.job.lease,
                    kind=ErrorKind.INTERRUPTED.value,
                    message=EXIT_STOP_MESSAGE,
                    grace=grace,
                )
        if not due:
            serving.cancel()  # nothing runs, nothing to report (a send under way ends first)
            return
        if current is not None:
            current.ctx._cancel()
            current.scope.cancel()
        if self._abandoned is not None:  # a plain handler stopped before gets no more time
            self._abandoned.deadline = min(self._abandoned.deadline, trio.current_time() + grace)
        # _send_reports ends serve() once the last report is sent; this, if it never is.
        await trio.sleep(grace + EXIT_REPORT_MARGIN)
        serving.cancel()

    def _stopping_all(self, grace: float) -> None:
        """The worker stops: its job's processes get ``grace``, its handler is told, and
        no other job starts."""
        self.containment.exiting(grace)
        with self._lock:
            self._exiting = True
            current = self.current
        if current is not None:
            current.ctx._cancel()  # a plain handler that looks may stop its work

    def _new_attempt(
        self, job: RunJob, token: trio.lowlevel.TrioToken, scope: trio.CancelScope
    ) -> _Attempt:
        # (Called in the handler thread too: the buffers must know the trio thread.)
        self.containment.begin(job.lease)
        logs = LogBuffer(token, self._wake_log_pump, self._trio_thread)
        progress = ProgressSlot(token, self._wake_progress_pump, self._trio_thread)
        ctx = JobContext(job.job_id, job.type, job.attempt, job.max_attempts, logs, progress.report)
        return _Attempt(job, ctx, logs, progress, scope)

    def _started(self, heartbeat: float) -> None:
        self._heartbeat = heartbeat
        self._busy.set()

    async def run_job(self, job: RunJob) -> None:
        """Run one attempt of an async handler, an exec job or an unknown type; report it."""
        attempt = self._new_attempt(job, trio.lowlevel.current_trio_token(), trio.CancelScope())
        with self._lock:
            self.current = attempt
            self._unposted += 1
        self._started(job.heartbeat)
        finished: JobFinished | None = None
        try:
            with attempt.scope:
                finished = await self._attempt(job, attempt.ctx, attempt.logs)
            attempt.ran_s = time.monotonic() - attempt.began
            with self._lock:
                attempt.returned = True
            await self._contain(attempt)  # (still current: heartbeats go on meanwhile)
        finally:
            with self._lock:
                self.current = None
        self._post(attempt, finished)

    async def _contain(self, attempt: _Attempt) -> None:
        """End what the attempt left running (from the trio thread); nothing to end is cheap."""
        if self.containment.clear():
            return
        with trio.CancelScope(shield=True):  # bounded: the grace, then SIGKILL
            ended = await trio.to_thread.run_sync(self.containment.end_job)
        note_ended(attempt.logs, ended)

    def _contain_blocking(self, attempt: _Attempt) -> None:
        """End what the attempt left running (from a plain handler's thread)."""
        if not self.containment.clear():
            note_ended(attempt.logs, self.containment.end_job())

    async def _run_blocking(self, first: RunJob, fn: registry.HandlerFn) -> None:
        """Run a plain handler in the handler thread, and the plain jobs queued behind it too.

        One thread hand-off for a run of prefetched jobs rather than one each
        (a hand-off costs more than a short job), to the worker's long-lived
        :class:`~semantica.worker.handler_thread.HandlerThread`. The thread
        takes each next job from ``pending`` (under the lock) only while nobody
        asked it to stop.

        Stopped, the running handler gets ``grace`` to notice ctx.cancelled.
        Cancellation: returns at once if the thread ends within the grace
        period; otherwise reports the job as stopped and marks the worker to
        exit after that report, since a thread cannot be stopped from outside.
        """
        token = trio.lowlevel.current_trio_token()
        scope = trio.CancelScope()
        done = threading.Event()
        finished = trio.Event()
        first_attempt = self._new_attempt(first, token, scope)
        with self._lock:
            self.current = first_attempt
            self._unposted += 1
        self._started(first.heartbeat)

        def series() -> None:
            attempt, handler = first_attempt, fn
            try:
                while True:
                    report = call_blocking(attempt.job, attempt.ctx, attempt.logs, handler)
                    attempt.ran_s = time.monotonic() - attempt.began
                    with self._lock:
                        attempt.returned = True
                    self._contain_blocking(attempt)
                    with self._lock:
                        if self.current is not attempt:
                            return  # given up on as stuck: reported already, the worker exits
                        self.current = following = None
                        # After a stop this thread takes no more: after the job's, the
                        # event loop goes on with the queue; after the worker's, nothing
                        # starts (the supervisor puts back what it handed over as never
                        # started, attempt not spent), though the loop may be gone.
                        stopped = attempt.stop is not None or self._exiting
                        taken = None if stopped else self._next_blocking()
                        if taken is not None:
                            job, handler = taken
                            self.current = following = self._new_attempt(job, token, scope)
                            self._unposted += 1
                    self._post_from_thread(token, attempt, report)
                    if following is None:
                        return
                    attempt = following
            finally:
                done.set()

        def then() -> None:
            with contextlib.suppress(trio.RunFinishedError):  # (the worker exits)
                token.run_sync_soon(finished.set)

        self._handler_thread.start(series, then)
        with scope:
            await finished.wait()
        if not scope.cancelled_caught:
            error, self._handler_thread.error = self._handler_thread.error, None
            if error is not None:
                raise error  # a bug of ours in the thread: the worker fails, as on the loop
            return
        # Stopped: the thread gets the grace to end. (Once the worker exits, no margin:
        # its stuck job's report must go before the pool's EXIT_MARGIN is over.)
        margin = 0.0 if self._exiting else REPORT_MARGIN
        deadline = trio.current_time() + self.grace + margin
        with trio.CancelScope(shield=True, deadline=deadline) as self._abandoned:
            await finished.wait()
        self._abandoned = None
        if not done.is_set():
            with self._lock:
                stuck, self.current = self.current, None
            if stuck is not None:
                stuck.ran_s = time.monotonic() - stuck.began
                self.exit_after_report = True
                await self._contain(stuck)  # its grace is over: what it started is killed
                self._post(stuck, None)

    def _next_blocking(self) -> tuple[RunJob, registry.HandlerFn] | None:
        """The next pending job, taken, if a plain handler runs it. Hold the lock."""
        if not self.pending:
            return None
        fn = blocking_handler(self.pending[0])
        if fn is None:
            return None
        return self.pending.popleft(), fn

    def _post_from_thread(
        self, token: trio.lowlevel.TrioToken, attempt: _Attempt, report: JobFinished
    ) -> None:
        """Queue an ended attempt's report from a plain handler's thread.

        The trio thread is woken once for all the reports posted before it
        takes them (:meth:`_take_posted`), not once per job: a run of short
        jobs would otherwise cost a wake-up, a scheduler pass and a write each.
        Nothing waits longer for it: a report posted while a wake-up is due is
        taken by that wake-up.
        """
        with self._lock:
            self._posted.append((attempt, report))
            if self._take_due:
                return
            self._take_due = True
        with contextlib.suppress(trio.RunFinishedError):  # (the worker exits)
            token.run_sync_soon(self._take_posted)

    def _take_posted(self) -> None:
        """Queue the reports a plain handler's thread posted (trio thread), in order.

        The job its thread runs now (if any) has started: its heartbeat starts too.
        """
        with self._lock:
            posted, self._posted = self._posted, []
            self._take_due = False
            current = self.current
        for attempt, report in posted:
            self._post(attempt, report)
        if current is not None:
            self._started(current.job.heartbeat)

    def _post(self, attempt: _Attempt, finished: JobFinished | None) -> None:
        """Queue an ended attempt's report (trio thread); _send_reports sends them in order."""
        with self._lock:
            self._unposted -= 1
        self._outbox.append((attempt, finished))
        self._outbox_ready.set()

    async def _send_reports(self, serving: trio.CancelScope) -> None:
        """Send each ended attempt's last log lines and its JobFinished, in the order they ended.

        The reports queued by the time this task runs go in one write: a
        prefetched run of short jobs costs one system call per batch, not two
        per job.
        """
        while True:
            while not self._outbox:
                self._outbox_ready = trio.Event()
                await self._outbox_ready.wait()
            frames: list[msgspec.Struct] = []
            report: JobFinished | None = None
            while self._outbox:
                attempt, finished = self._outbox.popleft()
                job = attempt.job
                if attempt.stop is not None:
                    # Stopped: the job ends as the supervisor asked, whatever the handler did.
                    error = JobError(attempt.stop.kind, attempt.stop.message)
                    finished = JobFinished(lease=job.lease, error=error, permanent=True)
                assert finished is not None
                finished.run_s, finished.started_at = attempt.ran_s, attempt.began_at
                lines = attempt.logs.take()
                if lines:
                    frames.append(JobLog(lease=job.lease, lines=lines))
                frames.append(finished)
                report = finished
            with self._lock:
                # The worker exits after these (a stuck handler's thread, or SIGTERM) and
                # nothing more is to be reported: the last one says so.
                retiring = (
                    (self.exit_after_report or self._exiting)
                    and not self._outbox
                    and not self._unposted
                )
            if retiring and report is not None:
                report.last = True
            await self._send(*frames)
            if retiring:
                serving.cancel()

    def _wake_log_pump(self) -> None:
        self._lines_ready.set()  # (the pump replaces the event each time it wakes)

    def _wake_progress_pump(self) -> None:
        self._progress_ready.set()

    async def _beat(self) -> None:
        # Sent from the event loop: it stops if the loop is stuck (an async
        # handler that blocks), which is exactly what the supervisor must see.
        while True:
            if self.current is None or self._heartbeat <= 0:
                self._busy = trio.Event()
                await self._busy.wait()
                continue
            await trio.sleep(self._heartbeat)
            attempt = self.current
            if attempt is not None:
                await self._send(Heartbeat(lease=attempt.job.lease))

    async def _pump_progress(self) -> None:
        # At most one update per PROGRESS_INTERVAL, always the latest: a handler may
        # report in a tight loop without flooding the supervisor's store.
        while True:
            await self._progress_ready.wait()
            self._progress_ready = trio.Event()
            attempt = self.current
            if attempt is None or not attempt.progress.changed:
                continue  # its job ended meanwhile
            attempt.progress.changed = False
            fraction, message = attempt.progress.latest
            await self._send(
                JobProgress(lease=attempt.job.lease, fraction=fraction, message=message)
            )
            await trio.sleep(PROGRESS_INTERVAL)

    async def _pump_logs(self) -> None:
        while True:
            await self._lines_ready.wait()
            self._lines_ready = trio.Event()
            attempt = self.current
            if attempt is None:
                continue  # its job ended, and its run_job sends what was left
            lines = attempt.logs.take()
            if lines:
                await self._send(JobLog(lease=attempt.job.lease, lines=lines))

    async def _exec_started(self, command: trio.Process) -> None:
        pgid = command.pid  # (the command leads its group)
        self.containment.add_group(pgid)
        current = self.current
        if current is not None:
            current.command = command
            await self._send(JobProcess(lease=current.job.lease, pgid=pgid))

    async def _attempt(self, job: RunJob, ctx: JobContext, logs: LogBuffer) -> JobFinished:
        try:
            payload = msgspec.json.decode(job.payload)
        except msgspec.DecodeError as exc:
            return failed(job, ErrorKind.BAD_PAYLOAD, f"payload is not JSON: {exc}", permanent=True)
        try:
            if job.type == registry.EXEC_TYPE:
                result: Any = await run_exec(
                    payload, logs.add, self._exec_started, lambda: self.grace, logs.room
                )
            else:
                fn = registry.lookup(job.type)
                if fn is None:
                    return failed(
                        job,
                        ErrorKind.UNKNOWN_TYPE,
                        f"no handler for job type {job.type!r} in this worker "
                        "(set SEMANTICA_HANDLERS to the module that defines it)",
                        permanent=True,
                    )
                # (Plain handlers run in a thread: see _run_blocking.)
                result = await fn(ctx, payload)
        except InvalidPayload as exc:
            return failed(job, ErrorKind.BAD_PAYLOAD, str(exc), permanent=True)
        except PermanentError as exc:
            return failed(job, ErrorKind.EXCEPTION, str(exc) or "PermanentError", permanent=True)
        except ExecFailed as exc:
            return failed(job, ErrorKind.EXIT_STATUS, str(exc))
        except (Exception, SystemExit) as exc:  # noqa: BLE001  # any handler error fails the attempt
            return handler_failed(job, exc, logs)
        return succeeded(job, result)


def main() -> None:
    """Entry point of ``python -m semantica.worker``; exits 3 if a handler module fails."""
    fd_text = os.environ.get(FD_ENV)
    if not fd_text:
        print(
            f"semantica.worker is started by semanticad, not by hand ({FD_ENV} is not set)",
            file=sys.stderr,
        )
        sys.exit(2)
    # Ctrl-C in the supervisor's terminal is the supervisor's business: it drains.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Whatever a job starts stays below this process, even once its parent exits (Linux).
    proctree.become_subreaper()
    modules = [m.strip() for m in os.environ.get("SEMANTICA_HANDLERS", "").split(",") if m.strip()]
    try:
        registry.load_modules(modules)
    except Exception as exc:  # noqa: BLE001  # any import failure is a configuration error
        print(
            f"semantica worker: cannot load handler modules {modules}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        sys.stderr.flush()
        os._exit(3)
    fd = int(fd_text)
    # The channel is this process's alone. Were it inherited by what a handler starts
    # (os.system("cmd &"), a subprocess, a daemon), it would stay open after this
    # worker died. (A fork that does not exec still holds it: the supervisor watches
    # this process itself, not only the channel.)
    os.set_inheritable(fd, False)
    del os.environ[FD_ENV]
    sock = socket.socket(fileno=fd)
    # What runs below the worker now (the handler modules started it) is the worker's own.
    containment = Containment(_cancel_grace())

    async def run() -> None:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        await Worker(FramedStream(stream, ToWorker, WORKER_MAX_FRAME), containment).serve()

    status = 1
    try:
        trio.run(run)
        status = 0
    except BaseException:  # noqa: BLE001  # a bug of ours: said below, and what runs still ends
        with contextlib.suppress(OSError):  # (the supervisor, which reads it, may be gone)
            traceback.print_exc()
    finally:
        # However the worker ends, nothing it or its jobs started outlives it (an
        # abandoned handler thread's processes included): SIGTERM, SIGKILL at the
        # stop's grace, reaped. (Without this, what is below it would go to the
        # supervisor, a subreaper too, or to init if the supervisor is gone.)
        containment.end_all()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        # A blocking handler's thread cannot be interrupted; do not wait for it.
        os._exit(status)


def _cancel_grace() -> float:
    """The grace of a stopped job's processes (the supervisor's SEMANTICA_CANCEL_GRACE)."""
    try:
        grace = float(os.environ.get("SEMANTICA_CANCEL_GRACE", KILL_GRACE))
    except ValueError:
        return KILL_GRACE
    return grace if 0 <= grace <= 3600 else KILL_GRACE
