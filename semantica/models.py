"""Jobs as data: states, the one table of allowed transitions, and the job records.

The transition table is the single authority on how a job may move. The store
checks every state change against it (:func:`check_transition`), and the
property tests drive random event sequences against it.

Records are ``msgspec.Struct`` s because they travel inside protocol messages.
Schema evolution rule (msgspec's): new fields get defaults, field types never
change.
"""

# Annotations are evaluated here, not postponed (no `from __future__ import
# annotations`): msgspec reads a Struct's field types when a decoder is first built,
# and each postponed one costs it a compile() and an eval (the control replies have
# about 200: a few ms of every new `semctl` or Client process).

import enum
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from semantica.errors import BadInput, SemanticaError, register_code


class JobState(enum.StrEnum):
    """Where a job is in its life."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SUPERSEDED = "SUPERSEDED"


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.SUPERSEDED}
)

#: Every allowed move, and the event that makes it. Anything not here is refused.
TRANSITIONS: Mapping[tuple[JobState, JobState], str] = {
    (JobState.QUEUED, JobState.RUNNING): "lease",
    (JobState.QUEUED, JobState.CANCELLED): "cancel",
    (JobState.QUEUED, JobState.SUPERSEDED): "supersede",
    (JobState.RUNNING, JobState.DONE): "complete",
    (JobState.RUNNING, JobState.FAILED): "fail",
    (JobState.RUNNING, JobState.CANCELLED): "cancel",
    # Back to the queue: a retry after a failed attempt, a lost worker, a drain.
    (JobState.RUNNING, JobState.QUEUED): "requeue",
    # `semctl retry`: the only way out of a finished state.
    (JobState.FAILED, JobState.QUEUED): "retry",
    (JobState.CANCELLED, JobState.QUEUED): "retry",
}


@register_code
class InvalidTransition(SemanticaError):
    """A state change the transition table does not allow."""

    code = "invalid_transition"


def check_transition(src: JobState, dst: JobState) -> str:
    """Return the event name for ``src -> dst``.

    Raises:
        InvalidTransition: the table has no such move.
    """
    try:
        return TRANSITIONS[(src, dst)]
    except KeyError:
        raise InvalidTransition(f"a {src} job cannot become {dst}") from None


class ErrorKind(enum.StrEnum):
    """Why an attempt ended without success."""

    EXCEPTION = "exception"  # the handler raised
    EXIT_STATUS = "exit_status"  # an exec job exited non-zero or by a signal
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"  # the worker process died mid-job
    CANCELLED = "cancelled"
    UNKNOWN_TYPE = "unknown_type"  # no handler for the job's type
    INTERRUPTED = "interrupted"  # stopped by a drain or a supervisor restart; not a failure
    BAD_PAYLOAD = "bad_payload"  # the payload did not fit the handler (e.g. exec without argv)
    BAD_RESULT = "bad_result"  # the handler returned something that is not JSON
    # a job it waited for (--after) ended FAILED, CANCELLED or SUPERSEDED: it never ran
    DEPENDENCY_FAILED = "dependency_failed"


class WaitReason(enum.StrEnum):
    """Why a QUEUED job has not started (``Job.waiting_for``); None means it is next in line."""

    DEPENDENCY = "dependency"  # a job it waits for (--after, --after-end) has not ended yet
    RUN_AFTER = "run_after"  # its --delay / --at has not come
    RETRY_BACKOFF = "retry_backoff"  # it failed and waits for its retry time
    QUEUE_PAUSED = "queue_paused"
    QUEUE_LIMIT = "queue_limit"  # its queue runs as many jobs as its limit allows
    SUBJECT_BUSY = "subject_busy"  # another job of its (type, subject) runs
    CHARGING = "charging"  # --require-charging, and the machine is on battery
    IDLE = "idle"  # --require-idle, and the CPU is busy


class DependencyMode(enum.StrEnum):
    """What a job waits for in a job it depends on."""

    DONE = "done"  # --after: the job ends DONE (any other end cancels the waiting job)
    END = "end"  # --after-end: the job ends, whatever its end (clean-up jobs)


class Dependency(msgspec.Struct, kw_only=True, gc=False):
    """A job another waits for, as ``show`` lists it: its id, what is waited for, and
    its state now (always set: retention deletes a job's edges with it, both ways; the
    field keeps its optional wire type)."""

    id: int
    mode: str  # a DependencyMode
    state: JobState | None = None


class JobError(msgspec.Struct, frozen=True):
    """The last error of a job: a kind from :class:`ErrorKind` and a message for people."""

    kind: str
    message: str


# gc=False: a Job never takes part in a reference cycle (its payload and result come
# from JSON), and a reply can carry 100,000 of them: tracked, each full collection of
# Python's cyclic GC would walk them all (a tenth of a second, on the event loop).
class Job(msgspec.Struct, kw_only=True, gc=False):
    """A job as clients see it (``semctl show --json`` prints exactly this)."""

    id: int
    type: str
    queue: str
    subject: str | None
    generation: int | None
    priority: int
    state: JobState
    attempts: int
    max_attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    run_after: datetime | None
    result: Any = None
    error: JobError | None = None
    payload: Any = None
    timeout: float | None = None
    waiting_for: str | None = None
    worker_pid: int | None = None
    deduplicated: bool = False
    backoff: float | None = None
    require_charging: bool = False
    require_idle: bool = False
    superseded_by: int | None = None
    progress: float | None = None  # 0.0 .. 1.0, as the handler last reported (ctx.progress)
    progress_message: str | None = None
    node: str | None = None  # on a shared store: the node running it (RUNNING only)
    schedule: str | None = None  # the schedule that made it (semantica.schedules)
    slot: datetime | None = None  # and the slot it was made for (None: ``schedule run``)
    #: QUEUED, waiting for dependencies: the ids of the jobs it still waits for.
    waiting_on: list[int] | None = None
    #: A single job read back (``show``): the jobs it waits for, and those that wait for
    #: it (the first DEPENDENTS_SHOWN; ``dependents_count`` says how many in all).
    #: Lists of jobs leave these empty.
    dependencies: list[Dependency] | None = None
    dependents: list[int] | None = None
    dependents_count: int = 0


class QueueInfo(msgspec.Struct, kw_only=True):
    """A queue: its settings and how many of its jobs are in each state."""

    name: str
    paused: bool = False
    limit: int = 0  # most jobs running at once; 0 is no cap
    counts: dict[str, int] = msgspec.field(default_factory=dict)


class CancelOutcome(msgspec.Struct, kw_only=True):
    """What ``cancel`` did to one job: its state afterwards and a line for people."""

    id: int
    state: JobState
    message: str


#: The job type the worker runs itself: a command line.
EXEC_TYPE = "exec"

# Limits that make bad input fail loudly instead of surprising later.
QUEUE_LIMIT_MAX = 10_000
#: Generations above this are refused, so that "one above the newest" still fits
#: SQLite's 64-bit integers.
GENERATION_MAX = 2**62
#: Integers the protocol (msgpack) can carry.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
#: How deep a payload may nest (JSON decoders give up somewhere near a thousand).
PAYLOAD_DEPTH_MAX = 200
#: Durations (timeout, delay, backoff) are below this many seconds (about 31 years).
SECONDS_MAX = 10**9
PRIORITY_MIN = -1000
PRIORITY_MAX = 1000
MAX_ATTEMPTS_LIMIT = 1000
NAME_MAX = 200
#: The most jobs one job may wait for (--after and --after-end together).
DEPENDENCIES_MAX = 1000
#: The most dependents a single job read back lists (``Job.dependents``).
DEPENDENTS_SHOWN = 1000
_QUEUE_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
DEFAULT_QUEUE = "default"
DEFAULT_MAX_ATTEMPTS = 3


# omit_defaults: a spec is sent without the fields it leaves as they are (most of them),
# so the options added over time (dependencies, say) cost a plain job nothing on the wire.
class JobSpec(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a client asks for when it enqueues one job."""

    type: str
    payload: Any = None
    queue: str = DEFAULT_QUEUE
    subject: str | None = None
    generation: int | None = None
    priority: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout: float | None = None
    delay: float | None = None
    at: datetime | None = None
    backoff: float | None = None
    require_charging: bool = False
    require_idle: bool = False
    supersede_running: bool = False  # also cancel a running older generation of the subject
    #: Start only once these jobs are DONE (an id, or in ``enqueue_many`` the ``ref`` of
    #: another job of the same request); if one ends otherwise, this job is CANCELLED
    #: (``dependency_failed``).
    after: list[int | str] = msgspec.field(default_factory=list)
    #: Start only once these jobs have ended, however they ended.
    after_end: list[int | str] = msgspec.field(default_factory=list)
    #: A name for this job within its ``enqueue_many`` request, for ``after`` of the others.
    ref: str | None = None


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: bad input is echoed in one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Queue names found good (a batch names a few, each thousands of times), up to a cap.
_GOOD_QUEUES: set[str] = set()
_GOOD_QUEUES_MAX = 1024


