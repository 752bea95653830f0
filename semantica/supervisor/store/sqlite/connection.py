"""The SQLite connection: typed errors, transactions, and group commit.

Every write of the store runs in :meth:`SQLiteConnection.transaction`: alone,
its own ``BEGIN IMMEDIATE`` ... ``COMMIT``; after
:meth:`~SQLiteConnection.defer_commits`, a savepoint in one open batch that
:meth:`~SQLiteConnection.commit` makes durable, or
:meth:`~SQLiteConnection.commit_in_thread` in the store's commit thread
(commit_thread.py) while the caller goes on. Every SQLite failure becomes a
typed :class:`~semantica.errors.StoreError`: ``StoreFull`` for a full disk or a
file size limit, ``StoreBusy`` for a lock another process holds.

One connection, one user at a time: while a commit runs in the thread, the
connection is out of reach. Every part of the store reaches it through
``_conn`` (or ``db``), which first waits for that commit to end; only the
commit itself holds the connection directly. So nothing can use it meanwhile,
whatever forgets to wait first; a caller on an event loop waits without
blocking by awaiting its committer first (``Committer.writable``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from semantica.clock import Clock
from semantica.errors import StoreBusy, StoreError, StoreFull
from semantica.supervisor.store.contract import BUSY_PATIENCE_S
from semantica.supervisor.store.sqlite.commit_thread import CommitThread


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


#: How long a write off the event loop (opening, migrating, maintenance) waits for
#: another process holding the database's write lock before it fails with StoreBusy.
BUSY_TIMEOUT_S = BUSY_PATIENCE_S
#: The same on the event loop (see :meth:`SQLiteConnection.fail_fast_when_busy`).
LOOP_BUSY_WAIT_S = 0.02


def set_busy_timeout(conn: sqlite3.Connection, seconds: float) -> None:
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


def reads(method: F) -> F:
    """A read: an SQLite failure becomes a typed StoreError (nothing to roll back)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            raise store_error(exc, "reading the job store failed") from None

    return wrapper  # type: ignore[return-value]


def size_on_disk(path: Path) -> int:
    """Bytes the database takes on disk: the file and its WAL."""
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(FileNotFoundError):
            total += Path(str(path) + suffix).stat().st_size
    return total


class SQLiteConnection:
    """The store's connection: opening errors, transactions and group commit.

    The attributes are set by :class:`~.store.SQLiteStore` when it opens the
    file; the other parts of the store (enqueue, leases, reads) write through
    :meth:`transaction` and read through ``_conn``.
    """

    path: Path
    clock: Clock
    _raw: sqlite3.Connection  # only the commit touches it directly: see _conn
    _raw_db: sqlite_utils.Database  # the same connection, for its query helpers
    _on_write: Callable[[], None] | None
    _batch_lost: StoreError | None
    _batch_writes: int  # writes released into the open batch transaction
    _tx_depth = 0  # transactions open on this store, one inside the other (see transaction)
    #: Set while a commit runs in the commit thread; the thread sets the event when done.
    _committing: threading.Event | None = None
    _commit_thread: CommitThread | None = None

    def _after_commit(self) -> None:
        """Wait for the commit running in the commit thread, if any."""
        committing = self._committing
        if committing is not None:
            committing.wait()

    @property
    def _conn(self) -> sqlite3.Connection:
        """The connection, once no commit runs in the commit thread (this waits for it)."""
        self._after_commit()
        return self._raw

    @_conn.setter
    def _conn(self, conn: sqlite3.Connection) -> None:
        self._raw = conn

    @property
    def db(self) -> sqlite_utils.Database:
        """The connection for sqlite_utils' query helpers (waits as :attr:`_conn` does)."""
        self._after_commit()
        return self._raw_db

    @db.setter
    def db(self, db: sqlite_utils.Database) -> None:
        self._raw_db = db

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
        """Close the connection (after the commit under way); committed data is on disk."""
        self._conn.close()

    def fail_fast_when_busy(self) -> None:
        """SQLite's busy wait blocks the calling thread: on the event loop, while
        another process holds the write lock, it would block every request and
        every worker for up to BUSY_TIMEOUT_S. From now on a write waits at most
        LOOP_BUSY_WAIT_S, then fails with StoreBusy, and its caller waits off the
        loop and tries again."""
        set_busy_timeout(self._conn, LOOP_BUSY_WAIT_S)

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
        conn = self._conn  # (after the commit under way in the thread, if any)
        self._commit(conn)

    def commit_in_thread(self, done: Callable[[StoreError | None], None]) -> None:
        """Start committing the writes made since the last commit in the store's commit
        thread, and return at once; ``done`` is called there, with the commit's error or
        None, once it has ended (see :meth:`commit` for the errors).

        Until it has ended, every use of the store waits for it (see the module
        docstring): the next writes start when the commit is done.
        """
        conn = self._conn  # (after the commit under way, if any: one at a time)
        if self._commit_thread is None:
            self._commit_thread = CommitThread()
        committing = threading.Event()

        def work() -> None:
            error: StoreError | None = None
            try:
                self._commit(conn)
            except StoreError as exc:
                error = exc
            except BaseException as exc:  # noqa: BLE001  # a bug: its writers must hear of it
                error = StoreError(f"the job store failed to commit: {exc!r}")
            finally:
                self._committing = None
                committing.set()
            done(error)

        self._committing = committing
        self._commit_thread.start(work)

    def _commit(self, conn: sqlite3.Connection) -> None:
        lost, self._batch_lost = self._batch_lost, None
        self._batch_writes = 0
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

        A write made inside another (a schedule's fire makes its job with
        :meth:`insert`) joins it: the outer one commits or undoes the whole.

        Raises:
            StoreError: SQLite failed; this write was rolled back.
        """
        if self._tx_depth:
            yield self._conn
            return
        self._tx_depth += 1
        try:
            with self._alone_or_batched() as conn:
                yield conn
        finally:
            self._tx_depth -= 1

    @contextlib.contextmanager
    def _alone_or_batched(self) -> Iterator[sqlite3.Connection]:
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
        # The first write of a batch needs no savepoint: until it is released, the
        # transaction holds it alone, and undoing the transaction undoes just it.
        # (Two statements fewer for a write that is committed alone, as most are.)
        first = not conn.in_transaction
        try:
            if first:
                conn.execute("BEGIN IMMEDIATE")
                self._batch_writes = 0
            else:
                conn.execute("SAVEPOINT write")
        except sqlite3.Error as exc:
            if conn.in_transaction and not self._batch_writes:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise store_error(exc, "the job store is unavailable") from None
        try:
            yield conn
            if not first:
                conn.execute("RELEASE write")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    if self._batch_writes and not first:
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

    def size_bytes(self) -> int:
        """Bytes on disk: the database file and its WAL."""
        return size_on_disk(self.path)
