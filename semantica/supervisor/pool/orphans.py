"""What a dead worker's job left running: the supervisor as a child subreaper.

**What a job started.** A worker ends what each job started when the job
ends, but a worker that dies (SIGKILL, the OOM killer) cannot. On Linux the
supervisor is a child subreaper (from its first worker's spawn on,
:meth:`Orphans._start_adopting`): the processes of a dead worker's job are
re-parented to the supervisor, and the reaper SIGKILLs them (every process
below the supervisor that is not a worker, :meth:`Orphans._end_orphans`)
before it settles the job. What was below the supervisor before it became a
subreaper, and what is below that, is not the supervisor's: a process exec'd
into semanticad keeps the children its pid had (``sh -c 'log-shipper & exec
semanticad'``). The reaper never touches those.

Where there is no subreaper, the reaper kills the process groups of the dead
worker's exec jobs instead. Orphans are ended while
``_spawning`` is held, the lock a spawn holds, so a worker being born is
never taken for an orphan. The scan of ``/proc`` and the kills run in a
thread, off the event loop.
"""

from __future__ import annotations

import os
import signal

import structlog
import trio

from semantica import proctree
from semantica.supervisor.pool.base import PoolBase
from semantica.supervisor.pool.handle import WorkerHandle

log = structlog.get_logger("semantica.pool")


class Orphans(PoolBase):
    """Ends what dead workers' jobs left below the supervisor, and nothing else."""

    async def _start_adopting(self) -> None:
        """Before a worker is spawned (``_spawning`` held): become a child subreaper, once."""
        if not self._adopting:
            # From the first worker on, orphans below the supervisor are its own...
            self._adopting = proctree.become_subreaper()
            if self._adopting:
                # ... but not what it already had below it (it started none).
                self._foreign = await trio.to_thread.run_sync(_present)

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

        Where there is no subreaper, only the process groups of the worker's exec
        jobs are killed.
        """
        if not self._adopting:
            # An exec job's commands run in a group of their own; they must not
            # outlive the worker that ran them. Where there is no subreaper this is
            # all that reaches them. (With one, the scan below does, each checked: a
            # group's number is another's once the group has emptied, which it may
            # have done before its worker died.)
            for pgid in worker.job_pgids.values():
                _kill_group(pgid)
            worker.job_pgids.clear()
            return
        worker.job_pgids.clear()
        async with self._spawning:
            workers = frozenset(self._children)
            ended = await trio.to_thread.run_sync(_end_orphans_now, workers, self._foreign)
        if ended:
            log.warning(
                "ended processes a dead worker's job left running",
                worker_pid=worker.pid,
                count=ended,
            )


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


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
