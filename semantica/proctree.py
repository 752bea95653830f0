"""The processes below this one: keep them in reach, find them, end them.

Shared by the worker (what a job started ends with the job) and the supervisor
(what the job of a killed worker started ends with that worker).

* :func:`become_subreaper`: on Linux, ``prctl(PR_SET_CHILD_SUBREAPER)``. A
  process below this one whose parent exits (a shell's ``cmd &``, a double
  fork, a daemon that called ``setsid``) is then re-parented to this process
  instead of to init: it stays below, where :func:`below` finds it. macOS has
  no such call: there an orphan is adopted by launchd and is out of reach; only
  a signal to its process group (if it stayed in it) still gets to it.
* :func:`is_subreaper`: whether this process is one (one system call).
* :func:`has_children`: one system call, for the usual case of nothing to do.
* :func:`below`: every process below this one (a scan of ``/proc`` on Linux,
  psutil elsewhere: a few milliseconds).
* :func:`descendants`: the pids below a process, read from its own ``/proc``
  entries (work of the size of its tree, not of the machine's), for a view
  asked often (a worker's CPU in ``top``); None where the kernel does not
  list children, and the caller asks psutil.
* :func:`end`: SIGTERM, wait until a deadline, SIGKILL, reap. It sleeps
  between looks: call it in a thread (or when nothing else runs), never on an
  event loop.

A process is known by its pid and its start time (:attr:`Proc.key`), so a pid
the kernel has since given to another process is never taken for the one it
named before: :func:`end` signals a process only if its pid still names the
process the scan saw. On Linux it opens a pidfd on the pid, checks the start
time of the process there, and signals through the pidfd, which names that
one process whatever becomes of its pid. Elsewhere (psutil) the start time is
checked just before the signal: a pid reused in between could still be hit.

A process group is signalled by its number (``killpg``). That is safe while
the group has a member (a member holds the number: no new process gets it),
not once the group is empty, when the number may go to another process and
its group. :func:`end` drops a group the moment it finds it empty, and callers
should forget it then; below a subreaper there is no need to signal a group
at all (its members are all below, found one by one).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import psutil

#: ``PR_SET_CHILD_SUBREAPER`` and ``PR_GET_CHILD_SUBREAPER`` from ``<linux/prctl.h>``.
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
#: Signals through a pidfd (Linux 5.3 and later; the calls exist on Linux only).
_HAS_PIDFD = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")
#: ``__WALL`` from ``<linux/wait.h>``: wait for every child, whatever signal it sends its parent
#: when it exits (os does not export it).
_WALL = 0x40000000 if sys.platform == "linux" else 0
_HAS_WAITID = hasattr(os, "waitid")
_LOOK_FOR_CHILDREN = (os.WEXITED | os.WNOHANG | os.WNOWAIT | _WALL) if _HAS_WAITID else 0
#: How often :func:`end` looks again while it waits for processes to exit.
POLL_S = 0.01
#: How long :func:`end` waits for SIGKILLed processes to be gone before it gives up on
#: them (a process in uninterruptible sleep, on a dead NFS mount say, dies only later).
KILL_WAIT_S = 1.0


@dataclass(frozen=True)
class Proc:
    """One process, as a scan saw it."""

    pid: int
    ppid: int
    started: float  # its start time: with the pid, it names this process and no later one
    zombie: bool  # exited, and not yet reaped by its parent

    @property
    def key(self) -> tuple[int, float]:
        return self.pid, self.started


def become_subreaper() -> bool:
    """Make this process the reaper of orphans below it (Linux only). True if it is now."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def is_subreaper() -> bool:
    """Whether this process is the reaper of orphans below it (Linux only)."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        flag = ctypes.c_int(0)
        done = libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
    return done and flag.value != 0


def has_children() -> bool:
    """Whether this process has a child at all, running or a zombie (one system call)."""
    if not _HAS_WAITID:
        return bool(psutil.Process().children())
    try:
        # WNOWAIT: only look, reap nothing (the child may belong to a subprocess object).
        os.waitid(os.P_ALL, 0, _LOOK_FOR_CHILDREN)
    except ChildProcessError:
        return False
    return True


def snapshot() -> dict[int, Proc]:
    """Every process on the machine, by pid."""
    if sys.platform == "linux":
        return _scan_proc()
    found = {}
    for p in psutil.process_iter(["ppid", "status", "create_time"]):
        info = p.info
        if info.get("ppid") is None or info.get("create_time") is None:
            continue  # gone meanwhile, or not ours to read
        zombie = info.get("status") == psutil.STATUS_ZOMBIE
        found[p.pid] = Proc(p.pid, info["ppid"], info["create_time"], zombie)
    return found


def _scan_proc() -> dict[int, Proc]:
    # /proc/PID/stat directly: psutil's process_iter reads more and takes about
    # four times as long, and this runs every POLL_S while processes are ended.
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (proc := _read_proc(int(name))) is not None:
            found[proc.pid] = proc
    return found


def _read_proc(pid: int) -> Proc | None:
    """The process ``pid`` names now, as :func:`snapshot` sees it; None if there is none."""
    if sys.platform != "linux":
        try:
            p = psutil.Process(pid)
            return Proc(pid, p.ppid(), p.create_time(), p.status() == psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return None  # gone, or not ours to read
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None  # exited meanwhile
    # "pid (comm) state ppid ... starttime ...": comm may hold spaces and parentheses.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return Proc(pid, int(fields[1]), float(fields[19]), fields[0] in (b"Z", b"X"))


def descendants(root: int) -> list[int] | None:
    """The pids below ``root``, parents first, from ``/proc/PID/task/TID/children``
    (Linux 3.5 and later, where the kernel is built with them; None elsewhere).

    A process is listed by the thread that started it, or, when re-parented to a
    subreaper, by one of its threads: every thread's list is read. The kernel
    lists a moment's children, so one that starts or exits meanwhile may be missed
    or listed gone: fit for a view, not for :func:`end`.
    """
    if sys.platform != "linux" or not os.path.exists(f"/proc/{root}/task/{root}/children"):
        return None
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # exited meanwhile
        for thread in threads:
            try:
                with open(f"/proc/{pid}/task/{thread}/children", "rb") as f:
                    children = [int(child) for child in f.read().split()]
            except OSError:
                continue  # the thread (or the process) ended meanwhile
            found += children
            todo += children
    return found


def below(
    root: int | None = None,
    skip: Callable[[Proc], bool] = lambda proc: False,
    table: dict[int, Proc] | None = None,
) -> list[Proc]:
    """Every process below ``root`` (default: this one), parents first, zombies included;
    not a process that ``skip`` names, nor any below it."""
    table = snapshot() if table is None else table
    children: dict[int, list[Proc]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc)
    found: list[Proc] = []
    todo = [os.getpid() if root is None else root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child.pid != child.ppid and not skip(child):  # (pid 0 is its own parent)
                found.append(child)
                todo.append(child.pid)
    return found


def end(
    find: Callable[[], list[Proc]],
    deadline: Callable[[], float],
    groups: Collection[int] = (),
    kill_wait: float = KILL_WAIT_S,
) -> int:
    """End the processes ``find`` returns, and the process groups ``groups``; blocks.

    Each gets SIGTERM once; what is left once ``deadline()`` (``time.monotonic``)
    has passed gets SIGKILL, again and again as ``find`` finds more (a killed
    process's children are re-parented, a subreaper's to it). Zombie children of
    this process are reaped. Returns when nothing is left, or ``kill_wait`` after
    the deadline whatever is left. Returns how many processes it signalled.

    A process is signalled only while its pid still names it (see the module
    docstring); a group, only while it has a member.
    """
    me = os.getpid()
    termed: set[tuple[int, float]] = set()
    pending = set(groups)
    groups_termed = False
    give_up: float | None = None
    while True:
        alive = []
        for proc in find():
            if not proc.zombie:
                alive.append(proc)
            elif proc.ppid == me:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(proc.pid, os.WNOHANG)
        pending = {group for group in pending if group_exists(group)}
        if not alive and not pending:
            return len(termed)
        now = time.monotonic()
        due = deadline()
        if now < due:
            for proc in alive:
                if proc.key not in termed and _signal(proc, signal.SIGTERM):
                    termed.add(proc.key)
            if not groups_termed:
                groups_termed = True
                for group in pending:
                    _signal_group(group, signal.SIGTERM)
            time.sleep(min(POLL_S, due - now))
            continue
        if give_up is None:
            give_up = now + kill_wait
        elif now >= give_up:
            return len(termed)
        for proc in alive:
            if _signal(proc, signal.SIGKILL):
                termed.add(proc.key)
        for group in pending:
            _signal_group(group, signal.SIGKILL)
        time.sleep(POLL_S)


def group_exists(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member this process may signal."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # a member we may not signal (setuid): nothing to do about it
    return True


def _signal(proc: Proc, sig: int) -> bool:
    """Send ``sig`` to ``proc`` if its pid still names that process; True if it was sent."""
    if not _HAS_PIDFD:
        return _signal_checked(proc, sig)
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return False  # gone (reaped)
    except OSError:
        return _signal_checked(proc, sig)  # no pidfd here (a kernel before 5.3, say)
    try:
        # The pidfd names the process the pid named when it was opened. If the one
        # there now started when the scan's did, they are the same (the scan's pid
        # was never free meanwhile), and the signal goes to it alone.
        now = _read_proc(proc.pid)
        if now is None or now.started != proc.started:
            return False  # gone, and its pid is another process's now
        signal.pidfd_send_signal(pidfd, sig)
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        os.close(pidfd)
    return True


def _signal_checked(proc: Proc, sig: int) -> bool:
    """``_signal`` without a pidfd: the start time is checked, then the pid signalled."""
    now = _read_proc(proc.pid)
    if now is None or now.started != proc.started:
        return False
    try:
        os.kill(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
