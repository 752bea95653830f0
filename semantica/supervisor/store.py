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
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import sqlite_utils

from semantica.errors import BadInput, NoSuchJob, StoreError
from semantica.models import (
    TERMINAL_STATES,
    Job,
    JobError,
    JobSpec,
    JobState,
    check_transition,
    validate_spec,
)
from semantica.supervisor.clock import Clock, SystemClock

_MIGRATION_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


class SchemaTooNew(StoreError):
    """The database was written by a newer Semantica; it is left untouched."""


class StaleLease(StoreError):
    """A message named a lease that is no longer the job's current one; nothing changed."""

    code = "stale_lease"


class Lease(msgspec.Struct, frozen=True):
    """A job handed to a worker: what the worker needs to run one attempt."""

    lease_id: int
    job_id: int
    type: str
    payload: bytes  # JSON text
    attempt: int
    max_attempts: int
    timeout: float | None
    backoff: float | None


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


def _ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


_JOB_COLUMNS = (
    "id, type, queue, subject, generation, priority, state, attempts, max_attempts, "
    "created_at, started_at, finished_at, run_after, result, error_kind, error_message, "
    "payload, timeout_s, worker_pid"
)

_json_decode = msgspec.json.decode
_json_encode = msgspec.json.encode


class SQLiteStore:
    """The job store on one SQLite file.

    Args:
        path: the database file (created if missing).
        clock: wall-clock time source.
        durability: ``"full"`` (an acknowledged write survives power loss) or
            ``"normal"`` (it survives a process crash).
    """

    def __init__(self, path: Path, clock: Clock | None = None, durability: str = "full") -> None:
        self.path = Path(path)
        self.clock = clock or SystemClock()
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from None
        try:
            self.db = sqlite_utils.Database(self._conn)
            self._conn.execute("PRAGMA busy_timeout = 5000")
            # Refuse a newer schema before changing anything in the file (WAL mode included).
            self._check_not_too_new()
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"cannot put {self.path} in WAL mode (got {mode})")
            self._conn.execute(
                f"PRAGMA synchronous = {'FULL' if durability == 'full' else 'NORMAL'}"
            )
            self.migrate()
        except sqlite3.Error as exc:
            self._conn.close()
            raise StoreError(f"cannot open the database {self.path}: {exc}") from None
        except StoreError:
            self._conn.close()
            raise
        self._last_lease = self._conn.execute(
            "SELECT coalesce(max(lease_id), 0) FROM jobs"
        ).fetchone()[0]

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        """Close the connection; committed data is on disk."""
        self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``): all of the body commits, or none.

        Raises:
            StoreError: SQLite failed; the transaction was rolled back.
        """
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"the job store is unavailable: {exc}") from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"the job store failed: {exc}") from None
            raise

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

    def migrate(self) -> int:
        """Apply pending migrations, each in its own transaction; return the new version.

        Raises:
            SchemaTooNew: the file's version is above the newest this code knows.
        """
        self._check_not_too_new()
        current = self.schema_version
        for version, path in migrations():
            if version <= current:
                continue
            script = path.read_text()
            try:
                self._conn.executescript(
                    f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;"
                )
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"migration {path.name} failed: {exc}") from None
            current = version
        return current

    def size_bytes(self) -> int:
        """Bytes on disk: the database file and its WAL."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += Path(str(self.path) + suffix).stat().st_size
        return total

    # ------------------------------------------------------------------ writes

    def enqueue(self, specs: Sequence[JobSpec]) -> list[Job]:
        """Validate and insert jobs, all in one transaction; return them as committed.

        Raises:
            BadInput: a spec is invalid; nothing was inserted.
        """
        for spec in specs:
            validate_spec(spec)
        now = self.clock.time()
        rows = []
        for spec in specs:
            try:
                payload = _json_encode(spec.payload).decode()
            except (TypeError, msgspec.EncodeError) as exc:
                raise BadInput(f"payload is not JSON: {exc}") from None
            at = spec.at
            run_after = at.timestamp() if at is not None else now + (spec.delay or 0.0)
            rows.append((spec, payload, run_after))
        jobs = []
        with self.transaction() as conn:
            for spec, payload, run_after in rows:
                cur = conn.execute(
                    "INSERT INTO jobs (type, queue, subject, generation, priority, state, "
                    "payload, max_attempts, timeout_s, backoff_s, require_charging, "
                    "require_idle, created_at, run_after) "
                    "VALUES (?, ?, ?, ?, ?, 'QUEUED', ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        spec.type,
                        spec.queue,
                        spec.subject,
                        spec.generation,
                        spec.priority,
                        payload,
                        spec.max_attempts,
                        spec.timeout,
                        spec.backoff,
                        int(spec.require_charging),
                        int(spec.require_idle),
                        now,
                        run_after,
                    ),
                )
                assert cur.lastrowid is not None
                jobs.append(
                    Job(
                        id=cur.lastrowid,
                        type=spec.type,
                        queue=spec.queue,
                        subject=spec.subject,
                        generation=spec.generation,
                        priority=spec.priority,
                        state=JobState.QUEUED,
                        attempts=0,
                        max_attempts=spec.max_attempts,
                        created_at=_ts(now),  # type: ignore[arg-type]
                        started_at=None,
                        finished_at=None,
                        run_after=_ts(run_after),
                        payload=_json_decode(payload),  # as stored (a set became a list)
                        timeout=spec.timeout,
                        waiting_for="run_after" if run_after > now else None,
                    )
                )
        return jobs

    def lease(self, worker_pid: int) -> Lease | None:
        """Atomically take the next runnable job for a worker, or None.

        The next job is the QUEUED one with the highest priority, oldest first,
        whose ``run_after`` has passed. It becomes RUNNING with a new lease id,
        one more attempt, ``started_at`` now and the error of an earlier attempt
        kept until this one ends.
        """
        check_transition(JobState.QUEUED, JobState.RUNNING)
        now = self.clock.time()
        self._last_lease += 1
        lease_id = self._last_lease
        with self.transaction() as conn:
            row = conn.execute(
                "UPDATE jobs SET state = 'RUNNING', attempts = attempts + 1, started_at = ?, "
                "finished_at = NULL, lease_id = ?, worker_pid = ? "
                "WHERE id = (SELECT id FROM jobs INDEXED BY jobs_ready "
                "            WHERE state = 'QUEUED' AND run_after <= ? "
                "            ORDER BY priority DESC, id LIMIT 1) "
                "RETURNING id, type, payload, attempts, max_attempts, timeout_s, backoff_s",
                (now, lease_id, worker_pid, now),
            ).fetchone()
        if row is None:
            return None
        job_id, type_, payload, attempt, max_attempts, timeout, backoff = row
        return Lease(
            lease_id=lease_id,
            job_id=job_id,
            type=type_,
            payload=payload.encode(),
            attempt=attempt,
            max_attempts=max_attempts,
            timeout=timeout,
            backoff=backoff,
        )

    def complete(self, lease: Lease, result: bytes | None) -> None:
        """RUNNING -> DONE with ``result`` (JSON text), if ``lease`` is still current.

        Raises:
            StaleLease: the job is no longer running under this lease.
        """
        self._move(
            lease,
            JobState.DONE,
            result=None if result is None else result.decode(),
            finished_at=self.clock.time(),
            error_kind=None,
            error_message=None,
        )

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

    def get(self, job_id: int) -> Job:
        """One job.

        Raises:
            NoSuchJob: no job has this id.
        """
        row = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            raise NoSuchJob(f"no job {job_id}")
        return self._job(row)

    def get_many(self, job_ids: Iterable[int]) -> list[Job]:
        """Several jobs, in the order asked (an id asked twice comes twice).

        Raises:
            NoSuchJob: one of the ids names no job.
        """
        wanted = list(job_ids)
        found: dict[int, Job] = {}
        unique = list(dict.fromkeys(wanted))
        for start in range(0, len(unique), 500):  # SQLite's bound-parameter limit
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id IN ({marks})", chunk
            ):
                found[row[0]] = self._job(row)
        missing = [job_id for job_id in unique if job_id not in found]
        if missing:
            raise NoSuchJob(f"no job {missing[0]}")
        return [found[job_id] for job_id in wanted]

    def state(self, job_id: int) -> JobState:
        """A job's state alone (cheap).

        Raises:
            NoSuchJob: no job has this id.
        """
        row = self._conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NoSuchJob(f"no job {job_id}")
        return JobState(row[0])

    def list(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        subject: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Jobs matching every filter given, newest first, at most ``limit``."""
        where, args = [], []
        for column, value in (
            ("state", state),
            ("queue", queue),
            ("type", type),
            ("subject", subject),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = self._conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs {clause} ORDER BY id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [self._job(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state (every state listed, zeros included)."""
        counts = {state.value: 0 for state in JobState}
        for state, n in self._conn.execute("SELECT state, count(*) FROM jobs GROUP BY state"):
            counts[state] = n
        return counts

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
        ) = row
        state = JobState(state)
        waiting_for = None
        if state == JobState.QUEUED and run_after > self.clock.time():
            waiting_for = "retry_backoff" if error_kind and attempts else "run_after"
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
            error=None if error_kind is None else JobError(error_kind, error_message or ""),
            payload=_json_decode(payload),
            timeout=timeout,
            waiting_for=waiting_for,
            worker_pid=worker_pid if state == JobState.RUNNING else None,
        )
