"""The scheduler: idle workers wake on new work and on deadlines, and not otherwise."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from enqueueing import enqueue
from structlog.testing import capture_logs

from semantica.errors import NoSuchJob, StoreError, StoreFull
from semantica.models import JobSpec, JobState
from semantica.supervisor.committer import Committer
from semantica.supervisor.events import JobEvents
from semantica.supervisor.joblogs import JobLogs
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.maintenance import StoreGate
from semantica.supervisor.scheduler import FAULT_DELAY_MAX, Leased, Scheduler
from semantica.supervisor.store import Lease
from semantica.supervisor.store.sqlite import SQLiteStore


class TrioWallClock:
    """Wall-clock time that moves with trio's clock, so autojump_clock drives the store too."""

    def __init__(self, base: float = 1_800_000_000.0) -> None:
        self.base = base

    def time(self) -> float:
        return self.base + trio.current_time()


@pytest.fixture
def trio_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """A store whose wall clock follows trio's clock."""
    s = SQLiteStore(tmp_path / "semantica.db", TrioWallClock())
    yield s
    s.close()


class Waiter:
    """An idle worker waiting in next_lease; remembers what it got and when."""

    def __init__(self, scheduler: Scheduler, pid: int = 100) -> None:
        self.scheduler = scheduler
        self.pid = pid
        self.lease: Lease | None = None
        self.at: float | None = None
        self.done = trio.Event()

    async def run(self) -> None:
        self.lease = await self.scheduler.next_lease(self.pid)
        self.at = trio.current_time()
        self.done.set()


async def test_waiter_returns_when_a_job_is_enqueued_and_woken(
    trio_store: SQLiteStore, autojump_clock: trio.testing.MockClock
) -> None:
    """An idle worker gets a new job as soon as it is enqueued, with no time passing."""
    scheduler = Scheduler(trio_store)
    waiter = Waiter(scheduler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter.run)
        await trio.testing.wait_all_tasks_blocked()
        assert waiter.lease is None
        scheduler.wake()  # a wake with nothing queued changes nothing
        await trio.testing.wait_all_tasks_blocked()
        assert waiter.lease is None

        [job] = enqueue(trio_store, [JobSpec(type="T")]).jobs
        woken_at = trio.current_time()
        scheduler.wake()
        await trio.testing.wait_all_tasks_blocked()
        assert waiter.lease is not None and waiter.lease.job_id == job.id
        assert waiter.at == woken_at
    assert trio_store.get(job.id).state == JobState.RUNNING
    assert trio_store.get(job.id).worker_pid == waiter.pid


async def test_waiter_with_job_already_queued_returns_at_once(
    trio_store: SQLiteStore, autojump_clock: trio.testing.MockClock
) -> None:
    """A worker that asks while a job is waiting gets it without needing a wake."""
    [job] = enqueue(trio_store, [JobSpec(type="T")]).jobs
    scheduler = Scheduler(trio_store)
    with trio.fail_after(1):
        lease = await scheduler.next_lease(1)
    assert lease.job_id == job.id


async def test_scheduler_does_not_poll(
    trio_store: SQLiteStore, autojump_clock: trio.testing.MockClock
) -> None:
    """An idle scheduler does no work until woken, however long it waits (no polling)."""
    scheduler = Scheduler(trio_store)
    waiter = Waiter(scheduler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter.run)
        await nursery.start(scheduler.run_timer)
        await trio.testing.wait_all_tasks_blocked()
        enqueue(trio_store, [JobSpec(type="T")])  # written behind the scheduler's back
        await trio.sleep(3600)
        assert waiter.lease is None
        scheduler.wake()
        await trio.testing.wait_all_tasks_blocked()
        assert waiter.lease is not None
        nursery.cancel_scope.cancel()


