"""The PostgreSQL connection: typed errors, deadlines, reconnection, transactions, group commit.

The store talks to the server on one connection (psycopg 3, autocommit: each
write opens its own ``BEGIN`` ... ``COMMIT``; after
:meth:`PGConnection.defer_commits`, a savepoint in one open batch that
:meth:`PGConnection.commit` commits).

The supervisor calls the store on its event loop, so no call may hang on the
network. Every statement on the connection has a deadline (``deadline``
seconds, 2 s by default): a watchdog thread polls the call in flight and, when
its statement has waited past the deadline for the server, shuts the
connection's socket down (on a duplicate of its file descriptor), so psycopg
raises at once and the call fails with
:class:`~semantica.errors.StoreUnavailable`. The deadline is for a server that
does not answer, so it runs from each statement of a call, not from the call's
start: a write of many statements (an enqueue of 512 jobs with subjects goes in
one by one, a few statements each) may take longer than the deadline in all on
a slow machine, and was cut as if the server were gone, refusing the enqueue.
libpq's ``connect_timeout``, ``tcp_user_timeout`` and keepalives bound what the
kernel waits for as well.

A lost connection is never reopened on the caller's thread: from then on calls
fail fast with StoreUnavailable while a thread reconnects in the background
(0.1 s, doubling to 2 s between tries); the first call after it is back works.
The writes of a batch open when the connection went are gone (the server
rolled them back), and :meth:`commit` says so.

Errors: a lost or unreachable server is StoreUnavailable; a lock or statement
timeout, a deadlock or a serialization failure is ``StoreBusy`` (try again);
a full disk is ``StoreFull``; anything else a plain ``StoreError``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerrors
from psycopg.conninfo import conninfo_to_dict

from semantica.clock import Clock
from semantica.errors import StoreBusy, StoreError, StoreFull, StoreUnavailable
from semantica.supervisor.store.contract import BUSY_PATIENCE_S

#: How long a call on the supervisor's connection may take before it is cut.
DEADLINE_S = 2.0
#: How long a lock is waited for on the event loop (see fail_fast_when_busy).
LOOP_LOCK_WAIT_S = 0.05
#: Reconnection backoff: the first wait, and the longest.
RECONNECT_FIRST_S, RECONNECT_MAX_S = 0.1, 2.0

_BUSY = (
    pgerrors.LockNotAvailable,
    pgerrors.QueryCanceled,
    pgerrors.DeadlockDetected,
    pgerrors.SerializationFailure,
)
_FULL = (pgerrors.DiskFull, pgerrors.OutOfMemory, pgerrors.ProgramLimitExceeded)


def where(dsn: str) -> str:
    """The server a DSN names, for a message: ``host:port/dbname`` (never a password)."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "the PostgreSQL server (unreadable connection string)"
    host = str(parts.get("host") or os.environ.get("PGHOST") or "localhost")
    port = str(parts.get("port") or os.environ.get("PGPORT") or "5432")
    dbname = str(parts.get("dbname") or os.environ.get("PGDATABASE") or "")
    return f"PostgreSQL at {host}:{port}/{dbname}"


