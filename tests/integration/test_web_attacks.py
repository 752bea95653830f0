"""``semctl web`` attacked over plain HTTP: what a local user or a web page might try.

Each test is an attack that once worked (or might have), and what the view does now.
A real supervisor, a real ``semctl web``, raw sockets where a polite client would not do.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading

import pytest
from harness import SEMCTL, Daemon
from webkit import WebView, as_nobody


def _raw(port: int, head: bytes, body_chunks: list[bytes] | None = None) -> bytes:
    """Send a raw request (head, then each chunk of body, from a thread, so the reply is
    read even when the server stops reading the body) and read the reply's head."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)

        def send_body() -> None:
            try:
                for chunk in body_chunks or []:
                    sock.sendall(chunk)
            except OSError:
                pass  # refused before the whole body was sent: the reply is waiting

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        reply = sock.recv(4096)
        sock.shutdown(socket.SHUT_RDWR)
    sender.join(10)
    return reply


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_a_huge_form_is_refused_unread(web: WebView) -> None:
    """Anyone who can connect may post the login form: a body of hundreds of megabytes
    once sat whole in the view's memory (the form parser keeps up to 1000 fields of
    1 MB each; 300 MB took the view from 45 MB to 340 MB). It is refused now, by its
    Content-Length before a byte of it is read, or as it streams in."""
    form = f"Host: 127.0.0.1:{web.port}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    head = f"POST /login HTTP/1.1\r\n{form}Content-Length: 300000000\r\n\r\n"
    assert _raw(web.port, head.encode()).startswith(b"HTTP/1.1 413")
    chunked = f"POST /login HTTP/1.1\r\n{form}Transfer-Encoding: chunked\r\n\r\n"
    reply = _raw(web.port, chunked.encode(), [_chunk(b"token=" + b"A" * 20_000)])
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    # A logged-in user's forms may be larger (an enqueued job's payload), up to 4 MiB.
    user = web.session()
    cookie = "; ".join(f"{k}={v}" for k, v in user.cookies.items())
    head = f"POST /enqueue HTTP/1.1\r\n{form}Cookie: {cookie}\r\nTransfer-Encoding: chunked\r\n\r\n"
    # (starlette refuses a field over 1 MB itself: many fields, each under it)
    fields = [_chunk(b"f=" + b"b" * 900_000 + b"&")] * 5
    reply = _raw(web.port, head.encode(), fields)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert user.get("/").status == 200


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_another_user_of_the_machine_is_refused_whatever_it_holds(web: WebView) -> None:
    """Cookies for 127.0.0.1 go to every port of 127.0.0.1, so a page another local user
    serves receives the session cookie; ``--open`` shows the login URL to ``ps``. Neither
    logs that user in: the view answers only its own user on a loopback address."""
    login = web.url.removeprefix(f"http://127.0.0.1:{web.port}")
    assert as_nobody(web.port, login) == 403
    user = web.session()  # the code was not spent by the refused request
    cookie = "; ".join(f"{k}={v}" for k, v in user.cookies.items())
    assert as_nobody(web.port, "/jobs", cookie) == 403
    assert as_nobody(web.port, "/static/app.js") == 403
    assert user.get("/jobs").status == 200


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_another_user_is_refused_on_every_address(daemon: Daemon) -> None:
    """Listening on every address (with its warning) is for other machines: a local user
    who connects by 127.0.0.1 is still another user of this machine."""
    view = WebView(daemon)
    view.start("--addr", "0.0.0.0:0")
    try:
        assert "WARNING" in view.stderr()
        login = view.url.removeprefix(f"http://127.0.0.1:{view.port}")
        assert as_nobody(view.port, login) == 403
        assert view.session().get("/jobs").status == 200
    finally:
        assert view.stop() == 0, view.stderr()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_a_port_held_by_another_user_is_named_as_such(daemon: Daemon) -> None:
    """Another user may listen on the view's usual port first and serve a look-alike
    login page that asks for the token: semctl web, refused the port, says whose it is."""
    got_port, said_port = os.pipe()
    told_stop, stop = os.pipe()
    pid = os.fork()
    if pid == 0:  # another user holds a port until told to stop
        try:
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket() as squatter:
                squatter.bind(("127.0.0.1", 0))
                squatter.listen()
                os.write(said_port, str(squatter.getsockname()[1]).encode())
                os.read(told_stop, 1)
        finally:
            os._exit(0)
    try:
        port = int(os.read(got_port, 10))
        run = subprocess.run(
            [SEMCTL, "web", "--addr", f"127.0.0.1:{port}"],
            env=daemon.env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert run.returncode == 2, run
        assert "another user of this machine, uid 65534" in run.stderr
        assert "do not log in to it" in run.stderr
    finally:
        os.write(stop, b"x")
        os.waitpid(pid, 0)
        for fd in (got_port, said_port, told_stop, stop):
            os.close(fd)