def validate_queue_name(name: str) -> None:
    """Raises BadInput unless ``name`` is 1-64 of ``A-Z a-z 0-9 _ . : -``."""
    if name in _GOOD_QUEUES:
        return
    validate_name("queue", name)
    if len(_GOOD_QUEUES) < _GOOD_QUEUES_MAX:
        _GOOD_QUEUES.add(name)


def validate_name(what: str, name: str) -> None:
    """Raises BadInput (naming ``what``: queue, schedule) unless ``name`` is 1-64 of
    ``A-Z a-z 0-9 _ . : -``: the names a user gives things, safe in any view and URL."""
    if not _QUEUE_RE.fullmatch(name):
        raise BadInput(f"{what} name must be 1-64 of A-Z a-z 0-9 _ . : -, got {short_repr(name)}")


def _bad_seconds(name: str, value: float) -> BadInput:
    """The error of a time (``timeout``, ``delay``, ``backoff``) out of its range."""
    low = "more than 0" if name == "timeout" else "0 or more"
    return BadInput(
        f"{name} must be a number of seconds, {low} and below {SECONDS_MAX:.0e}, got {value}"
    )


def validate_spec(spec: JobSpec) -> None:
    """Check a spec's fields against the documented ranges.

    Raises:
        BadInput: with a one-line reason naming the field.
    """
    if not spec.type or len(spec.type) > NAME_MAX or not spec.type.isprintable():
        raise BadInput(
            f"job type must be 1-{NAME_MAX} printable characters, got {short_repr(spec.type)}"
        )
    validate_queue_name(spec.queue)
    if spec.subject is not None and (not spec.subject or len(spec.subject) > 4096):
        raise BadInput("subject must be 1-4096 characters")
    if spec.generation is not None and spec.subject is None:
        raise BadInput("a generation needs a subject (--subject)")
    if spec.supersede_running and spec.subject is None:
        raise BadInput("--supersede-running needs a subject (--subject)")
    if not PRIORITY_MIN <= spec.priority <= PRIORITY_MAX:
        raise BadInput(
            f"priority must be between {PRIORITY_MIN} and {PRIORITY_MAX}, got {spec.priority}"
        )
    if not 1 <= spec.max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise BadInput(
            f"max-attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}, got {spec.max_attempts}"
        )
    if spec.generation is not None and not 0 <= spec.generation <= GENERATION_MAX:
        raise BadInput(f"generation must be between 0 and {GENERATION_MAX}, got {spec.generation}")
    # (A spec of a big batch is checked on both sides: each time compared in place.)
    timeout, delay, backoff = spec.timeout, spec.delay, spec.backoff
    if timeout is not None and not (timeout > 0 and timeout < SECONDS_MAX):
        raise _bad_seconds("timeout", timeout)
    if delay is not None and not (delay >= 0 and delay < SECONDS_MAX):
        raise _bad_seconds("delay", delay)
    if backoff is not None and not (backoff >= 0 and backoff < SECONDS_MAX):
        raise _bad_seconds("backoff", backoff)
    if spec.delay is not None and spec.at is not None:
        raise BadInput("give either a delay or a start time (--at), not both")
    if spec.at is not None:
        if spec.at.tzinfo is None:
            raise BadInput("a start time (--at) needs a timezone")
        try:
            spec.at.astimezone(UTC).timestamp()  # as it travels: in UTC
        except (OverflowError, ValueError, OSError):
            raise BadInput(f"start time (--at) {spec.at.isoformat()} is out of range") from None
    if spec.ref is not None or spec.after or spec.after_end:
        validate_dependencies(spec)
    problem = payload_problem(spec.payload)
    if problem is None and spec.type == EXEC_TYPE:
        problem = exec_payload_problem(spec.payload)
    if problem is not None:
        raise BadInput(problem)


