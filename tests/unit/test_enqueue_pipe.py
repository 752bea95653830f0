"""enqueue_many with several requests in flight (enqueue_pipe.py), against a fake
supervisor: each request after the first names the one before (``follows``), the next
goes out before the reply to the one before, and a failure part-way still tells the
caller exactly what was committed. A supervisor that does not say ``follows`` gets one
request at a time."""

from __future__ import annotations

import asyncio
import itertools
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from semantica.control.async_client import AsyncClient
from semantica.control.batches import PartialEnqueue
from semantica.control.client import Client
from semantica.control.enqueue_pipe import PIPELINE_FRAMES
from semantica.errors import BadInput, Unreachable
from semantica.framed import FrameDecoder
from semantica.models import Job
from semantica.protocol import (
    FEATURES,
    PROTOCOL_VERSION,
    ControlRequest,
    Enqueue,
    Enqueued,
    ErrorReply,
    GetStatus,
    Hello,
    HelloOk,
    encode,
)

#: A small frame cap, so that a few hundred jobs make several requests.
CAP = 4096
JOBS = [{"type": "T", "payload": {"n": n}} for n in range(600)]


class FakeSupervisor:
    """Answers enqueues with brief replies, the way ``policy`` says, and keeps them.

    It answers the enqueues it holds only once ``PIPELINE_FRAMES`` are waiting (or the
    client sent nothing for a while): a client that waited for each reply would wait
    that while each time, and ``held_at_once`` shows how many came before an answer.
    ``policy(index, msg)`` returns the reply for the index-th enqueue, or None to hang up.
    """

    def __init__(
        self,
        path: Path,
        features: list[str],
        policy: Callable[[int, Enqueue], Any],
        cap: int = CAP,
    ) -> None:
        self.cap = cap
        self.enqueues: list[Enqueue] = []
        self.held_at_once = 0
        self.features = features
        self.policy = policy
        self._ids = itertools.count(1)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        with conn:
            self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        decoder = FrameDecoder(ControlRequest, self.cap)
        held: list[Enqueue] = []
        conn.settimeout(0.3)
        while True:
            try:
                data = conn.recv(65536)
            except TimeoutError:
                data = None
            if data == b"":
                return
            if data:
                decoder.feed(data)
            for msg in decoder.messages():
                if isinstance(msg, Hello):
                    ok = HelloOk(
                        version=PROTOCOL_VERSION,
                        server_version="9",
                        pid=1,
                        features=self.features,
                        max_frame=self.cap,
                    )
                    conn.sendall(encode(ok))
                elif isinstance(msg, Enqueue):
                    held.append(msg)
                else:
                    conn.sendall(encode(ErrorReply(rid=msg.rid, code="bad_input", message="ok")))
            self.held_at_once = max(self.held_at_once, len(held))
            if held and (len(held) >= PIPELINE_FRAMES or data is None):
                for msg in held:
                    reply = self.policy(len(self.enqueues), msg)
                    self.enqueues.append(msg)
                    if reply is None:
                        return  # hang up
                    conn.sendall(encode(reply))
                held.clear()

    def ok(self, index: int, msg: Enqueue) -> Any:
        ids = [next(self._ids) for _ in msg.jobs]
        return Enqueued(
            rid=msg.rid, jobs=[], ids=ids, waiting=[None] * len(ids), added_at=time.time()
        )

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def place() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sem-", dir="/tmp") as name:  # a short socket path
        yield Path(name)


def run_sync(path: Path, jobs: list[dict[str, Any]]) -> list[Job]:
    with Client(socket=path, token="t") as client:
        got = client.enqueue_many(jobs)
        return got


def run_trio(path: Path, jobs: list[dict[str, Any]]) -> list[Job]:
    async def main() -> list[Job]:
        async with AsyncClient(socket=path, token="t") as client:
            return await client.enqueue_many(jobs)

    return trio.run(main)


def run_asyncio(path: Path, jobs: list[dict[str, Any]]) -> list[Job]:
    async def main() -> list[Job]:
        async with AsyncClient(socket=path, token="t") as client:
            return await client.enqueue_many(jobs)

    return asyncio.run(main())


CLIENTS = pytest.mark.parametrize(
    "run", [run_sync, run_trio, run_asyncio], ids=["Client", "AsyncClient-trio", "asyncio"]
)


def chained(enqueues: list[Enqueue]) -> bool:
    """Whether each enqueue names the one before it, and the first names none."""
    return enqueues[0].follows == 0 and all(
        after.follows == before.rid != 0 for before, after in itertools.pairwise(enqueues)
    )


@CLIENTS
def test_requests_go_out_before_the_replies_and_each_names_the_one_before(
    place: Path, run: Callable[[Path, list[dict[str, Any]]], list[Job]]
) -> None:
    fake = FakeSupervisor(place / "s.sock", list(FEATURES), lambda i, m: fake.ok(i, m))
    try:
        jobs = run(place / "s.sock", JOBS)
    finally:
        fake.close()
    assert len(fake.enqueues) > PIPELINE_FRAMES
    assert fake.held_at_once == PIPELINE_FRAMES  # sent before the replies came, no more
    assert chained(fake.enqueues)
    assert [job.payload["n"] for job in jobs] == list(range(len(JOBS)))  # type: ignore[index]
    assert [job.id for job in jobs] == list(range(1, len(JOBS) + 1))


