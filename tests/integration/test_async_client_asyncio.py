"""AsyncClient in an asyncio program, against the real supervisor.

The same client as under trio (test_async_client.py), used the way an asyncio
program (a FastAPI app, say) would: ``asyncio.run``, tasks, ``gather``,
``wait_for`` and ``Task.cancel``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon

from semantica import AsyncClient, JobState, NoSuchJob
from semantica.protocol import StatusReply

pytestmark = pytest.mark.slow

#: Bounds a failure only: every call below is answered in milliseconds when it works.
DEADLINE = 30


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``main`` in a new asyncio event loop (as ``asyncio.run`` in a program)."""
    return asyncio.run(asyncio.wait_for(main(), 2 * DEADLINE))


async def let_tasks_run() -> None:
    """Let the tasks just created send their requests (each round runs every ready
    task once; no timer involved)."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_the_verbs_under_asyncio(daemon: Daemon) -> None:
    """enqueue, gather of many calls, wait, logs, follow, events, errors: as under trio."""

    async def main() -> None:
        async with AsyncClient(home=daemon.home) as client:
            assert client.server_version
            jobs = await asyncio.gather(
                *(client.enqueue("ADD", {"a": i, "b": 1}) for i in range(50))
            )
            done = await client.wait_many([job.id for job in jobs], timeout=DEADLINE)
            assert sorted(job.result["sum"] for job in done) == list(range(1, 51))
            assert await client.logs(jobs[0].id) == ["adding a=0 b=1"]
            many = await client.enqueue_many([{"type": "NOOP", "delay": 3600}] * 3)
            assert [job.state for job in many] == [JobState.QUEUED] * 3
            assert {o.state for o in await client.cancel(*(j.id for j in many))} == {
                JobState.CANCELLED
            }

            job = await client.enqueue("LINES", {"count": 3})
            assert [line async for line in client.follow(job.id)] == [
                "line 0",
                "line 1",
                "line 2",
            ]
            assert (await client.get(job.id)).state == JobState.DONE

            seen: list[str] = []
            done_seen = asyncio.Event()

            async def watch() -> None:
                async with client.events() as events:
                    async for event in events:
                        seen.append(event.event)
                        if event.event == "done":
                            done_seen.set()
                            return

            watcher = asyncio.create_task(watch())
            # The stream subscribes on its first read, and the supervisor does not say
            # when it has: enqueue until one job's events arrive (bounded).
            for _ in range(DEADLINE):
                await client.enqueue("NOOP")
                try:
                    await asyncio.wait_for(done_seen.wait(), 1)
                    break
                except TimeoutError:
                    continue
            await asyncio.wait_for(watcher, DEADLINE)
            assert seen[-1] == "done"

            with pytest.raises(NoSuchJob):
                await client.get(987654)
            assert isinstance(await client.status(), StatusReply)  # still fine after it

        lazy = AsyncClient(home=daemon.home)  # connects on first use, no `async with`
        assert (await lazy.status()).workers
        await lazy.aclose()

    run(main)


def test_a_pending_wait_does_not_hold_up_other_calls_under_asyncio(daemon: Daemon) -> None:
    """While waits are pending, calls from other tasks are answered at once."""

    async def main() -> None:
        async with AsyncClient(home=daemon.home) as client:
            later = [await client.enqueue("NOOP", delay=3600) for _ in range(2)]
            waits = [asyncio.create_task(client.wait(job.id)) for job in later]
            await let_tasks_run()
            assert isinstance(await asyncio.wait_for(client.status(), DEADLINE), StatusReply)
            got = await asyncio.wait_for(
                asyncio.gather(*(client.get(job.id) for job in later * 5)), DEADLINE
            )
            assert [job.id for job in got] == [job.id for job in later * 5]
            assert not any(wait.done() for wait in waits)
            await client.cancel(*(job.id for job in later))
            ended = await asyncio.wait_for(asyncio.gather(*waits), DEADLINE)
            assert [job.state for job in ended] == [JobState.CANCELLED] * 2

    run(main)


def test_cancelled_tasks_leave_the_connection_to_the_others(daemon: Daemon) -> None:
    """Task.cancel() and wait_for's timeout on pending calls: the other calls, and later
    ones, still get their own replies; a cancelled wait's late reply reaches no one."""

    async def main() -> None:
        async with AsyncClient(home=daemon.home) as client:
            first, second = [await client.enqueue("NOOP", delay=3600) for _ in range(2)]
            waiting = asyncio.create_task(client.wait(second.id))
            cancelled = asyncio.create_task(client.wait(first.id))
            await let_tasks_run()
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.wait(first.id), 0.2)  # also cancelled
            async with AsyncClient(home=daemon.home) as other:  # from outside the client
                await other.cancel(second.id)
            assert (await asyncio.wait_for(waiting, DEADLINE)).state == JobState.CANCELLED
            # The two cancelled waits' replies come now, among the replies of these:
            assert (await client.cancel(first.id))[0].state == JobState.CANCELLED
            assert (await client.get(first.id)).id == first.id
            assert isinstance(await client.status(), StatusReply)

    run(main)


def test_a_pending_follow_does_not_hold_up_other_calls_under_asyncio(
    daemon: Daemon, short_tmp: Path
) -> None:
    """While a follow waits for the job's next line, other calls are answered."""
    gate = str(short_tmp / "gate.sock")

    async def main() -> None:
        async with AsyncClient(home=daemon.home) as client:
            job = await client.enqueue("LINES", {"count": 2, "gate": gate})
            lines: list[str] = []
            first_line = asyncio.Event()

            async def follow() -> None:
                async for line in client.follow(job.id):
                    lines.append(line)
                    first_line.set()

            follower = asyncio.create_task(follow())
            await asyncio.wait_for(first_line.wait(), DEADLINE)
            assert (await client.get(job.id)).state == JobState.RUNNING
            other = await client.enqueue("ADD", {"a": 2, "b": 2})
            assert (await asyncio.wait_for(client.wait(other.id), DEADLINE)).result == {"sum": 4}
            assert lines == ["line 0"]
            for _ in range(2):  # one datagram lets the job past each line
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                    sock.sendto(b"go", gate)
            await asyncio.wait_for(follower, DEADLINE)
            assert lines == ["line 0", "line 1"]

    run(main)
