"""Group commit: the writes of one moment share one transaction and one fsync.

With ``synchronous=FULL`` every commit waits for the disk (about a
millisecond here), so committing each write alone caps the engine at about a
thousand writes a second. Instead the store keeps a transaction open
(:meth:`JobStore.defer_commits`); every write tells the :class:`Committer`,
whose task waits until no other task can run (every request read so far has
been carried out; trio's ``wait_all_tasks_blocked``, at most 2 ms) and
commits everything written meanwhile at once. Under load the batches grow by
themselves: requests that arrive while a commit waits for the disk are served
together afterwards.

A writer with nothing else to do need not wait for that task: when no other
task can run (:meth:`Committer.commit_if_alone`: the run queue holds at most
the committer itself), the writer commits at once, on its own turn, and a
one-at-a-time client gets its reply without two more passes of the scheduler.
What runs next still meets a committed store; writers that become runnable
later (another client's request, a lease) form the next batch as before.

"Alone" is one notion, used wherever a request's writer may commit (the
control server's in-order requests and its waits, cancels and maintenance
alike): the run queue holds nobody else, and no other client sent a request
within :data:`OTHERS_WINDOW_S` (:meth:`Committer.heard` is told of each
request read). Clients that each wait for their reply (threads with a
``Client`` each) sit in their sockets, where the run queue cannot see them;
committing each of their writes alone would cost a disk flush apiece, one
after another.

The committer's own batch commit runs off the event loop, in the store's
commit thread (:meth:`~semantica.supervisor.store.JobStore.commit_in_thread`):
while the disk works, the loop goes on reading and decoding the next
requests and writing the replies of earlier batches (when two clients or
more were heard within :data:`OTHERS_WINDOW_S`: with nobody else sending, there
is nobody to serve meanwhile, and it commits on its own turn as a lone writer
does). The store is one
connection with one writer, so nothing may use it meanwhile: writers await
:meth:`Committer.writable` first (and the store itself makes any use wait
for the commit, so forgetting to is slow, never wrong). The next batch's
writes start when the commit is done. A lone writer's commit stays on its own
turn (and so does the run of one pipelining client: see
``ControlServer._queue``): with nothing else to do, a hand-off to the thread
and back costs more than it saves.

The rule that keeps this honest: nothing is acknowledged before it is
durable. Replies wait for :meth:`Committer.durable` (or a :meth:`ticket`), and
so does a lease before its job is handed to a worker; both count a batch
being committed in the thread as not durable yet. If a commit fails, every
writer of that batch hears of it and nothing of the batch was acknowledged.

A writer whose task must not become runnable before the commit (so that the
writer beside it still finds itself alone) asks to be called back instead
(:meth:`Committer.when_settled`), and a write that should join the batch at
the last moment asks to be called just before it is committed
(:meth:`Committer.before_commit`): the scheduler's lease for an idle worker,
written in the step that commits the enqueue that made its job startable
(after the enqueue's reply was made: it shows the job as it was enqueued), so
that one commit, made at once by the enqueue's own task, covers both.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable

import structlog
import trio

try:
    # The function trio.testing exports, taken from where it lives: importing
    # trio.testing loads its test helpers, and pytest when it is installed
    # (+10 MB of RSS and 0.15 s of start-up in a development environment).
    from trio._core._generated_run import wait_all_tasks_blocked
except ImportError:  # pragma: no cover - trio moved it
    from trio.testing import wait_all_tasks_blocked

from semantica.errors import StoreError
from semantica.supervisor.store import JobStore

log = structlog.get_logger("semantica.committer")


def _runnable() -> int:
    """How many tasks are ready to run now (the caller, which runs, not counted)."""
    try:
        # The run queue itself: trio.lowlevel.current_statistics() counts it too, but also
        # walks every registered descriptor, which a request should not pay for. It is
        # trio's private state, so any change there falls back to the public count.
        return len(trio._core._run.GLOBAL_RUN_CONTEXT.runner.runq)
    except AttributeError:  # pragma: no cover - trio moved it
        return trio.lowlevel.current_statistics().tasks_runnable


#: The longest a write waits for its commit while other work keeps the loop busy.
MAX_DELAY = 0.002
#: A request from another client this recent means several are sending: a write is then
#: left to the committer to share a commit (see Committer.heard).
OTHERS_WINDOW_S = 0.005


class _Batch:
    """Writes waiting for one commit."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: StoreError | None = None
        self.writes = 0
        #: Called with ``error`` once the batch is settled (see Committer.when_settled).
        self.callbacks: list[Callable[[StoreError | None], None]] = []
        #: Called just before its commit (see Committer.before_commit).
        self.hooks: list[Callable[[], None]] = []


