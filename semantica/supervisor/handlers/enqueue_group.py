"""Pipelined enqueues carried out as one store insert.

What it owns: a run of ``Enqueue`` requests that came in together on one
connection (already read, one after another, nothing else between them), to
be written with one :meth:`~semantica.supervisor.lifecycle.JobLifecycle.add`,
the set-based insert ``enqueue_many`` uses, instead of one insert each. A
pipelining client (many tasks awaiting ``enqueue`` on one connection) sends
dozens of one-job requests per scheduler pass; one insert for them all costs
a few µs a job where one each cost some 100 µs.

What it promises, the same as one request at a time:

* **Each request its own job and its own reply.** The run's jobs are added in
  the order the requests came (ids grow that way; FIFO within a priority
  holds), and each request's reply holds exactly its own jobs. The replies go
  out through the connection's outbox like any other, each once the commit
  they share is durable (replies.py): nothing is acknowledged before it is.
* **Alone when it must be.** Only requests whose jobs the insert adds exactly
  as their specs say go together (:func:`combinable`: no subject, nothing
  waited for, no ref, no ``follows``, at most :data:`GROUP_JOBS` jobs); any other request,
  and any request that is bad (a spec that does not decode, an unknown type),
  is carried out alone by its caller, in its place, and gets its own reply or
  error as it always would.

How it fails: when the one insert fails as a whole (the store is full, busy
past its patience), nothing of it happened (each store write is all or none),
and :func:`enqueue_together` returns None: the caller then carries out each
request alone, so each gets its own outcome.

Across connections (:class:`Gathering`): clients that each wait for their reply
(threads with a ``Client`` each) send one request at a time, so no connection
has a run; but when several send at once, their requests are read in the same
scheduler pass. Each such lone, combinable enqueue joins the pass's round, and
the first of them to run again (one pass later, when every reader woken with it
has joined) carries out the round as one insert; each request gets its own
reply, exactly as above, and a round whose insert failed as a whole leaves each
request to be carried out alone by its own reader.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import trio

from semantica.errors import ProtocolError, SemanticaError
from semantica.framed import FramedStream
from semantica.protocol import ControlReply, Enqueued, EnqueueLazy, SupervisorRequest, decode_spec
from semantica.supervisor.committer import Ticket
from semantica.supervisor.handlers.common import store_write
from semantica.supervisor.handlers.jobs import ATOMIC_JOBS, brief_reply
from semantica.supervisor.services import Services
from semantica.supervisor.store import Prepared

#: The most jobs one request may have to go with others (a pipelined ``enqueue`` has one).
GROUP_JOBS = 64
#: The most jobs one shared insert takes: as one request of the largest atomic size, so
#: that it holds the event loop no longer than such a request does.
MAX_GROUP_JOBS = ATOMIC_JOBS

#: A request read ahead of its turn, or the error of a bad frame read there.
Ahead = SupervisorRequest | ProtocolError | None
#: Carries out one request alone and queues its reply.
Alone = Callable[[EnqueueLazy], Awaitable[None]]
#: Queues the replies of requests carried out, in order (each goes out once durable).
Queue = Callable[[list[tuple[ControlReply, Any]]], Awaitable[None]]


async def carry_out_enqueues(
    services: Services, channel: FramedStream, first: EnqueueLazy, alone: Alone, queue: Queue
) -> Ahead:
    """Carry out ``first`` and the enqueues already buffered behind it, in order; what
    was read after them, not yet carried out (a request, or a bad frame's error).

    Runs of requests that may share an insert (:func:`combinable`) are written
    together, up to MAX_GROUP_JOBS jobs a run; any other is carried out ``alone``, in
    its place; a run whose insert failed as a whole is carried out one at a time.
    Only frames already here are read: this never waits for the client.
    """
    run: list[tuple[EnqueueLazy, list[Prepared]]] = []
    jobs = 0
    request = first
    ahead: Ahead = None
    while True:
        prepared = combinable(services, request)
        if prepared is None or jobs + len(prepared) > MAX_GROUP_JOBS:
            await _carry_out_run(services, run, alone, queue)
            run, jobs = [], 0
        if prepared is None:
            await alone(request)
        else:
            run.append((request, prepared))
            jobs += len(prepared)
        if not channel.buffered:
            break
        try:
            message = await channel.receive()  # buffered: no wait
        except ProtocolError as exc:
            ahead = exc
            break
        if not isinstance(message, EnqueueLazy):
            ahead = message
            break
        request = message
    await _carry_out_run(services, run, alone, queue)
    return ahead


async def _carry_out_run(
    services: Services, run: list[tuple[EnqueueLazy, list[Prepared]]], alone: Alone, queue: Queue
) -> None:
    if not run:
        return
    replies = await enqueue_together(services, run)
    if replies is None:
        for request, _ in run:  # the one insert failed: each alone, each its own outcome
            await alone(request)
        return
    await queue([(reply, request) for reply, (request, _) in zip(replies, run, strict=True)])


def combinable(services: Services, request: EnqueueLazy) -> list[Prepared] | None:
    """The checked jobs of ``request`` if it may share an insert with others; else None.

    None for a request the caller must carry out alone: too many jobs, a subject
    (generations are settled against the jobs before it), something waited for, a
    ref, a spec that is bad (carried out alone, it gets its own error reply), or
    one that follows another (``follows``: the server checks it first).
    """
    raws = request.jobs
    if not raws or len(raws) > GROUP_JOBS or request.follows:
        return None
    try:
        specs = [decode_spec(raw, i) for i, raw in enumerate(raws)]
        for spec in specs:
            if spec.subject is not None or spec.after or spec.after_end or spec.ref is not None:
                return None
        return services.jobs.check(specs)
    except SemanticaError:
        return None


async def enqueue_together(
    services: Services, run: Sequence[tuple[EnqueueLazy, list[Prepared]]]
) -> list[Enqueued] | None:
    """Add the jobs of every request of ``run`` in one insert; each request's reply.

    The replies are not durable yet: the caller queues each to go out once its commit
    is (as every reply). None if the insert failed as a whole (nothing was added):
    the caller carries out each request alone.
    """
    prepared: list[Prepared] = []
    for _, items in run:
        prepared += items
    await services.committer.writable()  # (after the commit under way, if any)
    try:
        result = await store_write(services, functools.partial(services.jobs.add, prepared))
    except SemanticaError:
        return None
    jobs = services.explain(result.jobs)
    replies: list[Enqueued] = []
    start = 0
    for request, items in run:
        mine = jobs[start : start + len(items)]
        start += len(items)
        if request.brief:
            replies.append(brief_reply(request.rid, mine, result.added_at))
        else:
            replies.append(Enqueued(rid=request.rid, jobs=mine))
    return replies


class _Round:
    """The lone enqueues of one scheduler pass, from several connections."""

    def __init__(self) -> None:
        self.run: list[tuple[EnqueueLazy, list[Prepared]]] = []
        self.jobs = 0
        self.taken = False  # a member carries it out (or has)
        self.replies: list[Enqueued] | None = None
        #: The batch the round's insert went into, taken in the insert's own step.
        self.ticket: Ticket | None = None
        self.done = trio.Event()


class Gathered(NamedTuple):
    """A request's reply from a shared insert, and the batch that insert went into."""

    reply: Enqueued
    #: Its reply may go out once this is committed (None: nothing pending). Taken in the
    #: step of the insert: by the time a member runs again, the committer may have taken
    #: that batch (and the next writes form another).
    ticket: Ticket | None


class Gathering:
    """Lone enqueues of several connections, read in one pass, carried out as one insert
    (see the module docstring). One per control server."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._round: _Round | None = None

    async def enqueue(self, request: EnqueueLazy) -> Gathered | None:
        """``request``'s reply (not durable yet) and the batch to wait for, its jobs added
        with those of the other connections' requests read in the same pass; None if the
        caller must carry it out alone (not :func:`combinable`, or the round's insert
        failed as a whole)."""
        prepared = combinable(self._services, request)
        if prepared is None:
            return None
        round_ = self._round
        if round_ is None or round_.jobs + len(prepared) > MAX_GROUP_JOBS:
            round_ = self._round = _Round()
        index = len(round_.run)
        round_.run.append((request, prepared))
        round_.jobs += len(prepared)
        # One pass: every reader woken with this one joins the round meanwhile.
        await trio.lowlevel.cancel_shielded_checkpoint()
        if not round_.taken:
            round_.taken = True
            if self._round is round_:
                self._round = None
            try:
                # Shielded: the round's jobs are other clients' too; once written, their
                # replies must come back (a cancel here could make them write twice).
                with trio.CancelScope(shield=True):
                    round_.replies = await enqueue_together(self._services, round_.run)
                    round_.ticket = self._services.committer.ticket()
            finally:
                round_.done.set()
        else:
            await round_.done.wait()
        if round_.replies is None:
            return None
        return Gathered(round_.replies[index], round_.ticket)
