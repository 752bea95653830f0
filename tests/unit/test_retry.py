"""Retry timing: exponential backoff with jitter, capped, and when to give up."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semantica.supervisor.retry import (
    DEFAULT_BACKOFF,
    MAX_BACKOFF,
    backoff_delay,
    next_attempt_at,
)

# Floating-point slack for bounds that are exact on paper.
EPS = 1e-9


def _within(delay: float, nominal: float) -> bool:
    return 0.8 * nominal * (1 - EPS) <= delay <= 1.2 * nominal * (1 + EPS)


def test_defaults_are_two_seconds_and_ten_minutes() -> None:
    """Without --backoff the first retry waits about 2 s; no retry waits more than 10 min."""
    assert DEFAULT_BACKOFF == 2.0
    assert MAX_BACKOFF == 600.0
    for seed in range(50):
        assert _within(backoff_delay(1, None, random.Random(seed)), 2.0)


def test_delay_doubles_per_attempt() -> None:
    """Each further failed attempt waits twice as long as the one before (same jitter draw)."""
    for attempt in range(1, 8):
        this = backoff_delay(attempt, 3.0, random.Random(99))
        following = backoff_delay(attempt + 1, 3.0, random.Random(99))
        assert following == pytest.approx(2 * this)


def test_delay_follows_base_times_power_of_two() -> None:
    """The n-th retry waits base * 2**(n-1) seconds, give or take 20 %."""
    rng = random.Random(7)
    for attempt, nominal in [(1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0), (6, 160.0)]:
        assert _within(backoff_delay(attempt, 5.0, rng), nominal)


def test_delay_is_capped() -> None:
    """However many attempts failed, a retry waits at most 600 s plus 20 % jitter."""
    rng = random.Random(3)
    delays = [backoff_delay(attempt, 2.0, rng) for attempt in range(10, 60)]
    assert all(_within(d, MAX_BACKOFF) for d in delays)
    assert max(backoff_delay(1, 10_000.0, random.Random(s)) for s in range(100)) <= 720.0


def test_jitter_spreads_both_ways() -> None:
    """Jobs that failed together do not all retry at the same moment."""
    rng = random.Random(2024)
    delays = [backoff_delay(1, 10.0, rng) for _ in range(2000)]
    assert all(_within(d, 10.0) for d in delays)
    assert min(delays) < 8.2
    assert max(delays) > 11.8
    assert len(set(delays)) > 1900


def test_same_seed_same_delay() -> None:
    """The jitter comes from the random source passed in, so a seeded one is reproducible."""
    assert backoff_delay(4, 1.0, random.Random(5)) == backoff_delay(4, 1.0, random.Random(5))


def test_zero_base_retries_at_once() -> None:
    """A job with --backoff 0 is retried immediately."""
    assert backoff_delay(5, 0.0, random.Random(1)) == 0.0


@given(
    attempt=st.integers(1, 50),
    base=st.floats(0, 1000, allow_nan=False),
    seed=st.integers(0, 2**32),
)
def test_delay_is_always_within_jitter_of_the_capped_value(
    attempt: int, base: float, seed: int
) -> None:
    """For any attempt and base, the delay is within ±20 % of min(base * 2**(a-1), 600)."""
    nominal = min(base * 2 ** (attempt - 1), MAX_BACKOFF)
    assert _within(backoff_delay(attempt, base, random.Random(seed)), nominal)


def test_next_attempt_at_adds_the_backoff() -> None:
    """A retryable failure is retried at now plus the backoff delay."""
    now = 1_800_000_000.0
    at = next_attempt_at(now, 2, 5, 4.0, permanent=False, rng=random.Random(11))
    assert at is not None
    assert at - now == pytest.approx(backoff_delay(2, 4.0, random.Random(11)))
    assert _within(at - now, 8.0)


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "permanent"),
    [(1, 3, True), (3, 3, False), (4, 3, False), (1, 1, False), (2, 10, True)],
)
def test_next_attempt_at_gives_up(attempt: int, max_attempts: int, permanent: bool) -> None:
    """No retry after a permanent error or once the attempts are used up."""
    assert next_attempt_at(100.0, attempt, max_attempts, None, permanent) is None


def test_next_attempt_at_retries_while_attempts_remain() -> None:
    """Every attempt before the last one is followed by a retry."""
    for attempt in range(1, 5):
        assert next_attempt_at(100.0, attempt, 5, 1.0, False, random.Random(0)) is not None