async def test_each_job_goes_to_one_waiter(
    trio_store: SQLiteStore, autojump_clock: trio.testing.MockClock
) -> None:
    """With several idle workers, one new job starts on exactly one of them."""
    scheduler = Scheduler(trio_store)
    waiters = [Waiter(scheduler, pid) for pid in (1, 2, 3)]
    async with trio.open_nursery() as nursery:
        for waiter in waiters:
            nursery.start_soon(waiter.run)
        await trio.testing.wait_all_tasks_blocked()
        enqueue(trio_store, [JobSpec(type="T")])
        scheduler.wake()
        await trio.testing.wait_all_tasks_blocked()
        assert sum(w.lease is not None for w in waiters) == 1
        enqueue(trio_store, [JobSpec(type="T"), JobSpec(type="T")])
        scheduler.wake()
        await trio.testing.wait_all_tasks_blocked()
        leased = [w.lease.job_id for w in waiters if w.lease is not None]
        assert len(leased) == len(set(leased)) == 3


async def test_delayed_job_starts_when_the_timer_fires(
    trio_store: SQLiteStore, autojump_clock: trio.testing.MockClock
) -> None:
    """A job enqueued with delay=30 starts 30 s later, not earlier, woken by the timer."""
    scheduler = Scheduler(trio_store)
    waiter = Waiter(scheduler)
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run_timer)
        nursery.start_soon(waiter.run)
        await trio.testing.wait_all_tasks_blocked()
        [job] = enqueue(trio_store, [JobSpec(type="T", delay=30.0)]).jobs
        enqueued_at = trio.current_time()
        scheduler.reschedule()  # a new deadline: the timer looks again
        await trio.sleep(29.9)
        assert waiter.lease is None
        assert trio_store.get(job.id).state == JobState.QUEUED
        with trio.fail_after(5):
            await waiter.done.wait()
        assert waiter.lease is not None and waiter.lease.job_id == job.id
        assert waiter.at is not None
        assert waiter.at - enqueued_at == pytest.approx(30.0, abs=1e-3)
        nursery.cancel_scope.cancel()


async def test_timer_picks_up_an_earlier_deadline(
    trio_store: SQLiteStore, autojump_clock: trio.testing.MockClock
) -> None:
    """A job due sooner than the one the timer sleeps for starts on time."""
    scheduler = Scheduler(trio_store)
    waiter = Waiter(scheduler)
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run_timer)
        nursery.start_soon(waiter.run)
        enqueue(trio_store, [JobSpec(type="late", delay=300.0)])
        scheduler.reschedule()
        await trio.sleep(10)
        [soon] = enqueue(trio_store, [JobSpec(type="soon", delay=5.0)]).jobs
        start = trio.current_time()
        scheduler.reschedule()
        with trio.fail_after(60):
            await waiter.done.wait()
        assert waiter.lease is not None and waiter.lease.job_id == soon.id
        assert waiter.at is not None
        assert waiter.at - start == pytest.approx(5.0, abs=1e-3)
        nursery.cancel_scope.cancel()


async def test_stop_leasing_keeps_waiters_waiting(
    trio_store: SQLiteStore, autojump_clock: trio.testing.MockClock
) -> None:
    """Once draining, no waiting or newly idle worker starts a job, however long it waits."""
    scheduler = Scheduler(trio_store)
    early, late = Waiter(scheduler, 1), Waiter(scheduler, 2)
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run_timer)
        nursery.start_soon(early.run)
        await trio.testing.wait_all_tasks_blocked()
        scheduler.stop_leasing()
        nursery.start_soon(late.run)
        [job] = enqueue(trio_store, [JobSpec(type="T")]).jobs
        scheduler.wake()
        await trio.sleep(3600)
        assert early.lease is None and late.lease is None
        assert trio_store.get(job.id).state == JobState.QUEUED
        nursery.cancel_scope.cancel()


async def test_cancelled_waiter_leases_nothing(
    trio_store: SQLiteStore, autojump_clock: trio.testing.MockClock
) -> None:
    """A worker that stops waiting (cancelled) leaves later jobs in the queue."""
    scheduler = Scheduler(trio_store)
    with trio.move_on_after(5):
        await scheduler.next_lease(1)
    [job] = enqueue(trio_store, [JobSpec(type="T")]).jobs
    scheduler.wake()
    await trio.testing.wait_all_tasks_blocked()
    assert trio_store.get(job.id).state == JobState.QUEUED


