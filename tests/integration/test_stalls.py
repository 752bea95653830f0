"""The supervisor never waits on what it does not own: its stderr's reader, one huge request.

Each test starts the real supervisor and measures what another client would
notice: how long its requests take while something tries to hold the loop.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from harness import Daemon

from semantica.protocol import (
    HEADER,
    MAX_FRAME,
    PROTOCOL_VERSION,
    Cancel,
    Cancelled,
    ControlReply,
    Enqueued,
    FrameDecoder,
    GetStatus,
    Hello,
    HelloOk,
    JobList,
    ListJobs,
    StatusReply,
    Wait,
    encode,
)

pytestmark = pytest.mark.slow

#: Jobs whose start and end lines make far more log than a pipe holds (64 KiB).
LOG_JOBS = 3000
#: How long another client may wait for `status` while a maximal enqueue is carried out.
#: The aim is 0.1 s; the bound is loose for a loaded machine, and the unfixed supervisor
#: took 2 s and more.
STALL_LIMIT_S = 0.5
#: A request that takes longer than this counts as stalled (a generous bound: a
#: semctl process starts in a fraction of it, even on a loaded machine).
STATUS_LIMIT_S = 5.0


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    """Read ``fd`` until ``needle`` has come by (or EOF); everything read."""
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not seen within {timeout} s; last: {data[-300:]!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            data += chunk
    return data


def test_an_unread_stderr_pipe_does_not_stall_the_supervisor(short_tmp: Path) -> None:
    """stderr is a pipe nobody reads (a paused `less`): requests are still answered at once
    and jobs run; daemon.log keeps every line; once the pipe is read again, one line says
    how many lines stderr missed, and the metric counts them."""
    read_end, write_end = os.pipe()
    d = Daemon(home=short_tmp / "home", stderr=write_end)
    try:
        d.start()
        os.close(write_end)  # the supervisor has its copy; nobody reads read_end
        write_end = -1
        with d.client() as client:
            ids = [job.id for job in client.enqueue_many([{"type": "NOOP"}] * LOG_JOBS)]
        slowest = 0.0
        deadline = time.monotonic() + 120
        while True:
            began = time.monotonic()
            status = d.semctl("status", "--json", timeout=STATUS_LIMIT_S * 2)
            slowest = max(slowest, time.monotonic() - began)
            assert status.code == 0, status.err
            if status.json()["counts"]["DONE"] == len(ids):
                break
            assert time.monotonic() < deadline, f"jobs did not finish: {status.out}"
            time.sleep(0.2)
        assert slowest < STATUS_LIMIT_S, f"semctl status took {slowest:.2f} s"
        daemon_log = (d.home / "daemon.log").read_text()
        assert daemon_log.count('"event":"job done"') == LOG_JOBS  # the file has every line
        assert len(daemon_log) > 8 * 65536
        metrics = d.semctl("metrics", "--json")
        assert metrics.code == 0, metrics.err
        [dropped] = metrics.json()["semantica_log_lines_dropped"]["samples"]
        assert dropped["value"] > 0
        # The reader comes back: what was queued comes out, then the count of the rest.
        seen = _read_until(read_end, b"log lines dropped", timeout=30)
        assert b'"event":"ready"' in seen
    finally:
        if write_end >= 0:
            os.close(write_end)
        os.close(read_end)  # a supervisor blocked on the pipe gets EPIPE and goes on
        alive = d.stop_for_good()
    assert not alive, f"processes left behind: {alive}"


def test_a_handler_printing_to_an_unread_stderr_does_not_hang(short_tmp: Path) -> None:
    """A handler's print() does not block on the supervisor's stderr, a pipe nobody reads:
    the job ends DONE, and what it printed is in daemon.log as worker output."""
    read_end, write_end = os.pipe()
    d = Daemon(home=short_tmp / "home", stderr=write_end)
    try:
        d.start()
        os.close(write_end)  # nobody reads read_end: it fills after 64 KiB
        write_end = -1
        with d.client() as client:
            job = client.enqueue("PRINT", {"n": 512 * 1024})
            done = client.wait(job.id, timeout=60)
        assert done.state == "DONE", done.error
        daemon_log = (d.home / "daemon.log").read_text()
        assert f'"job_id":{job.id},"line":"printed {512 * 1024} bytes"' in daemon_log
        assert daemon_log.count('"event":"worker output"') >= 2 * 512
    finally:
        if write_end >= 0:
            os.close(write_end)
        os.close(read_end)
        alive = d.stop_for_good()
    assert not alive, f"processes left behind: {alive}"


class RawClient:
    """A control connection that sends frames as given and times its replies (no Client:
    a maximal frame needs specs without their default fields, and the reader must not
    hold the GIL decoding a huge reply while another thread measures)."""

    def __init__(self, d: Daemon, timeout: float = 120) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(d.socket))
        token = (d.home / "token").read_text().strip()
        self.sock.sendall(encode(Hello(version=PROTOCOL_VERSION, token=token)))
        assert isinstance(self.decode(self.receive_frame()), HelloOk)

    def receive_frame(self) -> bytes:
        """One whole frame, undecoded."""
        header = self._exactly(HEADER.size)
        (size,) = HEADER.unpack(header)
        return header + self._exactly(size)

    def _exactly(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = self.sock.recv(min(left, 1 << 20))
            assert chunk, "the supervisor closed the connection"
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    @staticmethod
    def decode(frame: bytes) -> Any:
        decoder = FrameDecoder(ControlReply, 1 << 30)
        decoder.feed(frame)
        [message] = list(decoder.messages())
        return message

    def close(self) -> None:
        self.sock.close()


def _maximal_enqueue(make: Callable[[int], dict[str, Any]]) -> tuple[bytes, int]:
    """An enqueue frame as full as the 1 MiB cap allows, of specs ``make(i)``; and its count."""

    def body(n: int) -> bytes:
        return msgspec.msgpack.encode({"t": "enqueue", "jobs": [make(i) for i in range(n)]})

    n = MAX_FRAME // len(msgspec.msgpack.encode(make(0)))
    while len(body(n)) > MAX_FRAME:
        n -= max(1, (len(body(n)) - MAX_FRAME) // len(msgspec.msgpack.encode(make(n))) + 1)
    data = body(n)
    return HEADER.pack(len(data)) + data, n


SPECS: dict[str, Callable[[int], dict[str, Any]]] = {
    "subject-less": lambda i: {"type": "NOOP"},
    "one subject each": lambda i: {"type": "NOOP", "subject": f"{i:x}"},
    "all one subject": lambda i: {"type": "NOOP", "subject": "s"},
}


#: Between two status calls while a big request runs.
STATUS_PACE_S = 0.02


def _status_waits_during(d: Daemon, frame: bytes) -> tuple[Any, list[float]]:
    """Send ``frame`` on one connection and, until its reply, `status` after `status` on
    another; the reply and how long each status took."""
    big, small = RawClient(d), RawClient(d, timeout=60)
    replied: list[bytes] = []

    def send_big() -> None:
        big.sock.sendall(frame)
        replied.append(big.receive_frame())

    waits: list[float] = []
    try:
        sender = threading.Thread(target=send_big)
        sender.start()
        while sender.is_alive():
            began = time.monotonic()
            small.sock.sendall(encode(GetStatus(rid=len(waits) + 1)))
            reply = small.receive_frame()
            waits.append(time.monotonic() - began)
            assert isinstance(small.decode(reply), StatusReply)
            # A person's pace, not a flood: the calls measure the stall, and back to
            # back they would make the big request itself several times slower.
            sender.join(STATUS_PACE_S)
        sender.join()
        assert replied, "the big request got no reply"
    finally:
        big.close()
        small.close()
    return RawClient.decode(replied[0]), waits


@pytest.mark.parametrize("kind", SPECS)
def test_a_maximal_enqueue_does_not_hold_up_other_clients(daemon: Daemon, kind: str) -> None:
    """A 1 MiB enqueue of tens of thousands of tiny jobs is carried out while another
    client's `status` is answered within STALL_LIMIT_S, again and again; the enqueue is
    acknowledged with every job, all committed."""
    frame, count = _maximal_enqueue(SPECS[kind])
    assert count > 25_000
    with daemon.client() as client:
        client.pause("default")  # the jobs stay queued: only the enqueue is measured
    enqueued, waits = _status_waits_during(daemon, frame)
    assert isinstance(enqueued, Enqueued), enqueued
    assert len(enqueued.jobs) == count
    assert len({job.id for job in enqueued.jobs}) == count
    slowest = max(waits)
    print(f"{kind}: {count} jobs; {len(waits)} status calls meanwhile, slowest {slowest:.3f} s")
    assert slowest < STALL_LIMIT_S, f"status waited {slowest:.2f} s behind the enqueue"
    status = daemon.semctl("status", "--json").json()
    assert status["counts"]["QUEUED"] + status["counts"]["SUPERSEDED"] == count
    if kind == "all one subject":
        assert status["counts"]["QUEUED"] == 1


#: The most ids a wait or cancel takes, and the most jobs a list returns.
MANY = 10_000


@pytest.mark.parametrize("verb", ["wait", "list", "cancel"])
def test_a_request_about_ten_thousand_jobs_does_not_hold_up_other_clients(
    daemon: Daemon, verb: str
) -> None:
    """wait for, list or cancel the most jobs one request may name (10,000): another
    client's `status` is answered within STALL_LIMIT_S meanwhile."""
    payload = {f"k{i}": i for i in range(300)}  # read and sent: each job costs its share
    with daemon.client() as client:
        client.pause("default")
        ids = [
            job.id
            for start in range(0, MANY, 250)
            for job in client.enqueue_many([{"type": "NOOP", "payload": payload}] * 250)
        ]
    request = {
        "wait": Wait(ids=ids, timeout=0, rid=1),
        "list": ListJobs(limit=MANY, rid=1),
        "cancel": Cancel(ids=ids, rid=1),
    }[verb]
    reply, waits = _status_waits_during(daemon, encode(request))
    expected = Cancelled if verb == "cancel" else JobList
    assert isinstance(reply, expected), reply
    assert len(reply.results if verb == "cancel" else reply.jobs) == MANY
    slowest = max(waits)
    print(f"{verb} of {MANY}: {len(waits)} status calls meanwhile, slowest {slowest:.3f} s")
    assert slowest < STALL_LIMIT_S, f"status waited {slowest:.2f} s behind the {verb}"
    if verb == "cancel":
        counts = daemon.semctl("status", "--json").json()["counts"]
        assert counts["CANCELLED"] == MANY
