"""The job store: the only code that runs SQL.

The public methods of :class:`SQLiteStore` are the store contract the rest of
the supervisor relies on; each docstring states what it does atomically. It
keeps one SQLite file (WAL, ``synchronous=FULL`` by default) through the
standard ``sqlite3`` module and sqlite-utils. A second implementation
(PostgreSQL, leases with ``FOR UPDATE SKIP LOCKED``) can stand beside it with
the same methods; nothing outside this module may depend on SQLite.

Every state change is checked against the transition table in
:mod:`semantica.models` before its UPDATE runs, and each UPDATE names the
state it expects (and, for a running job, its lease id), so a late message
from a worker that was given up on changes nothing.

Time comes from a :class:`~semantica.supervisor.clock.Clock`, so tests are
deterministic. Calls are synchronous and short (one small transaction each);
long work (VACUUM, integrity checks) belongs in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import re
import resource
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import sqlite_utils

from semantica.errors import BadInput, NoSuchJob, StoreBusy, StoreError, StoreFull
from semantica.limits import ERROR_MESSAGE_MAX, PROGRESS_MESSAGE_MAX, cut
from semantica.models import (
    GENERATION_MAX,
    QUEUE_LIMIT_MAX,
    TERMINAL_STATES,
    TRANSITIONS,
    ErrorKind,
    Job,
    JobError,
    JobSpec,
    JobState,
    QueueInfo,
    check_transition,
    validate_queue_name,
    validate_spec,
)
from semantica.supervisor.clock import Clock, SystemClock

_MIGRATION_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


class SchemaTooNew(StoreError):
    """The database was written by a newer Semantica; it is left untouched."""


class StaleLease(StoreError):
    """A message named a lease that is no longer the job's current one; nothing changed."""

    code = "stale_lease"


class EnqueueResult(msgspec.Struct):
    """What an enqueue did: the jobs (new or deduplicated) and the jobs it replaced."""

    jobs: list[Job] = msgspec.field(default_factory=list)
    superseded: list[int] = msgspec.field(default_factory=list)  # QUEUED -> SUPERSEDED
    # (running older job, the new job): to cancel for --supersede-running
    running_older: list[tuple[int, int]] = msgspec.field(default_factory=list)


class SchemaChange(msgspec.Struct):
    """What :meth:`SQLiteStore.migrate` did: from which schema version to which."""

    before: int  # 0: the database was new, and its schema was made from nothing
    after: int
    backup: Path | None = None  # the copy taken before going up, if one was
    seconds: float = 0.0  # how long it took, the backup included


class Blockers(msgspec.Struct):
    """The queue and subject facts that keep queued jobs waiting (for ``waiting_for``)."""

    paused: set[str] = msgspec.field(default_factory=set)
    limits: dict[str, int] = msgspec.field(default_factory=dict)
    running_per_queue: dict[str, int] = msgspec.field(default_factory=dict)
    busy_subjects: set[tuple[str, str]] = msgspec.field(default_factory=set)


class Page(msgspec.Struct):
    """Jobs read within a byte budget: ``more`` if the budget stopped the read early."""

    jobs: list[Job]
    more: bool = False


class Lease(msgspec.Struct, frozen=True):
    """A job handed to a worker: what the worker needs to run one attempt."""

    lease_id: int
    job_id: int
    type: str
    queue: str
    payload: bytes  # JSON text
    attempt: int
    max_attempts: int
    timeout: float | None
    backoff: float | None
    created_at: float = 0.0


def migrations_dir() -> Path:
    """The ``sql/`` directory: inside the installed package, or beside it in a checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "sql", package.parent / "sql"):
        if candidate.is_dir():
            return candidate
    raise StoreError(f"the sql/ migrations are missing (looked in {package} and its parent)")


def migrations() -> list[tuple[int, Path]]:
    """The up-migrations, ``(version, path)``, in order."""
    found = []
    for path in migrations_dir().iterdir():
        match = _MIGRATION_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


# The queues that have queued jobs, by name: a skip through jobs_queue_ready, one
# seek per such queue. Queues without queued jobs are never looked at, so the work
# of a lease does not grow with the queue names ever used (the queues table keeps
# every queue that has jobs of any state or a setting).
_QUEUED_QUEUES = (
    "WITH RECURSIVE live(name) AS ("
    "SELECT (SELECT min(queue) FROM jobs INDEXED BY jobs_queue_ready WHERE state = 'QUEUED') "
    "UNION ALL SELECT (SELECT min(queue) FROM jobs INDEXED BY jobs_queue_ready "
    "                  WHERE state = 'QUEUED' AND queue > live.name) "
    "FROM live WHERE live.name IS NOT NULL) "
)
# Queues that have queued jobs and may start them, with their cap and how many of
# their jobs run. (A queue without a row has the default settings.)
_QUEUE_ROOM = (
    _QUEUED_QUEUES + "SELECT live.name, coalesce(q.max_running, 0), "
    "(SELECT count(*) FROM jobs AS r INDEXED BY jobs_state "
    " WHERE r.state = 'RUNNING' AND r.queue = live.name) "
    "FROM live LEFT JOIN queues AS q ON q.name = live.name "
    "WHERE live.name IS NOT NULL AND coalesce(q.paused, 0) = 0"
)
_ALL_STATES_SQL = "(" + ", ".join(f"'{state.value}'" for state in JobState) + ")"
# The next jobs of one queue that may start now: due, subject free, conditions met; best first.
_NEXT_IN_QUEUE = (
    "SELECT j.priority, j.id, j.type, j.subject FROM jobs AS j INDEXED BY jobs_queue_ready "
    "WHERE j.state = 'QUEUED' AND j.queue = ? AND j.run_after <= ? "
    "AND (j.subject IS NULL OR NOT EXISTS (SELECT 1 FROM jobs AS r WHERE r.type = j.type "
    "     AND r.subject = j.subject AND r.state = 'RUNNING')) "
    "AND (j.require_charging = 0 OR ?) AND (j.require_idle = 0 OR ?) "
    "ORDER BY j.priority DESC, j.id LIMIT ?"
)
_TAKE = (
    "UPDATE jobs SET state = 'RUNNING', attempts = attempts + 1, started_at = ?, "
    "finished_at = NULL, lease_id = ?, worker_pid = ?, progress = NULL, "
    "progress_message = NULL WHERE id = ? AND state = 'QUEUED' "
    "RETURNING id, type, queue, payload, attempts, max_attempts, timeout_s, backoff_s, "
    "created_at"
)


#: The name a backup has while it is written (see SQLiteStore.backup).
_PARTIAL = ".partial-"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make the names in a directory (a new file, a rename) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_partials(folder: Path) -> None:
    """Remove backups left unfinished (and their journals) by a kill or a failure.

    Best effort: a leftover that cannot be removed is only a wasted file, never
    taken for a backup, and must not stop a start.
    """
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            if path.name.startswith(_PARTIAL):
                with contextlib.suppress(OSError):
                    path.unlink()


def store_error(exc: sqlite3.Error, what: str) -> StoreError:
    """The typed error for an SQLite failure: full, busy, or anything else."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_FULL") or (name == "SQLITE_IOERR_WRITE" and "full" in str(exc)):
        return StoreFull(f"{what}: the disk is full ({exc})")
    if name in ("SQLITE_IOERR_WRITE", "SQLITE_IOERR_SHMSIZE") and _file_size_limited():
        # A write past RLIMIT_FSIZE fails with EFBIG (SIGXFSZ is ignored), which
        # SQLite reports as a plain I/O error: to the user it is a full disk.
        return StoreFull(f"{what}: the disk is full (the file size limit, ulimit -f, was reached)")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StoreBusy(f"{what}: the database is locked by another process ({exc})")
    return StoreError(f"{what}: {exc}")


