"""Requests that write jobs: ``enqueue``, ``cancel``, ``retry``.

Every write goes through the lifecycle (``services.jobs``), under
:func:`~.common.store_write`, and each reply waits for the commit of what it
says was done: a request over many jobs works in slices (slices.py) and hears
of a slice whose commit failed (:class:`Claims`) before it acknowledges it.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import msgspec
import structlog
import trio

from semantica.errors import BadInput, NoSuchJob, SemanticaError, StoreError
from semantica.models import CancelOutcome, ErrorKind, Job, JobError, JobSpec, JobState
from semantica.protocol import (
    ENQUEUE_ATOMIC_JOBS,
    Cancel,
    Cancelled,
    Enqueued,
    EnqueueLazy,
    JobReply,
    Retry,
    decode_spec,
    list_header,
)
from semantica.supervisor.committer import Claims
from semantica.supervisor.handlers.common import MAX_WAIT_IDS, store_write
from semantica.supervisor.services import Services
from semantica.supervisor.slices import Pace
from semantica.supervisor.store import Prepared, has_refs, plan

log = structlog.get_logger("semantica.jobs")

#: An enqueue of up to this many jobs is one transaction; a bigger one is written in slices.
ATOMIC_JOBS = ENQUEUE_ATOMIC_JOBS


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
    waits: set[int] = set()  # the existing jobs the request's jobs wait for
    graph = False  # jobs of the request wait for one another (refs)
    pace = Pace(len(raws))
    for start, stop in pace:
        specs = decode_specs(raws, start, stop)
        piece = services.jobs.check(specs)
        prepared += piece
        for spec in specs:
            if spec.after or spec.after_end:
                waits.update(x for x in (*spec.after, *spec.after_end) if isinstance(x, int))
        graph = graph or has_refs(piece)
        await pace.rest()
    planned = None
    if waits or graph:
        if graph and len(prepared) > ATOMIC_JOBS:
            raise BadInput(
                f"jobs that wait for one another (refs) go in one request of at most "
                f"{ATOMIC_JOBS} jobs; this one has {len(prepared)}"
            )
        # Every job waited for must exist before anything is written (NoSuchJob),
        # even when the request is written in several slices.
        if waits:
            try:
                services.store.states(sorted(waits))
            except NoSuchJob as exc:
                raise NoSuchJob(f"after: {exc.message}") from None
        planned = plan(prepared)
        prepared = planned.prepared
    jobs: list[Job] = []
    running_older: list[tuple[int, int]] = []
    added_at: list[float | None] = []  # each slice's
    claims = Claims(services.committer)
    pace = Pace(len(prepared), first=ATOMIC_JOBS)
    for start, stop in pace:
        piece = prepared[start:stop]
        try:
            result = await store_write(services, functools.partial(services.jobs.add, piece))
            claims.mark()  # (no checkpoint since the write: its batch is the open one)
            added_at.append(result.added_at)
            jobs += services.explain(result.jobs)
            running_older += result.running_older
            await pace.rest()
            # A request of one slice (nearly all) does not wait for its commit here: its
            # reply waits for it, as every reply does (server.py), and a failed commit
            # becomes its error there, the same one. Waiting here would hold the requests
            # behind it on the connection, which are carried out in order: pipelined
            # enqueues would each pay a disk flush instead of sharing one. (There is no
            # checkpoint since the write, so the server's wait covers its batch.) In a
            # request of several slices nothing of a later slice is written before this
            # one is durable, so that what the error below reports as added really is;
            # running jobs to stop wait for the new ones to be durable.
            if len(prepared) > ATOMIC_JOBS or running_older:
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
    if planned is not None:
        jobs = planned.in_request_order(jobs)
    for old_id, new_id in running_older:
        # --supersede-running, once the new jobs are durable: stopping takes up to the
        # grace period; do not hold the reply.
        services.spawn(
            _stop_or_log,
            services,
            old_id,
            ErrorKind.CANCELLED.value,
            f"superseded by job {new_id} (--supersede-running)",
        )
    if request.brief:
        return brief_reply(request.rid, jobs, added_at[0] if len(added_at) == 1 else None)
    return Enqueued(rid=request.rid, jobs=jobs)


#: Every spec of a slice in one call: a call each cost a third again.
_specs_decoder = msgspec.msgpack.Decoder(list[JobSpec])


def decode_specs(raws: list[msgspec.Raw], start: int, stop: int) -> list[JobSpec]:
    """Specs ``start`` to ``stop`` of an enqueue; ProtocolError naming the first bad one."""
    piece = raws[start:stop]
    try:
        specs: list[JobSpec] = _specs_decoder.decode(list_header(len(piece)) + b"".join(piece))
    except Exception:  # noqa: BLE001 - any failure: decoded one by one, which names the job
        return [decode_spec(raws[i], i) for i in range(start, stop)]
    return specs


def brief_reply(rid: int, jobs: list[Job], added_at: float | None) -> Enqueued:
    """The brief reply to an enqueue (see ``Enqueued``): every id and reason, and whole
    only the jobs a client cannot build from its spec: all of them unless the request
    was one insert (``added_at``; a client sends at most ATOMIC_JOBS jobs a request)."""
    reply = Enqueued(
        rid=rid,
        jobs=[],
        ids=[job.id for job in jobs],
        waiting=[job.waiting_for for job in jobs],
        added_at=added_at or 0.0,
    )
    created_at = None if added_at is None else datetime.fromtimestamp(added_at, UTC)
    queued = JobState.QUEUED  # (looked up once: an enum's attribute costs a lookup each)
    for n, job in enumerate(jobs):
        # A job the insert added as its spec says: new, QUEUED, no subject (no
        # generation), waiting for nothing, made by this insert (fresh_job).
        if not (
            job.created_at == created_at
            and job.state == queued
            and job.subject is None
            and job.waiting_on is None
            and not job.deduplicated
            and job.attempts == 0
        ):
            reply.whole.append(n)
            reply.jobs.append(job)
    return reply


async def stop_running(services: Services, job_id: int, kind: str, message: str) -> None:
    """Stop a running job wherever it runs, and return once it has ended: here, through
    its worker; on another node (a shared store), through a request in the store that
    its node acts on within moments (cluster.py)."""
    if await services.pool.stop_job(job_id, kind, message) or not services.node.shared:
        return
    error = JobError(kind, message)
    if not await store_write(services, lambda: services.jobs.request_stop(job_id, error)):
        return  # it ended meanwhile
    await services.committer.durable()  # (the request reaches the other node once committed)
    await services.node.until_ended(job_id)


async def _stop_or_log(services: Services, job_id: int, kind: str, message: str) -> None:
    """:func:`stop_running` in the background: a store fault is logged, not raised."""
    try:
        await stop_running(services, job_id, kind, message)
    except StoreError as exc:
        log.warning("could not stop a running job", job_id=job_id, error=str(exc))


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
                    # It left the queue while the store was busy.
                    state = services.store.state(job_id)
                if state == JobState.RUNNING:
                    nursery.start_soon(
                        stop_running,
                        services,
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


async def handle_retry(services: Services, request: Retry) -> JobReply:
    """Put a FAILED or CANCELLED job back in the queue with a fresh attempt budget."""
    job = await store_write(
        services, lambda: services.jobs.retry(request.id, dependents=request.dependents)
    )
    return JobReply(rid=request.rid, job=services.explain([job])[0])
