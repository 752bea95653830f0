"""Lone enqueues of several connections read in one pass share one insert.

Clients that each wait for their reply send one request at a time; when several
send at once, their requests are carried out as one insert, yet each keeps its
own reply: its own job, or, when it cannot go with others, the caller carries
it out alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import trio
from test_pool import TrioWallClock

from semantica.errors import StoreFull
from semantica.models import JobSpec, JobState
from semantica.protocol import Enqueued, EnqueueLazy
from semantica.supervisor.committer import Committer
from semantica.supervisor.events import JobEvents
from semantica.supervisor.handlers.enqueue_group import Gathering
from semantica.supervisor.joblogs import JobLogs
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.maintenance import StoreGate
from semantica.supervisor.scheduler import Scheduler
from semantica.supervisor.store import EnqueueResult, Prepared
from semantica.supervisor.store.sqlite import SQLiteStore


class Rig(SimpleNamespace):
    store: SQLiteStore
    committer: Committer
    jobs: JobLifecycle
    inserts: list[int]  # jobs per insert
    fail: bool


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = SQLiteStore(tmp_path / "semantica.db", TrioWallClock())
    committer = Committer(store)
    jobs = JobLifecycle(store, JobLogs(tmp_path / "logs", 1 << 20), JobEvents(), Scheduler(store))
    r = Rig(
        store=store,
        committer=committer,
        jobs=jobs,
        gate=StoreGate(),
        explain=lambda found: found,
        inserts=[],
        fail=False,
    )
    add = jobs.add

    def counted(prepared: Sequence[Prepared]) -> EnqueueResult:
        if r.fail:
            raise StoreFull("the disk is full")
        r.inserts.append(len(prepared))
        return add(prepared)

    jobs.add = counted  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        try:
            yield r
        finally:
            nursery.cancel_scope.cancel()
            store.close()


def _request(rid: int, **spec: Any) -> EnqueueLazy:
    raw = msgspec.msgpack.encode(JobSpec(type="T", delay=3600, **spec))
    return EnqueueLazy(jobs=[msgspec.Raw(raw)], rid=rid)


async def _gathered(gathering: Gathering, requests: list[EnqueueLazy]) -> list[Any]:
    """Each request from a task of its own, all started in the same pass (as the readers
    of several connections woken by one poll): what each got (Gathered or None)."""
    got: list[Any] = [None] * len(requests)

    async def one(i: int) -> None:
        got[i] = await gathering.enqueue(requests[i])

    async with trio.open_nursery() as nursery:
        for i in range(len(requests)):
            nursery.start_soon(one, i)
    return got


async def _all_at_once(gathering: Gathering, requests: list[EnqueueLazy]) -> list[Any]:
    """As :func:`_gathered`: each request's reply (None: left to its caller)."""
    return [None if g is None else g.reply for g in await _gathered(gathering, requests)]


async def test_enqueues_read_in_one_pass_share_one_insert_and_keep_their_replies(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        gathering = Gathering(r)  # type: ignore[arg-type]
        requests = [_request(i + 1, payload={"n": i}) for i in range(8)]
        replies = await _all_at_once(gathering, requests)
        assert r.inserts == [8]
        for i, reply in enumerate(replies):
            assert isinstance(reply, Enqueued) and reply.rid == i + 1
            [job] = reply.jobs
            assert r.store.get(job.id).payload == {"n": i}
            assert job.state == JobState.QUEUED
        ids = [reply.jobs[0].id for reply in replies]
        assert len(set(ids)) == 8
        await r.committer.durable()
        # A later pass starts a new round.
        [again] = await _all_at_once(gathering, [_request(9)])
        assert isinstance(again, Enqueued) and r.inserts == [8, 1]


async def test_a_request_that_cannot_go_with_others_is_left_to_its_caller(
    tmp_path: Path,
) -> None:
    """A subject (its generation is settled against the jobs before it), or a spec that
    does not decode: None, and the caller carries it out alone; the others still share."""
    async with rig(tmp_path) as r:
        gathering = Gathering(r)  # type: ignore[arg-type]
        bad = EnqueueLazy(jobs=[msgspec.Raw(b"\xc1")], rid=3)
        replies = await _all_at_once(
            gathering, [_request(1), _request(2, subject="s"), bad, _request(4)]
        )
        assert replies[1] is None and replies[2] is None
        assert isinstance(replies[0], Enqueued) and isinstance(replies[3], Enqueued)
        assert r.inserts == [2]


async def test_a_round_whose_insert_fails_leaves_each_request_to_its_caller(
    tmp_path: Path,
) -> None:
    """The one insert fails as a whole: nothing was added, and every request of the
    round gets None, so that each is carried out alone and gets its own outcome."""
    async with rig(tmp_path) as r:
        gathering = Gathering(r)  # type: ignore[arg-type]
        r.fail = True
        replies = await _all_at_once(gathering, [_request(1), _request(2), _request(3)])
        assert replies == [None, None, None]
        assert r.store.count() == 0


async def test_every_member_of_a_round_waits_for_the_batch_its_jobs_went_into(
    tmp_path: Path,
) -> None:
    """The members of a round run again only after the insert's step; if the committer
    has taken that batch meanwhile (and it failed), each member's reply must still wait
    for it, not for whatever is pending when it runs again (nothing, or a later batch).
    (Trio runs a pass's tasks in either order: eight rounds, so that the commit comes
    before the members in some.)"""
    async with rig(tmp_path) as r:
        gathering = Gathering(r)  # type: ignore[arg-type]
        insert = r.jobs.add

        def full_disk() -> None:
            raise StoreFull("the disk is full")

        r.store.commit = full_disk  # type: ignore[method-assign]
        for attempt in range(8):
            taken: list[Any] = []
            inserted = trio.Event()

            def then_mark(
                prepared: Any, taken: list[Any] = taken, inserted: trio.Event = inserted
            ) -> Any:
                out = insert(prepared)
                taken.append(r.committer.ticket())
                inserted.set()
                return out

            r.jobs.add = then_mark  # type: ignore[method-assign]

            async def intruder(inserted: trio.Event = inserted) -> None:
                await inserted.wait()  # the round's insert is made: its batch fails
                r.committer.commit_now()

            requests = [_request(10 * attempt + i + 1) for i in range(4)]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(intruder)
                got = await _gathered(gathering, requests)
            [batch] = taken
            assert batch is not None
            for g in got:
                assert g is not None and g.ticket is not None, attempt
                assert g.ticket.same_batch(batch), attempt
                assert g.ticket.settled and g.ticket.error is not None, attempt
