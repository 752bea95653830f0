"""The wire protocol: every message, the unions per direction, and framing.

A frame is a 4-byte big-endian body length followed by a msgpack body. The
length is checked against a cap *before* any of the body is read or buffered
(:class:`FrameDecoder`), so a peer cannot make us allocate by lying in a header.

Two channels use this module:

* the **control channel** (``semctl``, ``Client``) on the Unix socket. The first
  frame is :class:`Hello` with :data:`PROTOCOL_VERSION` and the token; then
  requests, each answered by exactly one reply carrying the request's ``rid``.
* the **worker channel**, a socket pair between the supervisor and each worker
  it spawned. The worker speaks first with :class:`WorkerHello`.

Rules for changing messages (msgspec's schema evolution): tags never change,
new fields get defaults, a field's type never changes. Incompatible changes
bump :data:`PROTOCOL_VERSION`. ``tests/data/`` holds frozen encodings of every
message; a test decodes them so an accidental break fails loudly.

This module imports only msgspec and the shared models: ``semctl`` loads it on
its fast path.
"""

# Annotations are evaluated here, not postponed (no `from __future__ import
# annotations`): msgspec reads a Struct's field types when a decoder is first built,
# and each postponed one costs it a compile() and an eval (the control replies have
# about 200: a few ms of every new `semctl` or Client process).

import struct
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import msgspec

from semantica.errors import FrameTooLarge, ProtocolError
from semantica.limits import RESULT_MAX
from semantica.models import CancelOutcome, Job, JobError, JobSpec, JobState, QueueInfo
from semantica.schedules import Schedule, ScheduleChanges, ScheduleSpec

PROTOCOL_VERSION = 1

#: Default cap on one frame's body; the supervisor's is configurable.
MAX_FRAME = 1 << 20
#: Cap on the worker channel, which joins two processes of ours: a payload that fit a
#: control frame may grow when re-encoded as JSON (``\x01`` becomes ``\u0001``).
WORKER_MAX_FRAME = 64 << 20
#: The largest JSON result a job may return (:mod:`semantica.limits` has every cap).
MAX_RESULT = RESULT_MAX
#: Cap on the first frame of a control connection, its hello (about 100 bytes with
#: the token): until a client is authenticated, it may not make the supervisor
#: buffer a full-size frame.
HELLO_MAX_FRAME = 16 << 10
#: An Enqueue of up to this many jobs is one transaction (all or none); the
#: supervisor writes a bigger one in slices, so that it holds up no other
#: client. The clients' ``enqueue_many`` sends at most this many per request.
ENQUEUE_ATOMIC_JOBS = 512

HEADER = struct.Struct(">I")

#: What a supervisor tells a client it does (``HelloOk.features``), where an older one
#: would take a request in part rather than refuse it: it decodes a field it does not
#: know as absent, so a job sent with ``after`` would run at once instead of waiting.
#: ``after``: jobs that wait for others (``after``, ``after_end``, ``ref``).
#: ``follows``: an ``Enqueue`` that names the one it follows (``Enqueue.follows``) is
#: refused when that one failed (an older supervisor would carry it out).
FEATURES = ("after", "follows")


class _Msg(msgspec.Struct, tag_field="t", kw_only=True):
    """Base of every message: tagged by the ``t`` field with an explicit string."""


# ---------------------------------------------------------------- control: client -> supervisor


class Hello(_Msg, tag="hello"):
    """First frame of a control connection: protocol version and the token."""

    version: int
    token: str
    client: str = ""


class Enqueue(_Msg, tag="enqueue"):
    """Add jobs, all in one transaction; acknowledged only after the commit.

    ``brief`` asks for a brief :class:`Enqueued`: ids, and whole jobs only where
    the client could not build them from the specs it sent (a supervisor that
    does not know the field sends whole jobs, as it always did).

    ``follows``, when not 0, is the ``rid`` of an earlier ``Enqueue`` on the same
    connection that this one continues (the next request of one ``enqueue_many``,
    sent before that one's reply came): the supervisor refuses it, adding nothing
    (``batch_broken``), unless that one was carried out and is committed or being
    committed with it. So what a pipelined ``enqueue_many`` commits is always a
    prefix of its jobs (docs/protocol.md).
    """

    jobs: list[JobSpec]
    rid: int = 0
    brief: bool = False
    follows: int = 0


