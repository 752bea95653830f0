"""Reading a worker: its messages, and its exit.

The reader (:meth:`Reader._read`, one task per worker) takes each message as
it comes, and any message is a sign of life for the watchdog. A report
(``JobFinished``) queues the end for the feeder, as it is to be recorded
(settling.py), and starts the clock of the next job; ``GivenBack`` queues
the jobs the worker dropped; ``JobLog``, ``JobProgress`` and ``JobProcess``
go to the job they name, which may be one after the running one (the worker
went on before the supervisor read the end before it).

EOF or a bad frame ends the serving of the worker. So does its exit
(:meth:`Reader._watch_exit`), even while a process it started holds its
channel open; what it sent before is read first, for up to ``EXIT_READ_S``,
so a last report is recorded as usual. A message for a job the worker does
not hold, or of a type it does not send, is logged and dropped.
"""

from __future__ import annotations

import fcntl
import struct
import termios

import structlog
import trio

from semantica.errors import ProtocolError
from semantica.protocol import GivenBack, Heartbeat, JobFinished, JobLog, JobProcess, JobProgress
from semantica.supervisor.pool.base import PoolBase
from semantica.supervisor.pool.handle import WorkerHandle, WorkerState
from semantica.supervisor.pool.settling import how_it_ended
from semantica.supervisor.store import Lease

log = structlog.get_logger("semantica.pool")

#: Once a worker has exited, how long the reader gets to take what it sent before (a
#: process still holding its channel might write on for ever).
EXIT_READ_S = 1.0
#: Weight of the latest run time in a worker's average.
AVERAGE_WEIGHT = 0.25


class Reader(PoolBase):
    """Takes each worker's messages, and notices its exit."""

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
                            worker.progress_message = msg.message or None
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
            worker.started, worker.progress, worker.progress_message = now, None, None
            worker.last_job_id = lease.job_id
        worker.job_pgids.pop(lease.lease_id, None)  # its commands ended with it
        worker.inflight.remove(lease)
        worker.ends.append((lease, how_it_ended(worker, lease, report), elapsed))
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


def _held(worker: WorkerHandle, lease_id: int) -> Lease | None:
    """The handed-over job of this lease id, if the worker still holds it (most often its first)."""
    for lease in worker.inflight:
        if lease.lease_id == lease_id:
            return lease
    return None


def _unread(sock: trio.socket.SocketType | None) -> int:
    """How many bytes wait in ``sock`` to be read (0 once it is closed)."""
    if sock is None or sock.fileno() == -1:
        return 0
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("i", buf)[0])
