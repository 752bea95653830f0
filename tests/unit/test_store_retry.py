"""The one retry loop of the supervisor: delays, give-up by tries or deadline, which errors
are retried, the gate before each try, and cancellation. trio's autojump clock drives it."""

from __future__ import annotations

import itertools
import math

import pytest
import trio
import trio.testing

from semantica.errors import StoreBusy, StoreError, StoreFull
from semantica.supervisor.store_retry import Backoff, retry_store


class Flaky:
    """A store call that fails ``failures`` times (with ``error``), then returns "ok"."""

    def __init__(self, failures: float, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or StoreError("disk I/O error")
        self.tries: list[float] = []  # trio time of each try

    async def __call__(self) -> str:
        self.tries.append(trio.current_time())
        if len(self.tries) <= self.failures:
            raise self.error
        return "ok"


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in itertools.pairwise(times)]


def test_backoff_doubles_from_first_up_to_most_and_starts_over_when_reset() -> None:
    delays = Backoff(0.1, 5.0)
    assert [delays.next() for _ in range(8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    delays.reset()
    assert delays.next() == 0.1
    fixed = Backoff(5.0, 5.0)
    assert [fixed.next() for _ in range(3)] == [5.0, 5.0, 5.0]


async def test_waits_the_backoff_between_tries_until_the_call_succeeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    call = Flaky(failures=8)
    assert await retry_store(call, Backoff(0.1, 5.0)) == "ok"
    assert gaps(call.tries) == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


async def test_a_backoff_kept_across_calls_goes_on_growing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    delays = Backoff(0.1, 5.0)
    await retry_store(Flaky(failures=2), delays)  # waited 0.1 and 0.2
    call = Flaky(failures=1)
    await retry_store(call, delays)
    assert gaps(call.tries) == [0.4]


async def test_after_tries_failures_the_last_error_is_raised_without_a_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    call = Flaky(failures=math.inf)
    retries: list[tuple[str, float]] = []
    start = trio.current_time()
    with pytest.raises(StoreError, match="disk I/O error") as raised:
        await retry_store(
            call,
            Backoff(0.1, 5.0),
            tries=3,
            on_retry=lambda exc, delay: retries.append((exc.message, delay)),
        )
    assert raised.value is call.error
    assert len(call.tries) == 3
    assert retries == [("disk I/O error", 0.1), ("disk I/O error", 0.2)]  # not the last
    assert trio.current_time() - start == pytest.approx(0.3)  # no wait after the last


async def test_one_try_only_raises_at_once(autojump_clock: trio.testing.MockClock) -> None:
    call = Flaky(failures=1)
    with pytest.raises(StoreError):
        await retry_store(call, Backoff(1.0, 1.0), tries=1)
    assert call.tries == [0.0]


async def test_a_busy_store_is_retried_until_the_next_try_would_pass_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A request's write: StoreBusy only, 0.01 s doubling to 0.25 s, the gate before each
    try, and the last StoreBusy raised when the next try would come at the deadline."""
    call = Flaky(failures=math.inf, error=StoreBusy("database is locked"))
    gate_passed: list[float] = []

    async def gate() -> None:
        gate_passed.append(trio.current_time())

    deadline = trio.current_time() + 5.0
    with pytest.raises(StoreBusy):
        await retry_store(
            call, Backoff(0.01, 0.25), errors=(StoreBusy,), deadline=deadline, before_each=gate
        )
    assert gate_passed == call.tries  # the gate, then each try, at once
    assert gaps(call.tries)[:6] == [0.01, 0.02, 0.04, 0.08, 0.16, 0.25]
    assert set(gaps(call.tries)[5:]) == {0.25}
    # The last try came less than one delay before the deadline, and nothing after it.
    assert deadline - 0.25 <= call.tries[-1] < deadline
    assert trio.current_time() == call.tries[-1]


async def test_a_call_that_succeeds_before_the_deadline_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    call = Flaky(failures=3, error=StoreBusy("database is locked"))
    result = await retry_store(
        call, Backoff(0.01, 0.25), errors=(StoreBusy,), deadline=trio.current_time() + 5.0
    )
    assert result == "ok" and len(call.tries) == 4


@pytest.mark.parametrize(
    "error", [StoreError("disk I/O error"), StoreFull("disk full"), ValueError("a bug")]
)
async def test_errors_not_retried_pass_through_at_once(
    autojump_clock: trio.testing.MockClock, error: Exception
) -> None:
    call = Flaky(failures=1, error=error)
    with pytest.raises(type(error)) as raised:
        await retry_store(call, Backoff(0.01, 0.25), errors=(StoreBusy,))
    assert raised.value is error
    assert call.tries == [0.0]


async def test_every_store_error_is_retried_by_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    errors = iter([StoreBusy("locked"), StoreFull("full"), StoreError("I/O")])

    async def call() -> str:
        for error in errors:
            raise error
        return "ok"

    assert await retry_store(call, Backoff(0.1, 5.0)) == "ok"
    with pytest.raises(ValueError):
        await retry_store(Flaky(failures=1, error=ValueError("a bug")), Backoff(0.1, 5.0))


async def test_a_delay_is_waited_out_as_the_caller_says(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A scheduler stops waiting when woken: its wait is the caller's."""
    waits: list[float] = []

    async def wait(delay: float) -> None:
        waits.append(delay)  # and does not sleep at all

    call = Flaky(failures=3)
    assert await retry_store(call, Backoff(0.1, 5.0), wait=wait) == "ok"
    assert waits == [0.1, 0.2, 0.4]
    assert call.tries == [0.0] * 4


async def test_each_retry_is_reported_with_its_error_and_delay_before_the_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[float, str, float]] = []
    call = Flaky(failures=2)
    await retry_store(
        call,
        Backoff(0.1, 5.0),
        on_retry=lambda exc, delay: seen.append((trio.current_time(), exc.message, delay)),
    )
    assert seen == [(0.0, "disk I/O error", 0.1), (0.1, "disk I/O error", 0.2)]


async def test_a_cancel_during_a_wait_ends_it_with_nothing_more_tried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    call = Flaky(failures=math.inf)
    with trio.move_on_after(1.0) as scope:
        await retry_store(call, Backoff(0.1, 5.0))
    assert scope.cancelled_caught
    assert gaps(call.tries) == [0.1, 0.2, 0.4]  # at 0, 0.1, 0.3, 0.7; the next at 1.5
    await trio.sleep(10)
    assert len(call.tries) == 4


async def test_a_cancel_at_the_gate_ends_it_before_any_try(
    autojump_clock: trio.testing.MockClock,
) -> None:
    call = Flaky(failures=0)
    with trio.move_on_after(1.0) as scope:
        await retry_store(call, Backoff(0.1, 5.0), before_each=trio.sleep_forever)
    assert scope.cancelled_caught
    assert call.tries == []
