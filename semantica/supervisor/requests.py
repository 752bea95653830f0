"""Control requests: one ``handle_<verb>`` per request, and the one place that dispatches.

The verb names match the ``Client`` methods and the ``semctl`` commands. The
dispatch is a ``match`` over message types (an explicit list), never a lookup
of a name the client sent.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import trio

from semantica import __version__
from semantica.errors import BadInput, ProtocolError, SemanticaError, StoreBusy
from semantica.limits import utf8_size
from semantica.models import (
    DEFAULT_QUEUE,
    TERMINAL_STATES,
    CancelOutcome,
    ErrorKind,
    Job,
    JobState,
    validate_queue_name,
)
from semantica.protocol import (
    ENQUEUE_ATOMIC_JOBS,
    Cancel,
    Cancelled,
    ControlReply,
    Enqueued,
    EnqueueLazy,
    ErrorReply,
    Events,
    Follow,
    FollowEnd,
    GetJob,
    GetLogs,
    GetMetrics,
    GetStatus,
    GetTop,
    Hello,
    JobList,
    JobReply,
    LimitQueue,
    ListJobs,
    ListQueues,
    LogChunk,
    LogLines,
    Maintain,
    MetricsReply,
    Ok,
    PauseQueue,
    QueueList,
    QueueReply,
    ResumeQueue,
    Retry,
    Shutdown,
    StatusReply,
    SupervisorRequest,
    TopReply,
    Wait,
    decode_spec,
)
from semantica.supervisor.committer import Claims
from semantica.supervisor.events import FINISHED
from semantica.supervisor.services import Services
from semantica.supervisor.slices import Pace
from semantica.supervisor.store import BUSY_PATIENCE_S, Prepared
from semantica.supervisor.topview import top_reply

MAX_LIST = 10_000
MAX_WAIT_IDS = 10_000
#: `list` counts the jobs that match up to this many; past it, ``total_capped``.
COUNT_CAP = 10_000
#: Room in a frame for what a reply holds besides its jobs (the tag, rid, more, total).
REPLY_ENVELOPE = 256


def reply_budget(services: Services) -> int:
    """The bytes of jobs one reply may carry: what fits in a frame of the supervisor's cap.

    A reply of many jobs (``list``, ``wait``) stops there and says ``more``;
    the client asks for the rest. A reply always holds at least one job, so a
    single job larger than the cap (a large payload and a 1 MiB result) still
    comes whole, alone.
    """
    return max(services.settings.max_frame - REPLY_ENVELOPE, 1)


#: An enqueue of up to this many jobs is one transaction; a bigger one is written in slices.
ATOMIC_JOBS = ENQUEUE_ATOMIC_JOBS


Send = Callable[[ControlReply], Awaitable[None]]

T = TypeVar("T")


async def store_write(services: Services, write: Callable[[], T]) -> T:
    """Run a request's store write; while another process holds the database's
    write lock, wait for it here, off the event loop, and try again.

    The store fails fast when busy (``JobStore.fail_fast_when_busy``), so ``write``
    fails fast with StoreBusy and has changed nothing; after
    ``BUSY_PATIENCE_S`` the StoreBusy goes to the client (``store_busy``).
    Meanwhile every other request, reads included, is served.
    """
    deadline = trio.current_time() + BUSY_PATIENCE_S
    delay = 0.01
    while True:
        await services.gate.passage()  # a forced VACUUM holds the store: wait, off the loop
        try:
            return write()
        except StoreBusy:
            if trio.current_time() + delay >= deadline:
                raise
            await trio.sleep(delay)
            delay = min(delay * 2, 0.25)


async def dispatch(
    services: Services, request: SupervisorRequest, send: Send
) -> ControlReply | None:
    """Carry out one request and return its reply (errors are raised as SemanticaError).

    Streaming requests (``Follow``, ``Events``) push messages with ``send``
    and return their last one, or None when they end without one.
    """
    match request:
        case EnqueueLazy():
            return await handle_enqueue(services, request)
        case GetJob():
            return JobReply(
                rid=request.rid, job=services.explain([services.store.get(request.id)])[0]
            )
        case ListJobs():
            return await handle_list(services, request)
        case Wait():
            return await handle_wait(services, request)
        case GetLogs():
            return handle_logs(services, request)
        case GetStatus():
            return handle_status(services, request)
        case Cancel():
            return await handle_cancel(services, request)
        case Retry():
            job = await store_write(services, lambda: services.jobs.retry(request.id))
            return JobReply(rid=request.rid, job=services.explain([job])[0])
        case PauseQueue():
            create = request.create
            return await store_write(
                services,
                lambda: handle_queue_change(
                    services, request.rid, request.queue, paused=True, create=create
                ),
            )
        case ResumeQueue():
            return await store_write(
                services,
                lambda: handle_queue_change(
                    services, request.rid, request.queue, paused=False, create=False
                ),
            )
        case LimitQueue():
            limit, create = request.limit, request.create
            return await store_write(
                services,
                lambda: handle_queue_change(
                    services, request.rid, request.queue, limit=limit, create=create
                ),
            )
        case ListQueues():
            return QueueList(rid=request.rid, queues=services.store.queues())
        case Maintain():
            return await services.maintenance.run_once(request.force_vacuum)
        case GetMetrics():
            return MetricsReply(rid=request.rid, text=services.metrics.text())
        case GetTop():
            return handle_top(services, request)
        case Follow():
            return await handle_follow(services, request, send)
        case Events():
            return await handle_events(services, request, send)
        case Shutdown():
            services.request_shutdown("semctl shutdown", now=request.now, again_skips=False)
            return Ok(rid=request.rid)
        case Hello():
            raise ProtocolError("already authenticated: hello is only the first frame")
    raise ProtocolError(f"unknown request {type(request).__name__}")


async def handle_enqueue(services: Services, request: EnqueueLazy) -> Enqueued:
    """Add the jobs; the reply is sent only once every one of them is committed.

    The whole request is decoded and checked first, so a bad spec adds nothing. The jobs
    are then written in slices, each one write: the first ATOMIC_JOBS jobs, then
    slices of about ``slices.SLICE_S`` of work. Between two, other requests and
    the workers are served, so a request of tens of thousands of jobs holds
    nobody up for long. A request of up to ATOMIC_JOBS jobs is one transaction,
    as it always was. In a request of several slices each slice is committed
    before the next is written: if one fails (the store fails, the supervisor
    stops), the slices before it stay, and the error says how many jobs they held.
    """
    raws = request.jobs
    if not raws:
        raise BadInput("nothing to enqueue")
    prepared: list[Prepared] = []
    pace = Pace(len(raws))
    for start, stop in pace:
        specs = [decode_spec(raws[i], i) for i in range(start, stop)]
        prepared += services.jobs.check(specs)
        await pace.rest()
    jobs: list[Job] = []
    running_older: list[tuple[int, int]] = []
    claims = Claims(services.committer)
    pace = Pace(len(prepared), first=ATOMIC_JOBS)
    for start, stop in pace:
        piece = prepared[start:stop]
        try:
            result = await store_write(services, functools.partial(services.jobs.add, piece))
            claims.mark()  # (no checkpoint since the write: its batch is the open one)
            jobs += services.explain(result.jobs)
            running_older += result.running_older
            await pace.rest()
            if stop < len(prepared):
                # Nothing of a later slice is written before this one is durable, so
                # what the error below reports as added really is.
                error = await claims.failed()
                if error is not None:
                    raise error
        except SemanticaError as exc:
            if start == 0:
                raise
            raise type(exc)(
                f"{exc.message} (the first {start} of the {len(prepared)} jobs of this "
                "request were added before it; the rest were not)"
            ) from None
    error = await claims.failed()  # the last slice's commit (every one, for one slice)
    if error is not None:
        if len(prepared) <= ATOMIC_JOBS:
            raise error
        done = len(prepared) - len(piece)
        raise type(error)(
            f"{error.message} (the first {done} of the {len(prepared)} jobs of this "
            "request were added before it; the rest were not)"
        ) from None
    for old_id, new_id in running_older:
        # --supersede-running, once the new jobs are durable: stopping takes up to the
        # grace period; do not hold the reply.
        services.spawn(
            services.pool.stop_job,
            old_id,
            ErrorKind.CANCELLED.value,
            f"superseded by job {new_id} (--supersede-running)",
        )
    return Enqueued(rid=request.rid, jobs=jobs)


async def handle_cancel(services: Services, request: Cancel) -> Cancelled:
    """Cancel queued jobs at once and stop running ones; reply when all have ended.

    Up to MAX_WAIT_IDS jobs, handled in slices (slices.py): other requests are
    served in between.
    """
    if not request.ids or len(request.ids) > MAX_WAIT_IDS:
        raise BadInput(f"cancel needs between 1 and {MAX_WAIT_IDS} job ids")
    # (States alone: the jobs' payloads and results are not needed, and may be large.)
    states = services.store.states(request.ids)  # NoSuchJob for an unknown id
    ids = list(dict.fromkeys(request.ids))
    messages: dict[int, str] = {}
    claims = Claims(services.committer)
    async with trio.open_nursery() as nursery:
        pace = Pace(len(ids))
        for start, stop in pace:
            for job_id in ids[start:stop]:
                state = states[job_id]
                if state == JobState.QUEUED:
                    if await store_write(
                        services, functools.partial(services.jobs.cancel_queued, job_id)
                    ):
                        claims.mark()
                        messages[job_id] = "cancelled"
                        continue
                    state = services.store.state(
                        job_id
                    )  # it left the queue while the store was busy
                if state == JobState.RUNNING:
                    nursery.start_soon(
                        services.pool.stop_job,
                        job_id,
                        ErrorKind.CANCELLED.value,
                        "cancelled while running",
                    )
                    messages[job_id] = "stopped"
                else:
                    messages[job_id] = f"already finished ({state})"
            await pace.rest()
    error = await claims.failed()  # a cancel whose commit failed did not happen
    if error is not None:
        raise error
    states = services.store.states(request.ids)
    results = [
        CancelOutcome(id=job_id, state=states[job_id], message=messages[job_id])
        for job_id in request.ids
    ]
    return Cancelled(rid=request.rid, results=results)


async def handle_follow(services: Services, request: Follow, send: Send) -> ControlReply:
    """The log so far, then new lines as they come, then the job when it has finished."""
    job = services.store.get(request.id)  # NoSuchJob for an unknown id
    # Read what is written and subscribe with no checkpoint in between: no line
    # is missed or sent twice.
    lines = services.joblogs.tail(request.id)
    sub = None if job.state in TERMINAL_STATES else services.events.follow(request.id)
    budget = reply_budget(services)
    try:
        for chunk in _line_chunks(lines, budget):
            await send(LogChunk(rid=request.rid, lines=chunk))
        finished = sub is None
        while not finished:
            assert sub is not None
            try:
                item = await sub.receive.receive()
            except trio.EndOfChannel:  # closed without FINISHED: this reader fell behind
                return _too_slow(request.rid, "log lines")
            batch: list[str] = []
            while True:  # put lines that arrived together in one frame
                if item is FINISHED:
                    finished = True
                    break
                batch.extend(item)
                if len(batch) >= 1000:
                    break
                try:
                    item = sub.receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            for chunk in _line_chunks(batch, budget):
                await send(LogChunk(rid=request.rid, lines=chunk))
    finally:
        if sub is not None:
            services.events.unfollow(request.id, sub)
    return FollowEnd(rid=request.rid, job=services.explain([services.store.get(request.id)])[0])


def _line_chunks(lines: list[str], budget: int) -> Iterator[list[str]]:
    """``lines`` in runs of about ``budget`` bytes at most (at least one line each), so
    that no LogChunk outgrows a frame: a job's log may be larger than one."""
    start, size = 0, 0
    for end, line in enumerate(lines):
        size += utf8_size(line) + 5  # (a msgpack str header)
        if size > budget and end > start:
            yield lines[start:end]
            start, size = end, utf8_size(line) + 5
    if start < len(lines):
        yield lines[start:]


