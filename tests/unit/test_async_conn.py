"""The async client's connection against a scripted supervisor: frames stay whole.

A call cancelled while its request is half written must not break the
connection for the calls after it, under trio (a cancel scope) and asyncio
(``Task.cancel``) alike. A real supervisor reads too fast to catch a request
half way, so here a fake one, in a thread, stops reading in the middle of a
frame, on cue.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
import trio.testing

from semantica.config import Paths
from semantica.control.async_conn import Connection
from semantica.models import JobSpec
from semantica.protocol import (
    PROTOCOL_VERSION,
    ControlRequest,
    Enqueue,
    FrameDecoder,
    GetJob,
    GetStatus,
    Hello,
    HelloOk,
    Ok,
    encode,
)

#: A payload far larger than what the socket buffers hold: its frame cannot go out
#: in one write while the supervisor does not read.
BIG = "x" * (4 << 20)
DEADLINE = 30  # bounds a failure only


class ScriptedSupervisor:
    """Accepts one client and says hello. Then, with ``flood`` alone, sends that many bytes
    of replies to no request the client has made (as when replies to cancelled calls pile
    up) and reads nothing until they are taken; else reads ``pause_after`` bytes of
    requests and stops reading until ``resume`` is set. After that it answers every
    request with ``Ok``.

    With ``hold_first`` it first reads one whole request (``got_first``) and holds its
    reply; on ``resume`` it answers that one, then sends the ``flood``, before it reads on.
    """

    def __init__(
        self, path: Path, pause_after: int = 65536, flood: int = 0, hold_first: bool = False
    ) -> None:
        self.path = path
        self.pause_after = pause_after
        self.flood = flood
        self.hold_first = hold_first
        self.got_first = threading.Event()
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.received: list[Any] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(1)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        decoder = FrameDecoder(ControlRequest, 64 << 20)
        with conn:
            while not self.received:  # the hello
                decoder.feed(conn.recv(65536))
                self.received.extend(decoder.messages())
            assert isinstance(self.received[0], Hello)
            conn.sendall(
                encode(
                    HelloOk(version=PROTOCOL_VERSION, server_version="t", pid=1, max_frame=BIG_CAP)
                )
            )
            first = None
            if self.hold_first:
                while len(self.received) < 2:  # the client sends nothing else before it
                    decoder.feed(conn.recv(65536))
                    self.received.extend(decoder.messages())
                first = self.received[-1]
                self.got_first.set()
            if self.flood and first is None:
                self._flood(conn)
            else:
                taken = 0
                while taken < self.pause_after:
                    data = conn.recv(self.pause_after - taken)
                    taken += len(data)
                    decoder.feed(data)
                self.paused.set()
                self.resume.wait()
                if first is not None:
                    conn.sendall(encode(Ok(rid=first.rid)))
                    self._flood(conn)
            while data := conn.recv(65536):
                decoder.feed(data)
                for msg in decoder.messages():
                    self.received.append(msg)
                    conn.sendall(encode(Ok(rid=msg.rid)))

    def _flood(self, conn: socket.socket) -> None:
        stray = encode(Ok(rid=999))
        conn.sendall(stray * (self.flood // len(stray)))  # blocks until they are read

    def close(self) -> None:
        self.resume.set()
        self._thread.join(DEADLINE)
        self._listener.close()


BIG_CAP = 8 << 20


@pytest.fixture
def short_dir() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="sem-", dir="/tmp"))  # a short socket path
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def supervisor(short_dir: Path) -> Iterator[ScriptedSupervisor]:
    fake = ScriptedSupervisor(short_dir / "s.sock")
    yield fake
    fake.close()


def _paths(fake: ScriptedSupervisor) -> Paths:
    return Paths(home=fake.path.parent, socket=fake.path)


def _check_whole(fake: ScriptedSupervisor) -> None:
    """The supervisor got the big request whole, then the status; the request that was
    cancelled before a byte of it went out never arrived."""
    _hello, big, status = fake.received
    assert isinstance(big, Enqueue) and big.jobs[0].payload == BIG
    assert isinstance(status, GetStatus)


async def test_a_request_cut_short_by_a_trio_cancel_is_finished_by_the_next(
    supervisor: ScriptedSupervisor,
) -> None:
    conn = await Connection.open(_paths(supervisor), token="t")
    scopes: list[trio.CancelScope] = []

    async def call(msg: Any) -> None:
        with trio.CancelScope() as scope:
            scopes.append(scope)
            await conn.request(msg)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, Enqueue(jobs=[JobSpec(type="T", payload=BIG)]))
        await trio.to_thread.run_sync(supervisor.paused.wait)  # the big frame is half sent
        nursery.start_soon(call, GetJob(id=7))  # waits to send behind it
        await trio.testing.wait_all_tasks_blocked()
        for scope in scopes:
            scope.cancel()
    supervisor.resume.set()
    with trio.fail_after(DEADLINE):
        reply = await conn.request(GetStatus())
    assert isinstance(reply, Ok) and reply.rid == 3
    await conn.aclose()
    _check_whole(supervisor)


def test_a_request_cut_short_by_an_asyncio_cancel_is_finished_by_the_next(
    supervisor: ScriptedSupervisor,
) -> None:
    async def main() -> Any:
        conn = await Connection.open(_paths(supervisor), token="t")
        big = asyncio.create_task(conn.request(Enqueue(jobs=[JobSpec(type="T", payload=BIG)])))
        await asyncio.to_thread(supervisor.paused.wait)  # the big frame is half sent
        queued = asyncio.create_task(conn.request(GetJob(id=7)))  # waits to send behind it
        for _ in range(20):  # let it reach the send lock (no timer: each round runs it once)
            await asyncio.sleep(0)
        big.cancel()
        queued.cancel()
        outcomes = await asyncio.gather(big, queued, return_exceptions=True)
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
        supervisor.resume.set()
        reply = await asyncio.wait_for(conn.request(GetStatus()), DEADLINE)
        await conn.aclose()
        return reply

    reply = asyncio.run(main())
    assert isinstance(reply, Ok) and reply.rid == 3
    _check_whole(supervisor)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_request_goes_out_while_unread_replies_pile_up(short_dir: Path, backend: str) -> None:
    """Replies nobody waits for fill the socket, and the supervisor reads no request until
    they are taken: a call that cannot send reads them meanwhile, instead of waiting
    forever for the socket to take its request."""
    fake = ScriptedSupervisor(short_dir / "s.sock", flood=4 << 20)

    async def main() -> Any:
        conn = await Connection.open(_paths(fake), token="t")
        with anyio.fail_after(DEADLINE):
            reply = await conn.request(Enqueue(jobs=[JobSpec(type="T", payload=BIG)]))
        await conn.aclose()
        return reply

    try:
        reply = anyio.run(main, backend=backend)
    finally:
        fake.close()
    assert isinstance(reply, Ok) and reply.rid == 1


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_sender_takes_over_the_reading_when_the_reader_leaves(
    short_dir: Path, backend: str
) -> None:
    """A call waits for its reply, so it reads; a second call cannot send its big request
    and waits for the socket. The first gets its reply and leaves just as replies nobody
    waits for pile up, and the supervisor reads no request until they are taken: the
    sender must take over the reading, or it waits forever."""
    fake = ScriptedSupervisor(short_dir / "s.sock", flood=4 << 20, hold_first=True)

    async def main() -> list[Any]:
        conn = await Connection.open(_paths(fake), token="t")
        replies: list[Any] = []

        async def call(msg: Any) -> None:
            replies.append(await conn.request(msg))

        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as group:
                group.start_soon(call, GetJob(id=7))
                await anyio.to_thread.run_sync(fake.got_first.wait)
                await anyio.wait_all_tasks_blocked()  # the first call reads, for its reply
                group.start_soon(call, Enqueue(jobs=[JobSpec(type="T", payload=BIG)]))
                await anyio.to_thread.run_sync(fake.paused.wait)
                await anyio.wait_all_tasks_blocked()  # the second waits to send the rest
                fake.resume.set()  # the first's reply, then the flood
        await conn.aclose()
        return replies

    try:
        replies = anyio.run(main, backend=backend)
    finally:
        fake.close()
    assert [(type(r), r.rid) for r in replies] == [(Ok, 1), (Ok, 2)]
    _hello, first, big = fake.received
    assert isinstance(first, GetJob) and isinstance(big, Enqueue) and big.jobs[0].payload == BIG


@pytest.fixture
def answering(short_dir: Path) -> Iterator[ScriptedSupervisor]:
    """A scripted supervisor that answers every request at once."""
    fake = ScriptedSupervisor(short_dir / "s.sock", pause_after=0)
    fake.resume.set()
    yield fake
    fake.close()


class _CountingSocket:
    """The client's socket, recording the scheduler pass in which each send was made."""

    def __init__(self, sock: socket.socket, passes: list[int]) -> None:
        self._sock = sock
        self._passes = passes
        self.sent_in: list[int] = []

    def send(self, data: Any) -> int:
        self.sent_in.append(len(self._passes))
        return self._sock.send(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Passes(trio.abc.Instrument):
    def __init__(self) -> None:
        self.passes: list[int] = []

    def before_io_wait(self, timeout: float) -> None:
        self.passes.append(1)


async def test_requests_of_tasks_run_together_go_out_in_that_pass(
    answering: ScriptedSupervisor,
) -> None:
    """A pipelining client: each request is written when its task runs, not one task's
    request per pass of the scheduler (the answering reads them together)."""
    conn = await Connection.open(_paths(answering), token="t")
    instrument = _Passes()
    counting = _CountingSocket(conn._sock, instrument.passes)
    conn._sock = counting  # type: ignore[assignment]  # (a stand-in that counts)
    trio.lowlevel.add_instrument(instrument)
    try:
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                for n in range(50):
                    nursery.start_soon(conn.request, GetJob(id=n))
    finally:
        trio.lowlevel.remove_instrument(instrument)
    assert len(counting.sent_in) == 50
    assert len(set(counting.sent_in)) == 1, counting.sent_in  # all in one pass
    await conn.aclose()


async def test_a_call_cancelled_before_it_starts_sends_nothing(
    answering: ScriptedSupervisor,
) -> None:
    conn = await Connection.open(_paths(answering), token="t")
    with trio.CancelScope() as scope:
        scope.cancel()
        await conn.request(GetJob(id=7))
    with trio.fail_after(DEADLINE):
        reply = await conn.request(GetStatus())
    assert isinstance(reply, Ok)
    await conn.aclose()
    assert [type(m) for m in answering.received] == [Hello, GetStatus]
