"""``semctl web`` attacked over plain HTTP: what a local user or a web page might try.

Each test is an attack that once worked (or might have), and what the view does now.
A real supervisor, a real ``semctl web``, raw sockets where a polite client would not do.
"""

from __future__ import annotations

import socket

import psutil
from harness import Daemon
from webkit import WebView


def _raw(port: int, head: bytes, body_chunks: list[bytes] | None = None) -> bytes:
    """Send a raw request (head, then each chunk of body) and read the reply's head."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks or []:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the whole body was sent: the reply is waiting
        return sock.recv(4096)


def test_a_huge_login_form_is_refused_unread(web: WebView, daemon: Daemon) -> None:
    """Anyone who can connect may post the login form: a body of hundreds of megabytes
    once sat whole in the view's memory (the form parser keeps up to 1000 fields of
    1 MB each). It is refused now, by its Content-Length or as it streams in."""
    assert web.proc is not None
    view = psutil.Process(web.proc.pid)
    before = view.memory_info().rss
    field = b"a=" + b"A" * 1_000_000 + b"&"
    count = 100
    head = (
        f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(field) * count}\r\n\r\n"
    ).encode()
    reply = _raw(web.port, head, [field] * count)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    chunked = (
        f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = f"{len(field):x}\r\n".encode() + field + b"\r\n"
    reply = _raw(web.port, chunked, [chunk] * count)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert view.memory_info().rss - before < 50_000_000
    # A logged-in user's forms may be larger (a payload), up to the cap.
    user = web.session()
    body = b"type=x&payload=" + b"b" * 5_000_000
    cookie = "; ".join(f"{k}={v}" for k, v in user.cookies.items())
    head = (
        f"POST /enqueue HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\nCookie: {cookie}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    assert _raw(web.port, head, [body]).startswith(b"HTTP/1.1 413")
    assert user.get("/").status == 200
