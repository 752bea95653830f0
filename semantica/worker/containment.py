"""What a job starts ends with the job.

A handler may start processes that outlive it: ``os.system("cmd &")``, a
``subprocess.Popen`` never waited for, multiprocessing, a daemon that forks
twice and calls ``setsid``; an exec command may leave children behind. When a
job ends in any way (it returned, raised, timed out, was cancelled, the worker
is stopped) :class:`Containment` ends every process it started: SIGTERM, then
SIGKILL once the cancel grace has passed, and each reaped. The job's end is
reported only after that, so a job that has ended has nothing left running.

How it finds them: the worker runs one job at a time, and on Linux it is a
child subreaper (:func:`semantica.proctree.become_subreaper`), so whatever a
job starts stays below the worker even once its parent has exited. Every
process below the worker when a job ends was started by that job, except the
worker's own: those already there when its handler modules had been imported,
which end only with the worker. Each is signalled only while its pid still
names it (:func:`semantica.proctree.end`). Without the subreaper (macOS) an
orphan escapes to launchd: only processes still below the worker, and those
still in an exec command's process group, are ended; that group is signalled
by its number, and forgotten as soon as it is found empty (its number may
then be another group's). With the subreaper a group is never signalled by
number: its members are all below the worker.

The grace runs from the job's end, or from the moment it was asked to stop
(cancel, timeout, drain), whichever comes first. A stop belongs to its job
(:meth:`Containment.begin` names the job that runs): one that comes once that
job's processes are ended (it is about to report) changes nothing, and never
hurries the next job's. Nothing to end (the usual case) costs one system call.
"""

from __future__ import annotations

import math
import threading
import time

from semantica import proctree


class Containment:
    """Ends what the running job started (see the module docstring); thread-safe.

    ``whole_tree`` False: only exec commands' process groups (for a worker run
    inside another program, as in tests, whose other processes are not its own).
    A worker that is a subreaper (:func:`semantica.proctree.become_subreaper`,
    before this is made) with ``whole_tree`` ends processes one by one only.
    """

    def __init__(self, grace: float, whole_tree: bool = True) -> None:
        self.grace = grace
        self.whole_tree = whole_tree
        self._lock = threading.Lock()
        self._groups: set[int] = set()  # exec commands' process groups of the running job
        #: Every process of a job stays below this one: found and signalled one by one,
        #: never through a group's number.
        self._tree_only = whole_tree and proctree.is_subreaper()
        self._job: int | None = None  # the running job (its lease), from begin()
        self._over = True  # what the running job left has been ended (or there was nothing)
        self._deadline = math.inf  # set once the running job is asked to stop
        self._exit_at = math.inf  # set once the worker is asked to stop
        #: The worker's own processes (started as its handler modules were imported).
        self._own: frozenset[tuple[int, float]] = frozenset()
        if whole_tree and proctree.has_children():
            self._own = frozenset(proc.key for proc in proctree.below())

    def add_group(self, pgid: int) -> None:
        """An exec command of the running job runs in this process group."""
        if self._tree_only:
            return  # its members are below: found, and checked, one by one
        with self._lock:
            self._groups.add(pgid)

    def begin(self, job: int) -> None:
        """Job ``job`` (its lease) starts: the stops of jobs before it no longer count."""
        with self._lock:
            self._job, self._over, self._deadline = job, False, math.inf

    def stopping(self, job: int, grace: float) -> None:
        """Job ``job`` was asked to stop: kill what it leaves once ``grace`` has passed.

        Too late (what it left is ended already), or for a job that is not the
        running one: nothing to do.
        """
        with self._lock:
            if job == self._job and not self._over:
                self._deadline = min(self._deadline, time.monotonic() + grace)

    def exiting(self, grace: float) -> None:
        """The worker was asked to stop: kill everything below it once ``grace`` has passed."""
        with self._lock:
            self._exit_at = min(self._exit_at, time.monotonic() + grace)

    def clear(self) -> bool:
        """True if the job that ended left nothing running (cheap); it is then forgotten."""
        with self._lock:
            if self._groups:
                self._groups = {group for group in self._groups if proctree.group_exists(group)}
                if self._groups:
                    return False
            if self.whole_tree and proctree.has_children():
                return False
            self._over, self._deadline = True, math.inf
            return True

    def end_job(self) -> int:
        """End what the job that ended left running; blocks until done (at most the grace
        and a second). Returns how many processes it ended."""
        with self._lock:
            if self._deadline == math.inf:
                self._deadline = time.monotonic() + self.grace
            groups = set(self._groups)
        ended = proctree.end(self._strays, self._job_due, groups)
        with self._lock:
            self._groups -= groups
            self._over, self._deadline = True, math.inf
        return ended

    def end_all(self) -> int:
        """End every process below the worker, its own included (the worker exits): by
        the grace of the stop that ends it, or at once (it retires after a job that
        would not stop, whose grace is over)."""
        with self._lock:
            due = min(self._exit_at, self._deadline)
            groups = {group for group in self._groups if proctree.group_exists(group)}
        if not groups and not (self.whole_tree and proctree.has_children()):
            return 0
        if due == math.inf:
            due = time.monotonic()
        return proctree.end(self._everything, lambda: due, groups)

    def _job_due(self) -> float:
        with self._lock:  # (a stop may come while the job's processes are ended)
            return min(self._deadline, self._exit_at)

    def _everything(self) -> list[proctree.Proc]:
        return proctree.below() if self.whole_tree else []

    def _strays(self) -> list[proctree.Proc]:
        if not self.whole_tree:
            return []
        return proctree.below(skip=lambda proc: proc.key in self._own)
