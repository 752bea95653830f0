"""The TCP proxy the multi-node tests cut nodes off with (tests/tcpproxy.py)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from tcpproxy import TcpProxy


@pytest.fixture
def echo() -> Iterator[int]:
    """An echo server on a loopback port (one thread per connection)."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def proxy(echo: int) -> Iterator[TcpProxy]:
    p = TcpProxy("127.0.0.1", echo)
    yield p
    p.close()


def connect(proxy: TcpProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    sock.settimeout(2)
    return sock


def closed(sock: socket.socket) -> bool:
    """Whether the other end closed (or reset) the connection."""
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True


def test_forwards_both_ways(proxy: TcpProxy) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"hello")
        assert sock.recv(100) == b"hello"


def test_a_cut_answers_nothing_and_closes_nothing(proxy: TcpProxy) -> None:
    with connect(proxy) as old:
        old.sendall(b"a")
        assert old.recv(10) == b"a"
        proxy.cut()
        old.settimeout(0.3)
        old.sendall(b"b")
        with pytest.raises(TimeoutError):  # neither an answer nor a close
            old.recv(10)
        with connect(proxy) as new:  # a new connection is accepted, never answered
            new.settimeout(0.3)
            new.sendall(b"c")
            with pytest.raises(TimeoutError):
                new.recv(10)
        proxy.heal()
        old.settimeout(2)
        assert closed(old)  # the connection held through the cut is gone
    with connect(proxy) as again:
        again.sendall(b"d")
        assert again.recv(10) == b"d"


def test_a_reset_closes_connections_and_lets_new_ones_through(proxy: TcpProxy) -> None:
    with connect(proxy) as old:
        old.sendall(b"a")
        assert old.recv(10) == b"a"
        proxy.reset()
        assert closed(old)
    with connect(proxy) as new:
        new.sendall(b"b")
        assert new.recv(10) == b"b"
