"""Hostile clients against the real supervisor: garbage, floods, bad hellos, other users.

The threat model and the measures these tests check are in docs/security.md.
The hostile clients here speak over raw ``socket.socket(AF_UNIX)`` connections,
not through ``semantica.Client``, so they can send what no client would.
"""

from __future__ import annotations

import os
import pwd
import random
import select
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import sysconfig
import time
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest
import trio
from harness import BIN, HERE, SEMCTL, Daemon
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semantica import AsyncClient, Client, protocol
from semantica.errors import AuthError
from semantica.models import JobSpec
from semantica.protocol import (
    HEADER,
    HELLO_MAX_FRAME,
    PROTOCOL_VERSION,
    Cancel,
    ControlReply,
    Enqueue,
    Enqueued,
    ErrorReply,
    FrameDecoder,
    GetJob,
    GetLogs,
    GetMetrics,
    GetStatus,
    GetTop,
    Hello,
    HelloOk,
    JobFinished,
    LimitQueue,
    ListJobs,
    ListQueues,
    PauseQueue,
    ResumeQueue,
    Retry,
    StatusReply,
    Wait,
    WorkerHello,
    encode,
)
from semantica.supervisor.metrics_http import READ_TIMEOUT as METRICS_READ_TIMEOUT
from semantica.supervisor.server import HELLO_TIMEOUT, MAX_UNAUTHENTICATED

NOBODY = 65534
#: How long a reply may take before the test calls it a hang.
READ_TIMEOUT = 3.0
#: Time on top of a deadline of the supervisor's, for a loaded machine.
SLACK = 3.0


# ---------------------------------------------------------------- raw connections


class RawConn:
    """A raw control connection: send any bytes, read reply frames with a timeout."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # A blocking connect waits (up to SO_SNDTIMEO) while the listen backlog is
        # full; a non-blocking one would fail at once with EAGAIN.
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", int(READ_TIMEOUT), 0)
        )
        self.sock.connect(str(path))
        self.sock.settimeout(READ_TIMEOUT)
        self.decoder = FrameDecoder(ControlReply, 1 << 30)
        self.closed = False  # the supervisor closed its end

    def send(self, data: bytes) -> bool:
        """Send raw bytes; False if the supervisor had already closed the connection."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def hello(self, token: str) -> Any:
        """Send a hello with ``token``; return the answer (None: closed without one)."""
        self.send(encode(Hello(version=PROTOCOL_VERSION, token=token, client="test")))
        return self.next()

    def next(self, timeout: float = READ_TIMEOUT) -> Any:
        """The next reply, or None once the supervisor has closed the connection.

        Raises:
            TimeoutError: neither came within ``timeout`` seconds.
            ProtocolError: the supervisor sent bytes that are not a reply frame.
        """
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.decoder.messages():
                return msg
            if self.closed:
                assert self.decoder.pending == 0, "the supervisor closed mid-frame"
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no reply and no close within {timeout} s")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                # Linux: the supervisor closed while bytes of ours were still unread
                # in its buffer. Every reply it sent was read before this error.
                data = b""
            except TimeoutError:
                raise TimeoutError(f"no reply and no close within {timeout} s") from None
            if data:
                self.decoder.feed(data)
            else:
                self.closed = True

    def until_closed(self, timeout: float = READ_TIMEOUT) -> list[Any]:
        """Every reply until the supervisor closes the connection (TimeoutError: it did not)."""
        deadline = time.monotonic() + timeout
        replies = []
        while (msg := self.next(max(deadline - time.monotonic(), 0.001))) is not None:
            replies.append(msg)
        return replies

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(daemon: Daemon) -> Iterator[Callable[[], RawConn]]:
    """Open raw connections to the daemon's socket; all are closed at the end."""
    opened: list[RawConn] = []

    def connect() -> RawConn:
        conn = RawConn(daemon.socket)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


def _token(daemon: Daemon) -> str:
    return (daemon.home / "token").read_text().strip()


