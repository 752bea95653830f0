"""Wall-clock time for the store, behind an object so tests can pass their own.

Persisted times (``created_at``, ``run_after``...) are wall-clock epoch seconds:
they must mean the same thing after a restart. In-process deadlines (heartbeats,
timeouts, the drain) use trio's clock instead, which counts awake time only (and
so trio's ``autojump_clock`` in tests). A wait for a wall-clock time cannot be one
trio sleep: the scheduler's timer looks at this clock between short sleeps.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of wall-clock time."""

    def time(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
