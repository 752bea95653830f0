"""The synchronous Python client, which ``semctl`` is a thin layer over.

::

    from semantica import Client

    with Client() as c:                      # SEMANTICA_HOME / SEMANTICA_SOCKET
        job = c.enqueue("INDEX_FILE", payload={"path": "src/main.rs"}, priority=5)
        done = c.wait(job.id, timeout=60)    # a Job; done.state, done.result

Every error is a :class:`~semantica.errors.SemanticaError` whose ``exit_code``
is what ``semctl`` exits with. This module uses blocking sockets and imports
neither trio nor rich, so short-lived programs start fast.
"""

from __future__ import annotations

import functools
import os

# _socket's socket, not the socket module's: that module wraps it in enums and loads
# selectors, ~3 ms of every semctl start, for nothing a blocking Unix-socket client uses.
# (socket.socket is its subclass: connect, sendall, recv and their errors are the same.)
from _socket import AF_UNIX, MSG_DONTWAIT, SOCK_STREAM
from _socket import socket as unix_socket
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from semantica.config import Paths, locate, read_token_file
from semantica.control.batches import (
    check_supervisor_can_wait,
    failed_part_way,
    jobs_of,
    split_graph,
)
from semantica.control.enqueue_pipe import can_pipeline, enqueue_pipelined
from semantica.control.schedule_client import ScheduleMethods
from semantica.errors import (
    AuthError,
    BadInput,
    ProtocolError,
    SemanticaError,
    Unreachable,
    WaitTimeout,
    error_from_code,
)
from semantica.models import (
    TERMINAL_STATES,
    CancelOutcome,
    Job,
    JobSpec,
    QueueInfo,
    short_repr,
    validate_spec,
)
from semantica.peercred import check_server
from semantica.protocol import (
    HEADER,
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
    FrameDecoder,
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
    JobsChanged,
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
    WatchChanges,
    encode,
)

# Aliases: inside Client, `list` names the method.
JobsList = list[Job]
CancelOutcomes = list[CancelOutcome]
QueueInfos = list[QueueInfo]
StrList = list[str]
SpecList = list[JobSpec]


class JobPage(JobsList):
    """The jobs :meth:`Client.list` returns (a list), and ``total``: how many jobs match
    the filters in all, of which the list holds the newest ``limit``; with
    ``total_capped``, at least that many (the supervisor counts up to 10,000)."""

    total: int = 0
    total_capped: bool = False


#: Ids asked for again, at least, after a wait reply that did not hold them all.
WAIT_WINDOW = 256

# Replies come from our own supervisor and may be large (a long job list).
_REPLY_CAP = 256 * MAX_FRAME

_SPEC_FIELDS = frozenset(JobSpec.__struct_fields__) - {"type", "payload"}


def make_spec(type: str, payload: Any = None, **options: Any) -> JobSpec:
    """Build a JobSpec from ``enqueue``'s keyword arguments.

    Raises:
        BadInput: an unknown option or a value of the wrong type.
    """
    unknown = set(options) - _SPEC_FIELDS
    if unknown:
        raise BadInput(f"unknown enqueue option(s): {', '.join(sorted(unknown))}")
    at = options.get("at")
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            raise BadInput(
                f"--at must be an ISO 8601 time, got {short_repr(options['at'])}"
            ) from None
    if isinstance(at, datetime) and at.tzinfo is None:
        try:
            at = at.astimezone()  # a time without a zone is local time, as a person means it
        except (OverflowError, ValueError, OSError):
            raise BadInput(f"start time (--at) {at.isoformat()} is out of range") from None
    if at is not None:
        options["at"] = at
    try:
        spec = msgspec.convert(
            {"type": type, "payload": payload, **options}, JobSpec, from_attributes=False
        )
    except msgspec.ValidationError as exc:
        raise BadInput(f"bad enqueue option: {exc}") from None
    # Checked here as well as by the supervisor: what could not come back as it
    # went in (NaN, bytes, a set) is refused before msgpack changes it.
    validate_spec(spec)
    return spec


#: The keys of a job that msgspec converts as :func:`make_spec` would (``at`` is
#: read as local time by make_spec, unlike msgspec: such jobs take the long way).
_PLAIN_KEYS = frozenset(JobSpec.__struct_fields__) - {"at"}
_convert_specs = functools.partial(msgspec.convert, type=list[JobSpec], from_attributes=False)


