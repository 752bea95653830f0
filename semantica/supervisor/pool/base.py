"""What the parts of the worker pool share: its settings, its state, and the methods
each part offers the others.

:class:`~semantica.supervisor.pool.workerpool.WorkerPool` is one class made of
parts, one module each (slots, feeding, reader, watchdog, settling, orphans),
each a class on :class:`PoolBase`. A part calls a method of another only
through its declaration here (abstract, under the name of the module that
has it), so the calls between the parts can all be read in this file; what
they import from each other besides is plain functions and constants.
``WorkerPool.__init__`` sets the state declared here.

Everything runs on the trio thread, and the state changes only there, between
two checkpoints: no lock guards it but ``_spawning`` (see orphans.py).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable

import trio

from semantica.models import JobError
from semantica.protocol import JobFinished
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.pool.handle import WorkerHandle
from semantica.supervisor.scheduler import Gate, Scheduler
from semantica.supervisor.store import Lease


async def nothing_to_wait_for() -> None:
    return None


class PoolBase(abc.ABC):
    """The settings, state and inner interfaces of the worker pool (see the module docstring)."""

    size: int
    max_prefetch: int
    cancel_grace: float
    heartbeat_timeout: float
    lease_for: float  # how long a job may run without this node's renewal (0: no bound)
    gate: Gate | None
    durable: Callable[[], Awaitable[None]]
    handlers: tuple[str, ...]
    scheduler: Scheduler
    jobs: JobLifecycle
    child_umask: int
    workers: list[WorkerHandle]
    #: Pids of the worker processes started and not yet reaped (by trio): never orphans.
    _children: set[int]
    #: Held while a worker is spawned, and while orphans are ended: a worker being
    #: spawned is a child of the supervisor before its pid is in ``_children``.
    _spawning: trio.Lock
    _adopting: bool  # the supervisor is a child subreaper (see _end_orphans)
    #: What was below the supervisor when it became a subreaper (not its own: see
    #: _end_orphans), by key.
    _foreign: frozenset[tuple[int, float]]
    _stopping: bool
    _ready_slots: int  # slots whose first worker said hello
    # Where store writes the reaper could not finish go on (see _settle_dead).
    _background: trio.Nursery | None
    _changed: trio.Event

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_changed(self) -> None:
        await self._changed.wait()

    # ------------------------------------------------------------ slots.py

    @abc.abstractmethod
    async def _run_slot(self, slot: int) -> None:
        """Keep a worker alive in this slot until the pool stops."""

    # ------------------------------------------------------------ feeding.py

    @abc.abstractmethod
    async def _feed(self, worker: WorkerHandle) -> None:
        """Lease jobs for the worker, hand them over, and record what it reports."""

    @abc.abstractmethod
    async def _give_back(self, worker: WorkerHandle, leases: list[Lease]) -> None:
        """Ask the worker for these not-yet-started jobs back."""

    # ------------------------------------------------------------ reader.py

    @abc.abstractmethod
    async def _read(self, worker: WorkerHandle, serving: trio.CancelScope) -> None:
        """Take the worker's messages; when its channel ends, cancel ``serving``."""

    @abc.abstractmethod
    async def _watch_exit(self, worker: WorkerHandle, serving: trio.CancelScope) -> None:
        """When the worker process exits, cancel ``serving``."""

    # ------------------------------------------------------------ watchdog.py

    @abc.abstractmethod
    async def _watch(self, worker: WorkerHandle) -> None:
        """Enforce the running job's timeout, the worker's heartbeat and the hold limit."""

    @abc.abstractmethod
    def _poke_watch(self, worker: WorkerHandle) -> None:
        """Wake the watchdog if the running job needs it sooner than it planned."""

    @abc.abstractmethod
    async def _request_stop(self, worker: WorkerHandle, lease: Lease, error: JobError) -> None:
        """Have the job stopped, to end with ``error`` (sent now if it is handed over)."""

    @abc.abstractmethod
    async def _send_stop(self, worker: WorkerHandle, lease: Lease, error: JobError) -> None:
        """Send the worker the stop of a job it holds; kill it if it overstays."""

    # ------------------------------------------------------------ settling.py

    @abc.abstractmethod
    def _end(self, lease: Lease, report: JobFinished, elapsed: float) -> None:
        """Record a reported end."""

    @abc.abstractmethod
    def _settle_orphan(self, worker: WorkerHandle, lease: Lease, status: int | None) -> None:
        """Record how the job of a worker that is gone ended."""

    @abc.abstractmethod
    async def _settle_dead(self, what: str, record: Callable[[], None]) -> None:
        """Run ``record`` until durable, in the background after a few tries."""

    @abc.abstractmethod
    def _give_back_unstarted(self, leases: list[Lease]) -> None:
        """Put jobs a worker never started back in the queue, attempt not spent."""

    # ------------------------------------------------------------ orphans.py

    @abc.abstractmethod
    async def _start_adopting(self) -> None:
        """Before a spawn, ``_spawning`` held: become a child subreaper, once."""

    @abc.abstractmethod
    async def _end_orphans(self, worker: WorkerHandle) -> None:
        """Kill what the dead ``worker``'s job left running below the supervisor."""
