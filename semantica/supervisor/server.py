"""The control server: the Unix socket, authentication, and one loop per connection.

Order of checks on a new connection, cheapest and safest first:

1. the peer's uid (``SO_PEERCRED``) must be ours or root — before any frame is read;
2. at most :data:`MAX_UNAUTHENTICATED` connections may be in their hello at once;
3. the hello must arrive within :data:`HELLO_TIMEOUT` seconds, within the frame cap,
   with the right protocol version and the token (constant-time comparison);
   every kind of bad token gets the same answer, then the connection closes.

After that, each request gets exactly one reply. A malformed message gets an
error reply and the connection goes on (framing is still in step); an
oversized frame header gets an error reply and the connection closes (its body
is never read).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import socket as stdlib_socket
import stat
import weakref
from typing import Any

import structlog
import trio

from semantica import __version__
from semantica.config import SOCKET_PATH_MAX
from semantica.errors import ConfigError, FrameTooLarge, ProtocolError, SemanticaError
from semantica.framed import FramedStream
from semantica.peercred import peer_uid, uid_allowed
from semantica.protocol import (
    FEATURES,
    HELLO_MAX_FRAME,
    PROTOCOL_VERSION,
    Cancel,
    ControlReply,
    EnqueueLazy,
    ErrorReply,
    Events,
    Follow,
    GetJob,
    GetLogs,
    GetMetrics,
    GetStatus,
    GetTop,
    Hello,
    HelloOk,
    ListJobs,
    ListQueues,
    Maintain,
    SupervisorRequest,
    Wait,
    WatchChanges,
)
from semantica.supervisor.enqueue_chains import EnqueueChains
from semantica.supervisor.handlers.dispatch import dispatch
from semantica.supervisor.handlers.enqueue_group import Ahead, Gathering, carry_out_enqueues
from semantica.supervisor.replies import Outbox, encode_reply
from semantica.supervisor.security import token_matches
from semantica.supervisor.services import Services

log = structlog.get_logger("semantica.server")

HELLO_TIMEOUT = 2.0
#: How long queued replies may take to go out after the client stopped sending.
REPLY_DRAIN_S = 5.0
MAX_UNAUTHENTICATED = 64
_AUTH_FAILED = "authentication failed: wrong token (the token is in $SEMANTICA_HOME/token)"
_ACCEPT_RETRY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
#: Requests that write nothing. Like every reply, theirs waits until the writes carried
#: out before it are committed (it may show them); if that commit fails (a full disk),
#: the read is carried out again instead of failing with the writes: a read never
#: answers store_full.
_READS = (GetJob, ListJobs, Wait, GetLogs, GetStatus, ListQueues, GetMetrics, GetTop)


#: ``ControlServer._queue``'s default: the replies' writes were made in the caller's step.
_NOW: Any = object()


class ControlServer:
    """Serves the control socket for one supervisor.

    ``services`` are what its requests are carried out with (see services.py);
    ``token`` is what every client must present in its hello.
    """

    def __init__(self, services: Services, token: str) -> None:
        self.services = services
        self.settings = services.settings
        self.committer = services.committer
        self.token = token
        self.path = services.settings.paths.socket
        self._unauthenticated = 0
        self._inode = 0
        # Each connection's enqueues, for those that follow them (enqueue_chains.py);
        # gone with the connection.
        self._chains: weakref.WeakKeyDictionary[FramedStream, EnqueueChains] = (
            weakref.WeakKeyDictionary()
        )
        self._gathering = Gathering(services)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind the socket (0600), report started, and accept connections until cancelled.

        The socket file is removed when this returns.
        """
        listener = self._bind()
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError as exc:
                        if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                            raise
                        log.warning("accept failed; retrying", error=str(exc))
                        await trio.sleep(0.1)  # out of descriptors: back off, do not spin
                        continue
                    nursery.start_soon(self._connection, stream)
        finally:
            with contextlib.suppress(FileNotFoundError):
                if os.lstat(self.path).st_ino == self._inode:  # still ours, nothing else's
                    self.path.unlink()
            await listener.aclose()

    def _bind(self) -> trio.SocketListener:
        path = str(self.path)
        if len(os.fsencode(path)) >= SOCKET_PATH_MAX:
            raise ConfigError(
                f"socket path {path} is too long for a Unix socket "
                f"({len(path)} bytes, at most {SOCKET_PATH_MAX - 1}); set SEMANTICA_SOCKET"
            )
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            existing = self.path.lstat()
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(existing.st_mode):
                raise ConfigError(f"{path} exists and is not a socket; remove it or choose another")
            # The supervisor's lock is held, so a socket left here is a dead one's.
            self.path.unlink()
        sock = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
        old_umask = os.umask(0o077)  # no window in which the socket is open to others
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot bind the control socket {path}: {exc.strerror}") from None
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        self._inode = os.lstat(path).st_ino
        sock.listen(128)
        return trio.SocketListener(trio.socket.from_stdlib_socket(sock))

    async def _connection(self, stream: trio.SocketStream) -> None:
        async with stream:
            channel = FramedStream(
                stream,
                SupervisorRequest,
                self.settings.max_frame,
                first_max=min(HELLO_MAX_FRAME, self.settings.max_frame),
            )
            # except*: a reply written from inside the requests' nursery (replies.py)
            # reaches here in an exception group; a client gone is still only that.
            try:
                if await self._authenticate(stream, channel):
                    await self._serve_requests(channel)
            except* (trio.BrokenResourceError, trio.ClosedResourceError, trio.EndOfChannel):
                pass  # the client went away
            except* OSError as group:
                log.debug("connection error", error=str(group.exceptions[0]))
            except* Exception:
                # A bug met by one connection must not take the server down.
                log.exception("connection failed")

    async def _authenticate(self, stream: trio.SocketStream, channel: FramedStream) -> bool:
        uid = peer_uid(stream.socket)  # type: ignore[arg-type]
        if not uid_allowed(uid):
            log.warning("connection refused: another user", peer_uid=uid)
            await channel.send(
                ErrorReply(code="auth", message=f"refused: uid {uid} is not the supervisor's user")
            )
            return False
        if self._unauthenticated >= MAX_UNAUTHENTICATED:
            log.warning("connection refused: too many waiting for authentication")
            return False
        self._unauthenticated += 1
        try:
            hello = None
            with trio.move_on_after(HELLO_TIMEOUT):
                try:
                    hello = await channel.receive()
                except ProtocolError as exc:
                    await channel.send(ErrorReply(code=exc.code, message=exc.message))
                    return False
        finally:
            self._unauthenticated -= 1
        if hello is None:
            return False  # silent past the deadline
        if not isinstance(hello, Hello):
            await channel.send(ErrorReply(code="protocol", message="the first frame must be hello"))
            return False
        if hello.version != PROTOCOL_VERSION:
            await channel.send(
                ErrorReply(
                    code="protocol",
                    message=f"protocol version {hello.version} is not supported "
                    f"(this supervisor speaks {PROTOCOL_VERSION}); use a matching semctl",
                )
            )
            return False
        if not token_matches(self.token, hello.token):
            log.warning("connection refused: wrong token")
            await channel.send(ErrorReply(code="auth", message=_AUTH_FAILED))
            return False
        await channel.send(
            HelloOk(
                version=PROTOCOL_VERSION,
                server_version=__version__,
                pid=os.getpid(),
                max_frame=self.settings.max_frame,
                features=list(FEATURES),
            )
        )
        return True

    async def _serve_requests(self, channel: FramedStream) -> None:
        """Answer requests in the order they come, except those that wait.

        A client may send several requests without waiting for replies
        (pipelining, matched by ``rid``). Requests that can block (``Wait``,
        ``Cancel``, ``Maintain``) run in tasks of their own so they do not hold up the ones
        behind them; all others are carried out in order, so pipelined enqueues
        commit in the order they were sent.

        Each reply goes out once durable (replies.py). When nothing else is left
        to do (no request of this client already here, no other task runnable), this
        task commits its own write at once and writes the reply itself: a request
        from a client that waits for each reply costs one turn of this task.
        """
        outbox = Outbox(channel, functools.partial(self._settle, channel))
        held: Ahead = None  # read ahead of its turn by _enqueues, not yet carried out
        chains = self._chains[channel] = EnqueueChains(self.committer)
        async with trio.open_nursery() as waiting:
            sent_all = trio.Event()
            waiting.start_soon(self._send_queued, outbox, sent_all)
            while True:
                try:
                    if held is None:
                        request = await channel.receive()
                    elif isinstance(held, ProtocolError):
                        error, held = held, None
                        raise error
                    else:
                        request, held = held, None
                except FrameTooLarge as exc:
                    await channel.send(ErrorReply(code=exc.code, message=exc.message))
                    break
                except ProtocolError as exc:
                    chains.unreadable()
                    await channel.send(ErrorReply(code=exc.code, message=exc.message))
                    continue
                except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                self.committer.heard(channel)  # (who is sending: see Committer.commit_if_alone)
                if isinstance(request, Wait | Cancel | Maintain):
                    waiting.start_soon(self._answer, channel, request)
                    continue
                if isinstance(request, Follow | Events | WatchChanges):
                    reply = await self._carry_out(channel, request, True)
                    if reply is not None:
                        await channel.send(reply)
                    break  # a stream is the last request of its connection
                if isinstance(request, EnqueueLazy) and channel.buffered:
                    # Pipelined enqueues: those buffered behind it share one insert.
                    held = await self._enqueues(channel, outbox, request)
                    continue
                if isinstance(request, EnqueueLazy) and self.committer.others_sending(channel):
                    # Other clients are sending: their lone enqueues of this moment
                    # share one insert with it (enqueue_group.Gathering).
                    together = await self._gathering.enqueue(request)
                    if together is not None:
                        await self._queue(
                            channel, outbox, [(together.reply, request)], together.ticket
                        )
                        continue
                # Carried out now, in order; its reply goes out once durable, while
                # the next requests are read: pipelined writes share commits.
                reply = await self._reply_now(channel, request)
                if reply is not None:
                    await self._queue(channel, outbox, [(reply, request)])
            outbox.close()  # the replies already queued still go out...
            with trio.move_on_after(REPLY_DRAIN_S):
                await sent_all.wait()
            waiting.cancel_scope.cancel()  # ...but waits and cancels end with the client

    async def _queue(
        self,
        channel: FramedStream,
        outbox: Outbox,
        done: list[tuple[ControlReply, Any]],
        ticket: Any = _NOW,
    ) -> None:
        """Send the replies of requests just carried out, in order, each once durable.

        With nothing queued before them and nobody else to join their commit, this
        task commits at once and writes them itself, in one write: a lone request, or a
        run of one pipelining client's requests. (Committing such a run off the event
        loop, to read the client's next requests during the fsync, was measured: they
        then came in more, smaller runs, an insert each, for some 20-30 % more
        supervisor CPU per request and no higher rate; waiting here, they pile up in
        the socket and make the next run whole.) With other clients sending, the
        commit is left to the committer, which makes it off the event loop.

        ``ticket``: the batch their writes went into, when they were carried out in an
        earlier step (a shared insert: ``Gathered.ticket``); by default the one pending now.
        """
        if ticket is _NOW:  # (carried out in this step: what is pending now is theirs)
            ticket = self.committer.ticket()
        chains = self._chains.get(channel)
        if chains is not None:
            chains.record(ticket, done)
        if outbox.empty and (
            ticket is None or (not channel.buffered and self.committer.commit_if_alone(channel))
        ):
            await outbox.send_now(ticket, done)
        else:
            for reply, request in done:
                await outbox.put(ticket, reply, request)

    async def _enqueues(self, channel: FramedStream, outbox: Outbox, first: EnqueueLazy) -> Ahead:
        """Carry out ``first`` and the enqueues buffered behind it (enqueue_group.py)."""

        async def alone(request: EnqueueLazy) -> None:
            reply = await self._reply_now(channel, request)
            if reply is not None:
                await self._queue(channel, outbox, [(reply, request)])

        return await carry_out_enqueues(
            self.services,
            channel,
            first,
            alone,
            functools.partial(self._queue, channel, outbox),
        )

    async def _send_queued(self, outbox: Outbox, sent_all: trio.Event) -> None:
        """Send queued replies in order, each once the writes before it are committed."""
        try:
            await outbox.run()
        finally:
            sent_all.set()

    async def _settle(
        self, channel: FramedStream, ticket: Any, reply: ControlReply, request: SupervisorRequest
    ) -> ControlReply:
        """The reply for a request whose batch failed to commit (and was undone)."""
        error = ticket.error
        if isinstance(request, _READS):
            return await self._read_again(channel, request)
        if not isinstance(reply, ErrorReply):
            # What it did was undone with its batch: not acknowledged.
            return ErrorReply(rid=getattr(reply, "rid", 0), code=error.code, message=error.message)
        return reply

    async def _answer(self, channel: FramedStream, request: SupervisorRequest) -> None:
        reply = await self._reply(channel, request)
        if reply is not None:
            try:
                await channel.send_frames(await encode_reply(reply))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _carry_out(
        self, channel: FramedStream, request: SupervisorRequest, streaming: bool
    ) -> ControlReply | None:
        """One request's reply; a stream runs until it ends or the client goes away."""
        if not streaming:
            return await self._reply(channel, request)
        reply: ControlReply | None = None
        async with trio.open_nursery() as nursery:
            # Anything from the client, EOF included, ends its stream: a stream
            # must not outlive its reader, even when nothing happens to push.
            nursery.start_soon(_cancel_on_input, channel, nursery.cancel_scope)
            try:
                reply = await self._reply(channel, request)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                reply = None  # the reader went away mid-push
            nursery.cancel_scope.cancel()
        return reply

    async def _reply(
        self, channel: FramedStream, request: SupervisorRequest
    ) -> ControlReply | None:
        """Carry out a request and return its reply once what it did is durable."""
        reply = await self._reply_now(channel, request)
        if reply is not None and not isinstance(reply, ErrorReply):
            try:
                # Nothing is acknowledged, nor shown, before it is durable; with nothing
                # else to run, this task commits at once rather than wake the committer.
                self.committer.commit_if_alone(channel)
                await self.committer.durable()
            except SemanticaError as exc:
                if isinstance(request, _READS):
                    return await self._read_again(channel, request)
                return ErrorReply(rid=getattr(reply, "rid", 0), code=exc.code, message=exc.message)
        return reply

    async def _read_again(self, channel: FramedStream, request: SupervisorRequest) -> ControlReply:
        """A read whose moment's writes failed to commit (and were undone): carry it out
        again, on the store as it is now, until its reply is durable.

        Each try waits for one more commit. Reads are short; on a full disk the
        writes that fail come from clients (refused at once) and from leases,
        which back off: a try soon meets a moment with nothing to commit, or a
        commit that works. (A wait starts again with its whole timeout.)
        """
        while True:
            reply = await self._reply_now(channel, request)
            assert reply is not None  # only streams end without a reply
            ticket = self.committer.ticket()
            if ticket is None or await ticket.wait() is None:
                return reply

    async def _reply_now(
        self, channel: FramedStream, request: SupervisorRequest
    ) -> ControlReply | None:
        """Carry out a request; its reply, not yet durable (or an error reply)."""
        rid = getattr(request, "rid", 0)
        if isinstance(request, EnqueueLazy) and request.follows:
            chains = self._chains.get(channel)
            refusal = None if chains is None else await chains.refusal(request)
            if refusal is not None:
                return refusal
        try:
            await self.committer.writable()  # (not while a commit holds the store)
            reply = await dispatch(self.services, request, channel.send)
            if reply is not None and not isinstance(reply, HelloOk):
                # Here, not in each handler: a reply built elsewhere (a maintenance
                # report) came back under rid 0, and the async client, which matches
                # replies to calls by rid, waited for it for ever.
                reply.rid = rid
            return reply
        except SemanticaError as exc:
            return ErrorReply(rid=rid, code=exc.code, message=exc.message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise
        except Exception as exc:
            log.exception("request failed", request=type(request).__name__)
            return ErrorReply(rid=rid, code="internal", message=f"internal error: {exc!r}")


async def _cancel_on_input(channel: FramedStream, scope: trio.CancelScope) -> None:
    try:
        await channel.receive()
    except (trio.EndOfChannel, trio.BrokenResourceError, ProtocolError, OSError):
        pass
    scope.cancel()
