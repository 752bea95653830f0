"""Requests over many jobs: in slices, acknowledging only what was committed; bounded.

A big enqueue (or cancel) is written in slices with other tasks run in
between, so the commit of an earlier slice may happen, and fail, while the
request goes on. The request must hear of it: no job the reply lists may be
one whose commit failed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import trio
from test_pool import TrioWallClock
from test_store_full import Disk

from semantica.errors import StoreFull
from semantica.models import JobSpec, JobState
from semantica.protocol import Cancel, EnqueueLazy, ListJobs
from semantica.supervisor.committer import Committer
from semantica.supervisor.events import JobEvents
from semantica.supervisor.handlers import jobs as job_requests
from semantica.supervisor.handlers import reads as read_requests
from semantica.supervisor.joblogs import JobLogs
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.maintenance import StoreGate
from semantica.supervisor.scheduler import Scheduler
from semantica.supervisor.store.sqlite import SQLiteStore

#: Slow enough that the committer's own deadline (2 ms) passes while a slice is written.
SLICE_WORK_S = 0.005


class Rig(SimpleNamespace):
    """What the request handlers use of the supervisor: store, group commit, lifecycle."""

    store: SQLiteStore
    disk: Disk
    committer: Committer
    jobs: JobLifecycle


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = SQLiteStore(tmp_path / "semantica.db", TrioWallClock())
    disk = Disk(store._conn)
    store._conn = disk  # type: ignore[assignment]
    committer = Committer(store)
    jobs = JobLifecycle(store, JobLogs(tmp_path / "logs", 1 << 20), JobEvents(), Scheduler(store))
    r = Rig(
        store=store,
        disk=disk,
        committer=committer,
        jobs=jobs,
        gate=StoreGate(),
        explain=lambda found: found,
        spawn=lambda *args: None,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        try:
            yield r
        finally:
            nursery.cancel_scope.cancel()
            store.close()


def _slow(write: Any) -> Any:
    @functools.wraps(write)
    def slowly(*args: Any) -> Any:
        time.sleep(SLICE_WORK_S)  # (a slice of thousands of jobs, on a loaded machine)
        return write(*args)

    return slowly


async def _a_commit_is_due(r: Rig) -> None:
    """Another task wrote a moment ago (a lease, another client): the committer waits
    for its deadline, and will commit at the next checkpoint once it has passed."""
    r.jobs.add(r.jobs.check([JobSpec(type="OTHER", delay=3600)]))
    await trio.lowlevel.checkpoint()
    await trio.lowlevel.checkpoint()


async def test_a_sliced_enqueue_never_acknowledges_a_slice_whose_commit_failed(
    tmp_path: Path,
) -> None:
    """The commit holding the first slice fails (a full disk) while the request goes on:
    the request fails, and says that none of its jobs were added."""
    async with rig(tmp_path) as r:
        r.jobs.add = _slow(r.jobs.add)  # type: ignore[method-assign]
        await _a_commit_is_due(r)
        r.disk.full = True
        spec = msgspec.msgpack.encode(JobSpec(type="T", delay=3600))
        request = EnqueueLazy(jobs=[msgspec.Raw(spec)] * (2 * job_requests.ATOMIC_JOBS), rid=1)

        async def enqueue() -> Any:
            try:
                return await job_requests.handle_enqueue(r, request)  # type: ignore[arg-type]
            finally:
                r.disk.full = False  # the next slice's commit works

        try:
            reply = await enqueue()
        except StoreFull as exc:
            assert "the first" not in exc.message  # nothing of this request was added
            listed = []
        else:
            listed = [job.id for job in reply.jobs]
        await r.committer.durable()
        stored = r.store.states(listed) if listed else {}
        lost = [job_id for job_id in listed if job_id not in stored]
        assert not lost, f"{len(lost)} acknowledged jobs are not in the store"


async def test_a_sliced_cancel_never_reports_a_cancel_whose_commit_failed(
    tmp_path: Path,
) -> None:
    """A cancel of many queued jobs whose first writes' commit fails: the request fails
    rather than answer "cancelled" for jobs still QUEUED."""
    async with rig(tmp_path) as r:
        ids = [
            job.id for job in r.jobs.add(r.jobs.check([JobSpec(type="T", delay=3600)] * 600)).jobs
        ]
        await r.committer.durable()
        r.jobs.cancel_queued = _slow(r.jobs.cancel_queued)  # type: ignore[method-assign]
        await _a_commit_is_due(r)
        r.disk.full = True
        outcomes: Sequence[Any] = []
        try:
            with trio.move_on_after(30):
                reply = await job_requests.handle_cancel(r, Cancel(ids=ids, rid=1))  # type: ignore[arg-type]
                outcomes = reply.results
        except StoreFull:
            pass
        finally:
            r.disk.full = False
        await r.committer.durable()
        states = r.store.states(ids)
        wrong = [
            o.id
            for o in outcomes
            if o.message == "cancelled" and states[o.id] != JobState.CANCELLED
        ]
        assert not wrong, f"{len(wrong)} jobs said cancelled are {states[wrong[0]]}"


async def test_list_counts_the_matches_up_to_a_cap(tmp_path: Path) -> None:
    """`list` says how many jobs match, counting no further than COUNT_CAP: past it the
    total is a lower bound (shown as "10,000+"), so a list never walks every job."""
    async with rig(tmp_path) as r:
        specs = [JobSpec(type="T", delay=3600)] * (read_requests.COUNT_CAP + 5)
        r.jobs.add(r.jobs.check(specs))
        r.jobs.add(r.jobs.check([JobSpec(type="U", delay=3600)] * 60))
        await r.committer.durable()
        r.settings = SimpleNamespace(max_frame=1 << 20)
        capped = await read_requests.handle_list(r, ListJobs(limit=50, paged=True))  # type: ignore[arg-type]
        assert (len(capped.jobs), capped.total, capped.total_capped) == (
            50,
            read_requests.COUNT_CAP,
            True,
        )
        exact = await read_requests.handle_list(r, ListJobs(type="U", limit=50, paged=True))  # type: ignore[arg-type]
        assert (len(exact.jobs), exact.total, exact.total_capped) == (50, 60, False)
