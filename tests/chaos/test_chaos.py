"""The chaos suite (``make chaos``): crashes, kills, stalls and store faults at full size.

Every scenario ends with the invariant checks of ``invariants.py`` and reports one
line of figures (shown at the end of the run under "chaos scenarios"). The sizes
are the constants below; the figures asserted are the ones the issue sets.
"""

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

pytestmark = pytest.mark.chaos

Report = Callable[[str], None]

# Busy workers SIGKILLed while jobs of 20-200 ms run.
KILL_JOBS = 2000
KILL_JOB_SECONDS = (0.02, 0.2)
KILLS = 100
KILL_EVERY_S = 0.5
KILL_WORKERS = 4  # enough jobs for the 50 s of kills, and the kills do not run out of busy workers
REFILL_LIMIT_S = 1.0

# A worker SIGSTOPped mid-job.
STOP_HEARTBEAT_S = 1.0
STOP_JOB_S = 2.0
STOP_OTHERS = 20

# The supervisor SIGKILLed during an enqueue load.
SUPERVISOR_KILLS = 20
SUPERVISOR_LOAD_S = (1.0, 3.0)
SUPERVISOR_CLIENTS = 2
SUPERVISOR_PACE_S = 0.005  # between one client's enqueues: the two workers keep up
SUPERVISOR_JOB_SECONDS = (0.0, 0.01)
ORPHAN_LIMIT_S = 1.5  # workers exit within a second of the supervisor's death (docs/reliability.md)

# SIGTERM with short and long jobs running.
DRAIN_S = 2.0
DRAIN_GRACE_S = 1.0
DRAIN_WORKERS = 4
DRAIN_SHORT_S = 0.5
DRAIN_LONG_S = 60.0
DRAIN_QUEUED = 10

# A poison job (os._exit) beside normal ones.
POISON_NORMAL = 500
POISON_ATTEMPTS = 3

# Disk full.
FSIZE_MARGIN = 512 * 1024  # RLIMIT_FSIZE: this much above the largest file after start
SMALL_FS_KIB = 512

# Another process holding the write lock.
BUSY_TIMEOUT_S = 5.0  # SQLiteStore's busy_timeout
LOCK_JOBS = 20
LOCK_HEARTBEAT_S = 2.0  # shorter than the busy timeout (the default is 10 s)
LOCK_STALLS = 8  # each shows the fault half the time: all 8 miss it 1 time in 256

# The supervisor's stderr unread; its wall clock jumped.
STDERR_JOBS = 3000  # their start and end lines are far more than a pipe holds
CLOCK_JUMP_S = 3600.0
CLOCK_START_LIMIT_S = 1.0

# Three nodes x 2 workers on one PostgreSQL database (scenarios_nodes.py).
NODE_TIMEOUT_S = 5.0
NODE_JOBS = 2000  # short jobs enqueued at once, beside the load (one at a time, every 10 ms)
NODE_PACE_S = 0.01
NODE_DB_DOWN_S = 7.0  # the server down longer than the node timeout
SUPERVISOR_STOP_S = 8.0  # the supervisor alone frozen: its workers must fence themselves

# The long run.
SOAK_JOBS = 50_000
SOAK_WAVE = 1000
SOAK_KILLS_PER_MINUTE = 20  # the soak takes about 25 s since the prefetch: a few kills in it
SOAK_WARMUP = 5000  # RSS and fds are measured from here (caches and the pool warm up first)
SOAK_RSS_GROWTH = 0.10


def test_busy_workers_killed_every_half_second(
    make_daemon: MakeDaemon, ledger_path: Path, report: Report
) -> None:
    report(
        chaos.worker_kills(
            make_daemon,
            ledger_path,
            jobs=KILL_JOBS,
            kills=KILLS,
            every=KILL_EVERY_S,
            workers=KILL_WORKERS,
            seconds=KILL_JOB_SECONDS,
            refill_limit=REFILL_LIMIT_S,
        )
    )


def test_sigstopped_worker(make_daemon: MakeDaemon, ledger_path: Path, report: Report) -> None:
    report(
        chaos.stopped_worker(
            make_daemon,
            ledger_path,
            heartbeat=STOP_HEARTBEAT_S,
            job_seconds=STOP_JOB_S,
            others=STOP_OTHERS,
        )
    )


def test_supervisor_killed_during_enqueue_load(
    make_daemon: MakeDaemon, ledger_path: Path, report: Report
) -> None:
    report(
        chaos.supervisor_kills(
            make_daemon,
            ledger_path,
            rounds=SUPERVISOR_KILLS,
            load=SUPERVISOR_LOAD_S,
            clients=SUPERVISOR_CLIENTS,
            pace=SUPERVISOR_PACE_S,
            seconds=SUPERVISOR_JOB_SECONDS,
            orphan_limit=ORPHAN_LIMIT_S,
        )
    )


def test_schedule_every_second_under_supervisor_kills(
    make_daemon: MakeDaemon, chaos_tmp: Path, report: Report
) -> None:
    """A schedule every second for a minute, its supervisor SIGKILLed every few seconds:
    one job at most per slot, and every gap of missed slots ends with the catch-up job."""
    report(schedules.schedule_under_kills(make_daemon, chaos_tmp / "home", seconds=60.0))


def test_sigterm_with_short_and_long_jobs(
    make_daemon: MakeDaemon, ledger_path: Path, report: Report
) -> None:
    report(
        chaos.sigterm_drain(
            make_daemon,
            ledger_path,
            drain=DRAIN_S,
            grace=DRAIN_GRACE_S,
            workers=DRAIN_WORKERS,
            short_s=DRAIN_SHORT_S,
            long_s=DRAIN_LONG_S,
            queued=DRAIN_QUEUED,
        )
    )


