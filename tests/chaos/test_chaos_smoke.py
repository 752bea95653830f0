"""A small chaos run for ``make test`` (seconds): a few scenarios of ``test_chaos.py`` at toy
sizes, with the same invariant checks. Not marked ``chaos``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import chaos_scenarios as chaos
import pytest
import scenarios_containment
import scenarios_stalls as stalls
import trio
from chaos_scenarios import MakeDaemon

pytestmark = pytest.mark.slow

Report = Callable[[str], None]


def test_smoke_worker_kills(make_daemon: MakeDaemon, ledger_path: Path, report: Report) -> None:
    """100 jobs of 20-200 ms, 3 busy workers killed."""
    report(chaos.worker_kills(make_daemon, ledger_path, jobs=100, kills=3, every=0.5, workers=4))


def test_smoke_supervisor_kills(make_daemon: MakeDaemon, ledger_path: Path, report: Report) -> None:
    """The supervisor SIGKILLed twice during an enqueue load."""
    report(chaos.supervisor_kills(make_daemon, ledger_path, rounds=2, load=(0.5, 1.0)))


def test_smoke_poison(make_daemon: MakeDaemon, ledger_path: Path, report: Report) -> None:
    """A poison job beside 20 normal ones."""
    report(chaos.poison(make_daemon, ledger_path, normal=20))


def test_smoke_injected_faults(tmp_path: Path, report: Report) -> None:
    """An I/O error at the first two statements of enqueue, lease and complete, the store
    committing as the supervisor does (in groups, where it can)."""
    faults = functools.partial(
        chaos.injected_faults,
        tmp_path,
        group=True,
        faults=chaos.FAULTS[:1],
        only=lambda op, n: n <= 2,
    )
    report(trio.run(faults))


def test_smoke_stopped_worker(make_daemon: MakeDaemon, ledger_path: Path, report: Report) -> None:
    """A worker SIGSTOPped mid-job: killed after the heartbeat timeout, its job DONE on
    another worker, and its late messages with the old lease refused (fencing)."""
    report(chaos.stopped_worker(make_daemon, ledger_path, heartbeat=1.0, job_seconds=2.0, others=5))


def test_smoke_unread_stderr(make_daemon: MakeDaemon, ledger_path: Path, report: Report) -> None:
    """1500 jobs (some 500 KB of log) while the supervisor's stderr is a pipe nobody reads."""
    report(stalls.unread_stderr(make_daemon, ledger_path, jobs=1500))


def test_smoke_containment(make_daemon: MakeDaemon, ledger_path: Path, report: Report) -> None:
    """20 jobs that start processes every way, 2 worker kills and 2 cancels; none of their
    processes outlives them, and SIGTERM with stubborn jobs ends in its bound."""
    report(
        scenarios_containment.containment(
            make_daemon, ledger_path, jobs=20, workers=2, kills=2, cancels=2, every=0.2
        )
    )