def _frame(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body


def _status_works(daemon: Daemon) -> None:
    result = daemon.semctl("status")
    assert result.code == 0, result.err


# ---------------------------------------------------------------- floods and garbage


def _garbage(rng: random.Random) -> bytes:
    body = rng.randbytes(rng.randint(1, 4096))
    if rng.random() < 0.1:
        # A believable header: the body is garbage, or shorter than it claims (so the
        # connection sits in its hello until the deadline).
        return HEADER.pack(rng.randint(0, 8192)) + body
    return body  # a random header, nearly always over the cap


def _attack(connect: Callable[[], RawConn], rng: random.Random, n: int) -> None:
    """``n`` garbage connections, one 4 GiB header and one silent client; all must be cut off."""
    silent = connect()  # first, so it holds a hello slot and meets the deadline
    silent_since = time.monotonic()
    huge = connect()
    huge.send(b"\xff\xff\xff\xff")
    garbage = []
    for _ in range(n):
        conn = connect()
        conn.send(_garbage(rng))  # False: already cut off (over the hello cap)
        garbage.append(conn)

    [reply] = huge.until_closed()  # refused on its header alone
    assert isinstance(reply, ErrorReply) and reply.code == "protocol", reply
    assert f"{2**32 - 1} bytes exceeds" in reply.message
    deadline = time.monotonic() + HELLO_TIMEOUT + SLACK
    for conn in garbage:
        replies = conn.until_closed(max(deadline - time.monotonic(), 0.001))
        assert all(isinstance(r, ErrorReply) and r.code == "protocol" for r in replies), replies
        assert len(replies) <= 1  # one error, then the connection is closed
    assert silent.until_closed(HELLO_TIMEOUT + SLACK) == []  # no reply: just closed
    waited = time.monotonic() - silent_since
    assert HELLO_TIMEOUT - 0.5 <= waited <= HELLO_TIMEOUT + SLACK


def test_pipelined_enqueues_are_answered_in_order_each_once(
    daemon: Daemon, raw: Callable[[], RawConn]
) -> None:
    """300 enqueues in one write: 300 replies, in request order, ids growing, all stored."""
    conn = raw()
    assert isinstance(conn.hello(_token(daemon)), HelloOk)
    requests = [
        Enqueue(rid=rid, jobs=[JobSpec(type="NOOP", queue="held", payload={"rid": rid})])
        for rid in range(1, 301)
    ]
    daemon.semctl("pause", "--create", "held")
    conn.send(b"".join(encode(request) for request in requests))
    replies = [conn.next() for _ in requests]
    assert all(isinstance(reply, Enqueued) for reply in replies)
    assert [reply.rid for reply in replies] == list(range(1, 301))
    ids = [reply.jobs[0].id for reply in replies]
    assert ids == sorted(set(ids))
    with daemon.client() as client:
        stored = [client.get(job_id) for job_id in ids]
    assert [job.payload for job in stored] == [{"rid": rid} for rid in range(1, 301)]


def test_a_client_gone_before_its_reply_is_dropped_quietly(
    daemon: Daemon, raw: Callable[[], RawConn]
) -> None:
    """A client that sends a request and closes without reading the reply (semctl
    killed, Ctrl-C) is dropped as a client that went away: the request is carried out,
    and no "connection failed" error with a traceback goes into the supervisor's log."""
    daemon.semctl("pause", "--create", "held")
    with daemon.client() as client:
        client.enqueue_many([{"type": "NOOP", "queue": "held", "payload": "x" * 1000}] * 2000)
    for _ in range(10):
        conn = raw()
        assert isinstance(conn.hello(_token(daemon)), HelloOk)
        conn.send(encode(ListJobs(rid=1, limit=2000)))  # a reply larger than a socket buffer
        conn.close()
    gone = raw()
    assert isinstance(gone.hello(_token(daemon)), HelloOk)
    spec = JobSpec(type="NOOP", queue="held", payload={"last": True})
    gone.send(encode(Enqueue(rid=1, jobs=[spec])))
    gone.close()
    with daemon.client() as client:
        for _ in range(1000):  # every request is carried out, then its reply meets a closed socket
            if client.list(queue="held", limit=1)[0].payload == {"last": True}:
                break
            select.select([], [], [], 0.01)
    assert daemon.stop() == 0
    assert "connection failed" not in daemon.log(), daemon.log()


def test_garbage_flood_is_cut_off_and_leaves_no_trace(
    daemon: Daemon, raw: Callable[[], RawConn]
) -> None:
    """300 garbage clients, a 4 GiB header and a silent client are all cut off within
    seconds, and the supervisor answers on with flat memory and no leaked descriptor."""
    assert daemon.proc is not None
    supervisor = psutil.Process(daemon.proc.pid)
    rng = random.Random(20_240_611)
    _attack(raw, rng, 20)  # warm-up: first-use allocations are not growth
    _status_works(daemon)
    rss_before, fds_before = supervisor.memory_info().rss, supervisor.num_fds()

    _attack(raw, rng, 300)

    rss_growth = supervisor.memory_info().rss - rss_before
    assert rss_growth < 5 * 1024 * 1024, f"RSS grew by {rss_growth} bytes"
    # Every connection above was closed by the supervisor (we saw its EOF), so its
    # descriptors are gone already.
    assert supervisor.num_fds() <= fds_before + 2
    _status_works(daemon)


def test_connections_waiting_for_hello_are_capped(
    daemon: Daemon, raw: Callable[[], RawConn]
) -> None:
    """Idle connections cannot pile up: past 64 waiting for their hello, new ones are
    closed at once, and the supervisor answers again when the idle ones time out."""
    conns = [raw() for _ in range(MAX_UNAUTHENTICATED + 8)]
    by_socket = {c.sock: c for c in conns}
    closed: set[socket.socket] = set()
    deadline = time.monotonic() + HELLO_TIMEOUT / 2  # "at once": well before the deadline
    while len(closed) < 8 and (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([s for s in by_socket if s not in closed], [], [], remaining)
        for sock in readable:
            assert by_socket[sock].next() is None  # closed without a reply
            closed.add(sock)
    assert len(closed) == 8
    readable, _, _ = select.select([s for s in by_socket if s not in closed], [], [], 0)
    assert readable == []  # the other 64 are still waiting for their hello
    for conn in conns:
        if conn.sock not in closed:
            assert conn.until_closed(HELLO_TIMEOUT + SLACK) == []
    _status_works(daemon)


def test_oversized_frame_after_hello_is_refused_unread(
    daemon: Daemon, raw: Callable[[], RawConn]
) -> None:
    """A client announcing a 2 MiB frame after its hello gets a protocol error and is
    disconnected, without the supervisor waiting for the body."""
    conn = raw()
    assert isinstance(conn.hello(_token(daemon)), HelloOk)
    conn.send(HEADER.pack(2 << 20))  # the header only: the answer must not wait for a body
    reply = conn.next()
    assert isinstance(reply, ErrorReply) and reply.code == "protocol", reply
    assert "exceeds" in reply.message
    assert conn.next() is None  # closed
    _status_works(daemon)


def test_an_oversized_hello_is_refused_unread_and_big_requests_wait_for_it(
    daemon: Daemon, raw: Callable[[], RawConn]
) -> None:
    """Before its hello is accepted a client may not make the supervisor buffer a
    full-size frame: a first frame over 16 KiB is refused from its header alone.
    After the hello, a request of 100 KiB is served as usual."""
    conn = raw()
    conn.send(HEADER.pack(HELLO_MAX_FRAME + 1))  # the header only
    reply = conn.next()
    assert isinstance(reply, ErrorReply) and reply.code == "protocol", reply
    assert f"exceeds the {HELLO_MAX_FRAME}-byte limit" in reply.message
    assert conn.next() is None  # closed

    conn = raw()
    assert isinstance(conn.hello(_token(daemon)), HelloOk)
    big = {"blob": "x" * (100 << 10)}
    conn.send(encode(Enqueue(rid=1, jobs=[JobSpec(type="NOOP", payload=big, delay=3600)])))
    reply = conn.next()
    assert isinstance(reply, Enqueued), reply
    assert reply.jobs[0].payload == big


def test_every_bad_hello_gets_the_same_answer(daemon: Daemon, raw: Callable[[], RawConn]) -> None:
    """Every wrong token gets one and the same refusal and a first frame that is not a
    good hello gets a protocol error, each followed by the connection closing."""
    token = _token(daemon)
    wrong = [
        token[::-1] if token[::-1] != token else "x" * len(token),  # same length
        "",
        token[:-1],
        token + "x",
        token + "\n",
        "é" * len(token),
    ]
    answers = set()
    for bad in wrong:
        conn = raw()
        reply = conn.hello(bad)
        assert isinstance(reply, ErrorReply), reply
        answers.add((reply.code, reply.message, reply.rid))
        assert conn.next() is None  # closed
    assert len(answers) == 1, answers
    [(code, message, _rid)] = answers
    assert code == "auth"
    assert token not in message

    for first in [
        encode(GetStatus(rid=1)),
        encode(WorkerHello(version=PROTOCOL_VERSION, pid=1, types=["exec"])),
        encode(Hello(version=PROTOCOL_VERSION + 1, token=token)),
    ]:
        conn = raw()
        conn.send(first)
        reply = conn.next()
        assert isinstance(reply, ErrorReply) and reply.code == "protocol", reply
        assert conn.next() is None
    _status_works(daemon)


# ---------------------------------------------------------------- another user


def _require_root_and_nobody() -> None:
    if os.geteuid() != 0:
        pytest.skip("running a client as another user needs root")
    try:
        pwd.getpwuid(NOBODY)
    except KeyError:
        pytest.skip(f"no user with uid {NOBODY} on this machine")


_BOOT = (
    "import runpy, site, sys; site.addsitedir(sys.argv[1]); sys.argv = sys.argv[2:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def _as_nobody(argv: list[str], env: dict[str, str], **kwargs: Any) -> Any:
    return subprocess.run(
        argv,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,
    )


def _semctl_for_nobody(env: dict[str, str]) -> list[str]:
    """The command line that runs the real semctl script as uid 65534 (or skip the test).

    The venv's own interpreter comes first. Where uid 65534 may not execute it (a
    pyenv under /root, mode 0700), the system interpreter of the same version runs
    the same script with the venv's site-packages on its path.
    """
    candidates = [[SEMCTL]]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")
    if system is not None:
        purelib = sysconfig.get_paths()["purelib"]
        candidates.append([system, "-I", "-S", "-c", _BOOT, purelib, SEMCTL])
    for argv in candidates:
        try:
            probe = _as_nobody([*argv, "--help"], env)
        except PermissionError:
            continue
        if probe.returncode == 0:
            return argv
    pytest.skip(f"uid {NOBODY} can run neither {SEMCTL} nor a system {version} with the venv")


def _open_to_nobody(daemon: Daemon, short_tmp: Path) -> dict[str, str]:
    """Let uid 65534 reach the socket and read a copy of the token; its semctl environment.

    The directory and socket modes are loosened *after* the supervisor started
    (it refuses to start with a state directory open to others). Without this,
    the kernel refuses the connection (EACCES on connect) before the
    supervisor's own peer-uid check is ever reached, and this test would check
    file modes instead of that check.
    """
    short_tmp.chmod(0o711)
    daemon.home.chmod(0o711)
    daemon.socket.chmod(0o666)
    other = short_tmp / "other"
    other.mkdir(mode=0o755)
    other.chmod(0o755)
    return daemon.env(
        SEMANTICA_HOME=str(other), SEMANTICA_SOCKET=str(daemon.socket), HOME=str(other)
    )


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("semctl: ")
    return lines[0]


def test_another_user_with_the_token_is_refused(daemon: Daemon, short_tmp: Path) -> None:
    """Another local user holding a copy of the token still cannot use the supervisor,
    while root with the same token copy gets the status."""
    _require_root_and_nobody()
    env = _open_to_nobody(daemon, short_tmp)
    token_copy = Path(env["SEMANTICA_HOME"]) / "token"
    shutil.copy(daemon.home / "token", token_copy)
    token_copy.chmod(0o644)
    semctl = _semctl_for_nobody(env)

    result = _as_nobody([*semctl, "status"], env)
    # 4 is the contract; 3 ("lost the connection") also happens, depending on who
    # wins a race: see test_refused_user_gets_exit_4_even_when_refused_first.
    assert result.returncode != 0
    assert result.stdout == ""
    _one_line(result.stderr)
    refusals = [e for e in daemon.events() if e.get("event") == "connection refused: another user"]
    assert [e.get("peer_uid") for e in refusals] == [NOBODY]  # our check refused it, not the kernel

    as_root = daemon.semctl("status", env=env)  # same token copy, same socket
    assert as_root.code == 0, as_root.err


# Listens where a supervisor's socket would be, as another user, and counts the
# bytes it is sent by each client that connects.
_IMPOSTOR = """
import os, socket, sys
path, clients = sys.argv[1], int(sys.argv[2])
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
os.chmod(path, 0o666)
server.listen(clients)
print("ready", flush=True)
for _ in range(clients):
    conn, _ = server.accept()
    conn.settimeout(10)
    got = 0
    try:
        while data := conn.recv(65536):
            got += len(data)
    except TimeoutError:
        got = -1
    print(got, flush=True)
"""


def _python_for_nobody() -> str:
    """An interpreter uid 65534 may run (the venv's may sit under a 0700 /root)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")):
        if candidate is None:
            continue
        try:
            probe = _as_nobody([candidate, "-c", "pass"], {})
        except PermissionError:
            continue
        if probe.returncode == 0:
            return candidate
    pytest.skip(f"uid {NOBODY} can run no Python here")


def test_clients_send_nothing_to_another_users_socket(short_tmp: Path) -> None:
    """Another user listens at the socket path (SEMANTICA_SOCKET in a shared directory):
    semctl, Client and AsyncClient refuse it, naming its uid, and send it not a byte,
    the token least of all."""
    _require_root_and_nobody()
    python = _python_for_nobody()
    home = short_tmp / "home"
    home.mkdir(mode=0o700)
    (home / "token").write_text("the-token\n")
    (home / "token").chmod(0o600)
    shared = short_tmp / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    short_tmp.chmod(0o711)
    path = shared / "semantica.sock"
    impostor = subprocess.Popen(
        [python, "-c", _IMPOSTOR, str(path), "3"],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        env={},
        cwd="/",
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert impostor.stdout is not None
        assert impostor.stdout.readline() == "ready\n"
        env = {**os.environ, "SEMANTICA_HOME": str(home), "SEMANTICA_SOCKET": str(path)}
        result = subprocess.run(
            [SEMCTL, "status"], env=env, capture_output=True, text=True, timeout=20
        )
        assert result.returncode == 4, result.stderr
        assert f"is served by uid {NOBODY}" in _one_line(result.stderr)
        assert result.stdout == ""

        with pytest.raises(AuthError, match=f"uid {NOBODY}"):
            Client(home=home, socket=path).connect()

        async def connect_async() -> None:
            async with AsyncClient(home=home, socket=path):
                pass

        with pytest.raises(AuthError, match=f"uid {NOBODY}"):
            trio.run(connect_async)
        out, _ = impostor.communicate(timeout=30)
    finally:
        impostor.kill()
        impostor.wait()
    assert out.split() == ["0", "0", "0"]  # bytes each client sent it


def _open_for_writing(path: Path, timeout: float) -> Any:
    """``open(path, "w")`` on a FIFO (it blocks until a reader opens it), with a timeout."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"nobody opened {path} for reading within {timeout} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return open(path, "w")  # closed by the caller
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_refused_user_gets_exit_4_even_when_refused_first(daemon: Daemon, short_tmp: Path) -> None:
    """Another user is told it was refused (exit 4, naming its uid) even when the
    refusal arrives before its hello was sent."""
    _require_root_and_nobody()
    env = _open_to_nobody(daemon, short_tmp)
    fifo = Path(env["SEMANTICA_HOME"]) / "token"
    os.mkfifo(fifo)
    fifo.chmod(0o644)
    semctl = _semctl_for_nobody(env)
    token = _token(daemon)
    # semctl connects, then reads the token: here a FIFO, so it waits for us. This
    # puts the race (about half the runs with a plain token file) in its losing order.
    proc = subprocess.Popen(
        [*semctl, "status"],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        env=env,
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with _open_for_writing(fifo, 30) as writer:  # semctl is connected now
            # The supervisor accepted semctl's connection before this one; a whole
            # exchange here means it has long sent its refusal and closed that one.
            conn = RawConn(daemon.socket)
            try:
                assert isinstance(conn.hello(token), HelloOk)
                conn.send(encode(GetStatus(rid=1)))
                assert isinstance(conn.next(), StatusReply)
            finally:
                conn.close()
            writer.write(token + "\n")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 4, err
    assert f"uid {NOBODY}" in _one_line(err)
    assert out == ""


# ---------------------------------------------------------------- control and worker channels

#: Every control request and the semctl command (or Client call) it serves.
CONTROL_VERBS = {
    "hello": "(the first frame of every connection)",
    "enqueue": "semctl enqueue",
    "get": "semctl show",
    "list": "semctl list",
    "wait": "semctl wait",
    "logs": "semctl logs",
    "status": "semctl status",
    "shutdown": "semctl shutdown",
    "cancel": "semctl cancel",
    "retry": "semctl retry",
    "pause": "semctl pause",
    "resume": "semctl resume",
    "limit": "semctl limit",
    "queues": "semctl queues",
    "follow": "semctl tail ID",
    "events": "semctl tail",
    "changes": "semctl web (its live pages)",
    "metrics": "semctl metrics",
    "top": "semctl top",
    "maintenance": "semctl maintenance",
    "schedule_put": "semctl schedule add",
    "schedule_get": "semctl schedule show",
    "schedules": "semctl schedule list",
    "schedule_pause": "semctl schedule pause / resume",
    "schedule_remove": "semctl schedule remove",
    "schedule_run": "semctl schedule run",
    "schedule_apply": "semctl schedule apply",
}


def _tags(union: Any) -> dict[str, type[msgspec.Struct]]:
    return {cls.__struct_config__.tag: cls for cls in typing.get_args(union)}


def test_control_and_worker_messages_do_not_mix(daemon: Daemon, raw: Callable[[], RawConn]) -> None:
    """A control client cannot lease or report jobs: worker messages on the control
    socket get a protocol error, and the connection and the supervisor go on."""
    control = _tags(protocol.ControlRequest)
    worker = _tags(protocol.ToWorker) | _tags(protocol.FromWorker)
    assert set(control) <= set(CONTROL_VERBS), set(control) - set(CONTROL_VERBS)
    assert not set(control.values()) & set(worker.values())
    assert not set(control) & set(worker)
    for name in ("RunJob", "JobFinished", "WorkerHello", "JobLog", "JobProcess", "CancelJob"):
        assert getattr(protocol, name) not in control.values()
    for cls in control.values():
        assert "lease" not in cls.__struct_fields__, cls  # no verb takes or hands out a lease
    # The worker channel has no control verbs either.
    assert not set(_tags(protocol.FromWorker)) & set(CONTROL_VERBS)

    conn = raw()
    assert isinstance(conn.hello(_token(daemon)), HelloOk)
    for msg in [
        WorkerHello(version=PROTOCOL_VERSION, pid=os.getpid(), types=["exec"]),
        JobFinished(lease=1, result=b"{}"),
        protocol.JobLog(lease=1, lines=["forged"]),
        protocol.JobProcess(lease=1, pgid=1),
    ]:
        conn.send(encode(msg))
        reply = conn.next()
        assert isinstance(reply, ErrorReply) and reply.code == "protocol", reply
    conn.send(encode(GetStatus(rid=7)))  # the connection is still in step
    reply = conn.next()
    assert isinstance(reply, StatusReply) and reply.rid == 7
    _status_works(daemon)


def test_supervisor_listens_only_on_a_private_file_socket(daemon: Daemon) -> None:
    """The supervisor is reachable only through its socket file, 0600 in a 0700
    directory: no abstract socket and no TCP port (without --metrics-addr)."""
    assert (daemon.home.stat().st_mode & 0o777) == 0o700
    assert (daemon.socket.stat().st_mode & 0o777) == 0o600
    assert daemon.socket.is_socket()
    for name in ("token", "semantica.db"):
        assert ((daemon.home / name).stat().st_mode & 0o777) == 0o600, name
    for proc in daemon.process_tree():
        assert proc.net_connections(kind="inet") == [], proc
        for conn in proc.net_connections(kind="unix"):
            # Unnamed (socket pairs to the workers) or a path; never an abstract name.
            assert isinstance(conn.laddr, str) and conn.laddr in ("", str(daemon.socket)), conn


# ---------------------------------------------------------------- refusing to start


def _run_semanticad(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "semantica.supervisor", "--workers", "1", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_token_readable_by_others_stops_the_start(daemon: Daemon) -> None:
    """A token file that others can read makes semanticad refuse to start (exit 2),
    naming the chmod that fixes it."""
    assert daemon.stop() == 0
    token = daemon.home / "token"
    token.chmod(0o644)
    result = _run_semanticad(daemon.env())
    assert result.returncode == 2, result.stderr
    assert f"chmod 600 {token}" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert not daemon.socket.exists()


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("token group-readable", "chmod 600"),
        ("token owned by another user", f"belongs to uid {NOBODY}"),
        ("token is a symlink", "is not a regular file"),
        ("state directory owned by another user", f"belongs to uid {NOBODY}"),
    ],
)
def test_state_that_is_not_private_stops_the_start(short_tmp: Path, case: str, needle: str) -> None:
    """semanticad refuses a state directory or token another user owns or can read, or
    a token that is a link, with one line saying why."""
    home = short_tmp / "home"
    home.mkdir(mode=0o700)
    token = home / "token"
    token.write_text("x" * 43 + "\n")
    token.chmod(0o600)
    if "another user" in case and os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    if case == "token group-readable":
        token.chmod(0o640)
    elif case == "token owned by another user":
        os.chown(token, NOBODY, NOBODY)
    elif case == "token is a symlink":
        target = short_tmp / "elsewhere"
        token.rename(target)
        token.symlink_to(target)
    else:
        os.chown(home, NOBODY, NOBODY)
    result = _run_semanticad(Daemon(home=home).env())
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert not (home / "semantica.sock").exists()


def test_metrics_beyond_loopback_need_an_explicit_opt_in(short_tmp: Path) -> None:
    """Metrics on an address beyond loopback are refused (exit 2) unless
    SEMANTICA_METRICS_PUBLIC=1 says so."""
    env = Daemon(home=short_tmp / "home").env()
    result = _run_semanticad(env, "--metrics-addr", "0.0.0.0:9")
    assert result.returncode == 2
    assert "SEMANTICA_METRICS_PUBLIC=1" in result.stderr


def _metrics_daemon(make_daemon: Callable[..., Daemon]) -> int:
    """A supervisor serving metrics on a free loopback port; that port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    make_daemon("--metrics-addr", f"127.0.0.1:{port}")
    return port


def _scrape(port: int, host: str) -> bytes:
    """A raw ``GET /metrics`` with the given Host header; the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"GET /metrics HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
    return response


def test_metrics_answer_only_loopback_host_names(make_daemon: Callable[..., Daemon]) -> None:
    """A request naming another host (a page using DNS rebinding, through a browser)
    gets 403 and no metrics; loopback names, with or without a port, get them."""
    port = _metrics_daemon(make_daemon)
    refused = _scrape(port, f"rebind.example:{port}")
    assert refused.startswith(b"HTTP/1.1 403 "), refused[:80]
    assert b"semantica_" not in refused
    for host in (f"127.0.0.1:{port}", "localhost", f"[::1]:{port}"):
        served = _scrape(port, host)
        assert served.startswith(b"HTTP/1.1 200 "), (host, served[:80])
        assert b"semantica_workers" in served


def test_metrics_connections_are_capped(make_daemon: Callable[..., Daemon]) -> None:
    """Past 16 connections at once, new ones are closed unanswered at once; the
    idle ones are answered when their read times out, and scraping goes on."""
    port = _metrics_daemon(make_daemon)
    conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
    try:
        closed: set[socket.socket] = set()
        deadline = time.monotonic() + METRICS_READ_TIMEOUT / 2  # "at once"
        while len(closed) < 4 and (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([c for c in conns if c not in closed], [], [], remaining)
            for conn in readable:
                assert conn.recv(1024) == b""  # closed without an answer
                closed.add(conn)
        assert len(closed) == 4
        for conn in conns:
            if conn not in closed:
                assert conn.recv(1024).startswith(b"HTTP/1.1 404 ")  # an empty request
    finally:
        for conn in conns:
            conn.close()
    assert b"semantica_workers" in _scrape(port, f"127.0.0.1:{port}")


# ---------------------------------------------------------------- bugs found


def test_job_id_beyond_64_bits_is_no_such_job(daemon: Daemon, raw: Callable[[], RawConn]) -> None:
    """Asking about job 2**63 says there is no such job (exit 5), not "internal error"."""
    conn = raw()
    assert isinstance(conn.hello(_token(daemon)), HelloOk)
    big = 2**64 - 1
    codes = {}
    for msg in [
        GetJob(id=big),
        GetLogs(id=big),
        Wait(ids=[big], timeout=0),
        Cancel(ids=[big]),
        Retry(id=big),
    ]:
        conn.send(encode(msg))
        reply = conn.next()
        assert isinstance(reply, ErrorReply)
        codes[type(msg).__name__] = reply.code
    result = daemon.semctl("show", str(2**63))
    assert (result.code, codes) == (5, dict.fromkeys(codes, "not_found")), (result.err, codes)


def _start_or_exit(daemon: Daemon, cwd: Path | None = None, **env: str) -> int | None:
    """Start ``semanticad`` (the console script); None once it reported READY=1, or
    its exit status if it exited first."""
    notify_path = daemon.home.parent / "notify-security.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    daemon.output = daemon.home.parent / "semanticad-security.log"
    with open(daemon.output, "wb") as out:
        daemon.proc = subprocess.Popen(
            [str(BIN / "semanticad"), "--workers", "1"],
            env=daemon.env(NOTIFY_SOCKET=str(notify_path), SEMANTICA_LOG_FORMAT="json", **env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    exited = os.pidfd_open(daemon.proc.pid)
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(notify, selectors.EVENT_READ)
            sel.register(exited, selectors.EVENT_READ)
            while True:
                events = sel.select(timeout=30)
                assert events, f"semanticad neither started nor exited:\n{daemon.log()}"
                for key, _ in events:
                    if key.fileobj == exited:
                        return daemon.proc.wait()
                    if b"READY=1" in notify.recv(4096):
                        daemon.remember()
                        return None
    finally:
        os.close(exited)
        notify.close()


def _stop_all(daemon: Daemon) -> None:
    if daemon.proc is not None and daemon.proc.poll() is None:
        daemon.stop()
    _gone, alive = psutil.wait_procs(list(daemon.seen.values()), timeout=5)
    for p in alive:
        p.kill()


def test_socket_path_naming_an_existing_file_is_refused(short_tmp: Path) -> None:
    """Pointing SEMANTICA_SOCKET at an existing file makes semanticad refuse to start
    (exit 2) instead of deleting the file."""
    precious = short_tmp / "notes.txt"
    precious.write_text("keep me\n")
    daemon = Daemon(home=short_tmp / "home", workers=1)
    try:
        status = _start_or_exit(daemon, SEMANTICA_SOCKET=str(precious))
        file_kept = precious.is_file() and precious.read_text() == "keep me\n"
    finally:
        _stop_all(daemon)
    assert file_kept
    assert status == 2


def test_workers_ignore_python_files_in_the_working_directory(short_tmp: Path) -> None:
    """Starting semanticad from a directory others can write to (/tmp, an untrusted
    checkout) does not run Python files planted there."""
    shared = short_tmp / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    ran = short_tmp / "planted-module-ran"
    (shared / "msgspec.py").write_text(
        f"open({str(ran)!r}, 'a').write('ran')\nraise ImportError('planted')\n"
    )
    daemon = Daemon(home=short_tmp / "home", workers=1)
    try:
        status = _start_or_exit(daemon, cwd=shared)
    finally:
        _stop_all(daemon)
    assert not ran.exists(), "a worker imported msgspec.py from the working directory"
    assert status is None, daemon.log()


#: A well-framed ``pause`` request whose queue name is not UTF-8.
BAD_UTF8_BODY = b"\x82\xa1t\xa5pause\xa5queue\xa2\xff\xfe"


def test_string_that_is_not_utf8_gets_a_protocol_error(
    daemon: Daemon, raw: Callable[[], RawConn]
) -> None:
    """A frame carrying a string that is not UTF-8 gets a protocol error like any bad
    frame, and an authenticated connection goes on."""
    before_hello = raw()
    before_hello.send(_frame(BAD_UTF8_BODY))
    first = before_hello.next()
    assert isinstance(first, ErrorReply) and first.code == "protocol", first

    conn = raw()
    assert isinstance(conn.hello(_token(daemon)), HelloOk)
    conn.send(_frame(BAD_UTF8_BODY))
    reply = conn.next()
    assert isinstance(reply, ErrorReply) and reply.code == "protocol", reply
    conn.send(encode(GetStatus(rid=5)))
    assert isinstance(conn.next(), StatusReply)
    assert [e for e in daemon.events() if e.get("event") == "connection failed"] == []


_BAD_WORKER_MODULE = """
import os

from semantica import handler
from semantica.protocol import HEADER

BODY = {body!r}


@handler("SEC_BAD_FRAME")
def bad_frame(ctx, payload):
    # A handler is the user's code: it can write to its worker's socket.
    os.write(int(os.environ["SEMANTICA_WORKER_FD"]), HEADER.pack(len(BODY)) + BODY)
    return {{}}
"""


def test_malformed_worker_frame_costs_the_worker_not_the_supervisor(
    make_daemon: Callable[..., Daemon], short_tmp: Path
) -> None:
    """A handler scribbling a malformed frame on its worker socket costs that worker
    and its job, not the supervisor."""
    mods = short_tmp / "mods"
    mods.mkdir()
    body = b"\x83\xa1t\xa5w_log\xa5lease\x01\xa5lines\x91\xa2\xff\xfe"  # JobLog, a bad line
    (mods / "sec_bad_worker.py").write_text(_BAD_WORKER_MODULE.format(body=body))
    daemon = make_daemon(
        "--handlers",
        "semtest_handlers,sec_bad_worker",
        PYTHONPATH=os.pathsep.join([str(mods), str(HERE)]),
    )
    enqueued = daemon.semctl("enqueue", "SEC_BAD_FRAME", "--max-attempts", "1")
    assert enqueued.code == 0, enqueued.err
    waited = daemon.semctl("wait", enqueued.out.strip())
    assert waited.code in (0, 1), waited.err  # the job ended; 3 would mean no supervisor
    # A supervisor on its way down still answers for a second or so (it reaps the
    # other worker first); a job that must run on a worker tells the two apart.
    after = daemon.semctl("enqueue", "NOOP")
    assert after.code == 0, after.err
    assert daemon.semctl("wait", after.out.strip()).code == 0
    _status_works(daemon)


# ---------------------------------------------------------------- fuzzing


class FuzzLink:
    """One authenticated connection, reused while the supervisor keeps it open."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.token = _token(daemon)
        self.conn: RawConn | None = None
        self.reconnects = 0

    def exchange(self, frame: bytes) -> Any:
        """Send one frame; its reply, or None if the supervisor closed the connection."""
        if self.conn is None:
            self.conn = RawConn(self.daemon.socket)
            assert isinstance(self.conn.hello(self.token), HelloOk)
            self.reconnects += 1
        self.conn.send(frame)
        reply = self.conn.next(READ_TIMEOUT)  # TimeoutError: the supervisor hung
        if reply is None:
            self.close()
        return reply

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


#: Requests whose bit-flipped variants cannot shut the supervisor down, start a
#: stream, or wait on a job: no job exists in this test (ids 424242 and up).
FUZZ_BASES = [
    encode(msg)[HEADER.size :]
    for msg in [
        GetStatus(rid=1),
        ListJobs(rid=2, state="QUEUED", queue="default", limit=5),
        GetJob(rid=3, id=424242),
        GetLogs(rid=4, id=424243, lines=10),
        ListQueues(rid=5),
        GetMetrics(rid=6),
        GetTop(rid=7),
        Wait(rid=8, ids=[424244, 424245], timeout=0.0),
        Cancel(rid=9, ids=[424246]),
        Retry(rid=10, id=424247),
        PauseQueue(rid=11, queue="fuzz"),
        ResumeQueue(rid=12, queue="fuzz"),
        LimitQueue(rid=13, queue="fuzz", limit=3),
        Hello(version=PROTOCOL_VERSION, token="not-the-token"),
    ]
]


def _flip(body: bytes, bits: list[int]) -> bytes:
    out = bytearray(body)
    for bit in bits:
        bit %= len(out) * 8
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


fuzz_bodies = st.one_of(
    st.binary(max_size=512),
    st.builds(
        _flip,
        st.sampled_from(FUZZ_BASES),
        st.lists(st.integers(min_value=0, max_value=1 << 16), min_size=1, max_size=6),
    ),
)


def test_fuzzed_frames_get_an_answer_and_never_a_hang(daemon: Daemon) -> None:
    """Random and bit-flipped request frames after a good hello each get a reply or a
    clean close within 3 s, and the supervisor still answers afterwards."""
    link = FuzzLink(daemon)
    seen: dict[str, int] = {}

    @settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(body=fuzz_bodies)
    def one_frame(body: bytes) -> None:
        reply = link.exchange(_frame(body))
        # A decoded reply (the FrameDecoder checked it is a ControlReply) or a close.
        assert reply is None or isinstance(reply, msgspec.Struct)
        kind = "closed" if reply is None else type(reply).__name__
        seen[kind] = seen.get(kind, 0) + 1

    try:
        one_frame()
    finally:
        link.close()
    assert seen.get("ErrorReply", 0) > 0, seen
    _status_works(daemon)
