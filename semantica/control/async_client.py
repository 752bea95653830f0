"""The async client: the same verbs as :class:`~semantica.control.client.Client`, as coroutines.

::

    async with AsyncClient() as c:
        jobs = await c.enqueue_many([{"type": "INDEX_FILE", "payload": {"path": p}} ...])
        async with trio.open_nursery() as n:       # requests in flight together
            for p in paths:
                n.start_soon(c.enqueue, "INDEX_FILE", {"path": p})
        async for line in c.follow(job.id):
            print(line)

It is written on anyio, so it runs under trio and under asyncio alike (an
asyncio program such as a FastAPI app uses it with ``asyncio.gather`` and
tasks instead of nurseries).

Calls from several tasks share one connection and are multiplexed over it
(:mod:`semantica.control.async_conn`): each request is sent at once, tagged
with a request id, and its reply is matched by that id, in whatever order
replies come. So a burst of enqueues does not wait a round trip each, and a
pending ``wait`` holds up no other call. Streams (``follow``, ``events``) open
a connection of their own.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Self, TypeVar

import anyio
from anyio.abc import TaskStatus

from semantica.config import Paths, locate
from semantica.control.async_conn import Connection
from semantica.control.batches import (
    check_supervisor_can_wait,
    failed_part_way,
    jobs_of,
    split_graph,
)
from semantica.control.client import (
    WAIT_WINDOW,
    CancelOutcomes,
    JobPage,
    JobsList,
    QueueInfos,
    SpecList,
    StrList,
    make_spec,
    specs_of,
)
from semantica.control.enqueue_pipe import PIPELINE_FRAMES, Outcomes, can_pipeline
from semantica.control.schedule_client import AsyncScheduleMethods
from semantica.errors import (
    ProtocolError,
    SemanticaError,
    Unreachable,
    WaitTimeout,
    error_from_code,
)
from semantica.models import TERMINAL_STATES, Job, QueueInfo
from semantica.protocol import (
    Cancel,
    Cancelled,
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
)

R = TypeVar("R")


class AsyncClient(AsyncScheduleMethods):
    """An async client (trio or asyncio). It connects on first use;
    ``async with AsyncClient() as c:`` closes it.

    Args:
        home: state directory; default ``SEMANTICA_HOME`` or the XDG default.
        socket: control socket; default ``SEMANTICA_SOCKET`` or ``HOME/semantica.sock``.
        token: the token; default read from ``HOME/token``.

    Any number of tasks may call it at once; no task runs in the background
    (see :mod:`semantica.control.async_conn`), so errors reach the caller as
    themselves and cancelling one call harms no other. The schedule verbs are in
    :class:`~semantica.control.schedule_client.AsyncScheduleMethods`.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        socket: str | os.PathLike[str] | None = None,
        token: str | None = None,
    ) -> None:
        self.paths: Paths = locate(home=home, socket=socket)
        self._token = token
        self._conn: Connection | None = None
        self._connecting = anyio.Lock()
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
        await self._connection()

    async def _connection(self) -> Connection:
        """The open connection; a new one if there is none or the last was lost."""
        conn = self._conn
        if conn is not None and conn.usable:
            return conn
        async with self._connecting:
            if self._conn is None or not self._conn.usable:
                self._conn = await Connection.open(self.paths, self._token)
                self.server_version = self._conn.server_version
            return self._conn

    async def aclose(self) -> None:
        """Close the connection (a later call reconnects); calls still waiting raise
        ``Unreachable``."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()

    async def _call(self, msg: Any, kind: type[R]) -> R:
        """Send one request and return its reply, which must be a ``kind``.

        Each call is one request and one reply: a verb that needs several (pages,
        batches) loops over this.
        """
        reply = await (await self._connection()).request(msg)
        if isinstance(reply, ErrorReply):
            raise error_from_code(reply.code, reply.message)
        if not isinstance(reply, kind):
            raise ProtocolError(f"expected {kind.__name__}, got {type(reply).__name__}")
        return reply

    # ------------------------------------------------------------------ verbs

    async def enqueue(self, type: str, payload: Any = None, **options: Any) -> Job:
        """Add one job; returns it once committed (options as for ``Client.enqueue``)."""
        # A brief reply: the supervisor sends the id, and the job is built from its spec
        # as the supervisor built it (batches.jobs_of), a few bytes instead of the job.
        return (await self._enqueue([make_spec(type, payload, **options)], brief=True))[0]

    async def enqueue_many(self, jobs: Iterable[Mapping[str, Any]]) -> JobsList:
        """Add any number of jobs, each a dict with ``type`` (as ``Client.enqueue_many``).

        Raises:
            BadInput: a job is malformed or alone over the frame cap (nothing added).
            PartialEnqueue: a request failed after earlier ones were committed.
        """
        specs = specs_of(jobs)
        conn = await self._connection()  # the supervisor's frame cap sizes the requests
        requests = split_graph(specs, conn.max_request)
        if can_pipeline(requests, conn.server_features):
            check_supervisor_can_wait(specs, conn.server_features, conn.server_pid)
            return await self._enqueue_pipelined(conn, requests, len(specs))
        enqueued: JobsList = []
        for request in requests:
            try:
                enqueued += await self._enqueue(request, brief=True)
            except SemanticaError as exc:
                raise failed_part_way(enqueued, len(specs), len(request), exc) from exc
        return enqueued

    async def _enqueue_pipelined(
        self, conn: Connection, requests: list[SpecList], total: int
    ) -> JobsList:
        """``requests`` with up to PIPELINE_FRAMES in flight, each naming the one before
        (enqueue_pipe.py); the jobs, or PartialEnqueue as batches.py says.

        Each request is a task of its own, started only once the one before is sent or
        queued to be sent (``Connection.request`` numbers and sends a request before
        its first pause, and sends queue in order): so they go out in order.
        """
        room = anyio.Semaphore(PIPELINE_FRAMES)
        replies: list[Any] = []  # each request's reply, or the SemanticaError it raised
        failed = False

        async def one(index: int, msg: Enqueue, *, task_status: TaskStatus[None]) -> None:
            nonlocal failed
            task_status.started()
            try:
                replies[index] = await conn.request(msg)
            except SemanticaError as exc:
                replies[index] = exc
            finally:
                failed = failed or isinstance(replies[index], SemanticaError | ErrorReply)
                room.release()

        async with anyio.create_task_group() as group:
            follows = 0
            for index, jobs in enumerate(requests):
                await room.acquire()
                if failed:
                    break  # a request failed: the supervisor would refuse the rest
                msg = Enqueue(jobs=jobs, brief=True, follows=follows)
                replies.append(None)
                await group.start(one, index, msg)
                follows = msg.rid
        outcomes = Outcomes(requests, total)
        for index, reply in enumerate(replies):
            if isinstance(reply, ErrorReply):
                reply = error_from_code(reply.code, reply.message)
            outcomes.answer(index, reply)
        outcomes.lost([i for i, reply in enumerate(replies) if isinstance(reply, Unreachable)])
        return outcomes.result()

    async def _enqueue(self, specs: SpecList, brief: bool = False) -> JobsList:
        conn = await self._connection()
        check_supervisor_can_wait(specs, conn.server_features, conn.server_pid)
        return jobs_of(specs, await self._call(Enqueue(jobs=specs, brief=brief), Enqueued))

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
        before: int | None = None,
    ) -> JobPage:
        """Jobs matching every filter given, newest first, at most ``limit``.

        A list, whose ``total`` is how many jobs match in all (as ``Client.list``:
        the supervisor sends as many jobs as fit in a frame at a time, and this
        asks for the rest). With ``before``, only jobs with a smaller id: the next
        page after a page whose last job was ``before`` (keyset pagination).
        """
        request = ListJobs(
            state=state,
            queue=queue,
            type=type,
            subject=subject,
            limit=limit,
            paged=True,
            before=before,
        )
        reply = await self._call(request, JobList)
        jobs = JobPage(reply.jobs)
        jobs.total = len(jobs) if reply.total is None else reply.total
        jobs.total_capped = reply.total_capped
        while reply.more and reply.jobs and len(jobs) < limit:
            request.before, request.limit = jobs[-1].id, limit - len(jobs)
            reply = await self._call(request, JobList)
            jobs.extend(reply.jobs)
        return jobs

    async def wait_many(
        self,
        job_ids: Iterable[int],
        timeout: float | None = None,  # noqa: ASYNC109  # the supervisor's wait limit, as in Client
    ) -> JobsList:
        """Until every job finished (or ``timeout`` seconds); returns them as they are.

        (As ``Client.wait_many``: the supervisor sends as many jobs as fit in a
        frame at a time; this asks for the rest, as they are once the wait is over.)
        """
        ids = [*job_ids]
        reply = await self._call(Wait(ids=ids, timeout=timeout, paged=True), JobList)
        jobs = list(reply.jobs)
        while len(jobs) < len(ids):
            if not reply.jobs:
                raise ProtocolError("the supervisor answered a wait with no jobs")
            window = ids[len(jobs) : len(jobs) + max(WAIT_WINDOW, 2 * len(reply.jobs))]
            reply = await self._call(Wait(ids=window, timeout=0, paged=True), JobList)
            jobs.extend(reply.jobs)
        return jobs

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

    async def retry(self, job_id: int, dependents: bool = False) -> Job:
        """Put a FAILED or CANCELLED job back with a fresh attempt budget (``dependents``:
        as ``Client.retry``)."""
        return (await self._call(Retry(id=job_id, dependents=dependents), JobReply)).job

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

    def changes(self, interval: float = 1.0) -> ChangeStream:
        """A tick each time jobs changed, at most one per ``interval`` seconds
        (``async for seq in c.changes()``): what a live view needs to read again, at a
        cost to the supervisor that does not grow with the rate of job events. The
        first tick (0) comes at once: the stream listens from then on."""
        return ChangeStream(self.paths, self._token, interval)


class _Stream:
    """A streaming request on a connection of its own: an async iterator of what is pushed."""

    def __init__(self, paths: Paths, token: str | None, request: Any) -> None:
        self._paths = paths
        self._token = token
        self._request = request
        self._conn: Connection | None = None
        self._done = False

    def __aiter__(self) -> Self:
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Connect and send the request now (else the first read does): a reader that
        must know when the stream is listening (to read what changed before) calls this
        first. Raises Unreachable, AuthError as a call does."""
        if self._conn is None and not self._done:
            conn = await Connection.open(self._paths, self._token)
            try:
                await conn.send(self._request)
            except BaseException:  # not listening: the next read starts afresh
                await conn.aclose()
                raise
            self._conn = conn

    async def _next_message(self) -> Any:
        """The next pushed message, or None once the stream has ended."""
        if self._done:
            return None
        await self.start()
        assert self._conn is not None
        reply = await self._conn.receive()
        if reply is None:  # the supervisor went away
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
            await conn.aclose()


