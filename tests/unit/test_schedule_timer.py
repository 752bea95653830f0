"""The schedule timer: fires each slot when it comes due, wakes on changes, reads nothing
while it waits, survives store faults, and fires nothing while draining."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from semantica.errors import StoreError
from semantica.models import JobSpec
from semantica.schedules import ScheduleSpec
from semantica.supervisor.events import JobEvents
from semantica.supervisor.joblogs import JobLogs
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.metrics import Metrics
from semantica.supervisor.schedule_timer import ScheduleTimer, schedule_counts
from semantica.supervisor.scheduler import Scheduler
from semantica.supervisor.store import Fired
from semantica.supervisor.store.sqlite import SQLiteStore

BASE = 1_800_000_000.0  # a whole minute


class TrioWallClock:
    """Wall-clock time that moves with trio's clock, so autojump_clock drives the store too."""

    def time(self) -> float:
        return BASE + trio.current_time()


class Parts:
    def __init__(self, tmp_path: Path) -> None:
        self.store = SQLiteStore(tmp_path / "semantica.db", TrioWallClock())
        self.scheduler = Scheduler(self.store)
        self.metrics = Metrics(lambda: {}, lambda: {})
        self.jobs = JobLifecycle(
            self.store,
            JobLogs(tmp_path / "logs", 1 << 20),
            JobEvents(),
            self.scheduler,
            metrics=self.metrics,
        )
        self.draining = False
        self.asked = 0
        self.timer = ScheduleTimer(
            self.next_fire,
            self.jobs.fire_schedules,
            self.store.clock,
            draining=lambda: self.draining,
        )
        self.jobs.schedules_changed = self.timer.changed

    def next_fire(self) -> float | None:
        self.asked += 1
        return self.store.next_fire()

    def slots(self) -> list[float]:
        jobs = [job for job in self.store.list(limit=1000) if job.schedule is not None]
        return sorted(job.slot.timestamp() - BASE for job in jobs if job.slot is not None)


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    p = Parts(tmp_path)
    yield p
    p.store.close()


def _every(seconds: float, **fields: object) -> ScheduleSpec:
    return ScheduleSpec(
        name="tick", job=JobSpec(type="T"), every=seconds, overlap="allow", **fields
    )  # type: ignore[arg-type]


async def test_each_slot_fires_when_it_comes_due(
    parts: Parts, autojump_clock: trio.testing.MockClock
) -> None:
    """Slots every 10 s fire at 10, 20, 30 s, each once; the jobs are counted."""
    parts.jobs.put_schedule(_every(10))
    async with trio.open_nursery() as nursery:
        await nursery.start(parts.timer.run)
        await trio.sleep(35)
        nursery.cancel_scope.cancel()
    assert parts.slots() == [10, 20, 30]
    assert 'semantica_schedule_slots_total{outcome="fired"} 3.0' in parts.metrics.text()


async def test_it_reads_the_store_only_when_something_is_due(
    parts: Parts, autojump_clock: trio.testing.MockClock
) -> None:
    """No schedule: one look, then asleep on the event alone; a slot an hour away costs
    one look before it and one after."""
    async with trio.open_nursery() as nursery:
        await nursery.start(parts.timer.run)
        await trio.sleep(100)
        assert parts.asked == 1
        parts.jobs.put_schedule(_every(3600))  # wakes the timer
        await trio.sleep(1000)
        assert parts.asked == 2
        await trio.sleep(3600)
        assert parts.asked == 3
        nursery.cancel_scope.cancel()
    assert parts.slots() == [3600]


async def test_a_pause_and_a_removal_wake_it(
    parts: Parts, autojump_clock: trio.testing.MockClock
) -> None:
    """A paused schedule fires nothing; resumed, it fires from its next slot on."""
    parts.jobs.put_schedule(_every(10))
    async with trio.open_nursery() as nursery:
        await nursery.start(parts.timer.run)
        await trio.sleep(5)
        parts.jobs.pause_schedule("tick", True)
        await trio.sleep(30)
        assert parts.slots() == []
        parts.jobs.pause_schedule("tick", False)
        await trio.sleep(10)
        assert parts.slots() == [40]
        parts.jobs.remove_schedule("tick")
        await trio.sleep(30)
        nursery.cancel_scope.cancel()
    assert parts.slots() == [40]


