"""One control connection shared by many concurrent calls, on anyio (trio or asyncio).

:class:`AsyncClient` keeps one :class:`Connection` and sends every call over it.
The contract:

* Any number of tasks may :meth:`~Connection.request` at once. Each request goes
  out as one whole frame with its own ``rid``; each caller gets the reply with
  that ``rid``, in whatever order replies come (the supervisor answers a
  ``wait`` when its jobs end and other requests at once). A call waiting for its
  reply never holds up another's.
* No task runs in the background, so the client needs no task group of its own
  and works the same in any event loop. Whichever caller is waiting reads the
  socket for everyone (it is "the reader"): it hands each reply to its caller
  and, once its own has come, passes the reading on: to a caller still waiting
  for its reply, else to one waiting for the socket to take its request (see
  :meth:`~Connection._wait_writable`). Whenever a reader leaves and a call is
  left, one of them reads next.
* Cancelling a call at any point harms no other. A reply whose caller has gone
  is dropped. Reads lose nothing to a cancel: bytes leave the socket only in a
  step with no await after it. Writes are plain ``send`` calls on a
  non-blocking socket, so we always know how much of a frame went out, whatever
  cut it short (a trio cancel scope or asyncio's ``Task.cancel``): a request of
  which no byte went out is dropped, as if never made; the rest of one cut
  short part way is sent, before anything else, by the next request, so the
  supervisor only ever sees whole frames.
* A connection that is lost, or a reply that cannot be read, ends the
  connection: every call waiting on it raises, and the client opens a new
  connection on its next call.

Streams (``follow``, ``events``) use a connection of their own, with
:meth:`~Connection.send` and :meth:`~Connection.receive` from one task.
"""

from __future__ import annotations

import copy
import itertools
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import msgspec
import sniffio

from semantica.config import Paths
from semantica.control.client import connect_error, read_token
from semantica.errors import (
    BadInput,
    ProtocolError,
    SemanticaError,
    Unreachable,
    error_from_code,
)
from semantica.peercred import check_server
from semantica.protocol import (
    HEADER,
    MAX_FRAME,
    PROTOCOL_VERSION,
    ControlReply,
    ErrorReply,
    FrameDecoder,
    Hello,
    HelloOk,
    encode,
)

# Replies come from our own supervisor and may be large (a long job list).
_REPLY_CAP = 256 * MAX_FRAME
_RECEIVE_CHUNK = 65536
_NOTHING = memoryview(b"")
# What a lost connection raises from the socket calls and anyio's waits.
_LOST = (OSError, anyio.ClosedResourceError, anyio.BrokenResourceError)


class _Event(Protocol):
    """What a call uses of an event: trio's, or anyio's on another loop."""

    def set(self) -> Any: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> Any: ...


def _loop_kit() -> tuple[Callable[[], _Event], Callable[[], Awaitable[None]]]:
    """The running loop's event type and cancel check, looked up once per connection.

    ``anyio.Event()`` looks for the running loop at every call (some 3 µs) and wraps
    that loop's own event, and anyio's checks go through the same look-up: a
    pipelining client makes one event and one check per call. Under trio, trio's own
    are used (their semantics are anyio's there); under another loop, anyio's class
    for it.
    """
    if sniffio.current_async_library() == "trio":
        import trio  # (loaded already: it runs this)

        return trio.Event, trio.lowlevel.checkpoint_if_cancelled
    return type(anyio.Event()), anyio.lowlevel.checkpoint_if_cancelled


class _Call:
    """A request waiting for its reply."""

    __slots__ = ("reply", "waiting", "wake")

    def __init__(self, event: Callable[[], _Event]) -> None:
        #: The reply, or the SemanticaError that ended the call; None until then.
        self.reply: Any = None
        #: Set when the reply comes, or when the reading is handed to this call.
        self.wake = event()
        #: The call is sent and waits on ``wake`` (it is not sending, nor the reader).
        self.waiting = False


