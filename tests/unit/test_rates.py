"""Recent counts for top: per-second buckets over the last minute, in fixed memory."""

from __future__ import annotations

from semantica.supervisor.rates import RecentCounts


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_counts_fall_out_of_the_window_as_time_passes() -> None:
    clock = Clock()
    counts = RecentCounts(clock)
    counts.add()
    clock.t += 5
    counts.add(3)
    assert (counts.within(10), counts.within(60), counts.within(1)) == (4, 4, 3)
    clock.t += 6  # the first one is 11 s old
    assert (counts.within(10), counts.within(60)) == (3, 4)
    clock.t += 60  # everything is more than a minute old
    assert counts.within(60) == 0
    counts.add()
    assert counts.within(60) == 1


def test_memory_does_not_grow_with_the_rate() -> None:
    """A million events in a minute take the same 61 slots as one."""
    clock = Clock()
    counts = RecentCounts(clock)
    for i in range(1_000_000):
        if i % 20_000 == 0:
            clock.t += 1
        counts.add()
    assert counts.within(60) == 1_000_000
    assert len(counts._counts) == 61
