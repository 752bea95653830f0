"""A client and a supervisor of an older Semantica: a job that waits for others is refused
by the client, since the older supervisor would drop ``after`` (a field it does not know)
and run the job at once. A supervisor tells what it can do in its hello (``features``)."""

from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from semantica.control.async_client import AsyncClient
from semantica.control.client import Client
from semantica.errors import BadInput
from semantica.framed import FrameDecoder
from semantica.protocol import (
    FEATURES,
    PROTOCOL_VERSION,
    ControlRequest,
    Enqueue,
    ErrorReply,
    Hello,
    HelloOk,
    encode,
)


class OldSupervisor:
    """Answers hellos as a supervisor that names no features, and every request with a
    bad_input error saying "reached the supervisor"; keeps what it was sent."""

    def __init__(self, path: Path, features: list[str]) -> None:
        self.received: list[Any] = []
        self.features = features
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        decoder = FrameDecoder(ControlRequest, 1 << 20)
        with conn:
            while data := conn.recv(65536):
                decoder.feed(data)
                for msg in decoder.messages():
                    self.received.append(msg)
                    if isinstance(msg, Hello):
                        ok = HelloOk(
                            version=PROTOCOL_VERSION,
                            server_version="0.0.9",
                            pid=4242,
                            features=self.features,
                        )
                        conn.sendall(encode(ok))
                    else:
                        reply = ErrorReply(code="bad_input", message="reached", rid=msg.rid)
                        conn.sendall(encode(reply))

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def place() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sem-", dir="/tmp") as name:  # a short socket path
        yield Path(name)


@pytest.mark.parametrize(
    "options", [{"after": [1]}, {"after_end": [1]}], ids=["after", "after_end"]
)
def test_a_job_that_waits_is_not_sent_to_a_supervisor_that_cannot_wait(
    place: Path, options: dict[str, Any]
) -> None:
    old = OldSupervisor(place / "s.sock", features=[])
    try:
        with Client(socket=place / "s.sock", token="t") as client:
            with pytest.raises(BadInput, match=r"supervisor \(pid 4242\) runs an older"):
                client.enqueue("T", **options)
            with pytest.raises(BadInput, match="older"):
                client.enqueue_many([{"type": "T", "ref": "a"}, {"type": "T", "after": ["a"]}])
            with pytest.raises(BadInput, match=r"^reached$"):  # a job that waits for nothing
                client.enqueue("T")
    finally:
        old.close()
    assert sum(isinstance(msg, Enqueue) for msg in old.received) == 1


async def test_the_async_client_checks_too(place: Path) -> None:
    old = OldSupervisor(place / "s.sock", features=[])
    try:
        async with AsyncClient(socket=place / "s.sock", token="t") as client:
            with pytest.raises(BadInput, match="older"):
                await client.enqueue("T", after=[1])
            with pytest.raises(BadInput, match=r"^reached$"):
                await client.enqueue("T")
    finally:
        old.close()
    assert sum(isinstance(msg, Enqueue) for msg in old.received) == 1


def test_a_supervisor_that_can_wait_gets_the_job(place: Path) -> None:
    new = OldSupervisor(place / "s.sock", features=list(FEATURES))
    try:
        with (
            Client(socket=place / "s.sock", token="t") as client,
            pytest.raises(BadInput, match=r"^reached$"),
        ):
            client.enqueue("T", after=[1])
    finally:
        new.close()
