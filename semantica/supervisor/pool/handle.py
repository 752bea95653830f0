"""One worker as the pool sees it: its process, its channel, and the jobs it holds.

:class:`WorkerHandle` is plain state, shared by the parts of the pool (see
base.py), which keep it true. A job leased for a worker is in one of its lists
until its end is recorded: ``unsent`` (leased, its lease not yet committed),
``inflight`` (handed over, in the order the worker runs them: the first one
runs), ``ends`` (reported, not yet recorded) or ``returned`` (given back
unstarted, not yet put back in the queue); :meth:`WorkerHandle.holds` says
whether a job is still with the worker.

Nothing here waits. :meth:`WorkerHandle.usage` reads ``/proc`` through
psutil (a process that is gone counts as nothing), and :func:`signal_process`
takes a process that is already gone as no error.
"""

from __future__ import annotations

import contextlib
import enum
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import psutil
import trio

from semantica import proctree
from semantica.framed import FramedStream
from semantica.models import JobError
from semantica.protocol import JobFinished
from semantica.supervisor.store import Lease

#: A prefetched job waits at most about this long behind a job that runs on: then it is
#: handed back to the queue for any worker.
HOLD_LIMIT_S = 0.005


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


#: Jobs written to a worker, and the stops asked for them before.
HandedOver = tuple[list[Lease], list[tuple[Lease, JobError]]]


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
    #: Jobs written to it in the step that committed their leases, with the stops asked
    #: for before: the feeder finishes their hand-over (Feeding._hand_over_now).
    sent_now: HandedOver | None = None
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
    progress_message: str | None = None  # and what it said with it
    watch_until: float = math.inf  # when its watchdog wakes next
    watch_poke: trio.Event = field(default_factory=trio.Event)  # wakes the watchdog earlier
    nursery: trio.Nursery | None = None  # where its watchdog runs
    #: The relay of its stdout and stderr into the log (worker_output.py), and its end.
    output: trio.CancelScope = field(default_factory=trio.CancelScope)
    output_done: trio.Event = field(default_factory=trio.Event)

    #: The job it ran last, once that job has ended (its output may still be unread).
    last_job_id: int | None = None

    @property
    def lease(self) -> Lease | None:
        """The job it runs now."""
        return self.inflight[0] if self.inflight else None

    @property
    def output_job_id(self) -> int | None:
        """The job a line of its output read now belongs to: the job it runs, else the
        one it ran last. (Output is read on a pipe of its own, so a job's last lines
        may be read after its end report; they are still that job's.)"""
        lease = self.lease
        return self.last_job_id if lease is None else lease.job_id

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
            # Its own /proc entries: psutil's children() reads every process on the
            # machine (their parents), once per worker and per top, every second.
            pids = proctree.descendants(self.pid)
            if pids is None:
                below = me.children(recursive=True)
            else:
                below = []
                for pid in pids:
                    with contextlib.suppress(psutil.Error):
                        below.append(self._ps.get(pid) or psutil.Process(pid))
            for found in (me, *below):
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

    @property
    def hold_until(self) -> float:
        """When the jobs handed over behind the running one have waited long enough
        (``HOLD_LIMIT_S`` after it started): no more are handed over, and those are
        asked back."""
        return self.started + HOLD_LIMIT_S


def take_unannounced(worker: WorkerHandle, leases: list[Lease]) -> list[Lease]:
    """Those of ``leases`` (in the order the worker ran them) not yet announced as started.

    A worker runs its jobs in lease order, so the announced ones are exactly
    those up to ``worker.announced``; that mark moves past the ones returned,
    which the caller announces.
    """
    unseen = [lease for lease in leases if lease.lease_id > worker.announced]
    if unseen:
        worker.announced = unseen[-1].lease_id
    return unseen


def signal_process(process: WorkerProcess, sig: int) -> None:
    try:
        process.send_signal(sig)
    except ProcessLookupError:
        pass
