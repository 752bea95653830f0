"""The process-tree helpers: finding what runs below a process, and ending it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from semantica import proctree

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the subreaper is Linux's")


def _gone(pid: int) -> bool:
    """Gone and reaped (not even a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_end_terms_then_kills_at_the_deadline_and_reaps() -> None:
    """SIGTERM first: a process that heeds it ends at once; one that ignores it is
    SIGKILLed at the deadline. Both are reaped."""
    heeds = subprocess.Popen(["sleep", "300"])
    ignores = subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 300"])
    ours = {heeds.pid, ignores.pid}
    try:
        time.sleep(0.1)  # (sh must have set its trap; a race only makes this pass)
        began = time.monotonic()
        deadline = began + 0.5
        ended = proctree.end(
            lambda: [p for p in proctree.below() if p.pid in ours], lambda: deadline
        )
        took = time.monotonic() - began
        assert ended == 2
        assert 0.5 <= took < 5
        assert _gone(heeds.pid) and _gone(ignores.pid)
    finally:
        for proc in (heeds, ignores):
            if not _gone(proc.pid):
                proc.kill()
            proc.wait()  # (reaped already: Popen takes that as an exit)


def test_a_subreaper_finds_and_ends_what_escaped_its_child() -> None:
    """Below a subreaper, a shell's background job stays in reach after the shell exits
    (it is re-parented to the subreaper, not to init), and ``end`` ends it."""
    script = textwrap.dedent(
        """
        import os, time
        from semantica import proctree
        assert proctree.become_subreaper()
        os.system("sleep 300 &")  # the shell exits at once; sleep is an orphan
        time.sleep(0.2)
        found = [p for p in proctree.below() if not p.zombie]
        print(len(found), found[0].ppid == os.getpid() if found else None, flush=True)
        print(proctree.end(proctree.below, lambda: time.monotonic() + 5), flush=True)
        print(len(proctree.below()), proctree.has_children(), flush=True)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert out == ["1", "True", "1", "0", "False"], out


def test_end_leaves_alone_a_process_that_took_the_pid_of_one_it_found() -> None:
    """A process a scan found has exited and its pid names another process now (reaped by
    its own parent, the pid reused): ``end`` does not signal that other process."""
    other = subprocess.Popen(["sleep", "300"])
    try:
        [now] = [proc for proc in proctree.below() if proc.pid == other.pid]
        # What a scan saw before: the same pid, an earlier process (an earlier start).
        earlier = proctree.Proc(now.pid, now.ppid, now.started - 100, zombie=False)
        scans = iter([[earlier]])
        ended = proctree.end(lambda: next(scans, []), deadline=lambda: 0.0)
        assert other.poll() is None, "end signalled the process that took the pid"
        assert ended == 0
    finally:
        other.kill()
        other.wait()


def test_a_workers_containment_never_signals_a_group_by_its_number() -> None:
    """Below a subreaper every process of a job's command is found (and checked) one by
    one; its process group is not signalled by number, which another group may have
    taken once the command's group emptied. Here the number recorded is another
    group's: containment leaves it alone."""
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)  # a group of its own
    script = textwrap.dedent(
        f"""
        import time
        from semantica import proctree
        from semantica.worker.containment import Containment
        assert proctree.become_subreaper()
        containment = Containment(0.5)
        containment.add_group({other.pid})  # the number a command's emptied group had
        print(containment.clear(), containment.end_job(), containment.end_all(), flush=True)
        """
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
        ).stdout.split()
        assert other.poll() is None, "the other group was signalled"
        assert out == ["True", "0", "0"], out
    finally:
        other.kill()
        other.wait()


def test_descendants_are_the_tree_below_a_process_as_psutil_sees_it() -> None:
    """descendants(pid): every process below, children and theirs, read from the
    process's own /proc entries; the same pids psutil finds by reading every process."""
    import psutil

    # sh: a sleep, and a sh with a sleep of its own (three below).
    tree = subprocess.Popen(["sh", "-c", "sleep 30 & sh -c 'sleep 30 & wait' & wait"])
    try:
        deadline = time.monotonic() + 5
        below = psutil.Process(tree.pid).children(recursive=True)
        while len(below) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
            below = psutil.Process(tree.pid).children(recursive=True)
        found = proctree.descendants(tree.pid)
        assert found is not None  # (the kernels this runs on list children)
        assert sorted(found) == sorted(p.pid for p in below) and len(found) == 3
        leaves = [p.pid for p in below if not p.children()]
        assert len(leaves) == 2 and all(proctree.descendants(pid) == [] for pid in leaves)
    finally:
        for p in psutil.Process(tree.pid).children(recursive=True):
            p.kill()
        tree.kill()
        tree.wait()


def test_descendants_of_a_process_gone_are_none_or_empty() -> None:
    """A pid that names no process: nothing below it (None: no /proc entry to read)."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert not proctree.descendants(gone.pid)