async def test_delayed_enqueue_wakes_the_timer_but_not_the_workers(
    trio_store: SQLiteStore, autojump_clock: trio.testing.MockClock
) -> None:
    """reschedule() makes the timer look again without idle workers scanning the queue."""
    scheduler = Scheduler(trio_store)
    leases = 0
    real_lease = trio_store.lease

    def counting_lease(worker_pid: int, **conditions: bool) -> Lease | None:
        nonlocal leases
        leases += 1
        return real_lease(worker_pid, **conditions)

    trio_store.lease = counting_lease  # type: ignore[method-assign]
    waiter = Waiter(scheduler)
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run_timer)
        nursery.start_soon(waiter.run)
        await trio.testing.wait_all_tasks_blocked()
        assert leases == 1  # the waiter looked once when it arrived
        for _ in range(10):
            enqueue(trio_store, [JobSpec(type="T", delay=60.0)])
            scheduler.reschedule()
            await trio.testing.wait_all_tasks_blocked()
        assert leases == 1
        with trio.fail_after(120):
            await waiter.done.wait()
        assert waiter.at == pytest.approx(60.0, abs=1e-3)
        nursery.cancel_scope.cancel()


class JumpingWallClock(TrioWallClock):
    """Wall-clock time that runs with trio's clock and can jump, as after a suspend (trio's
    clock, like CLOCK_MONOTONIC, stood still meanwhile) or when the clock is set."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0

    def time(self) -> float:
        return super().time() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def jumping() -> JumpingWallClock:
    return JumpingWallClock()


@pytest.fixture
def jumping_store(tmp_path: Path, jumping: JumpingWallClock) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "semantica.db", jumping)
    yield s
    s.close()


@pytest.mark.parametrize("asleep", [60.0, 600.0, 3600.0])
async def test_a_job_due_during_a_suspend_starts_within_a_second_of_resume(
    jumping_store: SQLiteStore,
    jumping: JumpingWallClock,
    autojump_clock: trio.testing.MockClock,
    asleep: float,
) -> None:
    """--delay 600, then the machine sleeps: trio's clock stands still while the wall clock
    moves on. The job came due while it slept, so it starts within a second of resume, not
    600 s of awake time later."""
    scheduler = Scheduler(jumping_store)
    waiter = Waiter(scheduler)
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run_timer)
        nursery.start_soon(waiter.run)
        [job] = enqueue(jumping_store, [JobSpec(type="T", delay=600.0)]).jobs
        scheduler.reschedule()
        await trio.sleep(10)
        assert waiter.lease is None
        jumping.jump(asleep)  # suspended; resumed now
        resumed = trio.current_time()
        if asleep + 10 < 600:
            await trio.sleep(5)
            assert waiter.lease is None, "started before it was due"
            resumed = trio.current_time()
            jumping.jump(600 - asleep - 15)  # now due, by the wall clock
        with trio.fail_after(60):
            await waiter.done.wait()
        assert waiter.lease is not None and waiter.lease.job_id == job.id
        assert waiter.at is not None and waiter.at - resumed <= 1.0
        nursery.cancel_scope.cancel()


async def test_a_clock_set_forward_an_hour_starts_what_came_due_and_nothing_later(
    jumping_store: SQLiteStore, jumping: JumpingWallClock, autojump_clock: trio.testing.MockClock
) -> None:
    """The wall clock jumps an hour ahead: a job due in the skipped hour starts within a
    second; one due after it waits for its own time."""
    scheduler = Scheduler(jumping_store)
    first, second = Waiter(scheduler, 1), Waiter(scheduler, 2)
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run_timer)
        nursery.start_soon(first.run)
        [skipped] = enqueue(jumping_store, [JobSpec(type="T", delay=1800.0)]).jobs
        scheduler.reschedule()
        [later] = enqueue(jumping_store, [JobSpec(type="T", delay=7200.0)]).jobs
        scheduler.reschedule()
        await trio.sleep(1)
        jumping.jump(3600)
        jumped = trio.current_time()
        with trio.fail_after(60):
            await first.done.wait()
        assert first.lease is not None and first.lease.job_id == skipped.id
        assert first.at is not None and first.at - jumped <= 1.0
        nursery.start_soon(second.run)
        await trio.sleep(7200 - 3600 - 1 - 10)  # 10 s before the later job is due
        assert second.lease is None
        assert jumping_store.get(later.id).state == JobState.QUEUED
        with trio.fail_after(60):
            await second.done.wait()
        assert second.lease is not None and second.lease.job_id == later.id
        assert second.at is not None and second.at - jumped == pytest.approx(3600 - 1, abs=1.0)
        nursery.cancel_scope.cancel()


async def test_a_clock_set_back_delays_a_job_to_its_wall_clock_time(
    jumping_store: SQLiteStore, jumping: JumpingWallClock, autojump_clock: trio.testing.MockClock
) -> None:
    """Start times are wall-clock times: set the clock back an hour and a job due in a minute
    starts when the clock reads that minute again, an hour later, not early."""
    scheduler = Scheduler(jumping_store)
    waiter = Waiter(scheduler)
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run_timer)
        nursery.start_soon(waiter.run)
        [job] = enqueue(jumping_store, [JobSpec(type="T", delay=60.0)]).jobs
        scheduler.reschedule()
        jumping.jump(-3600)
        set_back = trio.current_time()
        with trio.fail_after(7200):
            await waiter.done.wait()
        assert waiter.lease is not None and waiter.lease.job_id == job.id
        assert waiter.at is not None
        assert waiter.at - set_back == pytest.approx(3660, abs=1.0)
        nursery.cancel_scope.cancel()


async def test_a_pending_deadline_costs_no_store_query_while_it_waits(
    jumping_store: SQLiteStore, autojump_clock: trio.testing.MockClock
) -> None:
    """While a deadline is pending the timer looks at the wall clock, not at the store: an
    hour-long wait costs one query."""
    scheduler = Scheduler(jumping_store)
    queries = 0
    real = jumping_store.next_run_after

    def counting() -> float | None:
        nonlocal queries
        queries += 1
        return real()

    jumping_store.next_run_after = counting  # type: ignore[method-assign]
    waiter = Waiter(scheduler)
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run_timer)
        nursery.start_soon(waiter.run)
        enqueue(jumping_store, [JobSpec(type="T", delay=3600.0)])
        scheduler.reschedule()
        await trio.sleep(3600 - 10)
        assert waiter.lease is None
        assert queries == 2  # at start (nothing due), then once for the new deadline
        with trio.fail_after(60):
            await waiter.done.wait()
        nursery.cancel_scope.cancel()


class CountingWallClock(TrioWallClock):
    """Counts how often the wall clock is read: each read is a wake of the timer."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def time(self) -> float:
        self.reads += 1
        return super().time()


