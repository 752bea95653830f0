"""Plain handlers run in the worker's one long-lived handler thread (worker/handler_thread.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import trio

from semantica.framed import FramedStream
from semantica.protocol import FromWorker, Heartbeat, JobFinished, RunJob, ToWorker, WorkerHello
from semantica.worker import runner
from semantica.worker.handler_thread import HandlerThread
from semantica.worker.registry import handler
from semantica.worker.runner import Worker

TIMEOUT = 10  # generous: a hang fails the test instead of blocking the run

# The registry is a process-wide dict: these names are unique to this module.


@handler("UT_HT_WHERE")
def where(ctx: Any, payload: Any) -> Any:
    thread = threading.current_thread()
    return {"name": thread.name, "ident": thread.ident}


@handler("UT_HT_NAP")
def nap(ctx: Any, payload: Any) -> Any:
    time.sleep(payload)
    return None


@asynccontextmanager
async def running_worker() -> AsyncIterator[FramedStream]:
    """A Worker serving one end of a socket pair, its hello read; yields the supervisor's end."""
    sup_sock, worker_sock = socket.socketpair()
    stream = trio.socket.from_stdlib_socket
    supervisor = FramedStream(trio.SocketStream(stream(sup_sock)), FromWorker)
    worker_end = FramedStream(trio.SocketStream(stream(worker_sock)), ToWorker)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(Worker(worker_end).serve)
            with trio.fail_after(TIMEOUT):
                assert isinstance(await supervisor.receive(), WorkerHello)
                yield supervisor
            nursery.cancel_scope.cancel()
    finally:
        await supervisor.aclose()
        await worker_end.aclose()


async def _end_of(supervisor: FramedStream, lease: int) -> JobFinished:
    while True:
        msg = await supervisor.receive()
        if isinstance(msg, JobFinished):
            assert msg.lease == lease
            return msg


def _run(lease: int, type: str, payload: Any, heartbeat: float = 0.0) -> RunJob:
    return RunJob(
        lease=lease,
        job_id=100 + lease,
        type=type,
        payload=msgspec.json.encode(payload),
        attempt=1,
        max_attempts=3,
        heartbeat=heartbeat,
    )


async def test_plain_jobs_of_separate_runs_share_one_long_lived_thread() -> None:
    """Each run of plain jobs goes to the same thread, not the loop's, not a new one."""
    async with running_worker() as supervisor:
        seen = []
        for lease in (1, 2, 3):
            await supervisor.send(_run(lease, "UT_HT_WHERE", None))
            finished = await _end_of(supervisor, lease)
            assert finished.error is None and finished.result is not None
            seen.append(msgspec.json.decode(finished.result))
            await trio.sleep(0.01)  # idle between: each job is a run of its own
    assert {tuple(s.values()) for s in seen} == {("semantica-handler", seen[0]["ident"])}
    assert seen[0]["ident"] != threading.get_ident()


async def test_the_job_a_run_goes_on_with_sends_heartbeats() -> None:
    """A plain job taken by the thread behind another (prefetched) has its heartbeats."""
    async with running_worker() as supervisor:
        await supervisor.send_many(
            [_run(1, "UT_HT_NAP", 0.0, heartbeat=0.05), _run(2, "UT_HT_NAP", 0.4, heartbeat=0.05)]
        )
        beats: list[int] = []
        ends: list[int] = []
        while len(ends) < 2:
            msg = await supervisor.receive()
            if isinstance(msg, Heartbeat):
                beats.append(msg.lease)
            elif isinstance(msg, JobFinished):
                assert msg.error is None
                ends.append(msg.lease)
    assert ends == [1, 2]
    assert beats.count(2) >= 3


async def test_a_bug_in_the_handler_thread_fails_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the thread's run raises outside any handler is raised on the loop: serve() fails."""

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug of the worker's")

    monkeypatch.setattr(runner, "call_blocking", broken)
    with pytest.raises(BaseException) as caught:
        async with running_worker() as supervisor:
            await supervisor.send(_run(1, "UT_HT_NAP", 0.0))
            await trio.sleep_forever()  # ended by the worker's failure
    assert (
        caught.group_contains(RuntimeError, match="a bug")
        if isinstance(caught.value, BaseExceptionGroup)
        else isinstance(caught.value, RuntimeError)
    )


def test_handler_thread_runs_work_in_order_in_one_thread() -> None:
    """Runs are carried out one after another, each in the same daemon thread."""
    thread = HandlerThread()
    idents: list[int | None] = []
    for _ in range(3):
        ran = threading.Event()

        def work(ran: threading.Event = ran) -> None:
            idents.append(threading.get_ident())
            ran.set()

        thread.start(work, lambda: None)
        assert ran.wait(5)
        time.sleep(0.01)  # (the run has ended: its caller would be told by then)
    assert len(set(idents)) == 1 and idents[0] != threading.get_ident()


def test_what_a_run_raises_is_kept_before_its_caller_is_told() -> None:
    """The callback after a run sees the run's error already kept (the loop raises it)."""
    thread = HandlerThread()
    seen: list[BaseException | None] = []
    told = threading.Event()

    def work() -> None:
        raise ValueError("bug")

    def then() -> None:
        seen.append(thread.error)
        told.set()

    thread.start(work, then)
    assert told.wait(5)
    assert isinstance(seen[0], ValueError)