def specs_of(jobs: Iterable[Mapping[str, Any]]) -> SpecList:
    """Every job of an ``enqueue_many`` as a checked JobSpec.

    Raises:
        BadInput: a job without a type, with an unknown option or a bad value.
    """
    items = list(jobs)
    # The common case in one call to msgspec; anything else (an error included) goes
    # job by job through make_spec, which says what is wrong and where.
    if all(type(item) is dict and "type" in item and item.keys() <= _PLAIN_KEYS for item in items):
        try:
            specs: SpecList = _convert_specs(items)
        except msgspec.ValidationError:
            pass
        else:
            for spec in specs:
                validate_spec(spec)
            return specs
    specs = []
    for item in items:
        options = dict(item)
        if "type" not in options:
            raise BadInput("every job needs a 'type'")
        specs.append(make_spec(options.pop("type"), options.pop("payload", None), **options))
    return specs


def connect_error(exc: OSError, path: Path | str) -> SemanticaError:
    """What a failed connect to the supervisor's socket means, for the user: nothing
    listens there (Unreachable, with how to start one), or it is another user's."""
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError | NotADirectoryError):
        reason = exc.strerror.lower() if exc.strerror else exc
        return Unreachable(
            f"no supervisor at {path} ({reason}); "
            "start one with `semanticad` (or `make run`), or set SEMANTICA_HOME"
        )
    if isinstance(exc, PermissionError):
        return AuthError(f"refused: no permission to use {path} (it is another user's)")
    return Unreachable(f"cannot connect to {path}: {exc}")


def read_token(paths: Paths) -> str:
    """The supervisor's token, from the state directory.

    Raises:
        AuthError: the token file is missing or not readable to us.
        ConfigError: the file holds no token (see :func:`~semantica.config.read_token_file`).
    """
    try:
        return read_token_file(Path(paths.token))
    except FileNotFoundError:
        raise AuthError(
            f"no token at {paths.token}: is this the supervisor's state directory?"
        ) from None
    except PermissionError:
        raise AuthError(f"refused: cannot read the token at {paths.token}") from None


