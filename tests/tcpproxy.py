"""A TCP proxy a test controls, to cut one client off a server as a network would.

``TcpProxy(target_host, target_port)`` listens on a free loopback port and
forwards each connection to the target, in a thread of its own. The test then
says what the network does:

* ``cut()``: a partition. Nothing goes through in either direction any more, but
  no connection is closed: bytes sent are held (and dropped at ``heal``), new
  connections are accepted and never answered. A client learns of it only from
  its own timeouts, as behind a switch that lost power.
* ``reset()``: every connection is closed at once (a server or NAT restart);
  new ones go through as before.
* ``heal()``: the partition is over; the connections held open during ``cut``
  are closed (their state is lost, as TCP's would be after a long cut), new ones
  go through.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_CHUNK = 65536


class TcpProxy:
    """Forward ``127.0.0.1:port`` to ``target``; see the module docstring."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._held: list[socket.socket] = []  # accepted during a cut, never answered
        self._lock = threading.Lock()
        self._cut = False
        self._closing = False
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="tcpproxy", daemon=True)
        self._thread.start()

    # What the test says -------------------------------------------------------

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            for sock in self._peers:  # held open, never read nor written again
                self._selector.unregister(sock)
        self._poke()

    def heal(self) -> None:
        with self._lock:
            self._cut = False
            self._close_all()
        self._poke()

    def reset(self) -> None:
        with self._lock:
            self._close_all()
        self._poke()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._close_all()
        self._poke()
        self._thread.join(5)
        self._listener.close()
        self._wakeup_r.close()
        self._wakeup_w.close()

    @property
    def connections(self) -> int:
        """How many client connections are open through the proxy now."""
        with self._lock:
            return len(self._peers) // 2

    # The thread ---------------------------------------------------------------

    def _poke(self) -> None:
        try:
            self._wakeup_w.send(b"x")
        except OSError:
            pass

    def _close_all(self) -> None:
        for sock in list(self._peers) + self._held:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()
        self._peers.clear()
        self._held.clear()

    def _run(self) -> None:
        while True:
            events = self._selector.select(timeout=0.5)
            with self._lock:
                if self._closing:
                    return
                for key, _ in events:
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._wakeup_r:
                        with contextlib.suppress(BlockingIOError):
                            sock.recv(4096)
                    elif sock is self._listener:
                        self._accept()
                    elif sock in self._peers:
                        self._forward(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        if self._cut:
            self._held.append(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, None)
        self._peers[client], self._peers[upstream] = upstream, client

    def _forward(self, sock: socket.socket) -> None:
        other = self._peers[sock]
        try:
            data = sock.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock, other)
            return
        try:
            other.setblocking(True)
            other.sendall(data)
            other.setblocking(False)
        except OSError:
            self._drop(sock, other)

    def _drop(self, *socks: socket.socket) -> None:
        for sock in socks:
            self._peers.pop(sock, None)
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()


@contextmanager
def proxy_to(host: str, port: int) -> Iterator[TcpProxy]:
    """A proxy for the duration of a ``with`` block."""
    proxy = TcpProxy(host, port)
    try:
        yield proxy
    finally:
        proxy.close()
