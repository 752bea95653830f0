"""The trio client: the same verbs as :class:`~semantica.control.client.Client`, as coroutines.

::

    async with AsyncClient() as c:
        jobs = await c.enqueue_many([{"type": "INDEX_FILE", "payload": {"path": p}} ...])
        async with trio.open_nursery() as n:       # requests in flight together
            for p in paths:
                n.start_soon(c.enqueue, "INDEX_FILE", {"path": p})
        async for line in c.follow(job.id):
            print(line)

Requests from several tasks share one connection and are *pipelined*: each
is sent at once, tagged with a request id, and its reply is matched by that
id, so a burst of enqueues does not wait a round trip each. Streams
(``follow``, ``events``) open a connection of their own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import msgspec
import trio

from semantica.config import Paths, locate
from semantica.control.client import (
    CancelOutcomes,
    JobsList,
    QueueInfos,
    SpecList,
    StrList,
    make_spec,
    read_token,
)
from semantica.errors import (
    AuthError,
    BadInput,
    FrameTooLarge,
    ProtocolError,
    SemanticaError,
    Unreachable,
    WaitTimeout,
    error_from_code,
)
from semantica.framed import FramedStream
from semantica.models import TERMINAL_STATES, Job, QueueInfo
from semantica.peercred import check_server
from semantica.protocol import (
    MAX_FRAME,
    PROTOCOL_VERSION,
    Cancel,
    Cancelled,
    ControlReply,
    Enqueue,
    Enqueued,
    ErrorReply,
    Events,
    Follow,
    FollowEnd,
    GetJob,
    GetLogs,
    GetMetrics,
    GetStatus,
    GetTop,
    Hello,
    HelloOk,
    JobEvent,
    JobList,
    JobReply,
    LimitQueue,
    ListJobs,
    ListQueues,
    LogChunk,
    LogLines,
    Maintain,
    MaintenanceReport,
    MetricsReply,
    Ok,
    PauseQueue,
    QueueList,
    QueueReply,
    ResumeQueue,
    Retry,
    Shutdown,
    StatusReply,
    TopReply,
    Wait,
)

R = TypeVar("R")

# Replies come from our own supervisor and may be large (a long job list).
_REPLY_CAP = 256 * MAX_FRAME


class _Connection:
    """One authenticated control connection."""

    def __init__(self, channel: FramedStream, hello: HelloOk) -> None:
        self.channel = channel
        self.max_request = hello.max_frame
        self.server_version = hello.server_version

    @classmethod
    async def open(cls, paths: Paths, token: str | None) -> _Connection:
        try:
            stream = await trio.open_unix_socket(str(paths.socket))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
            raise Unreachable(
                f"no supervisor at {paths.socket} ({exc.strerror or exc}); "
                "start one with `semanticad` (or `make run`), or set SEMANTICA_HOME"
            ) from None
        except PermissionError:
            raise AuthError(f"refused: no permission to use {paths.socket}") from None
        try:
            check_server(stream.socket, paths.socket)  # type: ignore[arg-type]
        except AuthError:
            await stream.aclose()
            raise
        # Sends are shielded: a frame cut in half by a cancelled caller would break the
        # connection for every other caller sharing it.
        channel = FramedStream(stream, ControlReply, _REPLY_CAP, shield_sends=True)
        try:
            hello = Hello(
                version=PROTOCOL_VERSION,
                token=token if token is not None else read_token(paths),
                client="python-trio",
            )
            with contextlib.suppress(trio.BrokenResourceError):
                # Refused before our hello was read (another user): the reason
                # is waiting to be read below.
                await channel.send(hello)
            reply = await channel.receive()
        except (trio.EndOfChannel, trio.BrokenResourceError) as exc:
            await stream.aclose()
            raise Unreachable(f"the supervisor closed the connection: {exc}") from None
        except SemanticaError:
            await stream.aclose()
            raise
        if isinstance(reply, ErrorReply):
            await stream.aclose()
            raise error_from_code(reply.code, reply.message)
        if not isinstance(reply, HelloOk):
            await stream.aclose()
            raise ProtocolError(f"unexpected answer to hello: {type(reply).__name__}")
        return cls(channel, reply)

    async def send(self, msg: msgspec.Struct) -> None:
        try:
            await self.channel.send(msg, limit=self.max_request)
        except FrameTooLarge as exc:
            raise BadInput(
                f"{exc.message}; send fewer jobs per batch or a smaller payload"
            ) from None
        except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError) as exc:
            # msgpack carries neither an int past 64 bits (OverflowError) nor a str
            # with a lone surrogate (UnicodeEncodeError, a ValueError).
            raise BadInput(f"cannot send this request: {exc}") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise Unreachable(f"lost the connection to the supervisor: {exc}") from None


class AsyncClient:
    """A trio client. It connects on first use; ``async with AsyncClient() as c:`` closes it.

    Args:
        home: state directory; default ``SEMANTICA_HOME`` or the XDG default.
        socket: control socket; default ``SEMANTICA_SOCKET`` or ``HOME/semantica.sock``.
        token: the token; default read from ``HOME/token``.

    Pipelining without a background task: every caller sends its request at
    once; then callers take turns (a fair lock) reading the connection, each
    handing the replies it reads to their callers by ``rid`` until its own
    arrives. So nothing runs behind the caller's back, errors reach the caller
    as themselves, and cancelling one call (between frames) harms no other.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        socket: str | os.PathLike[str] | None = None,
        token: str | None = None,
    ) -> None:
        self.paths: Paths = locate(home=home, socket=socket)
        self._token = token
        self._conn: _Connection | None = None
        self._connecting = trio.Lock()
        self._reading = trio.Lock()
        self._rids = itertools.count(1)
        self._pending: dict[int, trio.MemorySendChannel[Any]] = {}
        self.server_version: str | None = None

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Connect and authenticate (done by the first call if not before).

        Raises:
            Unreachable: nothing listens at the socket.
            AuthError: the token or the user was refused.
        """
        async with self._connecting:
            if self._conn is None:
                self._conn = await _Connection.open(self.paths, self._token)
                self.server_version = self._conn.server_version

    async def aclose(self) -> None:
        """Close the connection (a later call reconnects)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with trio.CancelScope(shield=True):
                await conn.channel.aclose()
        self._fail_pending(Unreachable("the client was closed"))

    def _fail_pending(self, error: SemanticaError) -> None:
        for waiter in self._pending.values():
            waiter.send_nowait(error)
        self._pending.clear()

    async def _call(self, msg: Any, kind: type[R]) -> R:
        await self.connect()
        conn = self._conn
        assert conn is not None
        rid = msg.rid = next(self._rids)
        send, receive = trio.open_memory_channel[Any](1)
        self._pending[rid] = send
        try:
            await conn.send(msg)
            reply = await self._reply_for(conn, receive)
        finally:
            self._pending.pop(rid, None)
        if isinstance(reply, SemanticaError):
            raise reply
        if isinstance(reply, ErrorReply):
            raise error_from_code(reply.code, reply.message)
        if not isinstance(reply, kind):
            raise ProtocolError(f"expected {kind.__name__}, got {type(reply).__name__}")
        return reply

    async def _reply_for(self, conn: _Connection, mine: trio.MemoryReceiveChannel[Any]) -> Any:
        """Read the connection in turn with other callers until this call's reply comes."""
        async with self._reading:
            while True:
                try:
                    return mine.receive_nowait()  # handed over by an earlier reader?
                except trio.WouldBlock:
                    pass
                error: SemanticaError
                try:
                    reply = await conn.channel.receive()
                except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
                    self._conn = None
                    error = Unreachable("the supervisor closed the connection")
                    self._fail_pending(error)
                    raise error from None
                rid = getattr(reply, "rid", 0)
                waiter = self._pending.pop(rid, None)
                if waiter is not None:
                    waiter.send_nowait(reply)
                elif rid == 0 and isinstance(reply, ErrorReply):  # a frame it could not read
                    error = error_from_code(reply.code, reply.message)
                    self._fail_pending(error)
                    raise error
                # else: the reply of a call that was cancelled meanwhile

    # ------------------------------------------------------------------ verbs

    async def enqueue(self, type: str, payload: Any = None, **options: Any) -> Job:
        """Add one job; returns it once committed (options as for ``Client.enqueue``)."""
        return (await self._enqueue([make_spec(type, payload, **options)]))[0]

    async def enqueue_many(self, jobs: Iterable[Mapping[str, Any]]) -> JobsList:
        """Add several jobs in one transaction (all or none), each a dict with ``type``."""
        specs = []
        for item in jobs:
            options = dict(item)
            if "type" not in options:
                raise BadInput("every job needs a 'type'")
            specs.append(make_spec(options.pop("type"), options.pop("payload", None), **options))
        return await self._enqueue(specs)

    async def _enqueue(self, specs: SpecList) -> JobsList:
        return (await self._call(Enqueue(jobs=specs), Enqueued)).jobs

    async def get(self, job_id: int) -> Job:
        """One job. Raises NoSuchJob."""
        return (await self._call(GetJob(id=job_id), JobReply)).job

    async def list(
        self,
        state: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        subject: str | None = None,
        limit: int = 50,
    ) -> JobsList:
        """Jobs matching every filter given, newest first."""
        request = ListJobs(state=state, queue=queue, type=type, subject=subject, limit=limit)
        return (await self._call(request, JobList)).jobs

    async def wait_many(
        self,
        job_ids: Iterable[int],
        timeout: float | None = None,  # noqa: ASYNC109  # the supervisor's wait limit, as in Client
    ) -> JobsList:
        """Until every job finished (or ``timeout`` seconds); returns them as they are."""
        return (await self._call(Wait(ids=[*job_ids], timeout=timeout), JobList)).jobs

    async def wait(
        self,
        job_id: int,
        timeout: float | None = None,  # noqa: ASYNC109  # the supervisor's wait limit, as in Client
    ) -> Job:
        """Until the job finished. Raises WaitTimeout, NoSuchJob."""
        job = (await self.wait_many([job_id], timeout))[0]
        if job.state not in TERMINAL_STATES:
            raise WaitTimeout(f"job {job_id} is still {job.state} after {timeout} s")
        return job

    async def logs(self, job_id: int, lines: int | None = None) -> StrList:
        """The last ``lines`` lines of a job's log (all when None)."""
        return (await self._call(GetLogs(id=job_id, lines=lines), LogLines)).lines

    async def status(self) -> StatusReply:
        """Counts by state, workers, database size, uptime and version."""
        return await self._call(GetStatus(), StatusReply)

    async def cancel(self, *job_ids: int) -> CancelOutcomes:
        """Cancel jobs; returns once the running ones have ended."""
        return (await self._call(Cancel(ids=[*job_ids]), Cancelled)).results

    async def retry(self, job_id: int) -> Job:
        """Put a FAILED or CANCELLED job back with a fresh attempt budget."""
        return (await self._call(Retry(id=job_id), JobReply)).job

    async def pause(self, queue: str, create: bool = True) -> QueueInfo:
        """Start no job of ``queue`` until resumed (``create``: as ``Client.pause``)."""
        return (await self._call(PauseQueue(queue=queue, create=create), QueueReply)).queue

    async def resume(self, queue: str) -> QueueInfo:
        """Start jobs of ``queue`` again (BadInput if no job or setting ever named it)."""
        return (await self._call(ResumeQueue(queue=queue), QueueReply)).queue

    async def limit(self, queue: str, limit: int, create: bool = True) -> QueueInfo:
        """Run at most ``limit`` jobs of ``queue`` at once (0: no cap; ``create``: as pause)."""
        msg = LimitQueue(queue=queue, limit=limit, create=create)
        return (await self._call(msg, QueueReply)).queue

    async def queues(self) -> QueueInfos:
        """Every queue with its settings and counts by state."""
        return (await self._call(ListQueues(), QueueList)).queues

    async def top(self) -> TopReply:
        """Workers, queues, throughput, failures and waiting jobs, in one reply."""
        return await self._call(GetTop(), TopReply)

    async def maintenance(self, force_vacuum: bool = False) -> MaintenanceReport:
        """Run maintenance now; returns what it did."""
        return await self._call(Maintain(force_vacuum=force_vacuum), MaintenanceReport)

    async def metrics(self) -> str:
        """The Prometheus text exposition."""
        return (await self._call(GetMetrics(), MetricsReply)).text

    async def shutdown(self, now: bool = False) -> None:
        """Ask the supervisor to drain and exit (``now``: without waiting for running jobs)."""
        await self._call(Shutdown(now=now), Ok)

    def follow(self, job_id: int) -> LogFollower:
        """The job's log lines, those so far then new ones, until the job has finished.

        ``async for line in c.follow(id)`` or, to close it early without
        waiting for garbage collection, ``async with c.follow(id) as lines``.
        """
        return LogFollower(self.paths, self._token, job_id)

    def events(self) -> EventStream:
        """Every job event as it happens (``async for event in c.events()``)."""
        return EventStream(self.paths, self._token)


