"""Pipelined enqueues on one connection, against the real supervisor.

Requests that arrive together are written as one insert, yet each keeps its own
reply: its own job, in the order sent, a bad one its own error, one with a
subject its own generation rules, and a read behind them sees them all.
"""

from __future__ import annotations

import re
import socket
import threading
from typing import Any

import trio
from harness import Daemon

from semantica import AsyncClient
from semantica.models import JobSpec
from semantica.protocol import (
    PROTOCOL_VERSION,
    ControlReply,
    Enqueue,
    Enqueued,
    ErrorReply,
    FrameDecoder,
    GetJob,
    Hello,
    HelloOk,
    JobReply,
    encode,
)

LATER = 3600.0


def _store_writes(daemon: Daemon) -> int:
    with daemon.client() as client:
        text = client.metrics()
    match = re.search(r"^semantica_store_writes_total (\S+)$", text, re.MULTILINE)
    assert match, text
    return int(float(match.group(1)))


def _replies(daemon: Daemon, frames: bytes, count: int) -> list[Any]:
    """Send ``frames`` in one write after the hello; the first ``count`` replies."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(daemon.socket))
    decoder = FrameDecoder(ControlReply, 1 << 24)
    messages: list[Any] = []
    try:
        token = (daemon.home / "token").read_text().strip()
        sock.sendall(encode(Hello(version=PROTOCOL_VERSION, token=token)) + frames)
        while len(messages) < count + 1:
            data = sock.recv(1 << 16)
            assert data, "the supervisor closed the connection"
            decoder.feed(data)
            messages += decoder.messages()
    finally:
        sock.close()
    assert isinstance(messages[0], HelloOk)
    return messages[1:]


def test_requests_sent_together_share_an_insert_and_keep_their_own_replies(
    daemon: Daemon,
) -> None:
    requests: list[Any] = []
    for n in range(60):
        if n == 20:  # bad: refused alone, the others unaffected
            spec = JobSpec(type="NOOP", queue="no spaces allowed", delay=LATER)
        elif n == 40:  # a subject: carried out alone, in its place
            spec = JobSpec(type="NOOP", subject="s", delay=LATER)
        else:
            spec = JobSpec(type="NOOP", priority=n % 3, delay=LATER)
        requests.append(Enqueue(jobs=[spec], rid=n + 1, brief=n % 2 == 0))
    requests.append(GetJob(id=1, rid=999))
    before = _store_writes(daemon)

    replies = _replies(daemon, b"".join(encode(r) for r in requests), len(requests))

    assert [reply.rid for reply in replies] == [r.rid for r in requests]  # in order
    assert isinstance(replies[20], ErrorReply) and replies[20].code == "bad_input"
    ids = []
    for n, reply in enumerate(replies[:60]):
        if n == 20:
            continue
        assert isinstance(reply, Enqueued), reply
        [job_id] = reply.ids if n % 2 == 0 else [job.id for job in reply.jobs]
        ids.append(job_id)
    assert ids == sorted(ids) and len(set(ids)) == 59  # ids grow in the order sent
    assert isinstance(replies[60], JobReply)  # the read behind them
    # Far fewer store writes than requests: the plain ones went in a few inserts.
    assert _store_writes(daemon) - before < 20
    with daemon.client() as client:
        jobs = {job.id: job for job in client.list(limit=100)}
    assert len(jobs) == 59
    assert jobs[ids[40 - 1]].subject == "s"  # (request 40 is the 40th job: 20 failed)
    assert [jobs[i].priority for i in ids[:3]] == [0, 1, 2]


def test_a_pipelining_async_client_gets_every_job_once(daemon: Daemon) -> None:
    async def main() -> list[int]:
        async with AsyncClient(home=daemon.home) as client:
            got: list[int] = []

            async def one(n: int) -> None:
                job = await client.enqueue("NOOP", delay=LATER, payload={"n": n})
                assert job.payload == {"n": n}
                got.append(job.id)

            async with trio.open_nursery() as nursery:
                for n in range(300):
                    nursery.start_soon(one, n)
            return got

    ids = trio.run(main)
    assert len(set(ids)) == 300
    with daemon.client() as client:
        assert client.status().counts.get("QUEUED") == 300


def test_an_enqueue_that_follows_a_failed_one_is_refused(daemon: Daemon) -> None:
    """``follows`` names the enqueue a request continues (a pipelined enqueue_many): once
    that one failed, the follower is refused and adds nothing, and so down the chain;
    requests that follow nothing, or a success, are carried out as always."""
    noop = JobSpec(type="NOOP", delay=LATER)
    bad = JobSpec(type="NO_SUCH_TYPE", delay=LATER)
    requests = [
        Enqueue(jobs=[noop] * 600, rid=1),  # more than one insert's worth of jobs
        Enqueue(jobs=[noop] * 3, rid=2, follows=1),  # follows a success: carried out
        Enqueue(jobs=[bad], rid=3, follows=2),  # fails
        Enqueue(jobs=[noop] * 5, rid=4, follows=3),  # follows a failure: refused
        Enqueue(jobs=[noop] * 7, rid=5, follows=4),  # follows a refusal: refused
        Enqueue(jobs=[noop] * 11, rid=6),  # follows nothing: carried out
        Enqueue(jobs=[noop] * 13, rid=7, follows=6),  # carried out
    ]
    replies = _replies(daemon, b"".join(encode(r) for r in requests), len(requests))
    assert [reply.rid for reply in replies] == [1, 2, 3, 4, 5, 6, 7]
    outcomes = [reply.code if isinstance(reply, ErrorReply) else "ok" for reply in replies]
    assert outcomes == ["ok", "ok", "bad_input", "batch_broken", "batch_broken", "ok", "ok"]
    assert "(rid 3) failed" in replies[3].message
    assert "nothing of this request was added" in replies[4].message
    with daemon.client() as client:
        assert client.status().counts["QUEUED"] == 600 + 3 + 11 + 13


def test_a_supervisor_says_it_refuses_followers_of_a_failed_enqueue(daemon: Daemon) -> None:
    """A client pipelines enqueue_many only to a supervisor that says so in its hello:
    an older one would carry out a follower of a failed request."""
    with daemon.client() as client:
        assert "follows" in client.server_features


def test_clients_in_threads_enqueueing_at_once_each_get_their_own_jobs(daemon: Daemon) -> None:
    """Eight clients, each waiting for its reply, enqueue at once (their requests may be
    carried out together, one insert for several connections): each reply holds the
    client's own job, and every job is there once."""
    got: list[tuple[int, int, int]] = []
    errors: list[BaseException] = []

    def run(client_no: int) -> None:
        try:
            with daemon.client() as client:
                for n in range(40):
                    job = client.enqueue("NOOP", delay=LATER, payload={"c": client_no, "n": n})
                    assert job.payload == {"c": client_no, "n": n}
                    got.append((client_no, n, job.id))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    assert len({job_id for _, _, job_id in got}) == len(got) == 320
    with daemon.client() as client:
        assert client.status().counts.get("QUEUED") == 320
        for client_no, n, job_id in got[::37]:
            assert client.get(job_id).payload == {"c": client_no, "n": n}
