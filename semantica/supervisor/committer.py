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

The rule that keeps this honest: nothing is acknowledged before it is
durable. Replies wait for :meth:`Committer.durable`, and so does a lease
before its job is handed to a worker. If a commit fails, every writer of
that batch hears of it and nothing of the batch was acknowledged.

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
        #: How many commits and writes, for metrics and the benchmark.
        self.commits = 0
        self.writes = 0
        store.defer_commits(self._written)

    def _written(self) -> None:
        self._batch.writes += 1
        self._wanted.set()

    def ticket(self) -> _Ticket | None:
        """A claim on the open batch: what is written so far; None if nothing is pending."""
        batch = self._batch
        return None if batch.writes == 0 else _Ticket(batch)

    async def durable(self) -> None:
        """Return once everything written so far is committed.

        Raises:
            StoreError: the commit of those writes failed; none of them happened.
        """
        batch = self._batch
        if batch.writes == 0:
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
        batch = self._batch
        if batch.writes == 0:
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

    def commit_if_alone(self) -> bool:
        """Commit the open batch now if no other task could still join it; whether it is settled.

        "Alone": no task but the caller (and this committer, woken by the write) is
        runnable, so waiting for the others to write first would wait for nobody.
        Otherwise the batch is left to :meth:`run`, and False returned.
        """
        if self._batch.writes == 0:
            return True
        runnable = _runnable()
        if self._asleep and self._wanted.is_set():
            runnable -= 1  # the committer itself, woken by the write: it will find nothing
        if runnable > 0:
            return False
        self.commit_now()
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit each batch as soon as the writers of the moment have written."""
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
            self.commit_now()

    def commit_now(self) -> None:
        """Commit the open batch at once (also used at shutdown)."""
        hooks, self._batch.hooks = self._batch.hooks, []
        for hook in hooks:
            hook()
        batch, self._batch = self._batch, _Batch()
        if batch.writes == 0:
            batch.done.set()
            return
        try:
            self.store.commit()
        except StoreError as exc:
            log.warning(
                "commit failed; its writes are undone", writes=batch.writes, error=exc.message
            )
            batch.error = exc
        self.commits += 1
        self.writes += batch.writes
        batch.done.set()
        for callback in batch.callbacks:
            callback(batch.error)