class LogFollower(_Stream):
    """Lines of one job's log, until the job has finished.

    One line at a time (``async for``), or with :meth:`next_lines` all that came
    together. Once the lines run out, ``finished`` is the job as it finished, or
    None if the stream ended before it did (the supervisor went away).
    """

    def __init__(self, paths: Paths, token: str | None, job_id: int) -> None:
        super().__init__(paths, token, Follow(id=job_id))
        self._lines: deque[str] = deque()
        self.finished: Job | None = None

    async def _fill(self) -> bool:
        """Wait until there are lines to read; False once the stream has ended."""
        while not self._lines:
            msg = await self._next_message()
            if msg is None:
                return False
            if isinstance(msg, LogChunk):
                self._lines.extend(msg.lines)
            elif isinstance(msg, FollowEnd):
                self.finished = msg.job
                await self.aclose()
        return True

    async def __anext__(self) -> str:
        if not await self._fill():
            raise StopAsyncIteration
        return self._lines.popleft()

    async def next_lines(self) -> list[str]:
        """Every line that has come and was not read yet, waiting for at least one;
        [] once the stream has ended. (A reader that relays lines sends each batch
        at once rather than line by line.)"""
        if not await self._fill():
            return []
        lines = [*self._lines]
        self._lines.clear()
        return lines


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


class ChangeStream(_Stream):
    """Ticks when jobs changed: each the count of job events seen so far."""

    def __init__(self, paths: Paths, token: str | None, interval: float) -> None:
        super().__init__(paths, token, WatchChanges(interval=interval))

    async def __anext__(self) -> int:
        while True:
            msg = await self._next_message()
            if msg is None:
                raise StopAsyncIteration
            if isinstance(msg, JobsChanged):
                return msg.seq