def test_poison_job_beside_normal_ones(
    make_daemon: MakeDaemon, ledger_path: Path, report: Report
) -> None:
    report(
        chaos.poison(make_daemon, ledger_path, normal=POISON_NORMAL, max_attempts=POISON_ATTEMPTS)
    )


def test_operational_error_at_each_statement(tmp_path: Path, report: Report) -> None:
    report(trio.run(chaos.injected_faults, tmp_path))


def test_operational_error_at_each_statement_with_group_commit(
    tmp_path: Path, report: Report
) -> None:
    report(trio.run(functools.partial(chaos.injected_faults, tmp_path, group=True)))


def test_disk_full_by_file_size_limit(
    make_daemon: MakeDaemon, ledger_path: Path, report: Report
) -> None:
    report(chaos.disk_full_rlimit(make_daemon, ledger_path, margin=FSIZE_MARGIN))


def test_disk_full_on_a_small_filesystem(
    make_daemon: MakeDaemon, ledger_path: Path, chaos_tmp: Path, report: Report
) -> None:
    if not chaos.can_mount():
        pytest.skip("mounting a small tmpfs needs root")
    report(
        chaos.disk_full_small_fs(
            make_daemon, ledger_path, chaos_tmp / "small", size_kib=SMALL_FS_KIB
        )
    )


def test_write_lock_held_past_the_busy_timeout(
    make_daemon: MakeDaemon, ledger_path: Path, report: Report
) -> None:
    report(chaos.write_lock(make_daemon, ledger_path, busy_timeout=BUSY_TIMEOUT_S, jobs=LOCK_JOBS))


def test_write_lock_stall_does_not_kill_beating_workers(
    make_daemon: MakeDaemon, ledger_path: Path, report: Report
) -> None:
    report(
        chaos.write_lock_heartbeat(
            make_daemon, ledger_path, heartbeat=LOCK_HEARTBEAT_S, stalls=LOCK_STALLS
        )
    )


def test_fifty_thousand_jobs_with_worker_kills(
    make_daemon: MakeDaemon, ledger_path: Path, report: Report
) -> None:
    report(
        chaos.soak(
            make_daemon,
            ledger_path,
            jobs=SOAK_JOBS,
            wave=SOAK_WAVE,
            kills_per_minute=SOAK_KILLS_PER_MINUTE,
            warmup=SOAK_WARMUP,
            rss_growth=SOAK_RSS_GROWTH,
        )
    )


def test_unread_stderr_pipe(make_daemon: MakeDaemon, ledger_path: Path, report: Report) -> None:
    report(stalls.unread_stderr(make_daemon, ledger_path, jobs=STDERR_JOBS))


def test_wall_clock_jumps_an_hour(
    make_daemon: MakeDaemon, ledger_path: Path, chaos_tmp: Path, report: Report
) -> None:
    if stalls.libfaketime() is None:
        pytest.skip("libfaketime is not installed (make chaos installs it)")
    report(
        stalls.clock_jump(
            make_daemon,
            ledger_path,
            chaos_tmp / "clock",
            jump=CLOCK_JUMP_S,
            start_limit=CLOCK_START_LIMIT_S,
        )
    )


# What jobs start, while workers are killed and jobs cancelled (scenarios_containment.py).
CONTAIN_JOBS = 300
CONTAIN_WORKERS = 4
CONTAIN_KILLS = 20
CONTAIN_CANCELS = 20
CONTAIN_EVERY_S = 0.2


def test_what_jobs_start_never_outlives_them(
    make_daemon: MakeDaemon, ledger_path: Path, report: Report
) -> None:
    report(
        scenarios_containment.containment(
            make_daemon,
            ledger_path,
            jobs=CONTAIN_JOBS,
            workers=CONTAIN_WORKERS,
            kills=CONTAIN_KILLS,
            cancels=CONTAIN_CANCELS,
            every=CONTAIN_EVERY_S,
        )
    )


# ---------------------------------------------------------------------- nodes on PostgreSQL


def test_node_sigkilled_under_load(
    make_daemon: MakeDaemon, ledger_path: Path, pg_database: str, report: Report
) -> None:
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


def test_node_sigstopped_past_the_node_timeout(
    make_daemon: MakeDaemon, ledger_path: Path, pg_database: str, report: Report
) -> None:
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


def test_node_cut_off_the_database(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    pg_cluster: PostgresCluster,
    pg_database: str,
    report: Report,
) -> None:
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


def test_postgresql_restarted_under_load(
    make_daemon: MakeDaemon, ledger_path: Path, report: Report
) -> None:
    report(
        nodes.db_restart(
            make_daemon,
            ledger_path,
            timeout=NODE_TIMEOUT_S,
            jobs=NODE_JOBS,
            down_s=NODE_DB_DOWN_S,
            pace=NODE_PACE_S,
        )
    )


def test_supervisor_alone_sigstopped(
    make_daemon: MakeDaemon, ledger_path: Path, pg_database: str, report: Report
) -> None:
    """Its workers, no longer renewed, stop their jobs themselves: no two copies at once."""
    report(
        nodes.supervisor_stopped(
            make_daemon,
            ledger_path,
            pg_database,
            timeout=NODE_TIMEOUT_S,
            jobs=NODE_JOBS,
            pace=NODE_PACE_S,
            stop_s=SUPERVISOR_STOP_S,
        )
    )
