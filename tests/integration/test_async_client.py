"""AsyncClient under trio against the real supervisor: one connection, many calls in flight.

A call that waits (``wait``, ``follow``, ``events``) must never hold up the
others made meanwhile on the same client, each call gets its own reply, and a
cancelled call leaves the connection working for the rest. The same client
under asyncio is tested in test_async_client_asyncio.py.
"""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

import pytest
import trio
import trio.testing
from harness import Daemon

from semantica import AsyncClient, JobState, Unreachable
from semantica.protocol import StatusReply

pytestmark = pytest.mark.slow

#: Bounds a failure only: every call below is answered in milliseconds when it works.
DEADLINE = 30
#: Enqueues sent together on one connection.
PIPELINED = 200


async def test_a_pending_wait_does_not_hold_up_other_calls(daemon: Daemon) -> None:
    """While two waits are pending on the client's one connection, calls from other tasks
    get their own replies at once; the waits end when their jobs do."""
    async with AsyncClient(home=daemon.home) as client:
        later = [await client.enqueue("NOOP", delay=3600) for _ in range(2)]
        waited: dict[int, JobState] = {}

        async def wait(job_id: int) -> None:
            waited[job_id] = (await client.wait(job_id)).state

        async with trio.open_nursery() as nursery:
            for job in later:
                nursery.start_soon(wait, job.id)
            await trio.testing.wait_all_tasks_blocked()  # both waits sent, their replies due
            with trio.fail_after(DEADLINE):
                assert isinstance(await client.status(), StatusReply)
                added = await client.enqueue("ADD", {"a": 1, "b": 2})
                got: dict[int, int] = {}

                async def get(job_id: int) -> None:
                    got[job_id] = (await client.get(job_id)).id

                async with trio.open_nursery() as gets:  # many in flight from many tasks
                    for job in [*later, added] * 5:
                        gets.start_soon(get, job.id)
                assert got == {job.id: job.id for job in [*later, added]}
                assert (await client.wait(added.id)).result == {"sum": 3}
            assert waited == {}  # still pending: nothing above waited for them
            await client.cancel(*(job.id for job in later))
        assert waited == {job.id: JobState.CANCELLED for job in later}


async def test_a_cancelled_call_leaves_the_connection_to_the_others(daemon: Daemon) -> None:
    """A wait cancelled while it read the connection for everyone: the call still waiting
    gets its reply; the cancelled wait's own reply, which comes later, reaches no one."""
    async with AsyncClient(home=daemon.home) as client:
        first, second = [await client.enqueue("NOOP", delay=3600) for _ in range(2)]
        second_done = trio.Event()

        async def wait_second() -> None:
            assert (await client.wait(second.id)).state == JobState.CANCELLED
            second_done.set()

        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as first_wait:
                nursery.start_soon(wait_second)
                async with trio.open_nursery() as inner:
                    inner.start_soon(client.wait, first.id)
                    await trio.testing.wait_all_tasks_blocked()
                    first_wait.cancel()
            with trio.fail_after(DEADLINE):
                async with AsyncClient(home=daemon.home) as other:  # from outside the client
                    await other.cancel(second.id)
                await second_done.wait()
                # Now the cancelled wait's reply comes, between the replies of these:
                assert (await client.cancel(first.id))[0].state == JobState.CANCELLED
                assert (await client.get(first.id)).id == first.id
                assert isinstance(await client.status(), StatusReply)


async def test_pending_follow_and_events_do_not_hold_up_other_calls(
    daemon: Daemon, short_tmp: Path
) -> None:
    """While a follow waits for the next log line and an events stream for the next
    event, calls on the same client are answered at once."""
    gate = str(short_tmp / "gate.sock")
    async with AsyncClient(home=daemon.home) as client:
        job = await client.enqueue("LINES", {"count": 2, "gate": gate})
        lines: list[str] = []
        events: list[str] = []
        first_line = trio.Event()

        async def follow() -> None:
            async for line in client.follow(job.id):
                lines.append(line)
                first_line.set()

        async def watch() -> None:
            async for event in client.events():
                events.append(event.event)
                if event.event == "done" and event.job_id == job.id:
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            nursery.start_soon(watch)
            with trio.fail_after(DEADLINE):
                await first_line.wait()  # the job now waits at its gate; both streams wait
                await trio.testing.wait_all_tasks_blocked()
                assert (await client.get(job.id)).state == JobState.RUNNING
                assert isinstance(await client.status(), StatusReply)
                other = await client.enqueue("ADD", {"a": 2, "b": 2})
                assert (await client.wait(other.id)).result == {"sum": 4}
            assert lines == ["line 0"]
            for _ in range(2):  # one datagram lets the job past each line
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                    sock.sendto(b"go", gate)
        assert lines == ["line 0", "line 1"]
        assert events[-1] == "done"


async def test_a_follow_hands_over_lines_in_batches_and_the_job_at_its_end(
    daemon: Daemon,
) -> None:
    """``next_lines`` gives every line that has come (a finished job's whole log at once),
    then [] at the end, when ``finished`` is the job as it finished."""
    async with AsyncClient(home=daemon.home) as client:
        job = await client.enqueue("exec", {"argv": ["sh", "-c", "echo one; echo two"]})
        await client.wait(job.id)
        with trio.fail_after(DEADLINE):
            async with client.follow(job.id) as follower:
                assert follower.finished is None
                assert await follower.next_lines() == ["one", "two"]
                assert await follower.next_lines() == []
        assert follower.finished is not None
        assert (follower.finished.id, follower.finished.state) == (job.id, JobState.DONE)


