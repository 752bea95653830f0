"""When a failed attempt runs again: exponential backoff with jitter.

The n-th retry waits ``base * 2**(n-1)`` seconds (``base`` is the job's
``--backoff``, default 2 s), capped at 10 minutes, then moved by up to ±20 %
so that jobs that failed together do not retry together.
"""

from __future__ import annotations

import random

DEFAULT_BACKOFF = 2.0
MAX_BACKOFF = 600.0
JITTER = 0.2


def backoff_delay(attempt: int, base: float | None, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 = the first run)."""
    base = DEFAULT_BACKOFF if base is None else base
    delay = min(base * 2 ** max(attempt - 1, 0), MAX_BACKOFF)
    factor = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return float(delay * factor)


def next_attempt_at(
    now: float,
    attempt: int,
    max_attempts: int,
    base: float | None,
    permanent: bool,
    rng: random.Random | None = None,
) -> float | None:
    """When to run the job again after failed attempt ``attempt``, or None to give up."""
    if permanent or attempt >= max_attempts:
        return None
    return now + backoff_delay(attempt, base, rng)