class EnqueueLazy(_Msg, tag="enqueue"):
    """``Enqueue`` as the supervisor reads it: the same bytes, each spec left encoded.

    One frame may hold 100,000 specs, and decoding them in one go would hold
    the supervisor's event loop for a tenth of a second; it decodes them in
    slices instead (:func:`decode_spec`).
    """

    jobs: list[msgspec.Raw]
    rid: int = 0
    brief: bool = False
    follows: int = 0


class GetJob(_Msg, tag="get"):
    """Fetch one job by id."""

    id: int
    rid: int = 0


class ListJobs(_Msg, tag="list"):
    """Jobs matching the filters, newest first.

    With ``paged`` the reply holds the jobs that fit in a frame and says
    ``more`` if some are left; ``before`` then asks for the next page: only
    jobs with a smaller id (the last id of the reply before). Without it
    (an older client) the reply holds them all.
    """

    state: str | None = None
    queue: str | None = None
    type: str | None = None
    subject: str | None = None
    limit: int = 50
    rid: int = 0
    before: int | None = None
    paged: bool = False


class Wait(_Msg, tag="wait"):
    """Reply when every job named has finished, or when ``timeout`` seconds pass.

    With ``paged`` the reply holds the first jobs that fit in a frame and says
    ``more`` if some are left (the client asks for them with timeout 0).
    """

    ids: list[int]
    timeout: float | None = None
    rid: int = 0
    paged: bool = False


class GetLogs(_Msg, tag="logs"):
    """The last ``lines`` lines of a job's log (all of it when ``lines`` is None)."""

    id: int
    lines: int | None = None
    rid: int = 0


class GetStatus(_Msg, tag="status"):
    """Counts by state, workers, database size, uptime, version."""

    rid: int = 0


class Shutdown(_Msg, tag="shutdown"):
    """Drain and stop the supervisor, as SIGTERM does; ``now`` skips the drain's wait."""

    now: bool = False
    rid: int = 0


class Follow(_Msg, tag="follow"):
    """Stream a job's log: the lines so far, new ones as they come, then the job at its end.

    A streaming request is the last request of its connection.
    """

    id: int
    rid: int = 0


class Events(_Msg, tag="events"):
    """Stream every job event (enqueued, started, done, ...) until the client disconnects.

    A streaming request is the last request of its connection.
    """

    rid: int = 0


class WatchChanges(_Msg, tag="changes"):
    """Stream a tick when jobs changed: at most one :class:`JobsChanged` per
    ``interval`` seconds, none while nothing happens, until the client disconnects.

    What a live view needs to know ("read again") at a cost that does not grow with
    the number of jobs: every job event between two ticks makes one tick. The first
    tick comes at once (``seq`` 0): the stream listens from then on.
    A streaming request is the last request of its connection.
    """

    interval: float = 1.0
    rid: int = 0


class Maintain(_Msg, tag="maintenance"):
    """Run maintenance now; the reply comes when it is done."""

    force_vacuum: bool = False
    rid: int = 0


class GetMetrics(_Msg, tag="metrics"):
    """The Prometheus text exposition."""

    rid: int = 0


class GetTop(_Msg, tag="top"):
    """Everything ``semctl top`` draws, in one reply."""

    rid: int = 0


class Cancel(_Msg, tag="cancel"):
    """Cancel jobs: a queued one at once, a running one stopped (the reply waits for it)."""

    ids: list[int]
    rid: int = 0


class Retry(_Msg, tag="retry"):
    """Put a FAILED or CANCELLED job back in the queue with a fresh attempt budget;
    ``dependents``: and the jobs cancelled because of it (``dependency_failed``)."""

    id: int
    rid: int = 0
    dependents: bool = False


class PauseQueue(_Msg, tag="pause"):
    """Start no job of this queue until it is resumed (running ones go on)."""

    queue: str
    rid: int = 0
    create: bool = True  # a queue never seen is made (else bad_input)


