"""The condition sampler: it samples only while queued jobs want a condition, tells the
scheduler when one starts to hold, and samples anyway while the store cannot say."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from semantica.errors import StoreError
from semantica.supervisor import conditions
from semantica.supervisor.conditions import SAMPLE_INTERVAL, Conditions


class Machine:
    """The power source (a list of answers to read_power) and the samples taken."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, power: Iterator[bool]) -> None:
        self.power_reads: list[float] = []
        self.idle_samples: list[float] = []
        self.changes: list[float] = []

        def read_power(mode: str) -> bool:
            self.power_reads.append(trio.current_time())
            return next(power)

        def sample_idle(_: Conditions) -> bool:
            self.idle_samples.append(trio.current_time())
            return False

        monkeypatch.setattr(conditions, "read_power", read_power)
        monkeypatch.setattr(Conditions, "_sample_idle", sample_idle)


class Wanted:
    """conditions_wanted: fails ``failures`` times, then answers ``answers`` in turn."""

    def __init__(self, failures: int, *answers: tuple[bool, bool]) -> None:
        self.failures = failures
        self.answers = iter(answers)
        self.asked: list[float] = []

    def __call__(self) -> tuple[bool, bool]:
        self.asked.append(trio.current_time())
        if len(self.asked) <= self.failures:
            raise StoreError("disk I/O error")
        return next(self.answers, (False, False))


def make(machine: Machine, wanted: Wanted) -> Conditions:
    return Conditions(
        "auto",
        idle_cpu=10.0,
        idle_window=60.0,
        wanted=wanted,
        worker_pids=list,
        on_change=lambda: machine.changes.append(trio.current_time()),
    )


async def test_nothing_is_sampled_while_no_job_wants_a_condition(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = Machine(monkeypatch, iter([True] * 100))
    wanted = Wanted(0, (False, False), (True, False), (True, False), (False, False))
    sampler = make(machine, wanted)
    async with trio.open_nursery() as nursery:
        await nursery.start(sampler.run)
        await trio.sleep(100)
        assert wanted.asked == [0.0] and machine.power_reads == [0.0]  # (the first: at start)
        sampler.poke()  # a job with --require-charging was queued
        await trio.sleep(100)
        nursery.cancel_scope.cancel()
    assert wanted.asked == [0.0, 100.0, 101.0, 102.0]
    assert machine.power_reads == [0.0, 100.0, 101.0]
    assert machine.idle_samples == []


async def test_a_power_source_that_becomes_ac_wakes_the_scheduler(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = Machine(monkeypatch, iter([False, False, True, True]))
    wanted = Wanted(0, (True, False), (True, False), (True, False))
    sampler = make(machine, wanted)
    with capture_logs() as lines:
        async with trio.open_nursery() as nursery:
            await nursery.start(sampler.run)
            await trio.sleep(10)
            nursery.cancel_scope.cancel()
    assert machine.changes == [SAMPLE_INTERVAL]
    assert sampler.on_ac
    assert [line["event"] for line in lines] == ["power source changed"]


async def test_while_the_store_fails_both_conditions_are_sampled_and_it_is_asked_again(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = Machine(monkeypatch, iter([False] * 100))
    wanted = Wanted(2, (False, False))
    sampler = make(machine, wanted)
    with capture_logs() as lines:
        async with trio.open_nursery() as nursery:
            await nursery.start(sampler.run)
            await trio.sleep(100)
            nursery.cancel_scope.cancel()
    assert wanted.asked == [0.0, SAMPLE_INTERVAL, 2 * SAMPLE_INTERVAL]
    assert machine.power_reads == [0.0, 0.0, SAMPLE_INTERVAL]  # (the first: at start)
    assert machine.idle_samples == [0.0, SAMPLE_INTERVAL]
    assert (
        lines
        == [
            {
                "event": "store fault in the condition sampler",
                "error": "disk I/O error",
                "log_level": "warning",
            }
        ]
        * 2
    )