#: How long a write waits for another process holding the database's write lock
#: before it fails with StoreBusy (store_busy to a client).
BUSY_TIMEOUT_S = 5.0


def _set_busy_timeout(conn: sqlite3.Connection, seconds: float) -> None:
    conn.execute(f"PRAGMA busy_timeout = {round(seconds * 1000)}")


#: Less free space than this, and an I/O error opening the database is a full disk.
NEARLY_FULL_BYTES = 1 << 20


def disk_free(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the file system of ``path``."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _file_size_limited() -> bool:
    """Whether this process runs under a file size limit (RLIMIT_FSIZE)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    return soft != resource.RLIM_INFINITY


F = TypeVar("F", bound=Callable[..., Any])


def _reads(method: F) -> F:
    """A read: an SQLite failure becomes a typed StoreError (nothing to roll back)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            raise store_error(exc, "reading the job store failed") from None

    return wrapper  # type: ignore[return-value]


def _check_id(job_id: int) -> None:
    """Job ids are SQLite integers: one outside 1..2**63-1 names no job."""
    if not 0 < job_id < 2**63:
        raise NoSuchJob(f"no job {job_id}")


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


# The messages are read in part: a row stored before the caps (a 24 MB error,
# say) is cut on the way out (see _job), and only its beginning is copied.
def _columns(error_chars: int, progress_chars: int, *, bodies: bool = True) -> str:
    """The columns a Job is read from (see :meth:`SQLiteStore._job`), in its order.

    The texts a job may make long are read at most ``error_chars`` and
    ``progress_chars`` + 1 characters (the + 1 shows they were longer);
    without ``bodies``, no payload nor result (rows for a view).
    """
    return ", ".join(
        [
            "id, type, queue, subject, generation, priority, state, attempts, max_attempts",
            "created_at, started_at, finished_at, run_after",
            "result" if bodies else "NULL",
            "error_kind",
            f"substr(error_message,1,{error_chars + 1})",
            "payload" if bodies else "'null'",
            "timeout_s, worker_pid, backoff_s, require_charging, require_idle, superseded_by",
            "progress",
            f"substr(progress_message,1,{progress_chars + 1})",
        ]
    )


_JOB_COLUMNS = _columns(ERROR_MESSAGE_MAX, PROGRESS_MESSAGE_MAX)
_PRIORITY = _JOB_COLUMNS.split(", ").index("priority")


def _row_columns(cut: int) -> str:
    """:data:`_JOB_COLUMNS` for a row of a view (top): no payload nor result, and the
    texts a job may make long read at most ``cut + 1`` characters (see :func:`_cut_row`)."""
    return _columns(cut, cut, bodies=False)


def _cut(text: str, cut: int) -> str:
    return text if len(text) <= cut else text[: cut - 1] + "\u2026"


def _cut_row(job: Job, cut: int) -> Job:
    """Texts longer than ``cut`` characters end in an ellipsis at ``cut``."""
    if job.error is not None and len(job.error.message) > cut:
        job.error = JobError(job.error.kind, _cut(job.error.message, cut))
    if job.progress_message is not None:
        job.progress_message = _cut(job.progress_message, cut)
    return job


_INSERT_COLUMNS = (
    "type, queue, subject, generation, priority, state, payload, max_attempts, timeout_s, "
    "backoff_s, require_charging, require_idle, created_at, run_after"
)
_INSERT_ROW = "(?, ?, ?, ?, ?, 'QUEUED', ?, ?, ?, ?, ?, ?, ?, ?)"
#: The most rows one INSERT carries: 13 parameters each, well under SQLite's 32,766.
_INSERT_CHUNK = 256
# Ids as one JSON array parameter: one statement whatever their number. (A
# statement per list length would fill sqlite3's statement cache with up to
# 128 prepared statements of hundreds of parameters each: +9 MB of RSS.)
_IDS_IN_JSON = "(SELECT value FROM json_each(?))"


def _json_ids(ids: Sequence[int]) -> str:
    return msgspec.json.encode(list(ids)).decode()


def _chunks(count: int) -> Iterator[tuple[int, int]]:
    """``(start, size)`` covering ``count`` rows, each size a power of two up to _INSERT_CHUNK.

    Each size is a distinct INSERT statement, prepared once and cached by
    sqlite3: a handful of sizes keeps that cache (and the supervisor's memory)
    small whatever batch sizes clients send; one statement per batch size
    grew the supervisor by 50 MB.
    """
    start = 0
    while start < count:
        size = min(_INSERT_CHUNK, 1 << ((count - start).bit_length() - 1))
        yield start, size
        start += size


def _insert_args(
    spec: JobSpec, generation: int | None, payload: str, now: float, run_after: float
) -> tuple[Any, ...]:
    """The parameters of one :data:`_INSERT_ROW`."""
    return (
        spec.type,
        spec.queue,
        spec.subject,
        generation,
        spec.priority,
        payload,
        spec.max_attempts,
        spec.timeout,
        spec.backoff,
        int(spec.require_charging),
        int(spec.require_idle),
        now,
        run_after,
    )


def _new_job(
    job_id: int,
    spec: JobSpec,
    generation: int | None,
    payload: str,
    now: float,
    created_at: datetime,
    run_after: float,
) -> Job:
    """The Job a fresh insert made, without reading it back (``created_at`` is ``now``)."""
    return Job(
        id=job_id,
        type=spec.type,
        queue=spec.queue,
        subject=spec.subject,
        generation=generation,
        priority=spec.priority,
        state=JobState.QUEUED,
        attempts=0,
        max_attempts=spec.max_attempts,
        created_at=created_at,
        started_at=None,
        finished_at=None,
        # Most jobs may run at once: share the one datetime of the batch.
        run_after=created_at if run_after == now else _ts(run_after),
        payload=_json_decode(payload),  # as stored (a set became a list)
        timeout=spec.timeout,
        backoff=spec.backoff,
        require_charging=spec.require_charging,
        require_idle=spec.require_idle,
    )


_json_decode = msgspec.json.decode
_json_encode = msgspec.json.encode
_msgpack_encode = msgspec.msgpack.Encoder().encode

#: What a job's reply may add to its encoded size after the read (``waiting_for``).
_JOB_SLACK = 32
# Where a row's JSON texts are, for a first guess at its size.
_PAYLOAD, _RESULT = (_JOB_COLUMNS.split(", ").index(name) for name in ("payload", "result"))


class _PageBuilder:
    """Jobs from rows, as long as they fit in ``budget`` bytes of reply (at least one).

    Each job is measured as it is sent (msgpack); a row whose JSON alone
    shows it cannot fit (msgpack takes at least a sixth of the JSON: ``\u0001``
    becomes one byte) is not even decoded, so a page of large jobs costs its
    jobs and one look at the next row.
    """

    def __init__(self, budget: int | None) -> None:
        self.jobs: list[Job] = []
        self.more = False
        self._left = math.inf if budget is None else budget

    def add(self, store: SQLiteStore, row: Sequence[Any]) -> bool:
        """Take the job of ``row`` if it fits; False (and ``more``) once the page is full."""
        if self.jobs and (len(row[_PAYLOAD]) + len(row[_RESULT] or "")) / 6 > self._left:
            self.more = True
            return False
        job = store._job(row)
        if self._left != math.inf:
            self._left -= len(_msgpack_encode(job)) + _JOB_SLACK
            if self.jobs and self._left < 0:
                self.more = True
                return False
        self.jobs.append(job)
        return True

    def page(self) -> Page:
        return Page(self.jobs, self.more)


class Prepared(msgspec.Struct, frozen=True, gc=False):
    """A spec checked by :meth:`SQLiteStore.prepare`, with its payload as JSON text.

    (Not a tuple: a big request holds 100,000 of them, which Python's cyclic
    GC would walk in every full collection; these it does not track.)
    """

    spec: JobSpec
    payload: str


# Inside SQLiteStore, `list` names the method.
QueueInfos = list[QueueInfo]
JobsList = list[Job]


class SQLiteStore:
    """The job store on one SQLite file.

    Args:
        path: the database file (created if missing).
        clock: wall-clock time source.
        durability: ``"full"`` (an acknowledged write survives power loss) or
            ``"normal"`` (it survives a process crash).
    """

    def __init__(
        self,
        path: Path,
        clock: Clock | None = None,
        durability: str = "full",
        migrate: bool = True,
    ) -> None:
        self.path = Path(path)
        self.clock = clock or SystemClock()
        self._last_lease = 0  # the newest lease id taken (read once the schema exists)
        self._on_write: Callable[[], None] | None = None
        self._batch_lost: StoreError | None = None
        self._batch_writes = 0  # writes released into the open batch transaction
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._open_error(exc) from None
        try:
            self.db = sqlite_utils.Database(self._conn)
            self.set_busy_timeout(BUSY_TIMEOUT_S)
            # Refuse a newer schema before changing anything in the file (WAL mode included).
            self._check_not_too_new()
            if self.schema_version == 0:
                # A new file: free pages can then be given back in small steps
                # (maintenance), without a VACUUM that locks out every writer.
                self._conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"cannot put {self.path} in WAL mode (got {mode})")
            self._conn.execute(
                f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}"
            )
            if migrate:
                self.migrate()
            elif self.schema_version > 0:
                self._read_last_lease()
        except sqlite3.Error as exc:
            self._conn.close()
            raise self._open_error(exc) from None
        except StoreError:
            self._conn.close()
            raise
        self._last_start = 0.0  # started_at of the latest lease: later ones come after it

    def _open_error(self, exc: sqlite3.Error) -> StoreError:
        """Why the file could not be opened, one line. On a full disk SQLite often says
        only "disk I/O error" (it could not make room for the ``-shm`` or ``-wal`` file)."""
        what = f"cannot open the database {self.path}"
        error = store_error(exc, what)
        name = getattr(exc, "sqlite_errorname", "") or ""
        if type(error) is StoreError and name.startswith("SQLITE_IOERR"):
            free = disk_free(self.path.parent)
            if free is not None and free < NEARLY_FULL_BYTES:
                return StoreFull(f"{what}: the disk is full ({free // 1024} KiB free; {exc})")
        return error

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        """Close the connection; committed data is on disk."""
        self._conn.close()

    def set_busy_timeout(self, seconds: float) -> None:
        """How long a write waits for another process's write lock before it fails
        with StoreBusy (SQLite's busy wait: the calling thread is blocked meanwhile)."""
        _set_busy_timeout(self._conn, seconds)

    def defer_commits(self, on_write: Callable[[], None]) -> None:
        """Group commit: from now on writes join an open transaction, committed by :meth:`commit`.

        Each write is still all-or-none (a savepoint), and ``on_write`` is
        called after each so the owner can schedule the commit. Nothing
        written is durable, and nothing may be acknowledged, until
        :meth:`commit` returns; if it fails, every write since the last
        commit is gone.
        """
        self._on_write = on_write

    def commit(self) -> None:
        """Commit the writes made since the last commit (group commit).

        Raises:
            StoreError: the commit failed (everything since the last commit was
                rolled back), or SQLite had already rolled the batch back.
        """
        lost, self._batch_lost = self._batch_lost, None
        self._batch_writes = 0
        conn = self._conn
        if lost is not None:
            # Writes made after SQLite undid the batch opened a new transaction;
            # their writers are told the batch failed, so those writes must go too.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise lost
        if not conn.in_transaction:
            return
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise store_error(exc, "the job store failed to commit") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write: all of the body, or none of it.

        Alone, it is its own transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``);
        with :meth:`defer_commits` it is a savepoint in the open batch.

        Raises:
            StoreError: SQLite failed; this write was rolled back.
        """
        if self._on_write is not None:
            with self._batched() as conn:
                yield conn
            return
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise store_error(exc, "the job store is unavailable") from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # a failed ROLLBACK: SQLite undid it
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise store_error(exc, "the job store failed") from None
            raise

    @contextlib.contextmanager
    def _batched(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        try:
            if not conn.in_transaction:
                conn.execute("BEGIN IMMEDIATE")
                self._batch_writes = 0
            conn.execute("SAVEPOINT write")
        except sqlite3.Error as exc:
            if conn.in_transaction and not self._batch_writes:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise store_error(exc, "the job store is unavailable") from None
        try:
            yield conn
            conn.execute("RELEASE write")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    if self._batch_writes:
                        conn.execute("ROLLBACK TO write")
                        conn.execute("RELEASE write")
                    else:
                        # Nothing else in the batch: end it rather than hold the
                        # write lock until some later write gets committed.
                        conn.execute("ROLLBACK")
            error = (
                store_error(exc, "the job store failed") if isinstance(exc, sqlite3.Error) else None
            )
            if not conn.in_transaction and error is not None and self._batch_writes:
                # SQLite rolled the whole batch back (a full disk, say): the writes
                # before this one are gone too, and their commit must fail. (With
                # none before it, this writer alone is told, and nothing else.)
                self._batch_lost = error
                self._batch_writes = 0
            if error is not None:
                raise error from None
            raise
        self._batch_writes += 1
        assert self._on_write is not None
        self._on_write()

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _check_not_too_new(self) -> None:
        latest = migrations()[-1][0]
        current = self.schema_version
        if current > latest:
            raise SchemaTooNew(
                f"{self.path} has schema version {current}, newer than this Semantica "
                f"knows ({latest}); upgrade Semantica or restore a backup"
            )

    def migrate(self, to: int | None = None) -> SchemaChange:
        """Move the schema up or down to version ``to`` (default: the newest), one
        transaction per step, keeping the data; say what was done.

        A new database (schema 0) gets the schema made from nothing. Going up
        from a database that already has one first copies it aside with
        SQLite's backup API (``backups/`` beside it).

        Raises:
            SchemaTooNew: the file's version is above the newest this code knows.
            BadInput: ``to`` names no version this code has.
            StoreError: a step failed (that step was rolled back).
        """
        started = time.monotonic()
        try:
            change = self._migrate(to)
            self._read_last_lease()
        except sqlite3.Error as exc:
            raise store_error(exc, f"migrating {self.path} failed") from None
        change.seconds = time.monotonic() - started
        return change

    def _read_last_lease(self) -> None:
        """Lease ids go on from the newest in the file (they fence late reports)."""
        (newest,) = self._conn.execute("SELECT coalesce(max(lease_id), 0) FROM jobs").fetchone()
        self._last_lease = max(self._last_lease, newest)

    def _migrate(self, to: int | None) -> SchemaChange:
        self._check_not_too_new()
        _remove_partials(self.backups_dir)  # a backup a kill interrupted
        steps = migrations()
        latest = steps[-1][0]
        target = latest if to is None else to
        if not 1 <= target <= latest:
            raise BadInput(f"schema versions go from 1 to {latest}, not {target}")
        current = self.schema_version
        change = SchemaChange(before=current, after=current)
        if current < target and current > 0:
            change.backup = self.backup(f"before-v{target}")
        for version, path in steps:
            if current < version <= target:
                self._step(path, version)
                current = version
        for version, path in reversed(steps):
            if target < version <= current:
                down = path.with_name(path.name.removesuffix(".sql") + ".down.sql")
                if not down.exists():
                    raise StoreError(f"no way down from schema {version}: {down.name} is missing")
                self._step(down, version - 1)
                current = version - 1
        change.after = current
        return change

    def _step(self, script_path: Path, version_after: int) -> None:
        script = script_path.read_text()
        try:
            self._conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version_after};\nCOMMIT;"
            )
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise StoreError(f"migration {script_path.name} failed: {exc}") from None

    def backup(self, label: str) -> Path:
        """Copy the database (consistently, with SQLite's backup API) into ``backups/``.

        The copy is written under a temporary name (``.partial-`` and the backup's
        name), synced, and renamed when whole, and the rename is synced too: a
        file named like a backup is never empty or partial, whenever the process
        is killed. A kill's leftovers are removed by the next :meth:`migrate`.
        """
        stamp = datetime.fromtimestamp(self.clock.time(), UTC).strftime("%Y%m%dT%H%M%SZ")
        folder = self.backups_dir
        target = folder / f"{self.path.stem}-v{self.schema_version}-{label}-{stamp}.db"
        partial = folder / (_PARTIAL + target.name)
        try:
            if not folder.is_dir():
                folder.mkdir(mode=0o700)
                _fsync_dir(folder.parent)
            with contextlib.closing(sqlite3.connect(partial)) as copy:
                self._conn.backup(copy)
            _fsync_file(partial)
            os.replace(partial, target)
            _fsync_dir(folder)
        except sqlite3.Error as exc:
            _remove_partials(folder)
            raise store_error(exc, f"cannot back up {self.path} to {target}") from None
        except OSError as exc:
            _remove_partials(folder)
            what = f"cannot back up {self.path} to {target}"
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise StoreFull(f"{what}: the disk is full ({exc.strerror})") from None
            raise StoreError(f"{what}: {exc.strerror}") from None
        return target

    @property
    def backups_dir(self) -> Path:
        """Where the copies taken before upgrades go: ``backups/`` beside the database."""
        return self.path.parent / "backups"

    def size_bytes(self) -> int:
        """Bytes on disk: the database file and its WAL."""
        return _size_bytes(self.path)

    def maintenance(self) -> StoreMaintenance:
        """A second connection, for maintenance work in a thread (see StoreMaintenance)."""
        return StoreMaintenance(self.path)

    # ------------------------------------------------------------------ writes

    def enqueue(self, specs: Sequence[JobSpec]) -> EnqueueResult:
        """Validate and insert jobs, all in one transaction (all or none).

        The same as :meth:`insert` of :meth:`prepare`; see both.

        Raises:
            BadInput: a spec is invalid; nothing was inserted.
        """
        return self.insert(self.prepare(specs))

    @staticmethod
    def prepare(specs: Sequence[JobSpec]) -> list[Prepared]:
        """Check each spec and encode its payload, without touching the database.

        A caller with many specs prepares them all (in pieces, if it likes)
        before it inserts any, so that a bad one adds nothing.

        Raises:
            BadInput: a spec is invalid.
        """
        prepared = []
        for spec in specs:
            validate_spec(spec)
            try:
                payload = _json_encode(spec.payload).decode()
            except (TypeError, msgspec.EncodeError) as exc:
                raise BadInput(f"payload is not JSON: {exc}") from None
            prepared.append(Prepared(spec, payload))
        return prepared

    def insert(self, prepared: Sequence[Prepared]) -> EnqueueResult:
        """Insert prepared jobs, all in one transaction (all or none).

        Jobs with a subject follow the generation rules, in order, so a later
        spec of the batch sees the earlier ones:

        * no generation: one above the newest of its ``(type, subject)``;
        * a generation not above a QUEUED or RUNNING one of the subject: that
          job is returned (``deduplicated``) and nothing is added;
        * otherwise it is added, and the QUEUED jobs of the subject with a lower
          generation become SUPERSEDED (``superseded_by`` = the new job).

        The cost per job grows neither with the subject's finished history
        (``jobs_live_subject`` holds only its QUEUED and RUNNING jobs) nor with
        the size of the batch.

        Raises:
            BadInput: a subject has no generation left; nothing was inserted.
        """
        now = self.clock.time()
        rows = []
        for item in prepared:
            spec, payload, at = item.spec, item.payload, item.spec.at
            run_after = at.timestamp() if at is not None else now + (spec.delay or 0.0)
            rows.append((spec, payload, run_after))
        result = EnqueueResult()
        created_at = datetime.fromtimestamp(now, UTC)
        # This batch's jobs with a subject (an id may come twice), for supersedes among them.
        added: dict[int, list[Job]] = {}
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO queues (name) VALUES (?)",
                [(name,) for name in {item.spec.queue for item in prepared}],
            )
            plain: list[tuple[JobSpec, str, float]] = []  # no subject: inserted together
            for spec, payload, run_after in rows:
                if spec.subject is None:
                    plain.append((spec, payload, run_after))
                    continue
                # The generation rules see every spec before this one: insert those first.
                self._insert_plain(conn, plain, now, created_at, result)
                plain = []
                generation = spec.generation
                live = self._live_generation(conn, spec, generation)
                if live is not None:
                    job = self._job(live)
                    job.deduplicated = True
                    added.setdefault(job.id, []).append(job)
                    result.jobs.append(job)
                    continue
                if generation is None:
                    (newest,) = conn.execute(
                        "SELECT max(generation) FROM jobs WHERE type = ? AND subject = ?",
                        (spec.type, spec.subject),
                    ).fetchone()
                    if newest is not None and newest >= GENERATION_MAX:
                        raise BadInput(
                            f"subject {spec.subject!r} is at generation {newest}, the "
                            "largest there may be: no newer one can follow"
                        )
                    generation = (newest or 0) + 1
                (job_id,) = conn.execute(
                    f"INSERT INTO jobs ({_INSERT_COLUMNS}) VALUES {_INSERT_ROW} RETURNING id",
                    _insert_args(spec, generation, payload, now, run_after),
                ).fetchone()
                self._supersede_older(conn, spec, generation, job_id, now, result, added)
                job = _new_job(job_id, spec, generation, payload, now, created_at, run_after)
                added[job_id] = [job]
                result.jobs.append(job)
            self._insert_plain(conn, plain, now, created_at, result)
        return result

    def _insert_plain(
        self,
        conn: sqlite3.Connection,
        plain: list[tuple[JobSpec, str, float]],
        now: float,
        created_at: datetime,
        result: EnqueueResult,
    ) -> None:
        """Insert jobs without a subject, many rows a statement (a third of the cost per row)."""
        for start, size in _chunks(len(plain)):
            chunk = plain[start : start + size]
            args: list[Any] = []
            for spec, payload, run_after in chunk:
                args += _insert_args(spec, None, payload, now, run_after)
            values = ", ".join([_INSERT_ROW] * len(chunk))
            # Ids grow in the order rows are inserted (AUTOINCREMENT, one writer);
            # RETURNING itself promises no order.
            ids = sorted(
                job_id
                for (job_id,) in conn.execute(
                    f"INSERT INTO jobs ({_INSERT_COLUMNS}) VALUES {values} RETURNING id", args
                )
            )
            for job_id, (spec, payload, run_after) in zip(ids, chunk, strict=True):
                result.jobs.append(
                    _new_job(job_id, spec, None, payload, now, created_at, run_after)
                )

    def _live_generation(
        self, conn: sqlite3.Connection, spec: JobSpec, generation: int | None
    ) -> Sequence[Any] | None:
        """The QUEUED or RUNNING job of the subject that makes ``generation`` a duplicate."""
        if generation is None:
            return None  # "one above the newest" is never a duplicate
        row: Sequence[Any] | None = conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs INDEXED BY jobs_live_subject "
            "WHERE type = ? AND subject = ? AND state IN ('QUEUED', 'RUNNING') "
            "AND generation >= ? ORDER BY generation DESC, id DESC LIMIT 1",
            (spec.type, spec.subject, generation),
        ).fetchone()
        return row

    def _supersede_older(
        self,
        conn: sqlite3.Connection,
        spec: JobSpec,
        generation: int,
        job_id: int,
        now: float,
        result: EnqueueResult,
        added: dict[int, list[Job]],
    ) -> None:
        check_transition(JobState.QUEUED, JobState.SUPERSEDED)
        # The subject's live jobs below this generation, from the index of live jobs
        # alone: the finished generations before them are never looked at.
        older = conn.execute(
            "SELECT id, state FROM jobs INDEXED BY jobs_live_subject "
            "WHERE type = ? AND subject = ? AND state IN ('QUEUED', 'RUNNING') "
            "AND generation < ?",
            (spec.type, spec.subject, generation),
        ).fetchall()
        queued = [old_id for old_id, state in older if state == JobState.QUEUED.value]
        if queued:
            # `+state`: by id; with the state's index SQLite would walk every queued job.
            for (old_id,) in conn.execute(
                "UPDATE jobs SET state = 'SUPERSEDED', superseded_by = ?, finished_at = ? "
                f"WHERE id IN {_IDS_IN_JSON} AND +state = 'QUEUED' RETURNING id",
                (job_id, now, _json_ids(queued)),
            ).fetchall():
                result.superseded.append(old_id)
                for job in added.pop(old_id, ()):  # an earlier spec of this same batch
                    job.state, job.superseded_by = JobState.SUPERSEDED, job_id
                    job.finished_at = _ts(now)
        if spec.supersede_running:
            result.running_older.extend(
                (old_id, job_id) for old_id, state in older if state == JobState.RUNNING.value
            )

    def lease(self, worker_pid: int, *, on_ac: bool = True, idle: bool = True) -> Lease | None:
        """Atomically take the next job that may start now for a worker, or None.

        The next job is the QUEUED one with the highest priority, oldest first,
        whose ``run_after`` has passed, whose queue is not paused nor at its
        limit, no job of whose ``(type, subject)`` is running, and whose
        conditions hold (``on_ac`` and ``idle`` say how the machine is). It
        becomes RUNNING with a new lease id, one more attempt and ``started_at``
        now; the error of an earlier attempt stays until this one ends.
        """
        leases = self.lease_many(worker_pid, 1, on_ac=on_ac, idle=idle)
        return leases[0] if leases else None

    def _next_start(self, now: float) -> float:
        """``started_at`` for a new lease: now, and after every earlier one.

        Leases taken in one batch, or within one tick of a coarse clock, would
        otherwise share a time; the order of ``started_at`` is the order jobs
        started in.
        """
        self._last_start = max(now, self._last_start + 1e-6)
        return self._last_start

    def lease_many(
        self, worker_pid: int, count: int, *, on_ac: bool = True, idle: bool = True
    ) -> list[Lease]:
        """Up to ``count`` jobs for one worker, in one write, in the order it should run them.

        The same jobs, in the same order, as ``count`` calls of :meth:`lease`
        would take (priority, then age; paused queues, queue caps, subjects and
        conditions respected, counting the jobs of this batch), except that it
        may return fewer: it looks at most ``count`` candidates deep per queue.
        A paused or full queue is skipped without looking at its jobs, however
        many it holds.
        """
        check_transition(JobState.QUEUED, JobState.RUNNING)
        now = self.clock.time()
        leases: list[Lease] = []
        with self.transaction() as conn:
            for job_id in self._startable(conn, count, now, on_ac, idle):
                self._last_lease += 1
                take = (self._next_start(now), self._last_lease, worker_pid, job_id)
                row = conn.execute(_TAKE, take).fetchone()
                if row is not None:  # (it was QUEUED a moment ago, in this transaction)
                    leases.append(self._lease(self._last_lease, row))
        return leases

    @staticmethod
    def _startable(
        conn: sqlite3.Connection, count: int, now: float, on_ac: bool, idle: bool
    ) -> list[int]:
        """The ids of the jobs ``count`` leases would take now, in the order they would.

        The one place that knows the start order: :meth:`lease_many` takes these,
        :meth:`next_startable` shows them.
        """
        room: dict[str, float] = {}
        candidates: list[tuple[int, int, str, str | None, str]] = []
        for queue, cap, running in conn.execute(_QUEUE_ROOM).fetchall():
            free = cap - running if cap else math.inf
            if free <= 0:
                continue
            room[queue] = free
            for priority, job_id, type_, subject in conn.execute(
                _NEXT_IN_QUEUE, (queue, now, on_ac, idle, count)
            ):
                candidates.append((-priority, job_id, type_, subject, queue))
        candidates.sort()
        picked: list[int] = []
        taken_subjects: set[tuple[str, str]] = set()
        for _, job_id, type_, subject, queue in candidates:
            if len(picked) == count:
                break
            if room[queue] <= 0 or (subject is not None and (type_, subject) in taken_subjects):
                continue
            room[queue] -= 1
            if subject is not None:
                taken_subjects.add((type_, subject))
            picked.append(job_id)
        return picked

    @_reads
    def next_startable(
        self, count: int, cut: int, *, on_ac: bool = True, idle: bool = True
    ) -> JobsList:
        """The jobs that would start next if ``count`` workers were free now, in that
        order, as rows for a view (see :meth:`next_queued`).

        A read: the same choice as :meth:`lease_many`, nothing taken.
        """
        ids = self._startable(self._conn, count, self.clock.time(), on_ac, idle)
        rows = self._rows_by_id(ids, _row_columns(cut))
        found = {row[0]: _cut_row(self._job(row), cut) for row in rows}
        return [found[job_id] for job_id in ids if job_id in found]

    def _lease(self, lease_id: int, row: Sequence[Any]) -> Lease:
        job_id, type_, queue, payload, attempt, max_attempts, timeout, backoff, created_at = row
        return Lease(
            lease_id=lease_id,
            job_id=job_id,
            type=type_,
            queue=queue,
            payload=payload.encode(),
            attempt=attempt,
            max_attempts=max_attempts,
            timeout=timeout,
            backoff=backoff,
            created_at=created_at,
        )

    def complete_many(self, ends: list[tuple[Lease, bytes | None, float]]) -> list[Lease]:
        """RUNNING -> DONE for each (lease, result, start), in one write; returns stale leases.

        Like :meth:`complete` for each, but a lease no longer current is skipped
        and returned instead of raising. ``start`` is when the worker started
        the job (Unix time; 0 if unknown): a job handed over behind others
        starts after it was leased, and ``started_at`` becomes the later of the two.
        """
        check_transition(JobState.RUNNING, JobState.DONE)
        now = self.clock.time()
        stale: list[Lease] = []
        with self.transaction() as conn:
            for lease, result, start in ends:
                cur = conn.execute(
                    "UPDATE jobs SET state = 'DONE', result = ?, finished_at = ?, "
                    "started_at = max(started_at, ?), error_kind = NULL, error_message = NULL "
                    "WHERE id = ? AND lease_id = ? AND state = 'RUNNING'",
                    (
                        None if result is None else result.decode(),
                        now,
                        min(start, now),
                        lease.job_id,
                        lease.lease_id,
                    ),
                )
                if cur.rowcount != 1:
                    stale.append(lease)
        return stale

    def set_progress(self, lease: Lease, fraction: float, message: str) -> None:
        """Record how far the job under ``lease`` has got (ignored if the lease is stale)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET progress = ?, progress_message = ? "
                "WHERE id = ? AND lease_id = ? AND state = 'RUNNING'",
                (fraction, message, lease.job_id, lease.lease_id),
            )

    def cancel_queued(self, job_id: int, message: str) -> bool:
        """QUEUED -> CANCELLED; False (and nothing changed) if the job is not QUEUED."""
        check_transition(JobState.QUEUED, JobState.CANCELLED)
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = 'CANCELLED', finished_at = ?, error_kind = ?, "
                "error_message = ? WHERE id = ? AND state = 'QUEUED'",
                (self.clock.time(), ErrorKind.CANCELLED.value, message, job_id),
            )
            return cur.rowcount == 1

    def cancel_running(self, lease: Lease, error: JobError) -> None:
        """RUNNING -> CANCELLED with ``error``, if ``lease`` is still current.

        Raises:
            StaleLease: the job is no longer running under this lease.
        """
        self._move(
            lease,
            JobState.CANCELLED,
            finished_at=self.clock.time(),
            error_kind=error.kind,
            error_message=error.message,
        )

    def retry(self, job_id: int) -> Job:
        """FAILED or CANCELLED -> QUEUED now, with a fresh attempt budget.

        A job with a subject is not retried once a newer generation of its
        ``(type, subject)`` is queued, running or DONE: as with an enqueue of an
        older generation, the newer one wins (it would supersede this one, or
        this one would undo its work).

        Raises:
            NoSuchJob: no such job.
            BadInput: the job is not FAILED or CANCELLED, or a newer generation
                is queued, running or done (nothing changed).
        """
        _check_id(job_id)
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT state, type, subject, generation FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None:
                raise NoSuchJob(f"no job {job_id}")
            state = JobState(row[0])
            # Only the table's "retry" moves: RUNNING -> QUEUED is a requeue, not a retry.
            if TRANSITIONS.get((state, JobState.QUEUED)) != "retry":
                raise BadInput(
                    f"job {job_id} is {state}; only FAILED or CANCELLED jobs can be retried"
                )
            type_, subject, generation = row[1:]
            if subject is not None:
                newer = conn.execute(
                    "SELECT id, generation, state FROM jobs INDEXED BY jobs_subject "
                    "WHERE type = ? AND subject = ? AND generation > ? "
                    "AND state IN ('QUEUED', 'RUNNING', 'DONE') ORDER BY generation DESC LIMIT 1",
                    (type_, subject, generation),
                ).fetchone()
                if newer is not None:
                    raise BadInput(
                        f"job {job_id} is generation {generation} of subject {subject!r}; "
                        f"job {newer[0]} is generation {newer[1]} and {newer[2]}: retry or "
                        "enqueue the newest instead"
                    )
            conn.execute(
                "UPDATE jobs SET state = 'QUEUED', attempts = 0, run_after = ?, "
                "finished_at = NULL, worker_pid = NULL WHERE id = ? AND state = ?",
                (self.clock.time(), job_id, state.value),
            )
        return self.get(job_id)

    def complete(self, lease: Lease, result: bytes | None, start: float = 0.0) -> None:
        """RUNNING -> DONE with ``result`` (JSON text), if ``lease`` is still current.

        :meth:`complete_many` of one (``start`` as there).

        Raises:
            StaleLease: the job is no longer running under this lease.
        """
        if self.complete_many([(lease, result, start)]):
            raise StaleLease(f"job {lease.job_id} is not running under lease {lease.lease_id}")

    def fail(self, lease: Lease, error: JobError, retry_at: float | None) -> JobState:
        """End an attempt with ``error``: back to QUEUED at ``retry_at``, or FAILED if None.

        Returns the job's new state.

        Raises:
            StaleLease: the job is no longer running under this lease.
        """
        now = self.clock.time()
        if retry_at is None:
            self._move(
                lease,
                JobState.FAILED,
                finished_at=now,
                error_kind=error.kind,
                error_message=error.message,
            )
            return JobState.FAILED
        self._move(
            lease,
            JobState.QUEUED,
            run_after=retry_at,
            error_kind=error.kind,
            error_message=error.message,
        )
        return JobState.QUEUED

    def requeue_interrupted(self, lease: Lease, error: JobError) -> None:
        """RUNNING -> QUEUED without spending the attempt (a drain stopped it).

        Raises:
            StaleLease: the job is no longer running under this lease.
        """
        self._move(
            lease,
            JobState.QUEUED,
            attempts=lease.attempt - 1,
            run_after=self.clock.time(),
            error_kind=error.kind,
            error_message=error.message,
        )

    def give_back(self, leases: Iterable[Lease]) -> int:
        """RUNNING -> QUEUED for leased jobs their worker never started; returns how many.

        A worker that takes short jobs a few at a time hands back the ones it
        had not begun (see the pool's prefetch). The attempt is not spent and
        nothing else about the job changes: it runs next as if it had waited in
        the queue. Leases no longer current are skipped.
        """
        check_transition(JobState.RUNNING, JobState.QUEUED)
        moved = 0
        with self.transaction() as conn:
            for lease in leases:
                cur = conn.execute(
                    "UPDATE jobs SET state = 'QUEUED', attempts = attempts - 1 "
                    "WHERE id = ? AND lease_id = ? AND state = 'RUNNING'",
                    (lease.job_id, lease.lease_id),
                )
                moved += cur.rowcount
        return moved

    def recover_running(self) -> int:
        """At start: put every RUNNING job (its supervisor died) back in the queue.

        The attempt is not spent: the job was not at fault. Returns how many.
        """
        check_transition(JobState.RUNNING, JobState.QUEUED)
        now = self.clock.time()
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = 'QUEUED', attempts = attempts - 1, run_after = ?, "
                "error_kind = 'interrupted', "
                "error_message = 'the supervisor stopped while the job ran', "
                "worker_pid = NULL WHERE state = 'RUNNING'",
                (now,),
            )
            return cur.rowcount

    def _move(self, lease: Lease, dst: JobState, **sets: Any) -> None:
        """Move the job under ``lease`` from RUNNING to ``dst``, setting columns, fenced."""
        check_transition(JobState.RUNNING, dst)
        assignments = ", ".join(f"{column} = ?" for column in sets)
        with self.transaction() as conn:
            cur = conn.execute(
                f"UPDATE jobs SET state = ?, {assignments} "
                "WHERE id = ? AND lease_id = ? AND state = 'RUNNING'",
                (dst.value, *sets.values(), lease.job_id, lease.lease_id),
            )
            if cur.rowcount != 1:
                raise StaleLease(f"job {lease.job_id} is not running under lease {lease.lease_id}")

    # ------------------------------------------------------------------ reads

    @_reads
    def get(self, job_id: int) -> Job:
        """One job.

        Raises:
            NoSuchJob: no job has this id.
        """
        _check_id(job_id)
        row = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            raise NoSuchJob(f"no job {job_id}")
        return self._job(row)

    @_reads
    def get_many(self, job_ids: Iterable[int]) -> list[Job]:
        """Several jobs, in the order asked (an id asked twice comes twice).

        Raises:
            NoSuchJob: one of the ids names no job.
        """
        wanted = list(job_ids)
        found = {row[0]: self._job(row) for row in self._rows_by_id(wanted, _JOB_COLUMNS)}
        return [found[job_id] for job_id in wanted]

    @_reads
    def get_page(self, job_ids: Sequence[int], budget: int | None) -> Page:
        """:meth:`get_many`, but only the first jobs that fit in ``budget`` bytes of reply
        (at least one; None: no limit); the rows of the others are not read.

        Raises:
            NoSuchJob: one of the ids names no job.
        """
        wanted = list(job_ids)
        self._rows_by_id(wanted, "id")  # every one exists, or NoSuchJob
        # One statement whose rows come in the order asked (CROSS JOIN makes the
        # ids the outer loop; json_each walks them in order) and are read only as
        # they are taken: the rows past the page are never read.
        rows = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM (SELECT value AS wanted FROM json_each(?)) "
            "CROSS JOIN jobs ON jobs.id = wanted",
            (_json_ids(wanted),),
        )
        page = _PageBuilder(budget)
        try:
            for job_id, row in zip(wanted, rows, strict=False):
                if row[0] != job_id:  # deleted since the check above (maintenance)
                    raise NoSuchJob(f"no job {job_id}")
                if not page.add(self, row):
                    break
        finally:
            rows.close()
        if len(page.jobs) < len(wanted) and not page.more:
            raise NoSuchJob(f"no job {wanted[len(page.jobs)]}")
        return page.page()

    @_reads
    def states(self, job_ids: Iterable[int]) -> dict[int, JobState]:
        """The states alone of several jobs (cheaper than :meth:`get_many`).

        Raises:
            NoSuchJob: one of the ids names no job.
        """
        return {
            job_id: JobState(state)
            for job_id, state in self._rows_by_id(list(job_ids), "id, state")
        }

    def _rows_by_id(self, wanted: list[int], columns: str) -> list[Sequence[Any]]:
        """``columns`` of the jobs ``wanted`` (each once, in no order); NoSuchJob if one is not."""
        for job_id in wanted:
            _check_id(job_id)
        unique = list(dict.fromkeys(wanted))
        rows: list[Sequence[Any]] = self._conn.execute(
            f"SELECT {columns} FROM jobs WHERE id IN {_IDS_IN_JSON}", (_json_ids(unique),)
        ).fetchall()
        if len(rows) < len(unique):
            present = {row[0] for row in rows}
            missing = next(job_id for job_id in unique if job_id not in present)
            raise NoSuchJob(f"no job {missing}")
        return rows

    @_reads
    def state(self, job_id: int) -> JobState:
        """A job's state alone (cheap).

        Raises:
            NoSuchJob: no job has this id.
        """
        _check_id(job_id)
        row = self._conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NoSuchJob(f"no job {job_id}")
        return JobState(row[0])

    @_reads
    def list(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        subject: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[Job]:
        """Jobs matching every filter given, newest first, at most ``limit``.

        ``before``: only jobs with a lower id (the next page after a job).
        """
        return self.list_page(
            state=state, queue=queue, type=type, subject=subject, limit=limit, before=before
        ).jobs

    @_reads
    def list_page(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        subject: str | None = None,
        limit: int = 50,
        before: int | None = None,
        budget: int | None = None,
    ) -> Page:
        """:meth:`list`, from the jobs with an id below ``before`` (if given), and only as
        many as fit in ``budget`` bytes of reply (at least one): rows past it are not read."""
        clause, args = _filters(state=state, queue=queue, type=type, subject=subject)
        if before is not None:
            clause += (" AND " if clause else "WHERE ") + "id < ?"
            args.append(before)
        rows = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs {clause} ORDER BY id DESC LIMIT ?",
            (*args, limit),
        )
        page = _PageBuilder(budget)
        try:
            for row in rows:  # (read as they are taken: the rows past the page are not)
                if not page.add(self, row):
                    break
        finally:
            rows.close()  # (an unfinished statement would hold its read snapshot)
        return page.page()

    @_reads
    def count(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        subject: str | None = None,
        cap: int | None = None,
    ) -> int:
        """How many jobs match every filter given; at most ``cap`` (counting stops there)."""
        clause, args = _filters(state=state, queue=queue, type=type, subject=subject)
        if cap is None:
            (n,) = self._conn.execute(f"SELECT count(*) FROM jobs {clause}", args).fetchone()
        else:
            sql = f"SELECT count(*) FROM (SELECT 1 FROM jobs {clause} LIMIT ?)"
            (n,) = self._conn.execute(sql, (*args, cap)).fetchone()
        return int(n)

    @_reads
    def next_queued(self, limit: int, cut: int | None = None) -> JobsList:
        """The first ``limit`` QUEUED jobs in dispatch order (priority, then oldest).

        The first ``limit`` of each queue, merged: each queue's are read from
        its end of ``jobs_queue_ready``, as a lease reads them. With ``cut``,
        rows for a view: no payload nor result, long texts cut at ``cut``
        characters (read that short, however long they are).
        """
        columns = _JOB_COLUMNS if cut is None else _row_columns(cut)
        rows: list[Sequence[Any]] = []
        names = self._conn.execute(_QUEUED_QUEUES + "SELECT name FROM live WHERE name IS NOT NULL")
        for (queue,) in names.fetchall():
            rows += self._conn.execute(
                f"SELECT {columns} FROM jobs INDEXED BY jobs_queue_ready "
                "WHERE state = 'QUEUED' AND queue = ? ORDER BY priority DESC, id LIMIT ?",
                (queue, limit),
            ).fetchall()
        rows.sort(key=lambda row: (-row[_PRIORITY], row[0]))
        jobs = [self._job(row) for row in rows[:limit]]
        return jobs if cut is None else [_cut_row(job, cut) for job in jobs]

    @_reads
    def latest_rows(self, state: str, limit: int, cut: int) -> JobsList:
        """The newest ``limit`` jobs in ``state``, as rows for a view (see :meth:`next_queued`)."""
        rows = self._conn.execute(
            f"SELECT {_row_columns(cut)} FROM jobs WHERE state = ? ORDER BY id DESC LIMIT ?",
            (state, limit),
        ).fetchall()
        return [_cut_row(self._job(row), cut) for row in rows]

    @_reads
    def counts(self) -> dict[str, int]:
        """How many jobs are in each state (every state listed, zeros included)."""
        counts = {state.value: 0 for state in JobState}
        for state, n in self._conn.execute("SELECT state, count(*) FROM jobs GROUP BY state"):
            counts[state] = n
        return counts

    @_reads
    def queues(self) -> QueueInfos:
        """Every queue that has a setting or a job, by name, with counts by state."""
        found: dict[str, QueueInfo] = {}
        for row in self.db.query("SELECT name, paused, max_running FROM queues"):
            found[row["name"]] = QueueInfo(
                name=row["name"], paused=bool(row["paused"]), limit=row["max_running"]
            )
        for row in self.db.query(
            "SELECT queue, state, count(*) AS n FROM jobs GROUP BY queue, state"
        ):
            info = found.setdefault(row["queue"], QueueInfo(name=row["queue"]))
            info.counts[row["state"]] = row["n"]
        for info in found.values():
            for state in JobState:
                info.counts.setdefault(state.value, 0)
        return [found[name] for name in sorted(found)]

    def set_queue(
        self, name: str, *, paused: bool | None = None, limit: int | None = None
    ) -> QueueInfo:
        """Create the queue if new and change its settings; return it.

        Raises:
            BadInput: a bad queue name or limit.
        """
        validate_queue_name(name)
        if limit is not None and not 0 <= limit <= QUEUE_LIMIT_MAX:
            raise BadInput(f"limit must be between 0 and {QUEUE_LIMIT_MAX}, got {limit}")
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (name,))
            if paused is not None:
                conn.execute("UPDATE queues SET paused = ? WHERE name = ?", (int(paused), name))
            if limit is not None:
                conn.execute("UPDATE queues SET max_running = ? WHERE name = ?", (limit, name))
        return self._queue(name)

    @_reads
    def _queue(self, name: str) -> QueueInfo:
        """One queue that has a row, with its counts (read from jobs_state: six seeks)."""
        paused, limit = self._conn.execute(
            "SELECT paused, max_running FROM queues WHERE name = ?", (name,)
        ).fetchone()
        info = QueueInfo(name=name, paused=bool(paused), limit=limit)
        info.counts = {state.value: 0 for state in JobState}
        for state, n in self._conn.execute(
            "SELECT state, count(*) FROM jobs INDEXED BY jobs_state "
            f"WHERE state IN {_ALL_STATES_SQL} AND queue = ? GROUP BY state",
            (name,),
        ):
            info.counts[state] = n
        return info

    @_reads
    def queue_known(self, name: str) -> bool:
        """Whether a job or a setting ever named the queue (and it was not forgotten)."""
        row = self._conn.execute("SELECT 1 FROM queues WHERE name = ?", (name,)).fetchone()
        return row is not None

    @_reads
    def some_queues(self, most: int = 10) -> str:
        """The first queue names, for a message: ``a, b, c`` or ``a, b, ... (12 in all)``."""
        names = [
            row[0]
            for row in self._conn.execute(
                "SELECT name FROM queues ORDER BY name LIMIT ?", (most + 1,)
            )
        ]
        if len(names) <= most:
            return ", ".join(names) or "none yet"
        total = self._conn.execute("SELECT count(*) FROM queues").fetchone()[0]
        return f"{', '.join(names[:most])}, ... ({total} in all)"

    @_reads
    def blockers(self) -> Blockers:
        """What stops queued jobs right now, apart from time and conditions."""
        blockers = Blockers()
        for row in self.db.query(
            "SELECT name, paused, max_running FROM queues WHERE paused = 1 OR max_running > 0"
        ):
            if row["paused"]:
                blockers.paused.add(row["name"])
            if row["max_running"]:
                blockers.limits[row["name"]] = row["max_running"]
        for row in self.db.query("SELECT queue, type, subject FROM jobs WHERE state = 'RUNNING'"):
            queue = row["queue"]
            blockers.running_per_queue[queue] = blockers.running_per_queue.get(queue, 0) + 1
            if row["subject"] is not None:
                blockers.busy_subjects.add((row["type"], row["subject"]))
        return blockers

    @_reads
    def conditions_wanted(self) -> tuple[bool, bool]:
        """Whether any QUEUED job requires charging, and whether any requires an idle CPU."""
        row = self._conn.execute(
            "SELECT EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_conditions "
            "               WHERE state = 'QUEUED' AND require_charging = 1), "
            "       EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_conditions "
            "               WHERE state = 'QUEUED' AND require_idle = 1)"
        ).fetchone()
        return bool(row[0]), bool(row[1])

    @_reads
    def next_run_after(self) -> float | None:
        """The earliest future ``run_after`` of a queued job (when to look again), or None."""
        row = self._conn.execute(
            "SELECT min(run_after) FROM jobs INDEXED BY jobs_due "
            "WHERE state = 'QUEUED' AND run_after > ?",
            (self.clock.time(),),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def _job(self, row: Sequence[Any]) -> Job:
        (
            job_id,
            type_,
            queue,
            subject,
            generation,
            priority,
            state,
            attempts,
            max_attempts,
            created_at,
            started_at,
            finished_at,
            run_after,
            result,
            error_kind,
            error_message,
            payload,
            timeout,
            worker_pid,
            backoff,
            require_charging,
            require_idle,
            superseded_by,
            progress,
            progress_message,
        ) = row
        state = JobState(state)
        return Job(
            id=job_id,
            type=type_,
            queue=queue,
            subject=subject,
            generation=generation,
            priority=priority,
            state=state,
            attempts=attempts,
            max_attempts=max_attempts,
            created_at=_ts(created_at),  # type: ignore[arg-type]
            started_at=_ts(started_at),
            finished_at=_ts(finished_at) if state in TERMINAL_STATES else None,
            run_after=_ts(run_after),
            result=None if result is None else _json_decode(result),
            error=None
            if error_kind is None
            else JobError(error_kind, _read_cut(error_message or "", ERROR_MESSAGE_MAX, "error")),
            payload=_json_decode(payload),
            timeout=timeout,
            worker_pid=worker_pid if state == JobState.RUNNING else None,
            backoff=backoff,
            require_charging=bool(require_charging),
            require_idle=bool(require_idle),
            superseded_by=superseded_by,
            progress=progress,
            progress_message=None
            if progress_message is None
            else _read_cut(progress_message, PROGRESS_MESSAGE_MAX, "progress"),
        )


def _filters(**columns: str | None) -> tuple[str, list[Any]]:
    """A WHERE clause matching every column given a value (``column = value``)."""
    where, args = [], []
    for column, value in columns.items():
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    return ("WHERE " + " AND ".join(where)) if where else "", args


def _read_cut(text: str, cap: int, what: str) -> str:
    """A message as read (its first ``cap + 1`` characters), cut to ``cap`` bytes."""
    # Only a text of more than `cap` characters may have been read in part.
    return cut(text, cap, f"{what} message", whole=len(text) <= cap)


def _size_bytes(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(FileNotFoundError):
            total += Path(str(path) + suffix).stat().st_size
    return total


FINISHED_STATES_SQL = "('DONE', 'FAILED', 'CANCELLED', 'SUPERSEDED')"


class StoreMaintenance:
    """Long store work on a connection of its own, meant to run in a thread.

    Each write is a short transaction (a batch of at most ``batch`` rows, a
    step of at most ``pages`` pages); only :meth:`vacuum` holds the write lock
    for as long as it runs. The caller closes the supervisor's store gate
    around the steps that hold the lock (maintenance.py), so the supervisor's
    writers wait at the gate rather than in SQLite's busy wait.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        _set_busy_timeout(self._conn, BUSY_TIMEOUT_S)

    def close(self) -> None:
        self._conn.close()

    def size_bytes(self) -> int:
        return _size_bytes(self.path)

    def delete_finished_batch(self, before: float, batch: int = 500) -> list[int]:
        """Delete up to ``batch`` finished jobs whose ``finished_at`` is before
        ``before``, in one short transaction; return their ids (fewer than
        ``batch``: there are no more)."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            ids = [
                row[0]
                for row in self._conn.execute(
                    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs "
                    f"WHERE finished_at < ? AND state IN {FINISHED_STATES_SQL} LIMIT ?) "
                    "RETURNING id",
                    (before, batch),
                ).fetchall()
            ]
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise store_error(exc, "deleting old jobs failed") from None
        return ids

    def forget_queues_batch(self, after: str, batch: int = 500) -> tuple[int, str | None]:
        """Look at up to ``batch`` queues named after ``after``, in name order, and delete
        those that have no job left and no setting (not paused, no limit), in one short
        transaction. Returns how many went, and the name to go on after (None: all
        looked at). A queue forgotten is as if it had never been used."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            names = [
                row[0]
                for row in self._conn.execute(
                    "SELECT name FROM queues WHERE name > ? ORDER BY name LIMIT ?", (after, batch)
                )
            ]
            cur = self._conn.execute(
                "DELETE FROM queues WHERE name IN (SELECT value FROM json_each(?)) "
                "AND paused = 0 AND max_running = 0 AND NOT EXISTS ("
                "  SELECT 1 FROM jobs INDEXED BY jobs_state "
                f"  WHERE jobs.state IN {_ALL_STATES_SQL} AND jobs.queue = queues.name)",
                (msgspec.json.encode(names).decode(),),
            )
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise store_error(exc, "forgetting unused queues failed") from None
        return int(cur.rowcount), (names[-1] if len(names) == batch else None)

    def existing(self, job_ids: Sequence[int]) -> set[int]:
        """Which of ``job_ids`` name a job."""
        try:
            return {
                row[0]
                for row in self._conn.execute(
                    f"SELECT id FROM jobs WHERE id IN {_IDS_IN_JSON}", (_json_ids(job_ids),)
                )
            }
        except sqlite3.Error as exc:
            raise store_error(exc, "reading the job store failed") from None

    def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it."""
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            raise store_error(exc, "checkpoint failed") from None

    def free_ratio(self) -> float:
        """Free pages over all pages of the file."""
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        return float(free) / pages if pages else 0.0

    def incremental_vacuum_step(self, pages: int = 256) -> int:
        """Give up to ``pages`` free pages back to the file system, in one short
        transaction; return how many (0: none left, or auto_vacuum is off)."""
        before = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        if not before:
            return 0
        try:
            self._conn.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall()
        except sqlite3.Error as exc:
            raise store_error(exc, "vacuum failed") from None
        after = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        return max(0, int(before) - int(after))

    def vacuum(self) -> None:
        """Rewrite the whole file (holds the write lock until done)."""
        try:
            self._conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect with VACUUM
            self._conn.execute("VACUUM")
        except sqlite3.Error as exc:
            raise store_error(exc, "vacuum failed") from None

    def quick_check(self) -> str:
        """``ok``, or what SQLite found wrong."""
        try:
            rows = self._conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.Error as exc:
            return f"quick_check failed: {exc}"
        return "; ".join(str(row[0]) for row in rows)