class ResumeQueue(_Msg, tag="resume"):
    """Start jobs of this queue again."""

    queue: str
    rid: int = 0


class LimitQueue(_Msg, tag="limit"):
    """Run at most ``limit`` jobs of this queue at once (0: no cap)."""

    queue: str
    limit: int
    rid: int = 0
    create: bool = True  # as in PauseQueue


class ListQueues(_Msg, tag="queues"):
    """Every queue with its settings and counts by state."""

    rid: int = 0


class PutSchedule(_Msg, tag="schedule_put"):
    """Create a schedule; with ``replace``, or change the one of that name."""

    spec: ScheduleSpec
    replace: bool = False  # without it, a schedule of that name already there is bad_input
    rid: int = 0


class GetSchedule(_Msg, tag="schedule_get"):
    """One schedule with its last ``runs`` runs, newest first (no_such_schedule if none)."""

    name: str
    runs: int = 20
    rid: int = 0


class ListSchedules(_Msg, tag="schedules"):
    """Every schedule, by name, each with its latest run (``runs``: one at most)."""

    rid: int = 0


class PauseSchedule(_Msg, tag="schedule_pause"):
    """Pause a schedule (its slots give no job), or with ``paused`` False resume it."""

    name: str
    paused: bool = True
    rid: int = 0


class RemoveSchedule(_Msg, tag="schedule_remove"):
    """Remove a schedule (its jobs stay)."""

    name: str
    rid: int = 0


class RunSchedule(_Msg, tag="schedule_run"):
    """Make a job from the schedule's template now (its slots do not move)."""

    name: str
    rid: int = 0


class ApplySchedules(_Msg, tag="schedule_apply"):
    """Make the set of schedules exactly ``specs`` in one transaction (``dry_run``: say
    what would change, change nothing)."""

    specs: list[ScheduleSpec]
    dry_run: bool = False
    rid: int = 0


# ---------------------------------------------------------------- control: supervisor -> client


class HelloOk(_Msg, tag="hello_ok"):
    """The hello was accepted."""

    version: int
    server_version: str
    pid: int
    max_frame: int = MAX_FRAME
    #: What the supervisor does beyond its protocol version's messages (FEATURES); an
    #: older supervisor sends none.
    features: list[str] = msgspec.field(default_factory=list)


class ErrorReply(_Msg, tag="error"):
    """A request failed; ``code`` is an error code from ``semantica.errors``."""

    code: str
    message: str
    rid: int = 0


class Enqueued(_Msg, tag="enqueued"):
    """The committed jobs of an :class:`Enqueue`, in request order.

    A brief reply (the request asked ``brief``) has ``ids``: the id of every job
    of the request, in its order, and their ``waiting`` (each one's
    ``waiting_for``). ``jobs`` then holds only the jobs at the places ``whole``
    names, whole: those the request did not simply add as its spec says (a
    subject's, a deduplicated one, one that waits for others or was ended at
    once, one added at another time than ``added_at``). Every other job is new,
    QUEUED, added at ``added_at`` (its ``created_at``, and its start time is the
    spec's ``at``, else ``added_at`` + its ``delay``), with the spec's fields and
    its payload as JSON stores it (:func:`semantica.fresh_jobs.fresh_job`). A brief
    reply costs the supervisor a few bytes a job instead of the whole job.
    """

    jobs: list[Job]
    rid: int = 0
    ids: list[int] = msgspec.field(default_factory=list)
    whole: list[int] = msgspec.field(default_factory=list)
    waiting: list[str | None] = msgspec.field(default_factory=list)
    added_at: float = 0.0


class JobReply(_Msg, tag="job"):
    """One job."""

    job: Job
    rid: int = 0


class JobList(_Msg, tag="jobs"):
    """Several jobs, as many as fit in one frame.

    ``more`` (only for a ``paged`` request): the reply stopped at the frame's
    byte budget, and jobs asked for are left: ask again for the rest
    (``ListJobs.before`` = the last id here; ``Wait`` with the ids not
    answered yet and timeout 0). ``total``, in the first reply to a
    ``ListJobs``: how many jobs match its filters in all; with ``total_capped``,
    at least that many (the supervisor stops counting at 10,000).
    """

    jobs: list[Job]
    rid: int = 0
    more: bool = False
    total: int | None = None
    total_capped: bool = False


