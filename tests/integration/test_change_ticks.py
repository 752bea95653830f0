"""The ``changes`` stream: a tick when jobs changed, at most one per interval, none when idle."""

from __future__ import annotations

import trio
from harness import Daemon

from semantica import AsyncClient
from semantica.errors import BadInput


async def test_many_changes_make_few_ticks_and_quiet_makes_none(daemon: Daemon) -> None:
    async with AsyncClient(home=daemon.home) as client:
        stream = client.changes(interval=0.5)
        async with stream:
            assert await anext(stream) == 0  # listening
            await client.pause("t")
            jobs = await client.enqueue_many(
                [{"type": "exec", "payload": {"argv": ["true"]}, "queue": "t"}] * 200
            )
            first = await anext(stream)
            assert first >= 1
            started = trio.current_time()
            await client.resume("t")
            await client.wait_many([job.id for job in jobs], timeout=60)
            ticks = [first]
            # Every job event after the last tick makes one more tick.
            with trio.move_on_after(5):
                while ticks[-1] < 200 + 2 * 200:  # enqueued, started, done for each
                    ticks.append(await anext(stream))
            elapsed = trio.current_time() - started
            assert ticks[-1] >= 3 * 200, ticks
            assert len(ticks) <= 2 + elapsed / 0.5, (ticks, elapsed)  # at most one per interval
            with trio.move_on_after(1.5) as quiet:
                await anext(stream)
            assert quiet.cancelled_caught, "a tick came while nothing happened"


async def test_an_interval_out_of_range_is_refused(daemon: Daemon) -> None:
    async with AsyncClient(home=daemon.home) as client:
        for bad in (0.0, -1.0, 61.0, float("nan")):
            stream = client.changes(interval=bad)
            async with stream:
                try:
                    await anext(stream)
                except BadInput as exc:
                    assert "interval must be" in exc.message
                else:
                    raise AssertionError(f"interval {bad} was accepted")
