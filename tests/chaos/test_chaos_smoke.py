"""A small chaos run for ``make test`` (seconds): a few scenarios of ``test_chaos.py`` at toy
sizes, with the same invariant checks. Not marked ``chaos``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import chaos_scenarios as chaos
import pytest
import scenarios_containment
import scenarios_nodes as nodes
import scenarios_schedules as schedules
import scenarios_stalls as stalls
import trio
from chaos_scenarios import MakeDaemon
from pgcluster import PostgresCluster

pytestmark = pytest.mark.slow

Report = Callable[[str], None]


def test_smoke_worker_kills(make_daemon: MakeDaemon, ledger_path: Path, report: Report) -> None:
    """100 jobs of 20-200 ms, 3 busy workers killed."""
    report(chaos.worker_kills(make_daemon, ledger_path, jobs=100, kills=3, every=0.5, workers=4))


def test_smoke_supervisor_kills(make_daemon: MakeDaemon, ledger_path: Path, report: Report) -> None:
    """The supervisor SIGKILLed twice during an enqueue load."""
    report(chaos.supervisor_kills(make_daemon, ledger_path, rounds=2, load=(0.5, 1.0)))


def test_smoke_schedule_under_supervisor_kills(
    make_daemon: MakeDaemon, chaos_tmp: Path, report: Report
) -> None:
    """A schedule every second for about 6 s, its supervisor SIGKILLed twice or so."""
    report(schedules.schedule_under_kills(make_daemon, chaos_tmp / "home", seconds=6.0))


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


# Three nodes x 2 workers on one PostgreSQL database: 50 short jobs and a load of one
# every 50 ms, a node timeout of 2 s.
NODE_TIMEOUT_S = 2.0
NODE_JOBS = 50
NODE_PACE_S = 0.05


def test_smoke_node_sigkilled(
    make_daemon: MakeDaemon, ledger_path: Path, pg_database: str, report: Report
) -> None:
    """A node SIGKILLed: its TICKS job runs again elsewhere within T + 1 s, all DONE."""
    report(
        nodes.node_killed(
            make_daemon,
            ledger_path,
            pg_database,
            timeout=NODE_TIMEOUT_S,
            jobs=NODE_JOBS,
            pace=NODE_PACE_S,
        )
    )


def test_smoke_node_sigstopped(
    make_daemon: MakeDaemon, ledger_path: Path, pg_database: str, report: Report
) -> None:
    """A node SIGSTOPped past T: its job ran elsewhere, fenced at SIGCONT, no overlap."""
    report(
        nodes.node_stopped(
            make_daemon,
            ledger_path,
            pg_database,
            timeout=NODE_TIMEOUT_S,
            jobs=NODE_JOBS,
            pace=NODE_PACE_S,
        )
    )


def test_smoke_node_cut_off(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    pg_cluster: PostgresCluster,
    pg_database: str,
    report: Report,
) -> None:
    """A node cut off the database: fenced before its job runs elsewhere; healed, it
    rejoins as a new node."""
    report(
        nodes.node_cut_off(
            make_daemon,
            ledger_path,
            pg_cluster,
            pg_database,
            timeout=NODE_TIMEOUT_S,
            jobs=NODE_JOBS,
            pace=NODE_PACE_S,
        )
    )


def test_smoke_postgresql_restarted(
    make_daemon: MakeDaemon, ledger_path: Path, report: Report
) -> None:
    """The server down 1 s under load: store_unavailable meanwhile, nothing lost."""
    report(
        nodes.db_restart(
            make_daemon,
            ledger_path,
            timeout=NODE_TIMEOUT_S,
            jobs=NODE_JOBS,
            down_s=1.0,
            pace=NODE_PACE_S,
        )
    )
