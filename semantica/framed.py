"""Framed message streams over trio: the one place trio code reads and writes frames.

Used by the supervisor (control and worker channels) and by the worker. The
sync client has its own socket loop over the same :class:`FrameDecoder`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import msgspec
import trio

from semantica.errors import FrameTooLarge, ProtocolError
from semantica.protocol import HEADER, MAX_FRAME, FrameDecoder, encode

_RECEIVE_CHUNK = 65536


class FramedStream:
    """Send and receive whole messages on a trio stream.

    ``receive`` is for one task at a time; ``send`` may be called from several
    tasks (a lock keeps frames whole). ``first_max`` caps the first frame
    received more tightly than the rest (a hello). A cancelled send may leave a
    frame cut short: a caller that must never do so shields its own sends (the
    worker does); the supervisor does not, so that a client that stops reading
    cannot hold it up.

    Raises (from ``receive``):
        trio.EndOfChannel: the peer closed the stream cleanly between frames.
        ProtocolError: a bad, oversized or truncated frame.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        message_type: Any,
        max_frame: int = MAX_FRAME,
        first_max: int | None = None,
    ) -> None:
        self.stream = stream
        self._decoder = FrameDecoder(message_type, max_frame, first_max)
        self._ready: deque[Any] = deque()
        self._error: ProtocolError | None = None
        self._send_lock = trio.Lock()

    async def receive(self) -> Any:
        """The next message."""
        while not self._ready:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            try:
                # Frames already buffered first: good frames may follow a bad one.
                for msg in self._decoder.messages():
                    self._ready.append(msg)
            except ProtocolError as exc:
                # Deliver the good messages before it, in order, then the error.
                self._error = exc
                continue
            if self._ready:
                break
            data = await self.stream.receive_some(_RECEIVE_CHUNK)
            if not data:
                if self._decoder.pending:
                    raise ProtocolError("connection closed in the middle of a frame")
                raise trio.EndOfChannel
            self._decoder.feed(data)
        return self._ready.popleft()

    async def send(self, msg: msgspec.Struct, limit: int | None = None) -> None:
        """Send one message as one frame.

        Raises:
            FrameTooLarge: its body is over ``limit`` bytes (nothing was sent).
        """
        data = encode(msg)
        if limit is not None and len(data) - HEADER.size > limit:
            raise FrameTooLarge(
                f"a request of {len(data) - HEADER.size} bytes is over the {limit}-byte limit"
            )
        await self._write(data)

    async def send_many(self, msgs: Sequence[msgspec.Struct]) -> None:
        """Send several messages, one frame each, in one write."""
        await self._write(b"".join(encode(msg) for msg in msgs))

    async def send_frames(self, data: bytes) -> None:
        """Send frames already encoded (header and body each), in one write."""
        await self._write(data)

    async def _write(self, data: bytes) -> None:
        async with self._send_lock:
            await self.stream.send_all(data)

    async def aclose(self) -> None:
        await self.stream.aclose()