async def handle_events(services: Services, request: Events, send: Send) -> ControlReply:
    """Every job event, as it happens, until the client goes away."""
    sub = services.events.watch()
    try:
        async for event in sub.receive:
            event.rid = request.rid
            await send(event)
    finally:
        services.events.unwatch(sub)
    return _too_slow(request.rid, "job events")


def _too_slow(rid: int, what: str) -> ErrorReply:
    return ErrorReply(
        rid=rid,
        code="too_slow",
        message=f"dropped: this reader fell too far behind the {what}; reconnect to go on",
    )


def handle_queue_change(
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
    if request.lines is not None and request.lines < 0:
        raise BadInput(f"line count must be 0 or more, got {request.lines}")
    services.store.get(request.id)  # NoSuchJob for an unknown id
    return LogLines(rid=request.rid, lines=services.joblogs.tail(request.id, request.lines))


def handle_top(services: Services, request: GetTop) -> TopReply:
    """One frame of ``semctl top``, from one request (not many small ones)."""
    return top_reply(services, request.rid)


def handle_status(services: Services, request: GetStatus) -> StatusReply:
    return StatusReply(
        rid=request.rid,
        version=__version__,
        uptime_s=round(trio.current_time() - services.started_at, 3),
        db_bytes=services.store.size_bytes(),
        counts=services.store.counts(),
        workers=services.pool.info(),
        pid=os.getpid(),
        home=str(services.settings.paths.home),
        durability=services.settings.durability,
        last_maintenance=services.maintenance.last_run,
        draining=services.draining(),
    )