class LogLines(_Msg, tag="log_lines"):
    """Lines of a job's log, oldest first."""

    lines: list[str]
    rid: int = 0


class WorkerInfo(msgspec.Struct, kw_only=True):
    """One worker process in a status reply; ``job`` is the id it runs, or None."""

    pid: int
    state: str
    job: int | None = None
    node: str | None = None  # the node it belongs to (its name)


class NodeView(msgspec.Struct, kw_only=True):
    """One supervisor among those sharing the store, in a status reply."""

    id: int
    name: str
    host: str
    pid: int
    version: str
    workers: int
    started_at: datetime
    heartbeat_age_s: float  # since its last heartbeat
    state: str  # alive, dead (declared so by the others) or gone (stopped cleanly)
    this: bool = False  # the node that answered


class StatusReply(_Msg, tag="status_reply"):
    """Admin statistics, as ``semctl status --json`` prints them."""

    version: str
    uptime_s: float
    db_bytes: int
    counts: dict[str, int]
    workers: list[WorkerInfo]
    pid: int = 0
    home: str = ""
    durability: str = "full"
    last_maintenance: datetime | None = None
    draining: bool = False  # shutting down: no new job starts; running ones get the drain time
    store: str = ""  # where the jobs are: the SQLite file, or the PostgreSQL server
    node: str = ""  # the name of the node that answered
    nodes: list[NodeView] = msgspec.field(default_factory=list)
    rid: int = 0
    #: Of the QUEUED jobs, how many wait for other jobs (--after, --after-end).
    waiting_on_dependencies: int = 0
    schedules: int = 0  # how many schedules there are
    schedules_paused: int = 0  # of which paused


class Cancelled(_Msg, tag="cancelled"):
    """What a :class:`Cancel` did to each job, in request order."""

    results: list[CancelOutcome]
    rid: int = 0


class QueueReply(_Msg, tag="queue"):
    """One queue after a change."""

    queue: QueueInfo
    rid: int = 0


class QueueList(_Msg, tag="queue_list"):
    """Every queue, by name."""

    queues: list[QueueInfo]
    rid: int = 0


class ScheduleReply(_Msg, tag="schedule"):
    """One schedule; ``created``: a put made it (rather than changing one there)."""

    schedule: Schedule
    created: bool = False
    rid: int = 0


class ScheduleList(_Msg, tag="schedule_list"):
    """Every schedule, by name."""

    schedules: list[Schedule]
    rid: int = 0


class ScheduleDiff(_Msg, tag="schedule_changes"):
    """What an :class:`ApplySchedules` did (or, dry, would do)."""

    changes: ScheduleChanges
    rid: int = 0


class LogChunk(_Msg, tag="log_chunk"):
    """Pushed for :class:`Follow`: lines of the job's log, in order."""

    lines: list[str]
    rid: int = 0


class FollowEnd(_Msg, tag="follow_end"):
    """Pushed for :class:`Follow`, last: the job as it finished."""

    job: Job
    rid: int = 0


class JobEvent(_Msg, tag="job_event"):
    """Pushed for :class:`Events`: one change in a job's life.

    ``event`` is one of: enqueued, started, retried, done, failed, cancelled,
    superseded, interrupted.
    """

    event: str
    job_id: int
    type: str
    state: JobState
    at: datetime
    queue: str | None = None
    attempt: int | None = None
    worker_pid: int | None = None
    error: JobError | None = None
    rid: int = 0


class JobsChanged(_Msg, tag="jobs_changed"):
    """Pushed for :class:`WatchChanges`: jobs changed since the last tick.

    ``seq`` counts the job events this stream has seen since it began.
    """

    seq: int
    rid: int = 0