@pytest.mark.parametrize("how", ["cancel", "supersede"])
async def test_a_deadline_that_left_the_queue_stops_waking_the_timer(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, how: str
) -> None:
    """The only delayed job is cancelled (or superseded by one due now): the timer forgets
    its deadline and sleeps until something changes, instead of checking the wall clock
    twice a second until the old deadline, a week away."""
    clock = CountingWallClock()
    store = SQLiteStore(tmp_path / "semantica.db", clock)
    scheduler = Scheduler(store)
    jobs = JobLifecycle(store, JobLogs(tmp_path / "logs", 1 << 20), JobEvents(), scheduler)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run_timer)
            week = 7 * 86400.0
            [job] = jobs.add(jobs.check([JobSpec(type="T", subject="s", delay=week)])).jobs
            await trio.sleep(10)
            if how == "cancel":
                assert jobs.cancel_queued(job.id)
            else:
                jobs.add(
                    jobs.check([JobSpec(type="T", subject="s", generation=job.generation + 1)])
                )
                assert store.get(job.id).state == JobState.SUPERSEDED
            await trio.sleep(1)
            reads = clock.reads
            await trio.sleep(3600)
            assert clock.reads - reads <= 2, f"{clock.reads - reads} wakes in an hour"
            nursery.cancel_scope.cancel()
    finally:
        jobs.logs.close_all()
        store.close()