@CLIENTS
def test_an_older_supervisor_gets_one_request_at_a_time(
    place: Path, run: Callable[[Path, list[dict[str, Any]]], list[Job]]
) -> None:
    """A supervisor that does not say "follows" would carry out a request whose
    predecessor failed: it gets each request once the one before is answered."""
    features = [f for f in FEATURES if f != "follows"]
    fake = FakeSupervisor(place / "s.sock", features, lambda i, m: fake.ok(i, m))
    try:
        jobs = run(place / "s.sock", JOBS[:200])
    finally:
        fake.close()
    assert fake.held_at_once == 1
    assert all(msg.follows == 0 for msg in fake.enqueues)
    assert len(jobs) == 200


@CLIENTS
def test_a_failure_part_way_tells_exactly_what_was_committed(
    place: Path, run: Callable[[Path, list[dict[str, Any]]], list[Job]]
) -> None:
    """The second request fails and the supervisor refuses those after it: the caller
    gets the first request's jobs, none in doubt, and the first error."""

    def policy(index: int, msg: Enqueue) -> Any:
        if index == 0:
            return fake.ok(index, msg)
        if index == 1:
            return ErrorReply(rid=msg.rid, code="bad_input", message="no such type")
        return ErrorReply(rid=msg.rid, code="batch_broken", message="not carried out")

    fake = FakeSupervisor(place / "s.sock", list(FEATURES), policy)
    try:
        with pytest.raises(PartialEnqueue) as partial:
            run(place / "s.sock", JOBS)
    finally:
        fake.close()
    exc = partial.value
    first = len(fake.enqueues[0].jobs)
    assert [job.payload["n"] for job in exc.enqueued] == list(range(first))  # type: ignore[index]
    assert isinstance(exc.error, BadInput) and str(exc.error) == "no such type"
    assert exc.in_doubt == 0 and exc.total == len(JOBS)
    # It stopped sending once it saw the failure: at most a window's worth went after it.
    assert len(fake.enqueues) <= 2 + PIPELINE_FRAMES


def test_the_connection_stays_in_step_after_a_failure(place: Path) -> None:
    """The refusals of the requests after the failed one are read, not left for the
    next call to take as its reply."""

    def policy(index: int, msg: Enqueue) -> Any:
        if index == 0:
            return ErrorReply(rid=msg.rid, code="bad_input", message="first failed")
        return ErrorReply(rid=msg.rid, code="batch_broken", message="not carried out")

    fake = FakeSupervisor(place / "s.sock", list(FEATURES), policy)
    try:
        with Client(socket=place / "s.sock", token="t") as client:
            with pytest.raises(BadInput, match=r"^first failed$"):  # nothing was added
                client.enqueue_many(JOBS)
            with pytest.raises(BadInput, match=r"^ok$"):  # the fake's answer to a status
                client._call(GetStatus())
    finally:
        fake.close()


def test_a_lost_connection_puts_every_unanswered_request_in_doubt(place: Path) -> None:
    """The supervisor answers the first request and hangs up: the jobs of every other
    request sent are in doubt, not only those of the next one."""
    fake = FakeSupervisor(
        place / "s.sock", list(FEATURES), lambda i, m: fake.ok(i, m) if i == 0 else None
    )
    try:
        with pytest.raises(PartialEnqueue) as partial:
            run_sync(place / "s.sock", JOBS)
    finally:
        fake.close()
    exc = partial.value
    assert isinstance(exc.error, Unreachable)
    first = len(fake.enqueues[0].jobs)
    assert len(exc.enqueued) == first
    # The requests sent after the first, all unanswered: at least the two that were in
    # flight with it (and the one sent after its reply, if it went out before the hang-up).
    assert len(fake.enqueues[1].jobs) < exc.in_doubt <= len(JOBS) - first, exc.in_doubt


def test_requests_bigger_than_the_socket_buffer_go_out_whole_and_in_order(place: Path) -> None:
    """Requests of about a MiB each, three in flight: the socket fills while one is
    sent, and the client waits for room (reading replies meanwhile) instead of failing."""
    jobs = [{"type": "T", "payload": {"n": n, "pad": "x" * 3000}} for n in range(3000)]
    fake = FakeSupervisor(place / "s.sock", list(FEATURES), lambda i, m: fake.ok(i, m), cap=1 << 20)
    try:
        got = run_sync(place / "s.sock", jobs)
    finally:
        fake.close()
    assert len(fake.enqueues) > PIPELINE_FRAMES and chained(fake.enqueues)
    assert [job.payload["n"] for job in got] == list(range(3000))  # type: ignore[index]
