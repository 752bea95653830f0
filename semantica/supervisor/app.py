"""The supervisor: one nursery, its services started in order, and the drain.

Start order (each service reports ``started`` before the next begins, so the
store is open and the socket bound before any worker spawns):

1. state directory (0700), the single-instance lock, the token, the store
   (migrations applied, RUNNING jobs of a dead predecessor re-queued);
2. the control server — the socket is bound;
3. the scheduler's timer;
4. the worker pool — every first worker said hello; then ``READY=1``.

Shutdown (SIGTERM, SIGINT, ``semctl shutdown``): no new job starts; running
jobs get the drain timeout; then the rest are stopped and re-queued without
spending an attempt; the workers exit; the socket is removed; exit 0. A second
signal skips the wait.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import psutil
import structlog
import trio

from semantica import __version__
from semantica.clock import Clock
from semantica.config import Settings, parse_metrics_addr
from semantica.errors import ConfigError, SemanticaError, StoreError, StoreFull
from semantica.supervisor.cluster import Node
from semantica.supervisor.committer import Committer
from semantica.supervisor.conditions import Conditions
from semantica.supervisor.events import JobEvents
from semantica.supervisor.joblogs import JobLogs, Logs
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.lock import acquire_lock
from semantica.supervisor.log import configure as configure_logs
from semantica.supervisor.log import dropped_lines
from semantica.supervisor.maintenance import Maintenance, StoreGate
from semantica.supervisor.metrics import Metrics
from semantica.supervisor.metrics_http import serve_metrics
from semantica.supervisor.notify import sd_notify
from semantica.supervisor.pool import WorkerPool
from semantica.supervisor.schedule_timer import ScheduleTimer, schedule_counts
from semantica.supervisor.scheduler import Scheduler
from semantica.supervisor.security import load_or_create_token, prepare_home
from semantica.supervisor.server import ControlServer
from semantica.supervisor.services import Services, explainer
from semantica.supervisor.shared_logs import StoreLogs
from semantica.supervisor.store import open_store
from semantica.supervisor.tracing import make_tracer

log = structlog.get_logger("semantica.supervisor")

DAEMON_LOG = "daemon.log"

#: The longest a store call may take on the event loop before the store gives up on
#: its connection (a shared store, over the network; a tenth of the node timeout if
#: that is less, so a node cut off notices in time to fence itself: cluster.py).
MAX_STORE_DEADLINE_S = 2.0


class Supervisor:
    """Owns the store, the control socket and the worker pool for one state directory."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.started_at = 0.0
        self._shutdown = trio.Event()
        self._skip_drain = trio.Event()
        self._lock_file: IO[str] | None = None
        self._nursery: trio.Nursery | None = None
        self.own_process = psutil.Process()

    def request_shutdown(self, reason: str, now: bool = False, again_skips: bool = True) -> None:
        """Begin the drain (the first call) or skip its wait (``now``, or a second call
        when ``again_skips``: a second signal does, a second ``semctl shutdown`` does
        not, since a user may run it again only to be sure)."""
        if now:
            self._skip_drain.set()
        if self._shutdown.is_set():
            if again_skips and not self._skip_drain.is_set():
                log.info("second stop request: not waiting for running jobs", reason=reason)
                self._skip_drain.set()
            return
        log.info("draining", reason=reason, drain_timeout_s=self.settings.drain_timeout)
        self._shutdown.set()

    @property
    def draining(self) -> bool:
        """A shutdown has begun: no new job starts (``status`` and ``top`` say so)."""
        return self._shutdown.is_set()

    def _open_state(self) -> None:
        paths = self.settings.paths
        # Everything the supervisor creates (database, logs, lock) is private;
        # workers and the commands they run get the user's own umask back.
        self._user_umask = os.umask(0o077)
        prepare_home(paths.home)
        configure_logs(self.settings.log_format, paths.home / DAEMON_LOG)
        self._lock_file = acquire_lock(paths.lock)
        self.token = load_or_create_token(paths.token)
        self.store = open_store(
            self.settings.store_location,
            self.clock,
            self.settings.durability,
            deadline=min(MAX_STORE_DEADLINE_S, self.settings.node_timeout / 10),
        )
        self._migrate_schema()
        self.events = JobEvents()
        self.node = Node(
            self.store,
            self.settings,
            workers=lambda: self.pool.top(),
            fence=lambda reason: self.pool.fence(reason),
            wake=lambda: self.scheduler.wake(),
            events=self.events,
            stop_local=lambda job_id, kind, message: self.pool.stop_job(job_id, kind, message),
            renew=lambda: self.pool.renew(),
            schedules_changed=lambda: self.schedule_timer.changed(),
        )
        self.node.join()
        recovered = self.store.recover_running()
        if recovered:
            log.info(
                "re-queued jobs that were running when the last supervisor stopped", count=recovered
            )
        # From here on, writes are committed in groups (see committer.py).
        self.committer = Committer(self.store)
        # The store runs on the event loop: a write must not wait there for another
        # process. Writers fail fast instead and wait off the loop:
        # handlers.common.store_write, the scheduler and settle() retry.
        self.store.fail_fast_when_busy()
        book = self.store.log_book()
        self.joblogs: Logs = (
            JobLogs(paths.logs, self.settings.log_cap_bytes)
            if book is None
            else StoreLogs(book, self.settings.log_cap_bytes)
        )
        self.conditions = Conditions(
            self.settings.power,
            self.settings.idle_cpu,
            self.settings.idle_window,
            wanted=self.store.conditions_wanted,
            worker_pids=lambda: self.pool.worker_pids(),
            on_change=lambda: self.scheduler.wake(),
        )
        self.gate = StoreGate()
        # commits: idle workers are leased for in the step that commits what made a job
        # startable, and their task sleeps until that commit (see scheduler.py).
        self.scheduler = Scheduler(self.store, self.conditions, self.gate, commits=self.committer)
        self.metrics = Metrics(
            self.store.counts,
            lambda: self.pool.worker_counts(),
            lambda: (self.committer.commits, self.committer.writes),
            dropped_lines,
            cluster=self.node.census,
            schedules=lambda: schedule_counts(self.store.schedules()),
        )
        self.jobs = JobLifecycle(
            self.store,
            self.joblogs,
            self.events,
            self.scheduler,
            on_conditional=self.conditions.poke,
            metrics=self.metrics,
            tracer=make_tracer(),
        )
        self.schedule_timer = ScheduleTimer(
            self.store.next_fire,
            self.jobs.fire_schedules,
            self.store.clock,
            draining=lambda: self.draining,
            before_each=self.gate.passage,
        )
        self.jobs.schedules_changed = self.schedule_timer.changed
        self.pool = WorkerPool(
            self.settings.workers,
            self.settings.handlers,
            self.scheduler,
            self.jobs,
            child_umask=self._user_umask,
            cancel_grace=self.settings.cancel_grace,
            heartbeat_timeout=self.settings.heartbeat_timeout,
            gate=self.gate,
            durable=self.committer.durable,
        )
        self.pool.lease_for = self.node.lease_for
        self.maintenance = Maintenance(
            self.store,
            self.joblogs,
            self.gate,
            self.settings.retention_days,
            self.settings.maintenance_hours,
        )

    def _migrate_schema(self) -> None:
        """Bring the database to this version's schema, and say so: an upgrade copies the
        database first and can take a while on a big one."""
        store, path = self.store, self.settings.store_shown
        before, newest = store.schema_version, store.newest_schema_version
        if 0 < before < newest:
            log.info(
                "upgrading the database schema", path=path, from_version=before, to_version=newest
            )
        try:
            change = store.migrate()
        except BaseException:
            store.close()
            raise
        if change.before == 0:
            log.info("database created", path=path, schema_version=change.after)
        elif change.after != change.before:
            log.info(
                "database schema upgraded",
                path=path,
                from_version=change.before,
                to_version=change.after,
                backup=None if change.backup is None else str(change.backup),
                duration_ms=round(change.seconds * 1000, 1),
            )

    def services(self) -> Services:
        """What request handlers are given (services.py): the parts, not this object."""
        return Services(
            settings=self.settings,
            jobs=self.jobs,
            store=self.store,
            committer=self.committer,
            gate=self.gate,
            pool=self.pool,
            events=self.events,
            joblogs=self.joblogs,
            conditions=self.conditions,
            maintenance=self.maintenance,
            metrics=self.metrics,
            explain=explainer(self.store, self.conditions),
            spawn=self.spawn,
            request_shutdown=self.request_shutdown,
            draining=lambda: self.draining,
            started_at=self.started_at,
            own_process=self.own_process,
            node=self.node,
        )

    def spawn(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run ``fn(*args)`` in the background, for the supervisor's life."""
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)

    async def run(self) -> None:
        """Run until shut down. Raises ConfigError/StoreError/WorkerStartError on a bad start."""
        try:
            self._open_state()
        except OSError as exc:
            raise state_error(self.settings.paths.home, exc) from None
        self.started_at = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_signals)
                await nursery.start(self.committer.run)
                await nursery.start(ControlServer(self.services(), self.token).serve)
                self._nursery = nursery
                await nursery.start(self.scheduler.run_timer)
                await nursery.start(self.schedule_timer.run)
                # The node beats before the workers start: its fence counts from its
                # join, and starting the workers can take a good part of T / 2.
                await nursery.start(self.node.run)
                await nursery.start(self.pool.run)
                await nursery.start(self.conditions.run)
                await nursery.start(self.maintenance.run_periodically)
                if self.settings.metrics_addr:
                    host, port = parse_metrics_addr(
                        self.settings.metrics_addr, self.settings.metrics_public
                    )
                    await nursery.start(
                        functools.partial(
                            serve_metrics,
                            host,
                            port,
                            self.metrics.text,
                            public=self.settings.metrics_public,
                        )
                    )
                sd_notify("READY=1")
                nursery.start_soon(_watchdog)
                log.info(
                    "ready",
                    version=__version__,
                    pid=os.getpid(),
                    socket=str(self.settings.paths.socket),
                    workers=self.settings.workers,
                )
                await self._shutdown.wait()
                sd_notify("STOPPING=1")
                await self._drain()
                nursery.cancel_scope.cancel()
            with contextlib.suppress(StoreError):  # (a node that cannot leave times out)
                self.committer.commit_now()
                self.node.leave()
        finally:
            with contextlib.suppress(StoreError):  # failures were logged; nothing to add
                self.committer.commit_now()  # the last writes of the drain
            shutdown_tracing = getattr(self.jobs.tracer, "shutdown", None)
            if shutdown_tracing is not None:
                shutdown_tracing()  # send the spans still batched
            self.joblogs.close_all()
            self.store.close()
            if self._lock_file is not None:
                self._lock_file.close()
        log.info("stopped")

    async def _drain(self) -> None:
        # Bounded whatever the jobs do: the drain timeout, then pool.stop's cancel grace
        # and margin.
        self.scheduler.stop_leasing()
        with trio.move_on_after(self.settings.drain_timeout) as waiting:
            async with trio.open_nursery() as nursery:

                async def skip() -> None:
                    await self._skip_drain.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(skip)
                # Prefetched jobs not started: back to the queue. (Inside the bound: a
                # worker that reads nothing could hold up the send.)
                await self.pool.give_back_all()
                await self.pool.wait_idle()
                nursery.cancel_scope.cancel()
        if waiting.cancelled_caught or self.pool.busy:
            log.info("drain: stopping jobs still running", count=self.pool.busy)
        await self.pool.stop("the supervisor was shut down while the job ran")

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                self.request_shutdown(signal.Signals(signum).name)


def state_error(home: Path, exc: OSError) -> SemanticaError:
    """One line for a file of the state directory that could not be made or written:
    a full disk (or file size limit) is StoreFull (exit 1), anything else makes the
    directory unusable (ConfigError, exit 2)."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.EFBIG:  # (SIGXFSZ is ignored: see cli.main)
        why = "the file size limit, ulimit -f, was reached"
        return StoreFull(f"cannot start in {home}: the disk is full ({why}){where}")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFull(f"cannot start in {home}: the disk is full ({exc.strerror}){where}")
    return ConfigError(f"state directory {home} cannot be used: {exc.strerror}{where}")


async def _watchdog() -> None:
    """Under systemd with WatchdogSec=, tell it twice per period that the loop runs."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID")
    if (
        not (usec.isascii() and usec.isdigit())
        or int(usec) == 0
        or (pid and pid != str(os.getpid()))
    ):
        return
    while True:
        sd_notify("WATCHDOG=1")
        await trio.sleep(int(usec) / 2e6)