class FailingCalls:
    """Stands in for a store method that raises StoreError ``failures`` times, then runs it."""

    def __init__(self, method: Callable[..., Any], failures: int) -> None:
        self.method = method
        self.failures = failures
        self.tries: list[float] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.tries.append(trio.current_time())
        if len(self.tries) <= self.failures:
            raise StoreError("disk I/O error")
        return self.method(*args, **kwargs)


async def test_a_lease_the_store_refuses_is_tried_again_later_and_later(
    trio_store: SQLiteStore,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the store fails, an idle worker tries to lease after 0.1 s, 0.2 s, ... up to
    FAULT_DELAY_MAX, with a log line each time; a wake cuts a wait short; once a lease is
    committed, the next fault waits little again."""
    scheduler = Scheduler(trio_store)
    jobs = JobLifecycle(trio_store, JobLogs(tmp_path / "logs", 1 << 20), JobEvents(), scheduler)
    [job] = jobs.add(jobs.check([JobSpec(type="T")])).jobs
    lease = FailingCalls(trio_store.lease, failures=8)
    monkeypatch.setattr(trio_store, "lease", lease)
    with capture_logs() as lines:
        got = await scheduler.next_lease(1)
    assert got.job_id == job.id
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(lease.tries)]
    assert gaps == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, FAULT_DELAY_MAX, FAULT_DELAY_MAX]
    assert [(line["event"], line["retry_in_s"]) for line in lines] == [
        ("store fault while leasing; will retry", gap) for gap in gaps
    ]
    assert all(line["error"] == "disk I/O error" for line in lines)

    # The fault goes on growing across calls until a lease is committed...
    jobs.add(jobs.check([JobSpec(type="T")]))
    lease.tries, lease.failures = [], 1
    await scheduler.next_lease(1)
    assert [round(b - a, 6) for a, b in itertools.pairwise(lease.tries)] == [FAULT_DELAY_MAX]
    # ... and starts over after one; a wake ends the wait at once.
    scheduler.lease_committed()
    jobs.add(jobs.check([JobSpec(type="T")]))
    lease.tries, lease.failures = [], 2
    async with trio.open_nursery() as nursery:
        waiter = Waiter(scheduler)
        nursery.start_soon(waiter.run)
        await trio.sleep(0.15)  # tried at 0, then 0.1; waiting 0.2 s now
        scheduler.wake()
        await waiter.done.wait()
    assert [round(t - lease.tries[0], 6) for t in lease.tries] == [0.0, 0.1, 0.15]
    jobs.logs.close_all()


async def test_a_lease_whose_commit_failed_waits_before_the_next_one(
    trio_store: SQLiteStore, autojump_clock: trio.testing.MockClock
) -> None:
    """lease_undone waits as a refused lease does (0.1 s, 0.2 s, ...), without a log line."""
    scheduler = Scheduler(trio_store)
    with capture_logs() as lines:
        for expected in (0.1, 0.2, 0.4):
            start = trio.current_time()
            await scheduler.lease_undone()
            assert trio.current_time() - start == pytest.approx(expected)
    assert lines == []


async def test_a_timer_whose_query_fails_tries_again_every_fault_delay_max(
    trio_store: SQLiteStore, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timer logs the fault, waits FAULT_DELAY_MAX, wakes the workers (whatever came
    due meanwhile) and looks again."""
    scheduler = Scheduler(trio_store)
    query = FailingCalls(trio_store.next_run_after, failures=3)
    monkeypatch.setattr(trio_store, "next_run_after", query)
    wakes: list[float] = []
    real_wake = scheduler.wake

    def wake() -> None:
        wakes.append(trio.current_time())
        real_wake()

    monkeypatch.setattr(scheduler, "wake", wake)
    with capture_logs() as lines:
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run_timer)
            await trio.sleep(60)
            nursery.cancel_scope.cancel()
    assert query.tries == [0.0, FAULT_DELAY_MAX, 2 * FAULT_DELAY_MAX, 3 * FAULT_DELAY_MAX]
    assert wakes == query.tries[1:]
    assert (
        lines
        == [
            {
                "event": "store fault in the timer; will retry",
                "error": "disk I/O error",
                "log_level": "warning",
            }
        ]
        * 3
    )


# ---------------------------------------------------------------- leasing in the waker's step


