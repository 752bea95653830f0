"""A worker's life in its slot: spawn, hello, serve, reap, replace.

Each slot is a task (:meth:`Slots._run_slot`) that spawns a worker
(``python -m semantica.worker``) with one end of a socket pair, waits up to
``HELLO_TIMEOUT`` for its hello, then serves it: the feeder (feeding.py) runs
in the slot's task, the reader and the exit watcher (reader.py) and the
watchdog (watchdog.py) beside it. The worker's exit, or EOF on its channel,
ends the serving (the exit alone may have to do: a process the worker started
can hold its end of the channel open); the slot then reaps the process
(SIGKILL if it lingers), ends what its job left (orphans.py), settles its jobs
(settling.py), and spawns a replacement: at once after a worker that lived
``YOUNG_DEATH``, otherwise after a delay that doubles up to
``MAX_RESPAWN_DELAY``.

Workers run in a session of their own, so a Ctrl-C in the supervisor's
terminal reaches only the supervisor, which then drains. A worker's stdout
and stderr are one pipe, relayed into the log (worker_output.py), never to
the supervisor's stderr.

Fails: a first worker that does not start (it exits, stays silent, or speaks
another protocol version) raises :class:`WorkerStartError` out of
``WorkerPool.run``; a later one is logged, and the slot tries again. The
reaper runs shielded from cancellation: a worker taken down by a cancel is
still reaped and its jobs settled.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
from collections import deque

import structlog
import trio

from semantica.errors import ProtocolError, SemanticaError
from semantica.framed import FramedStream
from semantica.protocol import PROTOCOL_VERSION, WORKER_MAX_FRAME, FromWorker, WorkerHello
from semantica.supervisor import worker_output
from semantica.supervisor.pool.base import PoolBase
from semantica.supervisor.pool.handle import (
    WorkerHandle,
    WorkerProcess,
    WorkerState,
    signal_process,
    take_unannounced,
)

log = structlog.get_logger("semantica.pool")

#: A worker must say hello within this long of being spawned.
HELLO_TIMEOUT = 30.0
#: After a worker is reaped, how long what still holds its output (on macOS, an
#: orphan of its job) may keep the relay of that output open.
OUTPUT_LINGER_S = 1.0
#: A worker that dies younger than this counts towards respawn backoff.
YOUNG_DEATH = 1.0
MAX_RESPAWN_DELAY = 5.0


class WorkerStartError(SemanticaError):
    """A worker process exited or stayed silent before it was ready."""

    code = "worker_start"


class Slots(PoolBase):
    """Spawns, serves, reaps and replaces the worker of each slot."""

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
                    signal_process(worker.process, signal.SIGTERM)
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
            await self._start_adopting()
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
            signal_process(process, signal.SIGKILL)
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

    async def _reap(self, worker: WorkerHandle) -> int | None:
        """Make sure the process is gone, settle its jobs, forget it. Returns its exit status."""
        with trio.move_on_after(1.0):  # its socket closed: it is exiting
            await worker.process.wait()
        if worker.process.returncode is None:
            signal_process(worker.process, signal.SIGKILL)
            await worker.process.wait()
        status = worker.process.returncode
        self._children.discard(worker.pid)
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
        self.jobs.started_many(take_unannounced(worker, ran), worker.pid)
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

    def _relay_output(self, worker: WorkerHandle) -> None:
        """Log what the worker writes to stdout and stderr, until :meth:`_reap` ends it."""
        stdout = getattr(worker.process, "stdout", None)  # (a fake in tests has none)
        if stdout is None or self._background is None:
            worker.output_done.set()
            return

        async def relay() -> None:
            try:
                with worker.output:
                    await worker_output.relay(stdout, worker.pid, lambda: worker.output_job_id)
            finally:
                with trio.CancelScope(shield=True):
                    await stdout.aclose()
                worker.output_done.set()

        self._background.start_soon(relay)