class _Stream:
    """A streaming request on a connection of its own: an async iterator of what is pushed."""

    def __init__(self, paths: Paths, token: str | None, request: Any) -> None:
        self._paths = paths
        self._token = token
        self._request = request
        self._conn: _Connection | None = None
        self._done = False

    def __aiter__(self) -> _Stream:
        return self

    async def __aenter__(self) -> _Stream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _next_message(self) -> Any:
        """The next pushed message, or None once the stream has ended."""
        if self._done:
            return None
        if self._conn is None:
            self._conn = await _Connection.open(self._paths, self._token)
            await self._conn.send(self._request)
        try:
            reply = await self._conn.channel.receive()
        except (trio.EndOfChannel, trio.BrokenResourceError):
            await self.aclose()
            return None
        if isinstance(reply, ErrorReply):
            await self.aclose()
            raise error_from_code(reply.code, reply.message)
        return reply

    async def aclose(self) -> None:
        """End the stream and its connection."""
        self._done = True
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with trio.CancelScope(shield=True):
                await conn.channel.aclose()

    def __del__(self) -> None:
        # An abandoned `async for` still gives its socket back (closing is synchronous).
        if self._conn is not None:
            self._conn.channel.stream.socket.close()  # type: ignore[attr-defined]


class LogFollower(_Stream):
    """Lines of one job's log, until the job has finished."""

    def __init__(self, paths: Paths, token: str | None, job_id: int) -> None:
        super().__init__(paths, token, Follow(id=job_id))
        self._lines: deque[str] = deque()

    async def __anext__(self) -> str:
        while not self._lines:
            msg = await self._next_message()
            if msg is None:
                raise StopAsyncIteration
            if isinstance(msg, LogChunk):
                self._lines.extend(msg.lines)
            elif isinstance(msg, FollowEnd):
                await self.aclose()
        return self._lines.popleft()


class EventStream(_Stream):
    """Every job event, for as long as it is read."""

    def __init__(self, paths: Paths, token: str | None) -> None:
        super().__init__(paths, token, Events())

    async def __anext__(self) -> JobEvent:
        while True:
            msg = await self._next_message()
            if msg is None:
                raise StopAsyncIteration
            if isinstance(msg, JobEvent):
                return msg