class _Ticket:
    """Awaitable end of one batch."""

    def __init__(self, batch: _Batch) -> None:
        self._batch = batch

    async def wait(self) -> StoreError | None:
        """Wait for the batch's commit; return its error, if it failed."""
        await self._batch.done.wait()
        return self._batch.error

    def same_batch(self, other: _Ticket) -> bool:
        """Whether both claim the same batch."""
        return self._batch is other._batch

    @property
    def settled(self) -> bool:
        """Whether the batch's commit has happened (or failed)."""
        return self._batch.done.is_set()

    @property
    def error(self) -> StoreError | None:
        """The commit's error, once :attr:`settled`; None if it succeeded."""
        return self._batch.error


#: A claim on a batch, as :meth:`Committer.ticket` gives it (for type annotations).
Ticket = _Ticket


class Claims:
    """The batches a request's writes (or reads) went into, across several steps.

    :meth:`Committer.durable` looks only at the batch open when it is called. A
    request that writes in slices, with other tasks run in between, may see an
    earlier slice's batch committed (or fail) in between: :meth:`mark` after each
    step takes a ticket on what is written so far, and :meth:`failed` tells,
    once all those batches are settled, whether any of them failed.
    """

    def __init__(self, committer: Committer) -> None:
        self._committer = committer
        self._tickets: list[_Ticket] = []

    def mark(self) -> None:
        """Claim the open batch (the writes so far). Call with no checkpoint since the write."""
        ticket = self._committer.ticket()
        if ticket is not None and (not self._tickets or not ticket.same_batch(self._tickets[-1])):
            self._tickets.append(ticket)

    async def failed(self) -> StoreError | None:
        """Wait until every claimed batch is settled; the first one's error, if any failed."""
        for ticket in self._tickets:
            error = await ticket.wait()
            if error is not None:
                return error
        return None