class MaintenanceReport(_Msg, tag="maintenance_report"):
    """What a maintenance run did."""

    db_bytes_before: int
    db_bytes_after: int
    jobs_deleted: int
    logs_deleted: int
    vacuumed: bool
    integrity: str  # "ok", or what quick_check found
    duration_ms: float
    rid: int = 0
    queues_forgotten: int = 0  # queues with no job left and no setting
    skipped: str = ""  # why nothing was done (another node runs maintenance now), if so


class MetricsReply(_Msg, tag="metrics_reply"):
    """Prometheus text exposition format, version 0.0.4."""

    text: str
    rid: int = 0


class WorkerTop(msgspec.Struct, kw_only=True):
    """One worker in a top view."""

    pid: int
    state: str
    job: int | None = None
    job_type: str | None = None
    running_s: float | None = None  # how long its job has run
    cpu_percent: float = 0.0  # the worker and what it started, since the last top
    rss_bytes: int = 0
    progress: float | None = None  # what its job last reported (0.0 .. 1.0)
    node: str | None = None  # the node it belongs to (its name)
    progress_message: str | None = None  # what its job said with that progress (cut for a row)


class MinuteCounts(msgspec.Struct, kw_only=True):
    """Jobs counted in one minute of a top view's last hour (``TopReply.per_minute``)."""

    start: datetime  # the minute's first second, UTC
    enqueued: int = 0  # jobs enqueued in it
    finished: int = 0  # jobs that reached a finished state in it
    failed: int = 0  # jobs that ended FAILED in it (counted in finished too)


class TopReply(_Msg, tag="top_reply"):
    """A top view: workers, queues, throughput, the supervisor itself, failures, waiting jobs."""

    version: str
    uptime_s: float
    workers: list[WorkerTop]
    queues: list[QueueInfo]
    finished_10s: int  # jobs that reached a finished state in the last 10 s
    finished_60s: int
    supervisor_cpu_percent: float
    supervisor_rss_bytes: int
    failures: list[Job]  # the latest FAILED jobs, cut for a row (see handle_top)
    # The jobs that start next, in that order (waiting_for None), then the first
    # blocked ones by priority, each with its waiting_for; cut for a row.
    waiting: list[Job]
    draining: bool = False  # as in StatusReply
    enqueued_10s: int = 0  # jobs enqueued in the last 10 s
    enqueued_60s: int = 0
    failed_10s: int = 0  # jobs that ended FAILED in the last 10 s
    failed_60s: int = 0
    queues_total: int = 0  # how many queues there are (``queues`` holds the busiest)
    # On a shared store: the node that answered, and every node (``workers`` then holds
    # every live node's workers, the others' as of their last heartbeat).
    node: str = ""
    nodes: list[NodeView] = msgspec.field(default_factory=list)
    rid: int = 0
    # The schedules due next, soonest first (paused ones left out), each with its latest run.
    schedules: list[Schedule] = msgspec.field(default_factory=list)
    # This node's counts by the minute over the last hour, oldest first, every minute
    # present (zeros included); the last is the current minute, still counting.
    per_minute: list[MinuteCounts] = msgspec.field(default_factory=list)


class Ok(_Msg, tag="ok"):
    """The request was carried out and has nothing else to say."""

    rid: int = 0


# ---------------------------------------------------------------- worker channel


class WorkerHello(_Msg, tag="w_hello"):
    """First frame from a worker: who it is and which job types it can run."""

    version: int
    pid: int
    types: list[str]


class RunJob(_Msg, tag="w_run"):
    """Supervisor -> worker: run this job under this lease. ``payload`` is JSON text."""

    lease: int
    job_id: int
    type: str
    payload: bytes
    attempt: int
    max_attempts: int
    timeout: float | None = None
    heartbeat: float = 0.0  # send a Heartbeat this often while it runs (0: never)
    #: On a shared store: the job may run only this many seconds past the last Renew
    #: (or this frame) from the supervisor; then the worker kills it and exits (0: no bound).
    lease_for: float = 0.0


class JobLog(_Msg, tag="w_log"):
    """Worker -> supervisor: lines for the log of the job under ``lease``."""

    lease: int
    lines: list[str]


