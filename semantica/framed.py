"""Framed message streams over trio: the one place trio code reads and writes frames.

Used by the supervisor (control and worker channels) and by the worker. The
sync client has its own socket loop over the same :class:`FrameDecoder`.

:meth:`FramedStream.send_frames` writes at once when the socket takes the
whole write, with no pass through trio's scheduler: a reply costs one
``write`` and no task switch (trio's ``send_all`` yields after every send).
It still raises ``Cancelled`` if its caller is cancelled, and only waits
(through trio) when the socket's buffer is full. :meth:`FramedStream.send_now`
does the same from code that cannot wait (a callback on the event loop): what
the socket does not take at once is kept and goes out before any later frame.
"""

from __future__ import annotations

import errno
import os
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
        #: The rest of a write :meth:`send_now` began; written before anything else.
        self._tail: memoryview | None = None

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
            data = await self._receive_some()
            if not data:
                if self._decoder.pending:
                    raise ProtocolError("connection closed in the middle of a frame")
                raise trio.EndOfChannel
            self._decoder.feed(data)
        return self._ready.popleft()

    async def _receive_some(self) -> bytes | bytearray:
        """The next bytes; b"" at EOF.

        On a socket, this waits until it is readable and then reads, rather than try a
        read first as trio does: the frames already here were taken, so nearly always
        nothing more is (a client waits for its reply), and the try would cost a
        failed read and its exception per request.
        """
        fd = self._fd
        if fd is None:
            return await self.stream.receive_some(_RECEIVE_CHUNK)
        while True:
            try:
                await trio.lowlevel.wait_readable(fd)
                return os.read(fd, _RECEIVE_CHUNK)
            except BlockingIOError:
                continue  # woken, but another reader was first: wait again
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    raise trio.ClosedResourceError("this socket was already closed") from None
                raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc

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

    @property
    def buffered(self) -> bool:
        """Whether a whole message (or an error) is already here, to be received with no wait."""
        return bool(self._ready) or self._error is not None or self._decoder.complete

    async def send_frames(self, data: bytes) -> None:
        """Send frames already encoded (header and body each), in one write.

        Written at once when the lock is free and the socket takes it all, without
        yielding to the scheduler (see the module docstring); otherwise as ``send``.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        fd = self._fd
        lock = self._send_lock
        if fd is None or lock.locked() or self._tail is not None:
            await self._write(data)
            return
        lock.acquire_nowait()  # no other task runs before it is released: frames stay whole
        try:
            sent = _write_some(fd, data)
            if sent < len(data):
                await self.stream.send_all(memoryview(data)[sent:])
        finally:
            lock.release()

    def send_now(self, data: bytes) -> bool:
        """Write frames already encoded at once, from code that cannot wait; whether it did.

        False (nothing written) when another write is under way, or this is not a
        socket: then send them as usual. True: they are written, or their rest, if
        the socket did not take it all now, is kept and written before any later
        frame (by the next send, or :meth:`flush`), so frames stay whole.

        Raises:
            trio.BrokenResourceError: the peer is gone (nothing kept).
            trio.ClosedResourceError: the socket was closed.
        """
        fd = self._fd
        if fd is None or self._send_lock.locked() or self._tail is not None:
            return False
        sent = _write_some(fd, data)
        if sent < len(data):
            self._tail = memoryview(data)[sent:]
        return True

    async def flush(self) -> None:
        """Write what :meth:`send_now` left to write, if anything."""
        if self._tail is not None:
            async with self._send_lock:
                await self._write_tail()

    async def _write_tail(self) -> None:
        """The rest of a :meth:`send_now` write, before anything else (the lock held)."""
        tail, self._tail = self._tail, None
        if tail is not None:
            await self.stream.send_all(tail)

    @property
    def _fd(self) -> int | None:
        """The socket's descriptor, for a write without trio; None for other streams."""
        if not isinstance(self.stream, trio.SocketStream):
            return None
        fd = self.stream.socket.fileno()
        return None if fd < 0 else fd

    async def _write(self, data: bytes) -> None:
        async with self._send_lock:
            await self._write_tail()
            await self.stream.send_all(data)

    async def aclose(self) -> None:
        await self.stream.aclose()


def _write_some(fd: int, data: bytes) -> int:
    """Write what the (non-blocking) socket takes now; the bytes written (0 if full).

    Raises the stream errors trio's ``send_all`` would: ``BrokenResourceError``
    when the peer is gone, ``ClosedResourceError`` for a closed descriptor.
    """
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0
    except OSError as exc:
        if exc.errno == errno.EBADF:
            raise trio.ClosedResourceError("this socket was already closed") from None
        raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