class Committer:
    """Commits the store's open batch soon after each write; tells writers when it is durable."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._batch = _Batch()
        self._wanted = trio.Event()
        self._asleep = False  # the task waits for _wanted (so it is runnable once that is set)
        #: The batch being committed in the store's thread, and the event set when it is
        #: settled (None: no commit under way; the store is free).
        self._in_flight: _Batch | None = None
        self._free = trio.Event()
        self._free.set()
        self._token: trio.lowlevel.TrioToken | None = None
        self._loop_thread = 0
        # Which source sent the latest request and when, and when another one last did.
        self._last_source: object = None
        self._last_heard = -math.inf
        self._other_heard = -math.inf
        #: How many commits and writes, for metrics and the benchmark.
        self.commits = 0
        self.writes = 0
        store.defer_commits(self._written)

    def _written(self) -> None:
        self._batch.writes += 1
        self._wanted.set()

    def heard(self, source: object) -> None:
        """Note that ``source`` (a client's connection) sent a request now."""
        if source is not self._last_source:
            self._other_heard = self._last_heard
            self._last_source = source
        self._last_heard = time.monotonic()

    def others_sending(self, source: object) -> bool:
        """Whether a source other than ``source`` was heard within :data:`OTHERS_WINDOW_S`."""
        other = self._other_heard if source is self._last_source else self._last_heard
        return time.monotonic() - other < OTHERS_WINDOW_S

    def _several_sending(self) -> bool:
        """Whether two sources or more were heard within :data:`OTHERS_WINDOW_S`."""
        return time.monotonic() - self._other_heard < OTHERS_WINDOW_S

    def ticket(self) -> _Ticket | None:
        """A claim on what is written so far: the open batch, else the one being committed;
        None if nothing is pending."""
        batch = self._batch if self._batch.writes else self._in_flight
        return None if batch is None else _Ticket(batch)

    def open_ticket(self) -> _Ticket | None:
        """A claim on the open batch, the one a write made now joins; None if it holds no
        write yet. (Unlike :meth:`ticket`, never the batch being committed in the store's
        thread: nothing written from now on goes into that one.)"""
        return _Ticket(self._batch) if self._batch.writes else None

    async def durable(self) -> None:
        """Return once everything written so far is committed.

        Raises:
            StoreError: the commit of those writes failed; none of them happened.
        """
        batch = self._batch if self._batch.writes else self._in_flight
        if batch is None:
            return
        await batch.done.wait()
        if batch.error is not None:
            raise batch.error

    def when_settled(self, callback: Callable[[StoreError | None], None]) -> None:
        """Call ``callback`` once everything written so far is committed (with None) or
        its commit failed (with the error; none of it happened); at once if nothing is
        pending.

        For a writer whose task must stay asleep until then, rather than wait in
        :meth:`durable` (runnable, it would keep another writer from committing
        alone). Called in the step of whichever task commits: it must be short, and
        must not raise.
        """
        # (With nothing open, what was written before may be in the store's thread.)
        batch = self._batch if self._batch.writes else self._in_flight
        if batch is None:
            callback(None)
        else:
            batch.callbacks.append(callback)

    def before_commit(self, hook: Callable[[], None]) -> bool:
        """Call ``hook`` in the step that commits the open batch, just before the commit
        (what it writes is committed with the batch); whether one is pending. If nothing
        is pending, no commit is coming: ``hook`` is not kept, and False returned.

        It must be short and must not raise (a store error is its own to catch).
        """
        if self._batch.writes == 0:
            return False
        self._batch.hooks.append(hook)
        return True

    async def writable(self) -> None:
        """Return once no commit is under way in the store's thread: the store may be used.

        Not a checkpoint when the store is free (as at almost every call).
        """
        while not self._free.is_set():
            await self._free.wait()

    def commit_if_alone(self, source: object = None) -> bool:
        """Commit the open batch now if no other writer could still join it; whether it is settled.

        "Alone" (see the module docstring): no task but the caller (and this
        committer, woken by the write) is runnable, and no client but ``source``
        (the caller's; None: no client's) was heard just now. Otherwise, or while
        a commit is under way in the store's thread, the batch is left to :meth:`run`,
        and False returned.
        """
        if self._batch.writes == 0:
            return self._in_flight is None
        if self._in_flight is not None:
            return False
        if source is not None and self.others_sending(source):
            return False
        runnable = _runnable()
        if self._asleep and self._wanted.is_set():
            runnable -= 1  # the committer itself, woken by the write: it will find nothing
        if runnable > 0:
            return False
        self.commit_now()
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit each batch as soon as the writers of the moment have written."""
        self._token = trio.lowlevel.current_trio_token()
        self._loop_thread = threading.get_ident()
        task_status.started()
        while True:
            self._asleep = True
            try:
                await self._wanted.wait()
            finally:
                self._asleep = False
            if self._batch.writes == 0:
                # Committed meanwhile by a writer that was alone (commit_if_alone).
                self._wanted = trio.Event()
                continue
            # Let every task that can run now write first: commit once nothing else
            # is runnable (all requests read so far are carried out), or after
            # MAX_DELAY under a load that never pauses.
            with trio.move_on_after(MAX_DELAY):
                await wait_all_tasks_blocked()
            self._wanted = trio.Event()
            if self._several_sending():
                # Several clients are sending: serve them meanwhile.
                await self._commit_in_thread()
            else:
                # One client at most: its next requests wait in its socket and make one
                # run after the commit; read during it, they came in more, smaller runs
                # (an insert each). The hand-off would cost more than it saves.
                self.commit_now()

    async def _commit_in_thread(self) -> None:
        """Commit the open batch in the store's thread; return once it is settled."""
        batch = self._take()
        free = self._free = trio.Event()
        self._in_flight = batch
        token, loop_thread = self._token, self._loop_thread
        assert token is not None

        def done(error: StoreError | None) -> None:  # in the store's thread, or on the loop
            if threading.get_ident() == loop_thread:
                self._settle(batch, free, error)
                return
            with contextlib.suppress(trio.RunFinishedError):  # shut down meanwhile
                token.run_sync_soon(self._settle, batch, free, error)

        self.store.commit_in_thread(done)
        await free.wait()

    def _settle(self, batch: _Batch, free: trio.Event, error: StoreError | None) -> None:
        """The end of a commit made in the store's thread (on the event loop)."""
        if self._in_flight is batch:
            self._in_flight = None
        free.set()
        self._ended(batch, error)

    def commit_now(self) -> None:
        """Commit the open batch at once, on the caller's turn (also used at shutdown;
        after the commit under way in the store's thread, if any)."""
        batch = self._take()
        if batch.writes == 0:
            batch.done.set()
            return
        error: StoreError | None = None
        try:
            self.store.commit()
        except StoreError as exc:
            error = exc
        self._ended(batch, error)

    def _take(self) -> _Batch:
        """The open batch, to be committed now (its hooks run first: what they write joins
        it); a new one opens for the writes from now on."""
        hooks, self._batch.hooks = self._batch.hooks, []
        for hook in hooks:
            hook()
        batch, self._batch = self._batch, _Batch()
        return batch

    def _ended(self, batch: _Batch, error: StoreError | None) -> None:
        """Settle ``batch``: its commit ended with ``error`` (None: durable)."""
        if error is not None:
            log.warning(
                "commit failed; its writes are undone", writes=batch.writes, error=error.message
            )
            batch.error = error
        self.commits += 1
        self.writes += batch.writes
        batch.done.set()
        for callback in batch.callbacks:
            callback(batch.error)