class JobFinished(_Msg, tag="w_finished"):
    """Worker -> supervisor: the attempt under ``lease`` ended.

    ``error`` None means success and ``result`` is the JSON text of the return
    value; otherwise ``permanent`` says whether retrying can help.
    """

    lease: int
    result: bytes | None = None
    error: JobError | None = None
    permanent: bool = False
    run_s: float = 0.0  # how long the attempt ran, as the worker measured it
    started_at: float = 0.0  # when it started, Unix time, as the worker saw it (0: unknown)
    #: The worker exits after this report (a plain handler ignored its stop and
    #: still holds a thread, or it got SIGTERM): hand it nothing more; it starts
    #: nothing else.
    last: bool = False


class CancelJob(_Msg, tag="w_cancel"):
    """Supervisor -> worker: stop the job under ``lease`` and report it ended with ``kind``.

    ``grace`` is how long the job has to stop (an exec job's process group gets
    SIGTERM, then SIGKILL after it); the supervisor kills the worker if no
    report comes a little after that.
    """

    lease: int
    kind: str
    message: str
    grace: float = 5.0


class JobProgress(_Msg, tag="w_progress"):
    """Worker -> supervisor: the job under ``lease`` is ``fraction`` done (ctx.progress)."""

    lease: int
    fraction: float
    message: str = ""


class Heartbeat(_Msg, tag="w_beat"):
    """Worker -> supervisor: still alive and running the job under ``lease``.

    A worker that stays silent past the heartbeat timeout is killed and its
    job re-queued: its event loop is stuck, or the process is stopped.
    """

    lease: int


class JobProcess(_Msg, tag="w_process"):
    """Worker -> supervisor: the exec job under ``lease`` runs as process group ``pgid``.

    The supervisor kills that group itself if the worker dies first.
    """

    lease: int
    pgid: int


class Renew(_Msg, tag="w_renew"):
    """Supervisor -> worker: this node still holds its leases; the jobs handed over may
    run ``for_s`` seconds more (see ``RunJob.lease_for``)."""

    for_s: float


class GiveBack(_Msg, tag="w_give_back"):
    """Supervisor -> worker: drop these prefetched jobs if they have not started yet.

    The worker answers with :class:`GivenBack`; a job it has already started
    runs on and is reported as usual.
    """

    leases: list[int]


class GivenBack(_Msg, tag="w_given_back"):
    """Worker -> supervisor: the jobs of these leases were dropped unstarted (answers GiveBack)."""

    leases: list[int]


ControlRequest = (
    Hello
    | Enqueue
    | GetJob
    | ListJobs
    | Wait
    | GetLogs
    | GetStatus
    | Shutdown
    | Cancel
    | Retry
    | PauseQueue
    | ResumeQueue
    | LimitQueue
    | ListQueues
    | Follow
    | Events
    | WatchChanges
    | GetMetrics
    | GetTop
    | Maintain
    | PutSchedule
    | GetSchedule
    | ListSchedules
    | PauseSchedule
    | RemoveSchedule
    | RunSchedule
    | ApplySchedules
)
#: The control requests as the supervisor decodes them (``Enqueue`` as :class:`EnqueueLazy`).
SupervisorRequest = (
    Hello
    | EnqueueLazy
    | GetJob
    | ListJobs
    | Wait
    | GetLogs
    | GetStatus
    | Shutdown
    | Cancel
    | Retry
    | PauseQueue
    | ResumeQueue
    | LimitQueue
    | ListQueues
    | Follow
    | Events
    | WatchChanges
    | GetMetrics
    | GetTop
    | Maintain
    | PutSchedule
    | GetSchedule
    | ListSchedules
    | PauseSchedule
    | RemoveSchedule
    | RunSchedule
    | ApplySchedules
)
ControlReply = (
    HelloOk
    | ErrorReply
    | Enqueued
    | JobReply
    | JobList
    | LogLines
    | StatusReply
    | Ok
    | Cancelled
    | QueueReply
    | QueueList
    | LogChunk
    | FollowEnd
    | JobEvent
    | JobsChanged
    | MetricsReply
    | TopReply
    | MaintenanceReport
    | ScheduleReply
    | ScheduleList
    | ScheduleDiff
)
ToWorker = RunJob | CancelJob | GiveBack | Renew
FromWorker = WorkerHello | JobLog | JobFinished | JobProcess | Heartbeat | JobProgress | GivenBack