def validate_dependencies(spec: JobSpec) -> None:
    """Check ``after``, ``after_end`` and ``ref`` alone (refs are resolved per request).

    Raises:
        BadInput: too many dependencies, an id that cannot name a job, or a bad ref.
    """
    if spec.ref is not None:
        _check_ref(spec.ref, "ref")
    if not spec.after and not spec.after_end:
        return
    if len(spec.after) + len(spec.after_end) > DEPENDENCIES_MAX:
        raise BadInput(f"a job may wait for at most {DEPENDENCIES_MAX} jobs (--after, --after-end)")
    for item in (*spec.after, *spec.after_end):
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise BadInput(f"after: a job id or a ref, got {short_repr(item)}")
        if isinstance(item, int):
            if not 0 < item < 2**63:
                raise BadInput(f"after: no job {item}")
        else:
            _check_ref(item, "after")


def _check_ref(ref: str, what: str) -> None:
    if not ref or len(ref) > NAME_MAX or not ref.isprintable():
        raise BadInput(f"{what}: a ref is 1-{NAME_MAX} printable characters, got {short_repr(ref)}")


def payload_problem(value: Any, what: str = "payload") -> str | None:
    """Why ``value`` is not a payload (or, with ``what``, a result) that comes back as
    it went in, or None.

    A payload is what ``json.dumps(payload, allow_nan=False)`` takes: objects
    (keys strings, or integers, which become strings), arrays (lists or
    tuples), strings, integers that fit in 64 bits, finite floats, booleans
    and null, nested at most ``PAYLOAD_DEPTH_MAX`` deep. Anything else (NaN,
    bytes, a set, a date) would be stored changed, and is refused instead.
    """
    return _json_problem(value, 0, what)


