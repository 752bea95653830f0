"""Requests about queues and the supervisor itself: ``pause``, ``resume``, ``limit``,
``queues``, ``status``, ``maintenance``, ``metrics``, ``shutdown``.

A queue's settings change through the lifecycle (``JobLifecycle.set_queue``),
under :func:`~.common.store_write`, like every write.
"""

from __future__ import annotations

import os

import trio

from semantica import __version__
from semantica.errors import BadInput
from semantica.models import DEFAULT_QUEUE, validate_queue_name
from semantica.protocol import (
    GetMetrics,
    GetStatus,
    LimitQueue,
    ListQueues,
    Maintain,
    MaintenanceReport,
    MetricsReply,
    Ok,
    PauseQueue,
    QueueList,
    QueueReply,
    ResumeQueue,
    Shutdown,
    StatusReply,
    WorkerInfo,
)
from semantica.supervisor.handlers.common import store_write
from semantica.supervisor.services import Services


async def handle_pause(services: Services, request: PauseQueue) -> QueueReply:
    """Start no job of the queue until it is resumed (made first with ``create``)."""
    create = request.create
    return await store_write(
        services,
        lambda: queue_change(services, request.rid, request.queue, paused=True, create=create),
    )


async def handle_resume(services: Services, request: ResumeQueue) -> QueueReply:
    """Start jobs of the queue again."""
    return await store_write(
        services,
        lambda: queue_change(services, request.rid, request.queue, paused=False, create=False),
    )


async def handle_limit(services: Services, request: LimitQueue) -> QueueReply:
    """Run at most ``limit`` jobs of the queue at once (0: no cap)."""
    limit, create = request.limit, request.create
    return await store_write(
        services,
        lambda: queue_change(services, request.rid, request.queue, limit=limit, create=create),
    )


def queue_change(
    services: Services,
    rid: int,
    queue: str,
    *,
    paused: bool | None = None,
    limit: int | None = None,
    create: bool = True,
) -> QueueReply:
    """Pause, resume or limit a queue; settings survive restarts.

    A queue never seen (no job or setting named it) is made only with ``create``:
    otherwise it is bad input, naming the queues there are, so that a typo changes
    nothing. Resuming one is always bad input. ``default`` is always there.
    """
    if not create and queue != DEFAULT_QUEUE and not services.store.queue_known(queue):
        validate_queue_name(queue)  # a bad name is said as such
        hint = "" if paused is False else "; create it to set it up before its first job"
        hint += " (semctl: --create)" if hint else ""
        raise BadInput(f"no queue {queue!r} (queues: {services.store.some_queues()}){hint}")
    info = services.jobs.set_queue(queue, paused=paused, limit=limit)
    return QueueReply(rid=rid, queue=info)


def handle_queues(services: Services, request: ListQueues) -> QueueList:
    """Every queue with its settings and counts by state."""
    return QueueList(rid=request.rid, queues=services.store.queues())


def handle_status(services: Services, request: GetStatus) -> StatusReply:
    """Counts by state, workers, database size, uptime, version, schedules; on a shared
    store, every node and the workers of all of them."""
    nodes, tops = services.node.view()
    workers = [WorkerInfo(pid=w.pid, state=w.state, job=w.job, node=w.node) for w in tops]
    schedules = services.store.schedules()
    return StatusReply(
        rid=request.rid,
        version=__version__,
        uptime_s=round(trio.current_time() - services.started_at, 3),
        db_bytes=services.store.size_bytes(),
        counts=services.store.counts(),
        workers=workers,
        pid=os.getpid(),
        home=str(services.settings.paths.home),
        durability=services.settings.durability,
        last_maintenance=services.maintenance.last_run,
        draining=services.draining(),
        store=services.settings.store_shown,
        node=services.node.spec.name,
        nodes=nodes,
        waiting_on_dependencies=services.store.dependency_waits(),
        schedules=len(schedules),
        schedules_paused=sum(schedule.paused for schedule in schedules),
    )


async def handle_maintenance(services: Services, request: Maintain) -> MaintenanceReport:
    """Run maintenance now; the reply comes when it is done."""
    return await services.maintenance.run_once(request.force_vacuum)


def handle_metrics(services: Services, request: GetMetrics) -> MetricsReply:
    """The Prometheus text exposition."""
    return MetricsReply(rid=request.rid, text=services.metrics.text())


def handle_shutdown(services: Services, request: Shutdown) -> Ok:
    """Drain and stop the supervisor, as SIGTERM does (``now``: without the drain's wait)."""
    services.request_shutdown("semctl shutdown", now=request.now, again_skips=False)
    return Ok(rid=request.rid)