_encoder = msgspec.msgpack.Encoder()


def utf8_text(text: str) -> str:
    """``text`` as it can travel: lone surrogates (from bytes decoded with
    ``surrogateescape``, say) become ``\\udcff`` escapes instead of failing the frame."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def encode(msg: msgspec.Struct) -> bytes:
    """One frame: header and body."""
    body = _encoder.encode(msg)
    return HEADER.pack(len(body)) + body


def encode_around(msg: msgspec.Struct, field: str) -> tuple[bytes, bytes]:
    """``msg``'s body without its list ``field``: the bytes before the list, and after it.

    For a message too big to encode in one go on an event loop (an ``Enqueued``
    of 100,000 jobs takes a tenth of a second): its body is ``before`` +
    :func:`list_header` of the item count + :func:`encode_items` of the items,
    in as many pieces as wanted, + ``after``. The same bytes as :func:`encode`.
    """
    body = _encoder.encode(msgspec.structs.replace(msg, **{field: []}))
    key = _encoder.encode(field)
    at = body.index(key + b"\x90") + len(key)  # the key, then an empty list (0x90)
    return body[:at], body[at + 1 :]


def list_header(count: int) -> bytes:
    """The msgpack header of a list of ``count`` items."""
    if count < 16:
        return bytes([0x90 | count])
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def encode_items(items: list[Any]) -> bytes:
    """``items`` encoded one after another, as inside a list (without its header)."""
    return _encoder.encode(items)[len(list_header(len(items))) :]


class FrameDecoder:
    """Turns a byte stream into message objects of one union type.

    Feed it whatever the socket gave; iterate :meth:`messages` for the complete
    ones. A header announcing more than ``max_frame`` bytes (``first_max`` for
    the first frame, if given) raises :class:`FrameTooLarge` at once, before
    the body arrives.
    """

    def __init__(
        self, message_type: Any, max_frame: int = MAX_FRAME, first_max: int | None = None
    ) -> None:
        self._decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(message_type)
        self._max = max_frame if first_max is None else first_max
        self._then_max = max_frame
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    @property
    def complete(self) -> bool:
        """Whether a whole frame (or a header over the cap) is received and not yet taken."""
        buf = self._buf
        if len(buf) < HEADER.size:
            return False
        size: int = HEADER.unpack_from(buf)[0]
        return size > self._max or len(buf) >= HEADER.size + size

    def feed(self, data: bytes | bytearray) -> None:
        """Add received bytes."""
        self._buf += data

    def messages(self) -> Iterator[Any]:
        """Yield every complete message; raise ProtocolError on a bad one."""
        buf = self._buf
        while len(buf) >= HEADER.size:
            (size,) = HEADER.unpack_from(buf)
            if size > self._max:
                raise FrameTooLarge(f"frame of {size} bytes exceeds the {self._max}-byte limit")
            end = HEADER.size + size
            if len(buf) < end:
                return
            body = bytes(buf[HEADER.size : end])
            del buf[:end]
            self._max = self._then_max
            yield decode_body(self._decoder, body)


_spec_decoder = msgspec.msgpack.Decoder(JobSpec)


def decode_spec(raw: msgspec.Raw, index: int) -> JobSpec:
    """Job ``index`` of an :class:`EnqueueLazy`; ProtocolError if it is malformed."""
    try:
        return decode_body(_spec_decoder, raw)  # type: ignore[no-any-return]
    except ProtocolError as exc:
        raise ProtocolError(f"{exc.message} (job {index} of the request)") from None


def decode_body(decoder: msgspec.msgpack.Decoder[Any], body: bytes) -> Any:
    """Decode one body, mapping every msgspec failure to ProtocolError."""
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(f"bad message: {exc}") from None
    except RecursionError:  # a body nested absurdly deep
        raise ProtocolError("bad message: nested too deeply") from None
    except (UnicodeDecodeError, ValueError, TypeError) as exc:  # e.g. a str that is not UTF-8
        raise ProtocolError(f"bad message: {exc}") from None