class Connection:
    """An authenticated control connection (see the module docstring for the contract)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._decoder = FrameDecoder(ControlReply, _REPLY_CAP)
        self._send_lock = anyio.Lock()
        self._unsent = _NOTHING  # the rest of a frame whose sender was cancelled part way
        self._rids = itertools.count(1)
        self._calls: dict[int, _Call] = {}  # by rid: sent (or being sent), no reply yet
        self._reader: _Call | None = None
        # The wait of a sender that waits for the socket while another call reads;
        # cancelled when the reader leaves, so that the sender reads instead.
        self._send_wait: anyio.CancelScope | None = None
        self._error: SemanticaError | None = None  # set once the connection has ended
        self._event, self._checkpoint_if_cancelled = _loop_kit()
        self.max_request = MAX_FRAME
        self.server_version = ""
        self.server_pid = 0
        self.server_features: list[str] = []  # (HelloOk.features)

    @classmethod
    async def open(cls, paths: Paths, token: str | None) -> Connection:
        """Connect to the supervisor and authenticate.

        Raises:
            Unreachable: nothing listens at the socket, or it hung up.
            AuthError: the socket is another user's, or the token was refused.
        """
        conn = cls(await _connect(paths))
        try:
            check_server(conn._sock, paths.socket)
            hello = Hello(
                version=PROTOCOL_VERSION,
                token=token if token is not None else read_token(paths),
                client="python-async",
            )
            try:
                await conn._send(encode(hello))
            except _LOST:
                pass  # refused before our hello was read (another user): the reason follows
            try:
                reply = await conn._receive_message()
            except anyio.EndOfStream:
                raise Unreachable("the supervisor closed the connection") from None
            except _LOST as exc:
                raise Unreachable(
                    f"lost the connection to the supervisor: {_describe(exc)}"
                ) from None
        except BaseException:
            conn.close_now()
            raise
        if isinstance(reply, HelloOk):
            conn.max_request = reply.max_frame
            conn.server_version = reply.server_version
            conn.server_pid, conn.server_features = reply.pid, reply.features
            return conn
        conn.close_now()
        if isinstance(reply, ErrorReply):
            raise error_from_code(reply.code, reply.message)
        raise ProtocolError(f"unexpected answer to hello: {type(reply).__name__}")

    @property
    def usable(self) -> bool:
        """False once the connection has ended (lost, unreadable or closed)."""
        return self._error is None

    # ------------------------------------------------------------------ calls

    async def request(self, msg: Any) -> Any:
        """Send ``msg`` with a fresh ``rid`` and return its reply (an ErrorReply as it is).

        Raises:
            BadInput: the request cannot be encoded or is over the frame cap (nothing sent).
            Unreachable: the connection was lost or closed.
            ProtocolError: a reply could not be read (the connection is ended).
        """
        if self._error is not None:
            raise copy.copy(self._error)
        rid = msg.rid = next(self._rids)
        data = self._encode(msg)
        call = self._calls[rid] = _Call(self._event)
        try:
            try:
                await self._send(data)
            except _LOST as exc:
                self._end(Unreachable(f"lost the connection to the supervisor: {_describe(exc)}"))
            while call.reply is None:
                if self._reader is None:
                    self._reader = call
                    try:
                        await self._read_for(call)
                    finally:
                        self._reader = None
                else:
                    if call.wake.is_set():  # (handed the reading before): a fresh one
                        call.wake = self._event()
                    call.waiting = True
                    try:
                        await call.wake.wait()
                    finally:
                        call.waiting = False
        finally:
            self._calls.pop(rid, None)
            if self._reader is None:
                self._hand_on_reading()
        if isinstance(call.reply, SemanticaError):
            raise copy.copy(call.reply)  # one error, raised in each task: a copy each
        return call.reply

    def _encode(self, msg: msgspec.Struct) -> bytes:
        try:
            data = encode(msg)
        except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError) as exc:
            # msgpack carries neither an int past 64 bits (OverflowError) nor a str
            # with a lone surrogate (UnicodeEncodeError, a ValueError).
            raise BadInput(f"cannot send this request: {exc}") from None
        size = len(data) - HEADER.size
        if size > self.max_request:
            raise BadInput(
                f"a request of {size} bytes is over the {self.max_request}-byte limit; "
                "send fewer jobs per batch or a smaller payload"
            )
        return data

    async def _read_for(self, mine: _Call) -> None:
        """Read replies, handing each to its call, until ``mine`` has its own."""
        while mine.reply is None:
            try:
                msg = await self._receive_message()
            except ProtocolError as exc:
                self._end(exc)  # framing is lost: no later reply can be trusted
                return
            except (*_LOST, anyio.EndOfStream):
                self._end(Unreachable("the supervisor closed the connection"))
                return
            call = self._calls.pop(getattr(msg, "rid", 0), None)
            if call is not None:
                call.reply = msg
                call.wake.set()
            elif isinstance(msg, ErrorReply) and msg.rid == 0:
                # The supervisor could not read a frame of ours, so cannot say whose.
                self._fail_all(error_from_code(msg.code, msg.message))
            # else: the reply of a call cancelled meanwhile

    def _hand_on_reading(self) -> None:
        """The reader has left: wake a call waiting for its reply, to read in turn.

        With none, stop the wait of a sender waiting for the socket, which then
        reads while it waits: its request may only go out once someone reads
        (see :meth:`_wait_writable`). A call still waiting for the send lock needs
        nothing: it looks for a reader itself once it has the lock.
        """
        for call in self._calls.values():
            if call.waiting:
                call.wake.set()
                return
        if self._send_wait is not None:
            self._send_wait.cancel()

    def _fail_all(self, error: SemanticaError) -> None:
        calls = list(self._calls.values())
        self._calls.clear()
        for call in calls:
            call.reply = error
            call.wake.set()

    def _end(self, error: SemanticaError) -> None:
        """End the connection: every call waiting on it gets ``error``."""
        if self._error is None:
            self._error = error
            self._close_socket()
        self._fail_all(self._error)

    # ------------------------------------------------------------------ streams

    async def send(self, msg: msgspec.Struct) -> None:
        """Send one request without waiting for a reply (a stream's request).

        Raises:
            BadInput: it cannot be encoded or is over the frame cap.
            Unreachable: the connection was lost.
        """
        try:
            await self._send(self._encode(msg))
        except _LOST as exc:
            raise Unreachable(f"lost the connection to the supervisor: {_describe(exc)}") from None

    async def receive(self) -> Any:
        """The next message pushed on a stream's connection; None once it has ended.

        For one task at a time; not with :meth:`request` on the same connection.
        """
        try:
            return await self._receive_message()
        except (*_LOST, anyio.EndOfStream):
            return None

    # ------------------------------------------------------------------ the socket

    async def _send(self, data: bytes) -> None:
        """Send one frame whole, after the rest of any frame cut short before it.

        When no send is under way, the frame is written at once, with no await: the
        lock's checkpoint would cost every request of a pipelining client a pass of
        the scheduler of its own, and the supervisor a read per request. The tasks
        woken by one read of replies then all send in the same pass, and the
        supervisor reads their requests together (and writes them in one insert).
        """
        if not self._unsent and not self._send_lock.locked():
            # A caller cancelled already sends nothing (a check, not a pass of the loop).
            await self._checkpoint_if_cancelled()
            try:
                sent = self._sock.send(data)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            if sent:
                # Part of it went out: the rest is a frame cut short, sent before
                # anything else (by the next request, if this one is cancelled).
                self._unsent = memoryview(data)[sent:]
                async with self._send_lock:
                    await self._flush()
                return
        async with self._send_lock:
            await self._flush()
            self._unsent = memoryview(data)
            try:
                await self._flush()
            except BaseException:
                if self._unsent.nbytes == len(data):
                    self._unsent = _NOTHING  # not a byte went out: as if never sent
                raise

    async def _flush(self) -> None:
        while self._unsent:
            try:
                sent = self._sock.send(self._unsent)
            except BlockingIOError:
                await self._wait_writable()
            else:
                self._unsent = self._unsent[sent:]

    async def _wait_writable(self) -> None:
        """Wait until the socket takes more, reading replies meanwhile if no call does.

        The supervisor stops reading our requests while its replies to us pile up
        unread (replies to cancelled calls, say). A sender that only waited would
        then wait forever, so it reads and hands out replies while it waits.
        While another call reads, it only waits, but stops waiting if that reader
        leaves (:meth:`_hand_on_reading`) and looks again: with nobody else to
        read, it does. (Not on a stream's connection, which has no calls: what it
        pushes is for its reader alone.)
        """
        if not self._calls:
            await anyio.wait_writable(self._sock)
            return
        while self._reader is not None:
            with anyio.CancelScope() as scope:
                self._send_wait = scope
                try:
                    await anyio.wait_writable(self._sock)
                finally:
                    self._send_wait = None
            if not scope.cancelled_caught:
                return
        self._reader = placeholder = _Call(self._event)  # never gets a reply: reads until cancelled
        closed = False
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._read_for, placeholder)
                try:
                    await anyio.wait_writable(self._sock)
                except _LOST:
                    closed = True  # raised below, not in an exception group
                group.cancel_scope.cancel()
        finally:
            self._reader = None
            self._hand_on_reading()
        if closed:
            raise anyio.ClosedResourceError

    async def _receive_message(self) -> Any:
        """The next whole message (a bad one raises ProtocolError)."""
        while True:
            for msg in self._decoder.messages():
                return msg
            try:
                data = self._sock.recv(_RECEIVE_CHUNK)
            except BlockingIOError:
                await anyio.wait_readable(self._sock)
                continue
            if not data:
                if self._decoder.pending:
                    raise ProtocolError("connection closed in the middle of a frame")
                raise anyio.EndOfStream
            self._decoder.feed(data)

    async def aclose(self) -> None:
        """Close the connection; calls waiting on it raise Unreachable."""
        self._end(Unreachable("the client was closed"))
        await anyio.lowlevel.checkpoint()

    def _close_socket(self) -> None:
        if self._sock.fileno() != -1:
            anyio.notify_closing(self._sock)  # wakes a task waiting on it, which then raises
            self._sock.close()

    def close_now(self) -> None:
        """Close without an event loop (garbage collection): nothing may wait on it."""
        if self._error is None:
            self._error = Unreachable("the client was closed")
        self._sock.close()

    def __del__(self) -> None:
        # A client or stream dropped without closing still gives its socket back.
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()


async def _connect(paths: Paths) -> socket.socket:
    """A non-blocking socket connected to the supervisor's."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        while True:
            try:
                sock.connect(str(paths.socket))
                return sock
            except BlockingIOError:
                # The listen backlog is full (Linux): the supervisor is busy accepting.
                await anyio.sleep(0.01)
    except OSError as exc:
        sock.close()
        raise connect_error(exc, paths.socket) from None
    except BaseException:
        sock.close()
        raise


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
