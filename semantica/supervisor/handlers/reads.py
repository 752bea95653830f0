"""Requests that read jobs: ``get``, ``list``, ``wait``, ``logs``.

They read through ``services.store`` (:class:`StoreReads`) and write nothing.
A read of many jobs (``list`` or ``wait`` of up to 10,000) works in slices
(slices.py), and a reply carries at most what fits in a frame (``more``: the
client asks for the rest). Like every reply, theirs waits for the commit of the
writes it may show; a read whose slice showed writes that were then undone (a
full disk) reads again.
"""

from __future__ import annotations

import math

import trio

from semantica.errors import BadInput
from semantica.models import TERMINAL_STATES, Job, JobState
from semantica.protocol import GetJob, GetLogs, JobList, JobReply, ListJobs, LogLines, Wait
from semantica.supervisor.committer import Claims
from semantica.supervisor.handlers.common import MAX_WAIT_IDS, reply_budget
from semantica.supervisor.services import Services
from semantica.supervisor.slices import Pace

#: Jobs one ``list`` may ask for.
MAX_LIST = 10_000
#: `list` counts the jobs that match up to this many; past it, ``total_capped``.
COUNT_CAP = 10_000


def handle_get(services: Services, request: GetJob) -> JobReply:
    """One job, explained (NoSuchJob for an unknown id)."""
    return JobReply(rid=request.rid, job=services.explain([services.store.get(request.id)])[0])


async def handle_list(services: Services, request: ListJobs) -> JobList:
    """The newest ``limit`` jobs matching the filters; ``paged``: as many as fit in one
    reply (``more`` if some are left: the client asks again from the last id). The
    first reply has ``total``, how many match in all."""
    if request.state is not None and request.state.upper() not in JobState.__members__:
        raise BadInput(
            f"unknown state {request.state!r}: use one of {', '.join(JobState.__members__)}"
        )
    if not 1 <= request.limit <= MAX_LIST:
        raise BadInput(f"limit must be between 1 and {MAX_LIST}, got {request.limit}")
    if request.before is not None and not 1 <= request.before < 2**63:
        raise BadInput(f"before must be a job id, got {request.before}")
    filters = {
        "state": request.state.upper() if request.state else None,
        "queue": request.queue,
        "type": request.type,
        "subject": request.subject,
    }
    if request.paged:  # one page, as many as fit in one reply: bounded work
        page = services.store.list_page(
            **filters, limit=request.limit, before=request.before, budget=reply_budget(services)
        )
        jobs, more = services.explain(page.jobs), page.more
    else:  # an older client: all at once
        jobs, more = await _list_all(services, filters, request.limit, request.before), False
    total, capped = None, False
    if request.before is None:  # the first page: say how many match
        total = len(jobs)
        if more or len(jobs) == request.limit:
            # Counted up to a cap: a count of every match would walk them all.
            total = services.store.count(**filters, cap=COUNT_CAP + 1)
            total, capped = min(total, COUNT_CAP), total > COUNT_CAP
    return JobList(rid=request.rid, jobs=jobs, more=more, total=total, total_capped=capped)


async def _list_all(
    services: Services, filters: dict[str, str | None], limit: int, before: int | None
) -> list[Job]:
    """Up to ``limit`` jobs (MAX_LIST at most), read a page at a time (slices.py) so that
    other requests are served in between; read again if a page showed writes that were
    then undone (a full disk)."""
    while True:
        jobs: list[Job] = []
        seen = Claims(services.committer)
        pace = Pace(limit)
        for start, stop in pace:
            seen.mark()
            rows = services.store.list_page(
                **filters,
                limit=stop - start,
                before=jobs[-1].id if jobs else before,
                budget=None,
            ).jobs
            jobs += services.explain(rows)
            if len(rows) < stop - start:
                break  # no more
            await pace.rest()
        if await seen.failed() is None:
            return jobs


async def handle_wait(services: Services, request: Wait) -> JobList:
    """Reply when every job has finished, or when the timeout passes (with their states then).

    A ``paged`` reply holds as many of the jobs as fit in one frame (``more`` if
    not all).
    """
    if not request.ids or len(request.ids) > MAX_WAIT_IDS:
        raise BadInput(f"wait needs between 1 and {MAX_WAIT_IDS} job ids")
    timeout = math.inf if request.timeout is None else request.timeout
    if not timeout >= 0:
        raise BadInput(f"timeout must be 0 or more seconds, got {request.timeout}")
    states = services.store.states(request.ids)  # NoSuchJob for an unknown id
    pending = {job_id for job_id, state in states.items() if state not in TERMINAL_STATES}
    # Read the states, then subscribe, with no checkpoint in between: no job can
    # finish unseen.
    all_finished = services.events.all_finished(pending)
    with trio.move_on_after(timeout):
        await all_finished.wait()
    if request.paged:
        # As many as fit in one reply, in the order asked; the client asks for the
        # rest (with timeout 0: they are read as they are then).
        page = services.store.get_page(request.ids, reply_budget(services))
        return JobList(rid=request.rid, jobs=services.explain(page.jobs), more=page.more)
    return JobList(rid=request.rid, jobs=await read_jobs(services, request.ids))


async def read_jobs(services: Services, ids: list[int]) -> list[Job]:
    """The jobs ``ids`` (in that order), explained; read in slices (slices.py), since a
    request may name MAX_WAIT_IDS of them. NoSuchJob for an unknown id."""
    while True:
        jobs: list[Job] = []
        seen = Claims(services.committer)  # the writes each slice may show
        pace = Pace(len(ids))
        for start, stop in pace:
            seen.mark()
            jobs += services.explain(services.store.get_many(ids[start:stop]))
            await pace.rest()
        if await seen.failed() is None:
            return jobs
        # A slice showed writes that were then undone (a full disk): read again.


def handle_logs(services: Services, request: GetLogs) -> LogLines:
    """The last ``lines`` lines of a job's log (all of it if None)."""
    if request.lines is not None and request.lines < 0:
        raise BadInput(f"line count must be 0 or more, got {request.lines}")
    services.store.get(request.id)  # NoSuchJob for an unknown id
    return LogLines(rid=request.rid, lines=services.joblogs.tail(request.id, request.lines))
