"""What a request handler is given: the supervisor's services, never the supervisor.

A control request is carried out by a ``handle_<verb>`` function that receives
one :class:`Services`, which ``app.py`` fills in once the state is open. That
record is all a handler reaches:

* **writes** go through ``jobs`` (:class:`JobLifecycle`), which commits, logs
  and wakes, in that order, for every write;
* **reads** go to ``store``, typed :class:`StoreReads`: the read methods of
  :class:`~semantica.supervisor.store.JobStore` and nothing else, so mypy
  refuses a handler that would write past the lifecycle;
* ``pool`` is :class:`Workers`, the three things a request asks of the worker
  pool (its size and shape are the pool's own business);
* the rest are the services as they are (events, logs, group commit,
  maintenance, metrics), and a few callables for what belongs to the
  supervisor itself: ``explain`` (why a queued job waits), ``spawn`` (work that
  outlives the request), ``request_shutdown`` and ``draining``.

Nothing here imports ``app.py``, which assembles the record: no module of the
supervisor but its entry points (``cli.py``, ``__main__.py``) imports the
module that assembles it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import psutil

from semantica.clock import Clock
from semantica.config import Settings
from semantica.models import Job, JobState, QueueInfo
from semantica.protocol import WorkerInfo, WorkerTop
from semantica.supervisor import waiting
from semantica.supervisor.committer import Committer
from semantica.supervisor.conditions import Conditions
from semantica.supervisor.events import JobEvents
from semantica.supervisor.joblogs import JobLogs
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.maintenance import Maintenance, StoreGate
from semantica.supervisor.metrics import Metrics
from semantica.supervisor.store import Blockers, Page

# Inside StoreReads, `list` names a method.
JobsList = list[Job]
QueueInfos = list[QueueInfo]


class StoreReads(Protocol):
    """The reads of :class:`~semantica.supervisor.store.JobStore`, as it states them.

    A handler's view of the store: it holds no write method, so a handler that
    tried one would not type-check (``tests/unit/test_handlers.py`` also checks
    that these are JobStore's own signatures).
    """

    clock: Clock

    def size_bytes(self) -> int:
        """Bytes the store takes on disk (for ``semctl status``)."""
        ...

    def next_startable(
        self, count: int, cut: int, *, on_ac: bool = True, idle: bool = True
    ) -> JobsList:
        """The jobs a lease of ``count`` would take now, in that order, as rows for a view."""
        ...

    def queue_known(self, name: str) -> bool:
        """Whether a job or a setting ever named the queue (and it was not forgotten)."""
        ...

    def some_queues(self, most: int = 10) -> str:
        """The first queue names, for a message: ``a, b, c`` or ``a, b, ... (12 in all)``."""
        ...

    def queues(self) -> QueueInfos:
        """Every queue that has a setting or a job, by name, with counts by state."""
        ...

    def blockers(self) -> Blockers:
        """The queue and subject facts that hold queued jobs back now (see start_rules)."""
        ...

    def conditions_wanted(self) -> tuple[bool, bool]:
        """Whether any QUEUED job requires charging, and whether any requires an idle CPU."""
        ...

    def next_run_after(self) -> float | None:
        """The earliest future ``run_after`` of a queued job (when to look again), or None."""
        ...

    def get(self, job_id: int) -> Job:
        """One job (NoSuchJob if none has this id)."""
        ...

    def get_many(self, job_ids: Iterable[int]) -> JobsList:
        """Several jobs, in the order asked (NoSuchJob if an id names none)."""
        ...

    def get_page(self, job_ids: Sequence[int], budget: int | None) -> Page:
        """The first of the jobs that fit in ``budget`` bytes of reply; ``more`` if not all."""
        ...

    def state(self, job_id: int) -> JobState:
        """A job's state alone (NoSuchJob if none has this id)."""
        ...

    def states(self, job_ids: Iterable[int]) -> dict[int, JobState]:
        """The states alone of several jobs (NoSuchJob if an id names none)."""
        ...

    def list(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        subject: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> JobsList:
        """Jobs matching every filter given, newest first, at most ``limit``."""
        ...

    def list_page(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        subject: str | None = None,
        limit: int = 50,
        before: int | None = None,
        budget: int | None = None,
    ) -> Page:
        """:meth:`list`, only as many as fit in ``budget`` bytes of reply (at least one)."""
        ...

    def count(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        subject: str | None = None,
        cap: int | None = None,
    ) -> int:
        """How many jobs match every filter given; at most ``cap``."""
        ...

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state (every state listed, zeros included)."""
        ...

    def next_queued(self, limit: int, cut: int | None = None) -> JobsList:
        """The first ``limit`` QUEUED jobs in start order, whatever holds them back."""
        ...

    def latest_rows(self, state: str, limit: int, cut: int) -> JobsList:
        """The newest ``limit`` jobs in ``state``, as rows for a view."""
        ...


class Workers(Protocol):
    """What a request asks of the worker pool."""

    def info(self) -> list[WorkerInfo]:
        """Each live worker: pid, state, and the job it runs (``status``)."""
        ...

    def top(self) -> list[WorkerTop]:
        """Each live worker with its job, run time, CPU and memory (``top``)."""
        ...

    async def stop_job(self, job_id: int, kind: str, message: str) -> bool:
        """Stop the running job ``job_id``; return once it has ended (False: not running)."""
        ...


class RequestShutdown(Protocol):
    """Begin the drain, or skip its wait (see ``Supervisor.request_shutdown``)."""

    def __call__(self, reason: str, now: bool = False, again_skips: bool = True) -> None: ...


class Spawn(Protocol):
    """Run ``fn(*args)`` in the background, for the supervisor's life (work that must
    not hold up a reply, such as stopping a job that takes its grace period)."""

    def __call__(self, fn: Callable[..., Awaitable[object]], *args: object) -> None: ...


#: Fill in why each queued job waits (``waiting_for``); returns the same list.
Explain = Callable[[list[Job]], list[Job]]


@dataclass(frozen=True, eq=False)
class Services:
    """Everything a request handler may use, filled in by the supervisor at start."""

    settings: Settings
    #: Every write: jobs and queue settings.
    jobs: JobLifecycle
    #: Reads only.
    store: StoreReads
    committer: Committer
    #: Closed while maintenance holds the store: writers wait here (``store_write``).
    gate: StoreGate
    pool: Workers
    events: JobEvents
    joblogs: JobLogs
    conditions: Conditions
    maintenance: Maintenance
    metrics: Metrics
    explain: Explain
    spawn: Spawn
    request_shutdown: RequestShutdown
    #: Whether a shutdown has begun (``status`` and ``top`` say so).
    draining: Callable[[], bool]
    #: trio's clock when the supervisor started (for uptimes).
    started_at: float
    #: The supervisor's own process (its CPU and memory, for ``top``).
    own_process: psutil.Process


def explainer(store: StoreReads, conditions: Conditions) -> Explain:
    """The :data:`Explain` of a store and the machine's conditions: the rules of
    :mod:`~semantica.supervisor.store.start_rules`, asked about each job (waiting.py)."""

    def explain(jobs: list[Job]) -> list[Job]:
        waiting.explain(jobs, store.blockers, store.clock.time(), conditions.on_ac, conditions.idle)
        return jobs

    return explain


__all__ = [
    "Explain",
    "RequestShutdown",
    "Services",
    "Spawn",
    "StoreReads",
    "Workers",
    "explainer",
]
