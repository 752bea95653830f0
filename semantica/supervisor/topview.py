"""What ``semctl top`` is sent: one reply, bounded whatever the jobs hold.

* "next in line" is the jobs that will start next, in the order they will (the
  store's own lease order, :meth:`JobStore.next_startable`), then the first
  blocked jobs by priority, each with its reason (``waiting_for``, from
  :mod:`waiting`): the rules live there, not here.
* Job rows carry no payload nor result, and their texts are cut to what a row
  can show (:data:`ROW_TEXT`); the busiest :data:`TOP_QUEUES` queues are sent.
  So a reply stays a few tens of KB, however large the jobs' errors are or
  however many queues there are. A queue's finished counts may be a few seconds
  old (:mod:`queue_counts`): counting them reads every job.
* The :data:`TOP_SCHEDULES` schedules due next, with their latest run; their
  job template without its payload (which may hold a whole environment).
* The jobs enqueued, finished and failed in each minute of the last hour
  (:func:`per_minute`), every minute present: this process's counts
  (:mod:`rates`), so on a shared store each node tells what it did.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import trio

from semantica import __version__
from semantica.models import Job, JobSpec, JobState, QueueInfo
from semantica.protocol import MinuteCounts, TopReply
from semantica.schedules import Schedule
from semantica.supervisor.rates import HOUR_MINUTES, RecentCounts, this_minute
from semantica.supervisor.services import Services

#: The latest FAILED jobs sent.
TOP_FAILURES = 5
#: Jobs that will start next, and as many blocked ones, at most.
TOP_WAITING = 10
#: Queues sent: those with the most queued and running jobs.
TOP_QUEUES = 50
#: The schedules due next sent.
TOP_SCHEDULES = 5
#: Characters of a job's subject, error or progress message sent: more than a row shows.
ROW_TEXT = 200


def top_reply(services: Services, rid: int) -> TopReply:
    """One frame of ``semctl top``."""
    jobs = services.jobs
    queues = services.queue_counts.read(services.store)
    nodes, workers = services.node.view()
    return TopReply(
        rid=rid,
        version=__version__,
        uptime_s=round(trio.current_time() - services.started_at, 3),
        workers=workers,
        queues=_busiest(queues),
        queues_total=len(queues),
        finished_10s=jobs.finished_recently.within(10),
        finished_60s=jobs.finished_recently.within(60),
        enqueued_10s=jobs.enqueued_recently.within(10),
        enqueued_60s=jobs.enqueued_recently.within(60),
        failed_10s=jobs.failed_recently.within(10),
        failed_60s=jobs.failed_recently.within(60),
        supervisor_cpu_percent=services.own_process.cpu_percent(None),
        supervisor_rss_bytes=services.own_process.memory_info().rss,
        failures=services.store.latest_rows(JobState.FAILED.value, TOP_FAILURES, ROW_TEXT),
        waiting=_next_in_line(services),
        draining=services.draining(),
        node=services.node.spec.name,
        nodes=nodes,
        schedules=_next_schedules(services),
        per_minute=per_minute(
            jobs.enqueued_recently,
            jobs.finished_recently,
            jobs.failed_recently,
            this_minute(services.store.clock.time),
        ),
    )


def per_minute(
    enqueued: RecentCounts, finished: RecentCounts, failed: RecentCounts, minute: int
) -> list[MinuteCounts]:
    """The counts of each minute of the hour up to ``minute`` (since the epoch), oldest first."""
    columns = zip(
        enqueued.per_minute(minute),
        finished.per_minute(minute),
        failed.per_minute(minute),
        strict=True,
    )
    first = minute - HOUR_MINUTES + 1
    return [
        MinuteCounts(
            start=datetime.fromtimestamp((first + i) * 60, UTC),
            enqueued=n_enqueued,
            finished=n_finished,
            failed=n_failed,
        )
        for i, (n_enqueued, n_finished, n_failed) in enumerate(columns)
    ]


def _next_in_line(services: Services) -> list[Job]:
    """The jobs that start next, in order, then the first blocked ones, each explained."""
    conditions = services.conditions
    startable = services.store.next_startable(
        TOP_WAITING, ROW_TEXT, on_ac=conditions.on_ac, idle=conditions.idle
    )
    ahead = {job.id for job in startable}
    # The first queued jobs by priority hold the first blocked ones, unless more may
    # start than are shown: then the blocked ones matter less, and fewer are shown.
    queued = services.explain(services.store.next_queued(2 * TOP_WAITING, ROW_TEXT))
    blocked = [job for job in queued if job.id not in ahead and job.waiting_for is not None]
    jobs = services.explain(startable) + blocked[:TOP_WAITING]
    for job in jobs:
        if job.subject is not None and len(job.subject) > ROW_TEXT:
            job.subject = job.subject[: ROW_TEXT - 1] + "\u2026"  # after explain(): it reads it
    return jobs


def _next_schedules(services: Services) -> list[Schedule]:
    """The TOP_SCHEDULES schedules due soonest (paused ones left out), each with its
    latest run; their job template without its payload (a row shows its type)."""
    schedules = services.store.schedules(latest_run=True)
    due = [s for s in schedules if not s.paused and s.next_fire is not None]
    due.sort(key=lambda schedule: (schedule.next_fire, schedule.name))
    return [
        msgspec.structs.replace(s, job=JobSpec(type=s.job.type, queue=s.job.queue))
        for s in due[:TOP_SCHEDULES]
    ]


def _busiest(queues: list[QueueInfo]) -> list[QueueInfo]:
    """At most TOP_QUEUES queues: those with work first, then paused or limited, by name."""
    if len(queues) <= TOP_QUEUES:
        return queues

    def weight(q: QueueInfo) -> tuple[int, int, str]:
        work = q.counts.get(JobState.QUEUED.value, 0) + q.counts.get(JobState.RUNNING.value, 0)
        return (-work, -(q.paused or bool(q.limit)), q.name)

    return sorted(sorted(queues, key=weight)[:TOP_QUEUES], key=lambda q: q.name)