def _json_problem(value: Any, depth: int, what: str) -> str | None:
    if value is None or isinstance(value, (str, bool)):
        return None
    if isinstance(value, int):
        if INT_MIN <= value <= INT_MAX:
            return None
        return f"{what} integers must fit in 64 bits"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{what} numbers must be finite (no NaN or inf)"
    if depth >= PAYLOAD_DEPTH_MAX:
        return f"{what} is nested more than {PAYLOAD_DEPTH_MAX} levels deep"
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str and (not isinstance(key, (str, int)) or isinstance(key, bool)):
                return f"{what} object keys must be strings, got {type(key).__name__}"
            # (A string or null, most values, is fine as it is: no call for it.)
            if type(item) is not str and item is not None:
                problem = _json_problem(item, depth + 1, what)
                if problem is not None:
                    return problem
        return None
    if isinstance(value, (list, tuple)):
        for item in value:
            if type(item) is not str and item is not None:
                problem = _json_problem(item, depth + 1, what)
                if problem is not None:
                    return problem
        return None
    return f"{what} must be plain JSON: {type(value).__name__} values are not (convert them first)"


def exec_payload_problem(payload: Any) -> str | None:
    """Why ``payload`` cannot describe an ``exec`` job, or None.

    ``{"argv": [str, ...], "cwd"?: str, "env"?: {str: str}, "inherit_env"?: bool}``
    with a non-empty command name.
    """
    if payload is None:
        return "an exec job needs a command: semctl enqueue exec -- CMD [ARGS...]"
    if not isinstance(payload, dict):
        return 'exec payload must be an object like {"argv": ["cmd", "arg"]}'
    argv = payload.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        return "exec payload needs argv: a non-empty list of strings"
    if not argv[0]:
        return "exec payload argv[0], the command, is empty"
    cwd = payload.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        return "exec payload cwd must be a string"
    env = payload.get("env")
    if env is not None and (
        not isinstance(env, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    ):
        return "exec payload env must map strings to strings"
    if not isinstance(payload.get("inherit_env", True), bool):
        return "exec payload inherit_env must be true or false"
    unknown = set(payload) - {"argv", "cwd", "env", "inherit_env"}
    if unknown:
        return f"exec payload has unknown keys: {', '.join(sorted(unknown))}"
    return None