def store_error(exc: BaseException, what: str, place: str = "") -> StoreError:
    """The typed error for a psycopg failure (see the module docstring)."""
    if isinstance(exc, _BUSY):
        return StoreBusy(f"{what}: the database is busy ({_first_line(exc)})")
    if isinstance(exc, _FULL):
        return StoreFull(f"{what}: the database server is full ({_first_line(exc)})")
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return StoreUnavailable(f"{what}: {place or 'the server'} is unreachable")
    return StoreError(f"{what}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def connect_args(dsn: str, deadline: float) -> dict[str, Any]:
    """libpq settings that keep the kernel from waiting longer than ``deadline``."""
    parts = conninfo_to_dict(dsn)
    seconds = max(1, round(deadline))
    args: dict[str, Any] = {
        "connect_timeout": parts.get("connect_timeout") or seconds,
        "keepalives": 1,
        "keepalives_idle": max(1, seconds),
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "application_name": parts.get("application_name") or "semantica",
    }
    if not str(parts.get("host", "")).startswith("/"):
        args["tcp_user_timeout"] = round(deadline * 1000)  # (TCP only)
    return args


def open_connection(dsn: str, deadline: float, settings: dict[str, str]) -> psycopg.Connection[Any]:
    """A new autocommit connection with ``settings`` (``SET`` at connect time)."""
    given = str(conninfo_to_dict(dsn).get("options") or "")  # (the DSN's own come first)
    ours = " ".join(f"-c {name}={value}" for name, value in settings.items())
    options = f"{given} {ours}".strip()
    return psycopg.connect(
        dsn, autocommit=True, options=options or None, **connect_args(dsn, deadline)
    )


F = TypeVar("F", bound=Callable[..., Any])


def reads(method: F) -> F:
    """A read on the supervisor's connection: with a deadline, errors typed."""

    @functools.wraps(method)
    def wrapper(self: PGConnection, *args: Any, **kwargs: Any) -> Any:
        with self._call("reading the job store failed"):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


#: How many call deadlines a session may sit idle inside a transaction before the
#: server ends it (see _setup: half the node timeout with the supervisor's deadline).
IDLE_IN_BATCH = 5


class _Watchdog:
    """Cuts a connection whose statement waits past its deadline (see the module
    docstring).

    A call arms it (a tuple assignment, no lock), each of its statements re-arms it,
    and the call disarms it. While calls come, the thread looks every tenth of the
    deadline, so a statement is cut at most 10% late;
    once it finds none in flight it sleeps until the next call arms it, so an idle
    store costs no wake-ups.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._armed: tuple[float, int] | None = None  # (cut at, fd)
        self._asleep = False  # the thread waits for a call (see arm)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-deadline", daemon=True)
        self._thread.start()

    def arm(self, fd: int) -> None:
        self._armed = (time.monotonic() + self.deadline, fd)
        if self._asleep:
            self._asleep = False
            self._wake.set()

    def rearm(self) -> None:
        """A statement of the call in flight begins: the deadline runs from now."""
        armed = self._armed
        if armed is not None:
            self._armed = (time.monotonic() + self.deadline, armed[1])

    def disarm(self) -> None:
        self._armed = None

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            armed = self._armed
            if armed is None:
                # Nothing in flight: sleep until a call arms the watchdog. (Said before
                # looking again, so that an arm in between is never missed.)
                self._wake.clear()
                self._asleep = True
                if self._armed is None:
                    self._wake.wait()
                self._asleep = False
                continue
            if time.monotonic() >= armed[0]:
                if self._armed is armed:
                    self._armed = None
                    _cut(armed[1])
                continue
            self._stop.wait(self.deadline / 10)


def _rearming(watchdog: _Watchdog) -> type[psycopg.Cursor[Any]]:
    """The connection's cursors: each statement re-arms the deadline of the call in
    flight (``conn.execute`` makes one of these for each statement)."""

    class Rearming(psycopg.Cursor[Any]):
        def execute(self, *args: Any, **kwargs: Any) -> Rearming:
            watchdog.rearm()
            super().execute(*args, **kwargs)
            return self

    return Rearming


def _cut(fd: int) -> None:
    """Shut a connection's socket down under it: its pending read returns at once."""
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


class PGConnection:
    """The store's connection: deadlines, reconnection, transactions and group commit.

    :class:`~.store.PostgresStore` sets the attributes when it opens; the other
    parts write through :meth:`transaction` and read through :meth:`_cursor`
    inside :meth:`_call` (or the :func:`reads` decorator).
    """

    dsn: str
    clock: Clock
    place: str  # where the server is, for messages
    _conn: psycopg.Connection[Any] | None
    _watchdog: _Watchdog
    _settings: dict[str, str]
    _on_write: Callable[[], None] | None
    _batch_lost: StoreError | None
    _batch_writes: int
    _reconnecting: threading.Thread | None
    _closed: bool
    #: The server process of the connection (its notifications carry it; see changes.py).
    backend_pid: int
    _tx_depth = 0  # transactions open on this store, one inside the other (see transaction)

    # ------------------------------------------------------------------ the connection

    def _setup(self, dsn: str, clock: Clock, deadline: float) -> None:
        self.dsn, self.clock, self.place = dsn, clock, where(dsn)
        self._settings = {
            "lock_timeout": f"{round(BUSY_PATIENCE_S * 1000)}ms",
            # A node frozen (SIGSTOP, a suspended VM) in the middle of a batch would hold
            # its row locks for as long as it is frozen, and the other nodes could not
            # declare it dead (their reap waits on those rows). The server ends such a
            # session after IDLE_IN_BATCH deadlines, well before the node timeout (a
            # batch is committed within milliseconds of its writes).
            "idle_in_transaction_session_timeout": f"{round(IDLE_IN_BATCH * deadline * 1000)}ms",
        }
        self._on_write, self._batch_lost, self._batch_writes = None, None, 0
        self._reconnecting, self._closed = None, False
        self._watchdog = _Watchdog(deadline)
        try:
            self._conn = open_connection(dsn, deadline, self._settings)
            self._conn.cursor_factory = _rearming(self._watchdog)
        except psycopg.Error as exc:
            self._watchdog.stop()
            raise store_error(exc, "cannot open the job store", self.place) from None
        self.backend_pid = self._conn.info.backend_pid

    def close(self) -> None:
        """Close the connection (what was committed is kept) and stop its threads."""
        self._closed = True
        self._watchdog.stop()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def fail_fast_when_busy(self) -> None:
        """On the event loop a lock is waited for at most LOOP_LOCK_WAIT_S: then the write
        fails with StoreBusy (nothing changed) and its caller retries off the loop."""
        self._settings["lock_timeout"] = f"{round(LOOP_LOCK_WAIT_S * 1000)}ms"
        if self._conn is not None and not self._conn.closed:
            with self._call("the job store is unavailable") as conn:
                conn.execute(f"SET lock_timeout = '{self._settings['lock_timeout']}'")

    def _live(self) -> psycopg.Connection[Any]:
        """The connection, or StoreUnavailable at once while it is being reopened."""
        conn = self._conn
        if conn is None or conn.closed:
            self._lost()
            raise StoreUnavailable(f"the job store is unavailable: {self.place} is unreachable")
        return conn

    @contextlib.contextmanager
    def _call(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        """One call on the connection, each statement under the deadline; psycopg errors
        typed."""
        conn = self._live()
        self._watchdog.arm(conn.fileno())
        try:
            yield conn
        except psycopg.Error as exc:
            if conn.closed or conn.broken:
                self._lost()
                raise StoreUnavailable(f"{what}: {self.place} is unreachable") from None
            raise store_error(exc, what, self.place) from None
        finally:
            self._watchdog.disarm()

    def _lost(self) -> None:
        """The connection went: fail what was in flight, and reconnect in the background."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
            if self._batch_writes:
                self._batch_lost = StoreUnavailable(
                    f"the job store's connection was lost before the commit ({self.place})"
                )
                self._batch_writes = 0
        if self._closed or (self._reconnecting is not None and self._reconnecting.is_alive()):
            return
        self._reconnecting = threading.Thread(
            target=self._reconnect, name="pg-reconnect", daemon=True
        )
        self._reconnecting.start()

    def _reconnect(self) -> None:
        wait = RECONNECT_FIRST_S
        while not self._closed:
            time.sleep(wait)
            try:
                conn = open_connection(self.dsn, self._watchdog.deadline, self._settings)
            except psycopg.Error:
                wait = min(wait * 2, RECONNECT_MAX_S)
                continue
            if self._closed:
                conn.close()
            else:
                self.backend_pid = conn.info.backend_pid
                conn.cursor_factory = _rearming(self._watchdog)
                self._conn = conn
            return

    # ------------------------------------------------------------------ transactions

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
            StoreError: the commit failed, or the connection was lost with the
                batch open: everything since the last commit is gone.
        """
        lost, self._batch_lost = self._batch_lost, None
        self._batch_writes = 0
        if lost is not None:
            raise lost
        conn = self._conn
        if conn is None or conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            return
        with self._call("the job store failed to commit"):
            try:
                conn.execute("COMMIT")
            except psycopg.Error:
                if not conn.closed:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                raise

    def commit_in_thread(self, done: Callable[[StoreError | None], None]) -> None:
        """Commit at once, then call ``done`` with the error or None: a PostgreSQL
        commit waits for the server's flush, not for this process's disk, and the
        connection's watchdog and reconnects belong to the event loop's thread."""
        try:
            self.commit()
        except StoreError as exc:
            done(exc)
        else:
            done(None)

    @contextlib.contextmanager
    def transaction(self, *, tell: bool = True) -> Iterator[psycopg.Connection[Any]]:
        """One write: all of the body, or none of it (its own transaction, or a
        savepoint in the open batch after :meth:`defer_commits`). Without ``tell``,
        the owner's ``on_write`` is not called (a write made for the one that follows,
        which tells it). A body that raises :class:`Unchanged` is undone quietly: no
        error, and no write to commit.

        A write alone in its transaction has no savepoint (undoing it is a
        ``ROLLBACK``): a round trip less. A cursor may be read after the block.

        (Not psycopg's pipeline mode: it sends each statement in a write of its
        own, and through a TCP hop that delays small writes (Nagle's algorithm in
        a proxy without ``TCP_NODELAY``) each cost 40 ms, enough to miss a heartbeat.)

        A write made inside another (a schedule's fire makes its job with
        ``insert``) joins it: the outer one commits or undoes the whole.

        Raises:
            StoreError: the write failed and was rolled back (StoreUnavailable:
                the connection is lost; StoreBusy: a lock was not had in time).
        """
        if self._tx_depth:
            yield self._live()
            return
        self._tx_depth += 1
        try:
            with self._one_write(tell=tell) as conn:
                yield conn
        finally:
            self._tx_depth -= 1

    @contextlib.contextmanager
    def _one_write(self, *, tell: bool) -> Iterator[psycopg.Connection[Any]]:
        if self._batch_lost is not None and self._on_write is not None:
            # The batch is gone already; its writers will hear it at the commit,
            # and a write now would be acknowledged with the ones it follows.
            raise StoreUnavailable(f"the job store's connection was lost ({self.place})")
        with self._call("the job store failed") as conn:
            batched = self._on_write is not None
            nested = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
            try:
                conn.execute("SAVEPOINT write" if nested else "BEGIN")
                yield conn
                if not batched:
                    conn.execute("COMMIT")
                elif nested:
                    conn.execute("RELEASE write")
            except Unchanged:
                _undo(conn, batched and nested)
                return
            except BaseException:
                _undo(conn, batched and nested)
                raise
        if batched:
            self._batch_writes += 1
            if tell:
                assert self._on_write is not None
                self._on_write()


class Unchanged(Exception):
    """Raised by the body of :meth:`PGConnection.transaction`: undo what it did, and
    count it as no write (nothing to commit)."""


def _undo(conn: psycopg.Connection[Any], savepoint: bool) -> None:
    """Roll a write back: to its savepoint in the open batch, or the whole transaction."""
    if conn.closed or conn.broken:
        return
    with contextlib.suppress(psycopg.Error):
        if savepoint:
            conn.execute("ROLLBACK TO write")
            conn.execute("RELEASE write")
        else:
            conn.execute("ROLLBACK")