class Client(ScheduleMethods):
    """A connection to the supervisor (made on first use), usable as a context manager.

    Args:
        home: state directory; default ``SEMANTICA_HOME`` or the XDG default.
        socket: control socket; default ``SEMANTICA_SOCKET`` or ``HOME/semantica.sock``.
        token: the token; default read from ``HOME/token``.

    The schedule verbs (``schedule``, ``schedules``, ``run_schedule``, ...) are
    in :class:`~semantica.control.schedule_client.ScheduleMethods`.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        socket: str | os.PathLike[str] | None = None,
        token: str | None = None,
    ) -> None:
        self.paths: Paths = locate(home=home, socket=socket)
        self._token = token
        self._sock: Any = None
        self._decoder = FrameDecoder(ControlReply, _REPLY_CAP)
        self._rid = 0
        self._max_request = MAX_FRAME  # until the supervisor says its own
        self.server_version: str | None = None
        self.server_pid = 0
        self.server_features: list[str] = []  # (HelloOk.features)

    # ------------------------------------------------------------------ connection

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> None:
        """Connect and authenticate (done by the first call if not before).

        Raises:
            Unreachable: nothing listens at the socket.
            AuthError: the token or the user was refused.
        """
        if self._sock is not None:
            return
        path = self.paths.socket
        sock = unix_socket(AF_UNIX, SOCK_STREAM)
        try:
            sock.connect(str(path))
        except OSError as exc:
            sock.close()
            raise connect_error(exc, path) from None
        try:
            check_server(sock, path)
        except AuthError:
            sock.close()
            raise
        self._sock = sock
        try:
            token = self._token if self._token is not None else read_token(self.paths)
        except AuthError:
            self.close()
            raise
        reply = self._exchange(Hello(version=PROTOCOL_VERSION, token=token, client="python"))
        if isinstance(reply, HelloOk):
            self.server_version = reply.server_version
            self.server_pid, self.server_features = reply.pid, reply.features
            self._max_request = reply.max_frame
            return
        self.close()
        raise ProtocolError(f"unexpected answer to hello: {type(reply).__name__}")

    def __del__(self) -> None:
        # A client used without `with` still gives its socket back.
        if getattr(self, "_sock", None) is not None:
            self._sock.close()

    def close(self) -> None:
        """Close the connection (a later call reconnects)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._decoder = FrameDecoder(ControlReply, _REPLY_CAP)

    def _exchange(self, msg: msgspec.Struct) -> Any:
        """Send one message, return its reply; ErrorReply becomes the matching exception."""
        self._send(msg)
        try:
            return self._receive()
        except AuthError:
            if isinstance(msg, Hello):
                self.close()
            raise

    def _send(self, msg: msgspec.Struct) -> None:
        data = self._frame(msg)
        try:
            self._sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The supervisor may have refused us (another user) and hung up before
            # reading: its reason is then waiting in the socket. Report that.
            try:
                self._receive()
            except SemanticaError as refusal:
                self.close()
                raise refusal from None
            self.close()
            raise Unreachable(f"lost the connection to the supervisor: {exc}") from None

    def _frame(self, msg: msgspec.Struct) -> bytes:
        """``msg`` as a frame, checked against the supervisor's cap (BadInput if not)."""
        try:
            data = encode(msg)
        except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError) as exc:
            # msgpack carries neither an int past 64 bits (OverflowError) nor a str
            # with a lone surrogate (UnicodeEncodeError, a ValueError).
            raise BadInput(f"cannot send this request: {exc}") from None
        if len(data) - HEADER.size > self._max_request:
            raise BadInput(
                f"request of {len(data)} bytes exceeds the {self._max_request}-byte frame limit; "
                "send fewer jobs per batch or a smaller payload"
            )
        return data

    def _send_pipelined(self, msg: Enqueue) -> int:
        """Send the next request of a pipelined ``enqueue_many`` without waiting for
        its reply; its rid. While the socket is full, the replies that came are read
        into the decoder (the supervisor stops reading while its replies pile up)."""
        self.connect()
        self._rid += 1
        msg.rid = self._rid
        view = memoryview(self._frame(msg))
        sock = self._sock
        assert sock is not None
        try:
            while view:
                try:
                    view = view[sock.send(view, MSG_DONTWAIT) :]
                    continue
                except BlockingIOError:
                    pass
                import select  # (here: only a full socket needs it, and semctl never does)

                poller = select.poll()  # (not select.select: no limit on the fd number)
                poller.register(sock, select.POLLIN | select.POLLOUT)
                if any(events & ~select.POLLOUT for _, events in poller.poll()):
                    data = sock.recv(65536, MSG_DONTWAIT)
                    if not data:
                        raise ConnectionResetError("the supervisor closed the connection")
                    self._decoder.feed(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            self.close()
            raise Unreachable(f"lost the connection to the supervisor: {exc}") from None
        return msg.rid

    def _receive(self) -> Any:
        """The next message; an ErrorReply is raised as its exception."""
        try:
            while True:
                for reply in self._decoder.messages():
                    if isinstance(reply, ErrorReply):
                        raise error_from_code(reply.code, reply.message)
                    return reply
                data = self._sock.recv(65536)
                if not data:
                    self.close()
                    raise Unreachable("the supervisor closed the connection")
                self._decoder.feed(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            self.close()
            raise Unreachable(f"lost the connection to the supervisor: {exc}") from None

    def _stream(self, msg: Any) -> Iterator[Any]:
        """Send a streaming request on a connection of its own and yield what is pushed.

        (A stream is the last request of its connection; this client's own
        connection stays free for other calls meanwhile.)
        """
        stream = Client(socket=self.paths.socket, home=self.paths.home, token=self._token)
        stream.connect()
        msg.rid = 1
        try:
            stream._send(msg)
            while True:
                yield stream._receive()
        finally:
            stream.close()

    def _call(self, msg: Any) -> Any:
        self.connect()
        self._rid += 1
        msg.rid = self._rid
        return self._exchange(msg)

    # ------------------------------------------------------------------ verbs

    def enqueue(self, type: str, payload: Any = None, **options: Any) -> Job:
        """Add one job; returns it once committed.

        Options: ``queue``, ``subject``, ``generation``, ``supersede_running``,
        ``priority``, ``max_attempts``, ``timeout``, ``delay``, ``at``, ``backoff``,
        ``require_charging``, ``require_idle``, ``after`` and ``after_end`` (job ids
        to wait for: see docs/jobs.md and docs/workflows.md).

        Raises:
            BadInput: a bad option or payload, or a type no worker knows.
        """
        return self._enqueue([make_spec(type, payload, **options)])[0]

    def enqueue_many(self, jobs: Iterable[Mapping[str, Any]]) -> JobsList:
        """Add any number of jobs, each a dict with ``type`` (and ``payload``, options).

        They go in requests under the frame cap, each one transaction, a few in
        flight at once (enqueue_pipe.py); the committed jobs come back in the order
        given, and what is committed is always the first of them. A graph (jobs
        with a ``ref`` that others name in ``after`` or ``after_end``) goes as one
        request, all or nothing.

        Raises:
            BadInput: a job is malformed or alone over the frame cap, or a graph does
                not fit in one request (nothing added).
            PartialEnqueue: a request failed after earlier ones were committed;
                it carries those jobs (see semantica.control.batches).
        """
        specs = specs_of(jobs)
        self.connect()  # the supervisor's frame cap sizes the requests
        requests = split_graph(specs, self._max_request)
        if can_pipeline(requests, self.server_features):
            check_supervisor_can_wait(specs, self.server_features, self.server_pid)
            try:
                return enqueue_pipelined(requests, len(specs), self._send_pipelined, self._receive)
            except (KeyboardInterrupt, SystemExit):
                self.close()  # replies of requests in flight would answer the next calls
                raise
        enqueued: JobsList = []
        for request in requests:
            try:
                enqueued += self._enqueue(request, brief=True)
            except SemanticaError as exc:
                raise failed_part_way(enqueued, len(specs), len(request), exc) from exc
        return enqueued

    def _enqueue(self, specs: SpecList, brief: bool = False) -> JobsList:
        self.connect()
        check_supervisor_can_wait(specs, self.server_features, self.server_pid)
        reply: Enqueued = self._expect(self._call(Enqueue(jobs=specs, brief=brief)), Enqueued)
        return jobs_of(specs, reply)

    def get(self, job_id: int) -> Job:
        """One job. Raises NoSuchJob."""
        reply: JobReply = self._expect(self._call(GetJob(id=job_id)), JobReply)
        return reply.job

    def list(
        self,
        state: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        subject: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        """Jobs matching every filter given, newest first, at most ``limit``.

        A list, whose ``total`` is how many jobs match in all. (The supervisor
        sends as many jobs as fit in a frame at a time; this asks for the rest.)
        """
        request = ListJobs(
            state=state, queue=queue, type=type, subject=subject, limit=limit, paged=True
        )
        reply: JobList = self._expect(self._call(request), JobList)
        jobs = JobPage(reply.jobs)
        jobs.total = len(jobs) if reply.total is None else reply.total
        jobs.total_capped = reply.total_capped
        while reply.more and reply.jobs and len(jobs) < limit:
            request.before, request.limit = jobs[-1].id, limit - len(jobs)
            reply = self._expect(self._call(request), JobList)
            jobs.extend(reply.jobs)
        return jobs

    def wait_many(self, job_ids: Iterable[int], timeout: float | None = None) -> JobsList:
        """Block until every job finished (or ``timeout`` seconds); returns them as they are.

        (The supervisor sends as many jobs as fit in a frame at a time; this
        asks for the rest, as they are once the wait is over.)
        """
        ids = list(job_ids)
        request = Wait(ids=ids, timeout=timeout, paged=True)
        reply: JobList = self._expect(self._call(request), JobList)
        jobs = list(reply.jobs)
        while len(jobs) < len(ids):
            if not reply.jobs:
                raise ProtocolError("the supervisor answered a wait with no jobs")
            # A window of the ids left, about twice what the last reply held: the
            # supervisor looks up every id it is sent, not only those that fit.
            window = ids[len(jobs) : len(jobs) + max(WAIT_WINDOW, 2 * len(reply.jobs))]
            reply = self._expect(self._call(Wait(ids=window, timeout=0, paged=True)), JobList)
            jobs.extend(reply.jobs)
        return jobs

    def wait(self, job_id: int, timeout: float | None = None) -> Job:
        """Block until the job finished; returns it in whatever final state it reached.

        Raises:
            WaitTimeout: ``timeout`` seconds passed first.
            NoSuchJob: no such job.
        """
        job = self.wait_many([job_id], timeout)[0]
        if job.state not in TERMINAL_STATES:
            raise WaitTimeout(f"job {job_id} is still {job.state} after {timeout} s")
        return job

    def logs(self, job_id: int, lines: int | None = None) -> StrList:
        """The last ``lines`` lines of a job's log (all when None)."""
        reply: LogLines = self._expect(self._call(GetLogs(id=job_id, lines=lines)), LogLines)
        return reply.lines

    def status(self) -> StatusReply:
        """Counts by state, workers, database size, uptime and version."""
        reply: StatusReply = self._expect(self._call(GetStatus()), StatusReply)
        return reply

    def cancel(self, *job_ids: int) -> CancelOutcomes:
        """Cancel jobs: queued ones at once, running ones stopped (returns once they ended).

        A job that had already finished is left as it was (its outcome says so).

        Raises:
            NoSuchJob: one of the ids names no job (nothing was cancelled).
        """
        reply: Cancelled = self._expect(self._call(Cancel(ids=list(job_ids))), Cancelled)
        return reply.results

    def retry(self, job_id: int, dependents: bool = False) -> Job:
        """Put a FAILED or CANCELLED job back in the queue with a fresh attempt budget;
        with ``dependents``, also the jobs cancelled because of it, down the chain.

        Raises:
            BadInput: the job is not FAILED or CANCELLED, or a job it waits for ended
                badly (retry that one with ``dependents``).
        """
        reply: JobReply = self._expect(
            self._call(Retry(id=job_id, dependents=dependents)), JobReply
        )
        return reply.job

    def pause(self, queue: str, create: bool = True) -> QueueInfo:
        """Start no job of ``queue`` until :meth:`resume` (running ones go on).

        A queue never seen is made, unless ``create`` is False: then BadInput.
        """
        msg = PauseQueue(queue=queue, create=create)
        reply: QueueReply = self._expect(self._call(msg), QueueReply)
        return reply.queue

    def resume(self, queue: str) -> QueueInfo:
        """Start jobs of ``queue`` again (BadInput if no job or setting ever named it)."""
        reply: QueueReply = self._expect(self._call(ResumeQueue(queue=queue)), QueueReply)
        return reply.queue

    def limit(self, queue: str, limit: int, create: bool = True) -> QueueInfo:
        """Run at most ``limit`` jobs of ``queue`` at once (0: no cap); ``create`` as in
        :meth:`pause`."""
        reply: QueueReply = self._expect(
            self._call(LimitQueue(queue=queue, limit=limit, create=create)), QueueReply
        )
        return reply.queue

    def queues(self) -> QueueInfos:
        """Every queue with its settings and counts by state."""
        reply: QueueList = self._expect(self._call(ListQueues()), QueueList)
        return reply.queues

    def follow(self, job_id: int) -> Iterator[str]:
        """Yield the job's log lines: those written so far, then new ones as they come.

        The iterator ends when the job has finished (``get`` tells how).

        Raises:
            NoSuchJob: no such job.
            SemanticaError: code ``too_slow`` if this reader fell too far behind.
        """
        for msg in self._stream(Follow(id=job_id)):
            if isinstance(msg, LogChunk):
                yield from msg.lines
            elif isinstance(msg, FollowEnd):
                return

    def events(self) -> Iterator[JobEvent]:
        """Yield every job event (enqueued, started, done, ...) as it happens, forever."""
        for msg in self._stream(Events()):
            if isinstance(msg, JobEvent):
                yield msg

    def changes(self, interval: float = 1.0) -> Iterator[int]:
        """Yield a tick each time jobs changed, at most one per ``interval`` seconds, forever
        (each the count of job events seen so far): when to read again, for a live view.
        The first (0) comes at once: the stream listens from then on."""
        for msg in self._stream(WatchChanges(interval=interval)):
            if isinstance(msg, JobsChanged):
                yield msg.seq

    def top(self) -> TopReply:
        """Workers, queues, throughput, failures and waiting jobs, in one reply."""
        reply: TopReply = self._expect(self._call(GetTop()), TopReply)
        return reply

    def maintenance(self, force_vacuum: bool = False) -> MaintenanceReport:
        """Run maintenance now (see docs/operations.md); returns what it did."""
        reply: MaintenanceReport = self._expect(
            self._call(Maintain(force_vacuum=force_vacuum)), MaintenanceReport
        )
        return reply

    def metrics(self) -> str:
        """The Prometheus text exposition."""
        reply: MetricsReply = self._expect(self._call(GetMetrics()), MetricsReply)
        return reply.text

    def shutdown(self, now: bool = False) -> None:
        """Ask the supervisor to drain and exit (returns once it accepted).

        ``now``: do not wait for running jobs; they go back to the queue.
        """
        self._expect(self._call(Shutdown(now=now)), Ok)

    @staticmethod
    def _expect(reply: Any, kind: type) -> Any:
        if not isinstance(reply, kind):
            raise ProtocolError(f"expected {kind.__name__}, got {type(reply).__name__}")
        return reply


__all__ = ["Client", "JobPage", "SemanticaError", "make_spec"]