async def test_store_faults_are_retried(
    parts: Parts, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store fault while firing is logged and retried; the slot fires once it passes."""
    parts.jobs.put_schedule(_every(10))
    real = parts.store.fire_due
    failures = [StoreError("disk I/O error")] * 3

    def flaky() -> Fired:
        if failures:
            raise failures.pop()
        return real()

    monkeypatch.setattr(parts.store, "fire_due", flaky)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(parts.timer.run)
            await trio.sleep(12)
            nursery.cancel_scope.cancel()
    assert parts.slots() == [10]
    assert sum("store fault" in entry["event"] for entry in logs) == 3


async def test_a_fire_that_decides_nothing_backs_off(
    parts: Parts, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL another node may hold a due schedule's row (SKIP LOCKED): the fire
    decides nothing while the slot stays due. The timer then waits 50 ms, doubling to
    1 s, instead of asking again at once; once the row is free the slot fires."""
    parts.jobs.put_schedule(_every(10))
    real = parts.store.fire_due
    held = [True]
    calls = [0]

    def fire_due() -> Fired:
        calls[0] += 1
        if held[0] and calls[0] < 1000:  # (the bound ends a spin the clock cannot see)
            return Fired()
        return real()

    monkeypatch.setattr(parts.store, "fire_due", fire_due)
    async with trio.open_nursery() as nursery:
        await nursery.start(parts.timer.run)
        await trio.sleep(13)
        # Due at 10 s: tries at 10, +0.05, +0.1, +0.2, +0.4, +0.8, +1, +1 ...
        assert 5 <= calls[0] <= 10, calls[0]
        assert parts.slots() == []
        held[0] = False
        await trio.sleep(1.01)
        assert parts.slots() == [10]
        before = calls[0]
        await trio.sleep(5)  # fired: the wait starts over, until the slot at 20 s
        assert calls[0] == before
        nursery.cancel_scope.cancel()
    assert parts.slots() == [10]


async def test_a_draining_supervisor_fires_nothing(
    parts: Parts, autojump_clock: trio.testing.MockClock
) -> None:
    """From the start of a drain, no slot fires (the next supervisor catches up)."""
    parts.jobs.put_schedule(_every(10))
    parts.draining = True
    async with trio.open_nursery() as nursery:
        await nursery.start(parts.timer.run)
        await trio.sleep(35)
        nursery.cancel_scope.cancel()
    assert parts.slots() == []


async def test_a_suspend_is_noticed_within_a_second(
    parts: Parts, autojump_clock: trio.testing.MockClock
) -> None:
    """The wall clock jumps an hour (a suspend, which trio's clock does not count): the
    slot due meanwhile fires within a second, one job for the hour (catch-up)."""
    clock = TrioWallClock()
    jump = [0.0]
    parts.store.clock = parts.timer._clock = type(  # a wall clock that can jump
        "Jumpy", (), {"time": lambda self: clock.time() + jump[0]}
    )()
    parts.jobs.put_schedule(_every(600))
    async with trio.open_nursery() as nursery:
        await nursery.start(parts.timer.run)
        await trio.sleep(100)
        jump[0] = 3600.0
        await trio.sleep(1.01)
        assert parts.slots() == [3600]
        nursery.cancel_scope.cancel()
    assert parts.store.schedule("tick").missed == 5


async def test_schedule_counts(parts: Parts) -> None:
    """Schedules by state, for status and metrics."""
    parts.jobs.put_schedule(_every(10))
    parts.jobs.put_schedule(ScheduleSpec(name="b", job=JobSpec(type="T"), every=5, paused=True))
    assert schedule_counts(parts.store.schedules()) == {"active": 1, "paused": 1}