async def test_a_lost_connection_fails_the_pending_calls_and_the_next_call_reconnects(
    daemon: Daemon,
) -> None:
    """The supervisor stops while waits are pending: each raises Unreachable; once it is
    back, the same client works again."""
    async with AsyncClient(home=daemon.home) as client:
        job = await client.enqueue("NOOP", delay=3600)
        lost: list[str] = []

        async def wait() -> None:
            with pytest.raises(Unreachable) as raised:
                await client.wait(job.id)
            lost.append(str(raised.value))

        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(wait)
                await trio.testing.wait_all_tasks_blocked()
                assert await trio.to_thread.run_sync(daemon.stop) == 0
        assert lost == ["the supervisor closed the connection"] * 2
        await trio.to_thread.run_sync(daemon.start)
        assert daemon.proc is not None
        with trio.fail_after(DEADLINE):
            assert (await client.status()).pid == daemon.proc.pid
            assert (await client.get(job.id)).state == JobState.QUEUED


async def test_every_reply_carries_the_rid_of_its_request(daemon: Daemon) -> None:
    """The async client matches replies to calls by rid: a call whose reply came back
    under another rid (maintenance's did, rid 0) would wait for ever. Each verb that
    answers with one reply is answered under its own rid, pipelined or not."""
    async with AsyncClient(home=daemon.home) as client:
        job = await client.enqueue("ADD", {"a": 1, "b": 2})
        with trio.fail_after(DEADLINE):
            report = await client.maintenance()
            assert report.integrity == "ok"
            assert (await client.wait(job.id)).state == JobState.DONE
            replies = []

            async def call(verb: str) -> None:
                replies.append(await getattr(client, verb)())

            async with trio.open_nursery() as nursery:  # in flight together
                for verb in ("status", "queues", "metrics", "maintenance", "top"):
                    nursery.start_soon(call, verb)
        assert len(replies) == 5


def _commits(metrics: str) -> float:
    """The store commits so far, from ``semctl metrics``' text."""
    [value] = re.findall(r"^semantica_store_commits_total (\S+)$", metrics, re.MULTILINE)
    return float(value)


async def test_pipelined_enqueues_share_commits(daemon: Daemon) -> None:
    """Enqueues in flight together on one connection share commits: the supervisor
    carries them out in order without waiting for each one's commit before reading
    the next (it did, and a pipelining client was as slow as one waiting for each
    reply: a disk flush per job). Each reply still comes only once its job is durable."""
    async with AsyncClient(home=daemon.home) as client:
        before = _commits(await client.metrics())
        added: list[int] = []

        async def enqueue() -> None:
            added.append((await client.enqueue("NOOP", delay=3600)).id)

        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                for _ in range(PIPELINED):
                    nursery.start_soon(enqueue)
        commits = _commits(await client.metrics()) - before
        assert len(set(added)) == PIPELINED
        assert commits <= PIPELINED / 4, f"{commits:.0f} commits for {PIPELINED} enqueues"


def test_clients_that_wait_for_each_reply_share_commits(daemon: Daemon) -> None:
    """Eight clients, each waiting for every reply before its next enqueue (eight threads
    with a `Client` each): their enqueues share commits. A request that found nothing
    else to run was once committed alone at once, so such clients paid a disk flush
    each and went slower than before group commit."""
    with daemon.client() as client:
        before = _commits(client.metrics())
    per_client, clients = 60, 8
    errors: list[BaseException] = []

    def enqueue_some() -> None:
        try:
            with daemon.client() as own:
                for _ in range(per_client):
                    own.enqueue("NOOP", delay=3600)
        except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=enqueue_some) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    with daemon.client() as client:
        commits = _commits(client.metrics()) - before - 1  # the metrics call's own read
        assert len(client.list(limit=1000)) == per_client * clients
    assert commits < per_client * clients * 0.6, commits


def test_clients_that_cancel_at_once_share_commits(daemon: Daemon) -> None:
    """Eight clients, each waiting for every reply before its next cancel: their cancels
    share commits, as their enqueues do. (A cancel, like a wait, runs in a task of its
    own; what it writes is committed alone only if no other client is sending, the
    same notion of "alone" as an enqueue's.)"""
    per_client, clients = 30, 8
    with daemon.client() as client:
        ids = [job.id for job in client.enqueue_many([{"type": "NOOP", "delay": 3600}] * 240)]
        before = _commits(client.metrics())
    errors: list[BaseException] = []

    def cancel_some(mine: list[int]) -> None:
        try:
            with daemon.client() as own:
                for job_id in mine:
                    own.cancel(job_id)
        except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in the thread
            errors.append(exc)

    threads = [
        threading.Thread(target=cancel_some, args=(ids[c * per_client : (c + 1) * per_client],))
        for c in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    with daemon.client() as client:
        commits = _commits(client.metrics()) - before - 1  # the metrics call's own read
        assert client.status().counts.get("CANCELLED") == per_client * clients
    assert commits < per_client * clients * 0.6, commits
