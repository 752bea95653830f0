"""The live pages' plumbing: a change is drawn at once, quicker ones together; keepalives."""

from __future__ import annotations

import trio
import trio.testing

from semantica.control.web.live import KEEPALIVE_S, Latest, on_change


async def test_changes_are_drawn_at_once_and_bursts_together(
    autojump_clock: trio.testing.MockClock,
) -> None:
    latest: Latest[int] = Latest(0)
    drawn: list[tuple[float, int]] = []

    async def render() -> str:
        drawn.append((trio.current_time(), latest.value))
        return str(latest.value)

    parts = on_change(latest, render, pause=1.0)
    assert await anext(parts) == "0"
    start = trio.current_time()

    async def change_later() -> None:
        await trio.sleep(5)
        latest.publish(1)  # long after the first drawing: drawn at once
        await trio.sleep(0.1)
        latest.publish(2)  # a burst: drawn together, a second after the last drawing
        latest.publish(3)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(change_later)
        assert await anext(parts) == "1"
        assert trio.current_time() - start == 5
        assert await anext(parts) == "3"
        assert trio.current_time() - start == 6
    await parts.aclose()


async def test_a_quiet_source_sends_keepalives(autojump_clock: trio.testing.MockClock) -> None:
    latest: Latest[int] = Latest(0)

    async def render() -> str:
        return "x"

    parts = on_change(latest, render)
    assert await anext(parts) == "x"
    start = trio.current_time()
    assert await anext(parts) is None
    assert trio.current_time() - start == KEEPALIVE_S
    latest.publish(1)
    assert await anext(parts) == "x"
    await parts.aclose()


async def test_a_dashboard_after_a_pause_waits_for_a_new_top(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The shared top source stops when the last dashboard closes; the next one to open
    is not drawn from the reply of before the pause."""
    from semantica.control.web.live import TopFeed

    class Client:
        def __init__(self) -> None:
            self.calls = 0

        async def top(self) -> int:
            self.calls += 1
            return self.calls

    client = Client()
    async with trio.open_nursery() as nursery:
        feed = TopFeed(client, nursery)  # type: ignore[arg-type]
        async with feed.listen():
            await feed.latest.next(feed.latest.version)
            assert feed.latest.value == 1
        assert feed.latest.value is None  # forgotten when the last one left
        await trio.sleep(10)
        async with feed.listen():
            await feed.latest.next(feed.latest.version)
            assert feed.latest.value == 2
        nursery.cancel_scope.cancel()
