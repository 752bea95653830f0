"""What is pushed or drawn live: ``follow`` (a job's log), ``events`` (every job
event), ``changes`` (a tick when jobs changed, for live views), ``top`` (one frame
of ``semctl top``).

``follow``, ``events`` and ``changes`` are streams: they push messages with ``send``
until they end, and a stream is the last request of its connection. On a shared
store, ``changes`` also ticks when the change feed tells of other nodes' jobs, and
at least every :data:`SHARED_TICK_S` (a job starting elsewhere is told by nothing). A reader that
falls too far behind is dropped (``too_slow``) rather than let its queue grow.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import trio

from semantica.errors import BadInput
from semantica.limits import utf8_size
from semantica.models import TERMINAL_STATES, JobState
from semantica.protocol import (
    ControlReply,
    ErrorReply,
    Events,
    Follow,
    FollowEnd,
    GetTop,
    JobsChanged,
    LogChunk,
    TopReply,
    WatchChanges,
)
from semantica.supervisor.events import FINISHED, Subscription
from semantica.supervisor.handlers.common import Send, reply_budget
from semantica.supervisor.services import Services
from semantica.supervisor.shared_logs import StoreLogs
from semantica.supervisor.topview import top_reply


async def handle_follow(services: Services, request: Follow, send: Send) -> ControlReply:
    """The log so far, then new lines as they come, then the job when it has finished."""
    job = services.store.get(request.id)  # NoSuchJob for an unknown id
    if isinstance(services.joblogs, StoreLogs):
        await _follow_shared(services, services.joblogs, request, send, job.state)
        return FollowEnd(rid=request.rid, job=services.explain([services.store.get(request.id)])[0])
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


#: How often a follower on a shared store reads the log book again (the job may run
#: on another node, whose lines arrive without an event here).
SHARED_POLL_S = 0.25


async def _follow_shared(
    services: Services, logs: StoreLogs, request: Follow, send: Send, state: JobState
) -> None:
    """Follow a job's log in the store's log book until the job has finished: read
    again at each event about the job here, and at least every SHARED_POLL_S."""
    budget = reply_budget(services)
    lines, seen = logs.after(request.id, 0)
    finished = state in TERMINAL_STATES
    sub = None if finished else services.events.follow(request.id)
    try:
        while True:
            for chunk in _line_chunks(lines, budget):
                await send(LogChunk(rid=request.rid, lines=chunk))
            if finished:
                return
            with trio.move_on_after(SHARED_POLL_S):
                finished = await _next_event(sub) if sub is not None else False
            # (The end may have been missed: a dropped reader, a feed that broke.)
            finished = finished or services.store.state(request.id) in TERMINAL_STATES
            lines, seen = logs.after(request.id, seen)
    finally:
        if sub is not None:
            services.events.unfollow(request.id, sub)


async def _next_event(sub: Subscription) -> bool:
    """Wait for news of the followed job; whether it has finished. (Its lines are read
    from the log book, not from here.) A reader dropped for falling behind waits for
    the next poll instead."""
    try:
        item = await sub.receive.receive()
    except trio.EndOfChannel:
        await trio.sleep_forever()
    while item is not FINISHED:
        try:
            item = sub.receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return False
    return True


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


#: The shortest and longest time between two ticks a client may ask for.
TICK_BOUNDS_S = (0.05, 60.0)
#: On a shared store, a tick at least this often: another node's job starting is
#: told by no event here (its enqueues and ends are, through the change feed).
SHARED_TICK_S = 5.0


async def handle_changes(services: Services, request: WatchChanges, send: Send) -> ControlReply:
    """A tick at once (seq 0: listening), then one after job events, at most one per
    ``interval``, until the client goes away.

    Raises:
        BadInput: ``interval`` is outside :data:`TICK_BOUNDS_S`.
    """
    low, high = TICK_BOUNDS_S
    interval = request.interval
    if not low <= interval <= high:  # (NaN too)
        raise BadInput(f"interval must be {low}-{high:.0f} seconds, got {interval!r}")
    ticker = services.events.tick()
    try:
        # The first tick, at once: the stream listens from now on (what changed before,
        # the client reads now).
        await send(JobsChanged(seq=0, rid=request.rid))
        quiet = SHARED_TICK_S if services.node.shared else math.inf
        while True:
            with trio.move_on_after(quiet):
                await ticker.woken.wait()
            ticker.rearm()
            await send(JobsChanged(seq=ticker.seq, rid=request.rid))
            await trio.sleep(interval)  # events meanwhile: one tick, after the pause
    finally:
        services.events.untick(ticker)


def _too_slow(rid: int, what: str) -> ErrorReply:
    return ErrorReply(
        rid=rid,
        code="too_slow",
        message=f"dropped: this reader fell too far behind the {what}; reconnect to go on",
    )


def handle_top(services: Services, request: GetTop) -> TopReply:
    """One frame of ``semctl top``, from one request (not many small ones)."""
    return top_reply(services, request.rid)
