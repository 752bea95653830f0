"""The start rules and the lease agree: what "why is it waiting" says is what a lease does.

The rules are stated once (``store/start_rules.py``); a backend's lease applies
them in its own way (SQLite narrows the candidates in SQL first). For random
worlds (queues paused or limited, subjects, priorities, delays, conditions,
running jobs, jobs backing off, jobs waiting for others, the machine on battery
or busy), jobs are
leased one at a time until none is left that may start. Before each lease,
``waiting_for`` (as ``semctl show`` and ``top`` ask it, from
``store.blockers()`` and the job) gives every queued job its reason:

* the job leased had none, and it is the first of those by priority, then age;
* when the lease takes nothing, every job still queued has a reason.

And a batch takes what single leases would: ``next_startable(n)`` shows the
jobs ``lease_many(n)`` then takes, in its order, and those are the first of the
jobs single leases take on an identical store.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import pytest
from backends import open_backend
from hypothesis import example, given, settings
from hypothesis import strategies as st
from storekit import BOOM, enqueue

from semantica.clock import FakeClock
from semantica.models import JobSpec, JobState
from semantica.supervisor.store import JobStore
from semantica.supervisor.waiting import waiting_for

QUEUES = ("a", "b", "c")
SOMETIMES = st.sampled_from((False, False, False, True))  # conditions: one job in four


@st.composite
def job_specs(draw: st.DrawFn, *, delays: bool = True) -> JobSpec:
    """A spec from a small world of types, subjects and queues, so that jobs meet often."""
    subject = draw(st.sampled_from((None, "x", "y")))
    return JobSpec(
        type=draw(st.sampled_from(("A", "B"))),
        queue=draw(st.sampled_from(QUEUES)),
        subject=subject,
        generation=None if subject is None else draw(st.none() | st.integers(0, 3)),
        priority=draw(st.integers(-2, 2)),
        delay=draw(st.sampled_from((None, None, 0.0, 5.0, 60.0))) if delays else None,
        require_charging=draw(SOMETIMES),
        require_idle=draw(SOMETIMES),
    )


class World(msgspec.Struct):
    """How a store is set up before the jobs are leased, and how the machine is."""

    started: list[JobSpec]  # enqueued and leased first: they run (or back off)
    backing_off: list[float | None]  # per started job: fails, to retry in that many seconds
    settings: dict[str, tuple[bool, int]]  # queue: (paused, limit), set once they run
    queued: list[JobSpec]
    advance: float  # seconds the clock moves before the leases
    on_ac: bool
    idle: bool
    batch: int  # how many jobs lease_many is asked for


@st.composite
def worlds(draw: st.DrawFn) -> World:
    started = draw(st.lists(job_specs(delays=False), max_size=5))
    # Some queued jobs wait for started ones (by their place in ``started``, 1..), which
    # never end here: they wait for a dependency all along.
    queued = [
        msgspec.structs.replace(spec, after=sorted(after))
        if (
            after := draw(
                st.sets(st.integers(1, len(started)), max_size=2) if started else st.just(set())
            )
        )
        and draw(SOMETIMES)
        else spec
        for spec in draw(st.lists(job_specs(), min_size=1, max_size=12))
    ]
    return World(
        started=started,
        backing_off=[draw(st.sampled_from((None, None, 3.0, 30.0))) for _ in range(len(started))],
        settings={
            queue: (draw(st.booleans()), draw(st.integers(0, 2)))
            for queue in draw(st.sets(st.sampled_from(QUEUES)))
        },
        queued=queued,
        advance=draw(st.sampled_from((0.0, 0.0, 5.0, 60.0))),
        on_ac=draw(st.booleans()),
        idle=draw(st.booleans()),
        batch=draw(st.integers(1, 6)),
    )


@contextmanager
def built(backend: str, world: World) -> Iterator[tuple[JobStore, FakeClock]]:
    """A new store of ``backend`` set up as ``world`` says (the same world, the same store)."""
    with tempfile.TemporaryDirectory(prefix="semantica-rules-") as place:
        clock = FakeClock()
        store = open_backend(backend, Path(place), clock)
        try:
            # (A started spec may be deduplicated: its subject's generation is already
            # queued. The queued jobs wait for the started specs' jobs, whatever ids
            # those got: the world names them by their place, 1.., not by id.)
            ids = [job.id for job in enqueue(store, world.started).jobs]
            for retry_in in world.backing_off:
                lease = store.lease(worker_pid=1)
                if lease is None:
                    break
                if retry_in is not None:
                    store.fail(lease, BOOM, clock.time() + retry_in)
            for queue, (paused, limit) in world.settings.items():
                store.set_queue(queue, paused=paused, limit=limit)
            enqueue(
                store,
                [
                    msgspec.structs.replace(spec, after=sorted({ids[i - 1] for i in spec.after}))
                    for spec in world.queued
                ],
            )
            clock.advance(world.advance)
            yield store, clock
        finally:
            store.close()


def lease_one_at_a_time(store: JobStore, clock: FakeClock, on_ac: bool, idle: bool) -> list[int]:
    """Lease until nothing more starts, checking each lease against waiting_for; the order."""
    order: list[int] = []
    while True:
        blockers = store.blockers()
        queued = store.list(state=JobState.QUEUED.value, limit=10_000)
        reasons = {job.id: waiting_for(job, blockers, clock.time(), on_ac, idle) for job in queued}
        lease = store.lease(worker_pid=2, on_ac=on_ac, idle=idle)
        if lease is None:
            free = [job_id for job_id, reason in reasons.items() if reason is None]
            assert not free, f"nothing was leased, but jobs {free} were waiting for nothing"
            return order
        reason = reasons.get(lease.job_id)
        assert lease.job_id in reasons, f"job {lease.job_id} was leased but not queued"
        assert reason is None, f"job {lease.job_id} was leased while waiting for {reason}"
        best = min(
            (job for job in queued if reasons[job.id] is None), key=lambda j: (-j.priority, j.id)
        )
        assert lease.job_id == best.id, "the highest-priority, oldest free job starts first"
        order.append(lease.job_id)


@pytest.mark.slow
@settings(max_examples=50)
@given(world=worlds())
@example(  # found by hypothesis: the last two started specs are deduplicated (no job 5)
    world=World(
        started=[
            JobSpec(type="A", queue="a"),
            JobSpec(type="A", queue="a"),
            JobSpec(type="A", queue="a", subject="x"),
            JobSpec(type="A", queue="a", subject="x", generation=0),
            JobSpec(type="A", queue="a", subject="x", generation=0),
        ],
        backing_off=[None] * 5,
        settings={},
        queued=[JobSpec(type="A", queue="a", after=[5])],
        advance=0.0,
        on_ac=False,
        idle=False,
        batch=1,
    )
)
def test_leases_take_exactly_the_jobs_the_rules_let_start(backend: str, world: World) -> None:
    on_ac, idle = world.on_ac, world.idle
    with built(backend, world) as (alone, alone_clock):
        singles = lease_one_at_a_time(alone, alone_clock, on_ac, idle)
    with built(backend, world) as (store, clock):
        shown = store.next_startable(world.batch, 200, on_ac=on_ac, idle=idle)
        taken = [lease.job_id for lease in store.lease_many(3, world.batch, on_ac=on_ac, idle=idle)]
        assert [job.id for job in shown] == taken, "next_startable shows what lease_many takes"
        assert taken == singles[: len(taken)], "lease_many takes what single leases would"
        rest = lease_one_at_a_time(store, clock, on_ac, idle)
        assert taken + rest == singles
