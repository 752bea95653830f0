"""Control requests: one ``handle_<verb>`` per request, and the one place that dispatches.

The verb names match the ``Client`` methods and the ``semctl`` commands. The
dispatch is a ``match`` over message types (an explicit list), never a lookup
of a name the client sent.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import trio

from semantica import __version__
from semantica.errors import BadInput, ProtocolError
from semantica.models import TERMINAL_STATES, JobState
from semantica.protocol import (
    ControlReply,
    ControlRequest,
    Enqueue,
    Enqueued,
    GetJob,
    GetLogs,
    GetStatus,
    Hello,
    JobList,
    JobReply,
    ListJobs,
    LogLines,
    Ok,
    Shutdown,
    StatusReply,
    Wait,
)

if TYPE_CHECKING:
    from semantica.supervisor.app import Supervisor

MAX_LIST = 10_000
MAX_WAIT_IDS = 10_000


async def dispatch(sup: Supervisor, request: ControlRequest) -> ControlReply:
    """Carry out one request and return its reply (errors are raised as SemanticaError)."""
    match request:
        case Enqueue():
            return handle_enqueue(sup, request)
        case GetJob():
            return JobReply(rid=request.rid, job=sup.store.get(request.id))
        case ListJobs():
            return handle_list(sup, request)
        case Wait():
            return await handle_wait(sup, request)
        case GetLogs():
            return handle_logs(sup, request)
        case GetStatus():
            return handle_status(sup, request)
        case Shutdown():
            sup.request_shutdown("semctl shutdown")
            return Ok(rid=request.rid)
        case Hello():
            raise ProtocolError("already authenticated: hello is only the first frame")
    raise ProtocolError(f"unknown request {type(request).__name__}")


def handle_enqueue(sup: Supervisor, request: Enqueue) -> Enqueued:
    """Commit the jobs (all or none); the reply is sent only after the commit."""
    if not request.jobs:
        raise BadInput("nothing to enqueue")
    return Enqueued(rid=request.rid, jobs=sup.jobs.enqueue(request.jobs))


def handle_list(sup: Supervisor, request: ListJobs) -> JobList:
    if request.state is not None and request.state.upper() not in JobState.__members__:
        raise BadInput(
            f"unknown state {request.state!r}: use one of {', '.join(JobState.__members__)}"
        )
    if not 1 <= request.limit <= MAX_LIST:
        raise BadInput(f"limit must be between 1 and {MAX_LIST}, got {request.limit}")
    jobs = sup.store.list(
        state=request.state.upper() if request.state else None,
        queue=request.queue,
        type=request.type,
        subject=request.subject,
        limit=request.limit,
    )
    return JobList(rid=request.rid, jobs=jobs)


async def handle_wait(sup: Supervisor, request: Wait) -> JobList:
    """Reply when every job has finished, or when the timeout passes (with their states then)."""
    if not request.ids or len(request.ids) > MAX_WAIT_IDS:
        raise BadInput(f"wait needs between 1 and {MAX_WAIT_IDS} job ids")
    timeout = math.inf if request.timeout is None else request.timeout
    if not timeout >= 0:
        raise BadInput(f"timeout must be 0 or more seconds, got {request.timeout}")
    jobs = sup.store.get_many(request.ids)  # NoSuchJob for an unknown id
    pending = [job.id for job in jobs if job.state not in TERMINAL_STATES]
    if not pending:
        return JobList(rid=request.rid, jobs=jobs)
    with trio.move_on_after(timeout):
        for job_id in pending:
            # Read the state, then subscribe, with no checkpoint in between: a job
            # that finished while we waited for an earlier one is not waited for.
            if sup.store.state(job_id) not in TERMINAL_STATES:
                await sup.events.finished(job_id).wait()
    return JobList(rid=request.rid, jobs=sup.store.get_many(request.ids))


def handle_logs(sup: Supervisor, request: GetLogs) -> LogLines:
    if request.lines is not None and request.lines < 0:
        raise BadInput(f"line count must be 0 or more, got {request.lines}")
    sup.store.get(request.id)  # NoSuchJob for an unknown id
    return LogLines(rid=request.rid, lines=sup.joblogs.tail(request.id, request.lines))


def handle_status(sup: Supervisor, request: GetStatus) -> StatusReply:
    return StatusReply(
        rid=request.rid,
        version=__version__,
        uptime_s=round(trio.current_time() - sup.started_at, 3),
        db_bytes=sup.store.size_bytes(),
        counts=sup.store.counts(),
        workers=sup.pool.info(),
        pid=os.getpid(),
        home=str(sup.settings.paths.home),
    )