class Idle:
    """An idle worker's feeder waiting in next_leases; what it was handed, and when."""

    def __init__(self, scheduler: Scheduler, pid: int, count: int = 1) -> None:
        self.scheduler = scheduler
        self.pid = pid
        self.count = count
        self.held: list[list[int]] = []  # job ids of each hold(...)
        self.leased: Leased | None = None

    def hold(self, leases: list[Lease]) -> None:
        self.held.append([lease.job_id for lease in leases])

    async def run(self) -> None:
        self.leased = await self.scheduler.next_leases(self.pid, lambda: self.count, self.hold)


class CountingStore(SQLiteStore):
    """Counts the leases tried."""

    leases_tried = 0

    def lease_many(self, worker_pid: int, count: int, **conditions: Any) -> list[Lease]:
        self.leases_tried += 1
        return super().lease_many(worker_pid, count, **conditions)


@pytest.fixture
def grouped(tmp_path: Path) -> Iterator[tuple[CountingStore, Committer]]:
    """A store whose writes are committed in groups, as in the supervisor."""
    store = CountingStore(tmp_path / "semantica.db", TrioWallClock())
    committer = Committer(store)
    yield store, committer
    store.close()


async def test_an_idle_worker_is_leased_for_in_the_enqueues_commit_and_woken_once_committed(
    grouped: tuple[CountingStore, Committer], autojump_clock: trio.testing.MockClock
) -> None:
    """The enqueue and the lease share one commit, which the enqueue's task makes at once,
    alone (the idle worker's task is not runnable until then), leasing just before it
    (after the enqueue's reply is made); the worker gets its job, committed, with no other
    lease tried, however many wakes came before the commit."""
    store, committer = grouped
    scheduler = Scheduler(store, commits=committer)
    idle = Idle(scheduler, pid=7)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        nursery.start_soon(idle.run)
        await trio.testing.wait_all_tasks_blocked()
        tried, commits = store.leases_tried, committer.commits
        [job] = enqueue(store, [JobSpec(type="T")]).jobs
        scheduler.wake()
        scheduler.wake()
        assert idle.held == [] and store.state(job.id) == JobState.QUEUED  # (the reply's view)
        assert committer.commit_if_alone()  # nobody else runnable: leased, committed now
        assert idle.held == [[job.id]]  # the worker's at once
        assert store.state(job.id) == JobState.RUNNING
        assert store.leases_tried == tried + 1
        assert committer.commits == commits + 1
        await trio.testing.wait_all_tasks_blocked()
        assert idle.leased is not None and idle.leased.committed
        assert [lease.job_id for lease in idle.leased.leases] == [job.id]
        assert store.leases_tried == tried + 1  # the worker did not look again
        assert committer.commits == commits + 1
        nursery.cancel_scope.cancel()
    assert store.get(job.id).worker_pid == 7


