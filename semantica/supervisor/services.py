"""What a request handler is given: the supervisor's services, never the supervisor.

A control request is carried out by a ``handle_<verb>`` function that receives
one :class:`Services`, which ``app.py`` fills in once the state is open. That
record is all a handler reaches:

* **writes** go through ``jobs`` (:class:`JobLifecycle`), which commits, logs
  and wakes, in that order, for every write;
* **reads** go to ``store``, typed
  :class:`~semantica.supervisor.store.StoreReads`: the reads of the store
  contract and nothing else, so mypy refuses a handler that would write past
  the lifecycle;
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

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import psutil

from semantica.config import Settings
from semantica.models import Job
from semantica.protocol import WorkerInfo, WorkerTop
from semantica.supervisor import waiting
from semantica.supervisor.cluster import Node
from semantica.supervisor.committer import Committer
from semantica.supervisor.conditions import Conditions
from semantica.supervisor.events import JobEvents
from semantica.supervisor.joblogs import Logs
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.maintenance import Maintenance, StoreGate
from semantica.supervisor.metrics import Metrics
from semantica.supervisor.queue_counts import QueueCounts
from semantica.supervisor.store import StoreReads


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
    joblogs: Logs
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
    #: This supervisor as a node of its store (the cluster's nodes and workers).
    node: Node
    #: The queues as ``top`` shows them: finished counts a few seconds old.
    queue_counts: QueueCounts = field(default_factory=QueueCounts)


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
    "Workers",
    "explainer",
]