async def test_a_failed_commit_undoes_the_lease_and_the_worker_backs_off(
    grouped: tuple[CountingStore, Committer],
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shared commit fails: the enqueue and the lease are both undone, the worker drops
    what it held and waits before it looks again; the next job goes to it as usual."""
    store, committer = grouped
    scheduler = Scheduler(store, commits=committer)
    idle = Idle(scheduler, pid=7)
    real_commit = store.commit

    def failing_commit() -> None:
        store._conn.execute("ROLLBACK")
        raise StoreFull("the disk is full")

    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        nursery.start_soon(idle.run)
        await trio.testing.wait_all_tasks_blocked()
        [job] = enqueue(store, [JobSpec(type="T")]).jobs
        scheduler.wake()  # (leased at the commit, which fails)
        monkeypatch.setattr(store, "commit", failing_commit)
        with capture_logs():
            assert committer.commit_if_alone()
        monkeypatch.setattr(store, "commit", real_commit)
        await trio.testing.wait_all_tasks_blocked()
        assert idle.held == [[job.id], []]
        assert idle.leased is None
        with pytest.raises(NoSuchJob):
            store.get(job.id)  # the enqueue was undone with it
        [job] = enqueue(store, [JobSpec(type="T")]).jobs
        scheduler.wake()  # cuts its wait short: it leases itself
        await trio.testing.wait_all_tasks_blocked()
        assert idle.leased is not None and not idle.leased.committed
        assert [lease.job_id for lease in idle.leased.leases] == [job.id]
        nursery.cancel_scope.cancel()


async def test_when_no_job_may_start_one_lease_looks_and_idle_workers_sleep_on(
    grouped: tuple[CountingStore, Committer], autojump_clock: trio.testing.MockClock
) -> None:
    """A wake that finds nothing to start (a job due later) costs one lease, not one
    per idle worker, and wakes none of them."""
    store, committer = grouped
    scheduler = Scheduler(store, commits=committer)
    workers = [Idle(scheduler, pid) for pid in (7, 8, 9)]
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        for idle in workers:
            nursery.start_soon(idle.run)
        await trio.testing.wait_all_tasks_blocked()
        tried = store.leases_tried
        enqueue(store, [JobSpec(type="T", delay=60)])
        scheduler.wake()
        committer.commit_now()
        await trio.testing.wait_all_tasks_blocked()
        assert store.leases_tried == tried + 1
        assert all(idle.held == [] and idle.leased is None for idle in workers)
        [job] = enqueue(store, [JobSpec(type="T")]).jobs
        scheduler.wake()
        committer.commit_now()
        assert sorted(idle.held for idle in workers) == [[], [], [[job.id]]]  # one got it
        nursery.cancel_scope.cancel()


async def test_no_lease_in_the_wakers_step_while_draining_or_the_gate_is_shut(
    grouped: tuple[CountingStore, Committer], autojump_clock: trio.testing.MockClock
) -> None:
    """Behind a shut maintenance gate the idle workers are woken to wait at the gate, and
    lease once it opens; once draining, nothing is leased at all."""
    store, committer = grouped
    gate = StoreGate()
    scheduler = Scheduler(store, gate=gate, commits=committer)
    idle = Idle(scheduler, pid=7)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        nursery.start_soon(idle.run)
        await trio.testing.wait_all_tasks_blocked()
        async with gate.closed():
            [job] = enqueue(store, [JobSpec(type="T")]).jobs
            scheduler.wake()
            assert committer.commit_if_alone()
            assert idle.held == []
            await trio.testing.wait_all_tasks_blocked()
            assert store.state(job.id) == JobState.QUEUED
        await trio.testing.wait_all_tasks_blocked()
        assert idle.leased is not None and not idle.leased.committed  # leased it itself

        idle = Idle(scheduler, pid=8)
        nursery.start_soon(idle.run)
        await trio.testing.wait_all_tasks_blocked()
        scheduler.stop_leasing()
        [job] = enqueue(store, [JobSpec(type="T")]).jobs
        scheduler.wake()
        await trio.testing.wait_all_tasks_blocked()
        assert idle.held == [] and idle.leased is None
        assert store.state(job.id) == JobState.QUEUED
        nursery.cancel_scope.cancel()


async def test_with_nothing_to_commit_a_wake_leases_for_idle_workers_at_once(
    grouped: tuple[CountingStore, Committer], autojump_clock: trio.testing.MockClock
) -> None:
    """A wake with no write pending (the timer's, say) leases in its own step; the
    committer's task commits that lease, and the worker gets it committed."""
    store, committer = grouped
    scheduler = Scheduler(store, commits=committer)
    idle = Idle(scheduler, pid=7)
    [job] = enqueue(store, [JobSpec(type="T")]).jobs
    committer.commit_now()
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        nursery.start_soon(idle.run)
        await trio.testing.wait_all_tasks_blocked()
        assert idle.leased is not None and not idle.leased.committed  # it leased itself
        idle = Idle(scheduler, pid=8)
        nursery.start_soon(idle.run)
        await trio.testing.wait_all_tasks_blocked()
        committer.commit_now()
        [job] = enqueue(store, [JobSpec(type="T")]).jobs
        committer.commit_now()
        scheduler.wake()
        assert idle.held == [[job.id]]
        committer.commit_now()  # (as the committer's task, woken by the lease, would)
        await trio.testing.wait_all_tasks_blocked()
        assert idle.leased is not None and idle.leased.committed
        nursery.cancel_scope.cancel()
