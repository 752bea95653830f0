"""The job store contract: what any store must do, free of any database.

The supervisor keeps its jobs behind :class:`JobStore`; maintenance works on a
:class:`StoreUpkeep` beside it. Every module outside ``supervisor/store/`` names
these, never a backend. A backend (SQLite today, in ``sqlite/``) implements
both, and the conformance suite in ``tests/store/`` proves it.

Rules every method keeps:

* **Atomic.** Each write is all or none. A write that fails raises a
  :class:`~semantica.errors.StoreError` and changed nothing (``StoreFull`` for
  a full disk, ``StoreBusy`` when another process holds the store and the
  caller should try again soon).
* **Fenced.** Every move of a running job names its lease; a lease that is no
  longer the job's current one changes nothing (:class:`StaleLease`, or skipped
  where the method says so). The moves follow the transition table in
  :mod:`semantica.models`, and each names the state it expects.
* **Checked before.** Specs arrive :class:`Prepared` and queue settings arrive
  checked: validation happens once, before the store.
* **Durable when committed.** After :meth:`JobStore.defer_commits`, writes join
  a batch that :meth:`JobStore.commit` makes durable; until then nothing may be
  acknowledged, and a failed commit undoes the whole batch.
* **Short and synchronous.** The supervisor calls the store on its event loop:
  each call is one small transaction. Long work (vacuum, checks) is on the
  :class:`StoreUpkeep`, in a thread.
* **Bounded reads.** A job read back never carries an error or a progress
  message longer than the caps in :mod:`semantica.limits`, however long the
  text stored (an older row): it is cut, with a note saying so.
* **Its own clock.** Times written (``created_at``, ``run_after``, ...) are
  wall-clock seconds from :attr:`JobStore.clock`, so tests can pass a fake one.

The start rules (which queued job may start) are stated once, in
:mod:`~semantica.supervisor.store.start_rules`; a backend's lease applies them.

Dependencies (``after``, ``after_end``; the rules in
:mod:`~semantica.supervisor.store.dependencies`): a job that waits for other jobs
stays QUEUED and is never leased until each has ended as it needs. **Every end of
a job** (complete, fail to FAILED, cancel running or queued, supersede) resolves,
in the same transaction, the jobs waiting for it: DONE (or any end, for
``after_end``) lets them go on; any other end CANCELs them (``dependency_failed``,
naming the job and its end), and so on down the chain. The store keeps the jobs
it so ended for :meth:`JobStore.take_cascaded`, so that the supervisor tells their
waiters as of any cancel; a store shared by several nodes also says ``ends`` on
its feed. A job without dependencies costs no statement more to enqueue or lease.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from semantica.clock import Clock
from semantica.errors import StoreError
from semantica.models import Job, JobError, JobState, QueueInfo
from semantica.schedules import Schedule, ScheduleChanges, ScheduleSpec
from semantica.supervisor.store.records import (
    EnqueueResult,
    Fired,
    Lease,
    NodeInfo,
    NodeSpec,
    Page,
    Prepared,
    SchemaChange,
)
from semantica.supervisor.store.sharing import ChangeFeed, LogBook
from semantica.supervisor.store.start_rules import Blockers

#: How long a caller keeps trying a write that failed with StoreBusy (another
#: process holds the store) before it gives up and says so (``store_busy``).
BUSY_PATIENCE_S = 5.0

# Inside JobStore, `list` names a method.
JobsList = list[Job]
QueueInfos = list[QueueInfo]
Ends = list[tuple[Lease, bytes | None, float]]
ScheduleList = list[Schedule]

#: How many runs a schedule keeps (the newest; ``schedule show`` lists them).
RUNS_KEPT = 100


class StoreReads(Protocol):
    """What may be read from a store: the jobs, their queues, and the facts the start
    rules read. Request handlers see the store as this (they write through the job
    lifecycle), so a handler that tried a write would not type-check."""

    clock: Clock

    def size_bytes(self) -> int:
        """Bytes the store takes on disk (for ``semctl status``)."""
        ...

    def next_startable(
        self, count: int, cut: int, *, on_ac: bool = True, idle: bool = True
    ) -> JobsList:
        """The jobs :meth:`lease_many` of ``count`` would take now, in that order, as
        rows for a view (see :meth:`next_queued`); a read, nothing taken."""
        ...

    def queue_known(self, name: str) -> bool:
        """Whether a job or a setting ever named the queue (and it was not forgotten)."""
        ...

    def some_queues(self, most: int = 10) -> str:
        """The first queue names, for a message: ``a, b, c`` or ``a, b, ... (12 in all)``;
        ``none yet`` when there is no queue."""
        ...

    def queues(self, finished: bool = True) -> QueueInfos:
        """Every queue that has a setting or a job, by name, with counts by state.

        ``finished`` False: only the QUEUED and RUNNING jobs are counted, and the
        counts hold those two states alone. Counting the finished jobs reads an index
        entry of every job in the store; counting those two reads theirs only (for a
        view asked every second: ``top``)."""
        ...

    def blockers(self) -> Blockers:
        """The queue and subject facts that hold queued jobs back now (see start_rules)."""
        ...

    def conditions_wanted(self) -> tuple[bool, bool]:
        """Whether any QUEUED job requires charging, and whether any requires an idle CPU."""
        ...

    def next_run_after(self) -> float | None:
        """The earliest future ``run_after`` of a queued job (when to look again), or None."""
        ...

    def get(self, job_id: int) -> Job:
        """One job, with the jobs it waits for (``dependencies``, each with its state
        now) and those waiting for it (``dependents``, the first DEPENDENTS_SHOWN, and
        ``dependents_count``). Every read of a QUEUED job says which jobs it still waits
        for (``waiting_on``); lists leave the other two empty.

        Raises:
            NoSuchJob: no job has this id.
        """
        ...

    def dependency_waits(self) -> int:
        """How many QUEUED jobs wait for other jobs (cheap: an index of those alone)."""
        ...

    def get_many(self, job_ids: Iterable[int]) -> JobsList:
        """Several jobs, in the order asked (an id asked twice comes twice).

        Raises:
            NoSuchJob: one of the ids names no job.
        """
        ...

    def get_page(self, job_ids: Sequence[int], budget: int | None) -> Page:
        """:meth:`get_many`, but only the first jobs that fit in ``budget`` bytes of
        reply (msgpack; at least one; None: no limit), ``more`` if it stopped early.

        Raises:
            NoSuchJob: one of the ids names no job.
        """
        ...

    def state(self, job_id: int) -> JobState:
        """A job's state alone (cheap).

        Raises:
            NoSuchJob: no job has this id.
        """
        ...

    def states(self, job_ids: Iterable[int]) -> dict[int, JobState]:
        """The states alone of several jobs.

        Raises:
            NoSuchJob: one of the ids names no job.
        """
        ...

    def list(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        subject: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> JobsList:
        """Jobs matching every filter given, newest first, at most ``limit``;
        ``before``: only jobs with a lower id (the next page after a job)."""
        ...

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
        """:meth:`list`, only as many as fit in ``budget`` bytes of reply (at least one)."""
        ...

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
        ...

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state (every state listed, zeros included)."""
        ...

    def next_queued(self, limit: int, cut: int | None = None) -> JobsList:
        """The first ``limit`` QUEUED jobs in start order (priority, then oldest),
        whatever holds them back. With ``cut``, rows for a view: no payload nor
        result, and long texts cut to ``cut`` characters, ending in an ellipsis."""
        ...

    def latest_rows(self, state: str, limit: int, cut: int) -> JobsList:
        """The newest ``limit`` jobs in ``state``, as rows for a view (see :meth:`next_queued`)."""
        ...

    def schedule(self, name: str, runs: int = 20) -> Schedule:
        """One schedule, with its last ``runs`` runs, newest first, each with its
        job's state now (None: the job is gone, deleted by retention).

        Raises:
            NoSuchSchedule: no schedule has this name.
        """
        ...

    def schedules(self, latest_run: bool = False) -> ScheduleList:
        """Every schedule, by name, without runs (cheap: one row each; for ``status`` and
        the timer's counts); with ``latest_run``, each with its latest run if it has one
        (one read more, for ``schedule list`` and ``top``: how the last one went)."""
        ...

    def next_fire(self) -> float | None:
        """The earliest time a schedule's next slot is due (the slot plus its jitter),
        by the store's clock; None if no schedule has one (none, or all paused)."""
        ...


class JobStore(StoreReads, Protocol):
    """The jobs, their queues and their leases, kept durably: the reads of
    :class:`StoreReads`, and every write."""

    @property
    def schema_version(self) -> int:
        """The version of the schema the store holds now (0: a new, empty store)."""
        ...

    @property
    def newest_schema_version(self) -> int:
        """The newest schema version this code knows (what :meth:`migrate` goes up to)."""
        ...

    def migrate(self, to: int | None = None) -> SchemaChange:
        """Move the schema up or down to version ``to`` (default: the newest), one
        transaction per step, keeping the data; say what was done.

        A new store (schema 0) gets the schema made from nothing; going up from
        one that has data first takes a backup where the backend can.

        Raises:
            SchemaTooNew: the store's version is above the newest this code knows.
            BadInput: ``to`` names no version this code has.
            StoreError: a step failed (that step was rolled back).
        """
        ...

    def close(self) -> None:
        """Let go of the store; what was committed is kept."""
        ...

    def fail_fast_when_busy(self) -> None:
        """From now on the store is called from an event loop: a write that finds
        the store held by another process raises StoreBusy at once (within a few
        milliseconds, nothing changed) instead of waiting; the caller retries."""
        ...

    def defer_commits(self, on_write: Callable[[], None]) -> None:
        """Group commit: from now on writes join an open batch, made durable by :meth:`commit`.

        Each write is still all-or-none, and ``on_write`` is called after each
        so the owner can schedule the commit. Nothing written is durable, and
        nothing may be acknowledged, until :meth:`commit` returns; if it fails,
        every write since the last commit is gone.
        """
        ...

    def commit(self) -> None:
        """Make the writes since the last commit durable (group commit).

        Raises:
            StoreError: the commit failed; everything since the last commit was undone.
        """
        ...

    def commit_in_thread(self, done: Callable[[StoreError | None], None]) -> None:
        """Start :meth:`commit` and return, possibly before it has ended; ``done`` is
        called with its error (or None) once it has, from whichever thread ran it.

        A store whose commit waits for the disk (SQLite) runs it in a thread of its
        own, so that the caller's event loop goes on meanwhile; until ``done`` is
        called, every use of the store waits for the commit (nothing else may use
        the connection). Another store may commit at once, before returning.
        """
        ...

    def upkeep(self) -> StoreUpkeep:
        """A second handle for maintenance, to be used from a thread (see StoreUpkeep)."""
        ...

    def insert(self, prepared: Sequence[Prepared]) -> EnqueueResult:
        """Add prepared jobs, all in one write (all or none), as QUEUED.

        Each job's ``run_after`` is its ``at``, else now plus its ``delay``.
        Jobs with a subject follow the generation rules, in order, so a later
        spec of the batch sees the earlier ones:

        * no generation: one above the newest of its ``(type, subject)``;
        * a generation not above a QUEUED or RUNNING one of the subject: that
          job is returned (``deduplicated``) and nothing is added;
        * otherwise it is added, and the QUEUED jobs of the subject with a lower
          generation become SUPERSEDED (``superseded_by`` = the new job); the
          RUNNING ones are listed in ``running_older`` if the spec asks to
          supersede running jobs.

        Ids grow in the order jobs are added. A queue a job names is known from
        then on (:meth:`queue_known`). A job added as its spec says (no subject,
        nothing waited for) is :func:`~semantica.fresh_jobs.fresh_job` of its spec at
        the result's ``added_at``, the store's time of the insert: clients rebuild
        such jobs from their specs (brief enqueue replies), so it is exactly that.
        Jobs without a subject go in many a statement, so that a batch costs a
        few µs a job beyond the database's own insert (SQLite also takes a run
        of jobs of distinct subjects at once: ``sqlite/subjects.py``).

        A spec's ``edges`` (resolved by ``graph.plan``: a job id, or the place of an
        earlier spec of this call) are added with it, each as the job waited for
        stands now: a job waits (``waiting_on``) for those not yet ended as it
        needs; if one already ended badly, it is added CANCELLED at once
        (``dependency_failed``) and is among :meth:`take_cascaded`'s jobs. A
        deduplicated spec adds no edge. Jobs superseded here resolve their
        dependents as any end does.

        Raises:
            BadInput: a subject has no generation left; nothing was added.
            NoSuchJob: a job waited for does not exist; nothing was added.
        """
        ...

    def lease(self, worker_pid: int, *, on_ac: bool = True, idle: bool = True) -> Lease | None:
        """Take the next job that may start now for a worker, or None.

        The next job is the one :mod:`start_rules` lets start with the highest
        priority, oldest first (``on_ac`` and ``idle`` say how the machine is).
        It becomes RUNNING with a new lease id, one more attempt, its worker,
        and ``started_at`` now (later than every earlier lease's); its progress
        is cleared, and the error of an earlier attempt stays until this one ends.
        """
        ...

    def lease_many(
        self, worker_pid: int, count: int, *, on_ac: bool = True, idle: bool = True
    ) -> list[Lease]:
        """Up to ``count`` jobs for one worker, in one write, in the order it should run them.

        The same jobs, in the same order, as ``count`` calls of :meth:`lease`
        would take (the jobs of this batch count as running), except that it
        may return fewer. Their lease ids and start times increase in that
        order. The take is set-based (one statement for the batch, after the
        read that picks it), so a batch costs little more than one lease.
        """
        ...

    def complete(self, lease: Lease, result: bytes | None, start: float = 0.0) -> None:
        """RUNNING -> DONE with ``result`` (JSON text); :meth:`complete_many` of one.

        Raises:
            StaleLease: the job is no longer running under this lease.
        """
        ...

    def complete_many(self, ends: Ends) -> list[Lease]:
        """RUNNING -> DONE for each ``(lease, result, start)``, in one write; returns
        the leases that were no longer current (skipped, nothing changed for them).

        ``start`` is when the worker started the job (Unix time; 0 if unknown):
        ``started_at`` becomes the later of it and the lease's (and no later than
        the end). The error of an earlier attempt is cleared. A lease named twice
        ends its job once, with the first result; the second is returned as
        stale, as in a second call. The batch is set-based work (a statement for
        all, not one per end): what a store pays per end is small beside its
        statement and commit.
        """
        ...

    def set_progress(self, lease: Lease, fraction: float, message: str) -> None:
        """Record how far the job under ``lease`` has got (ignored if the lease is stale)."""
        ...

    def fail(self, lease: Lease, error: JobError, retry_at: float | None) -> JobState:
        """End an attempt with ``error``: back to QUEUED at ``retry_at`` (the attempt
        spent), or FAILED if None. Returns the job's new state.

        Raises:
            StaleLease: the job is no longer running under this lease.
        """
        ...

    def cancel_running(self, lease: Lease, error: JobError) -> None:
        """RUNNING -> CANCELLED with ``error``.

        Raises:
            StaleLease: the job is no longer running under this lease.
        """
        ...

    def requeue_interrupted(self, lease: Lease, error: JobError) -> None:
        """RUNNING -> QUEUED now, with ``error``, without spending the attempt (a
        drain stopped it).

        Raises:
            StaleLease: the job is no longer running under this lease.
        """
        ...

    def give_back(self, leases: Iterable[Lease]) -> int:
        """RUNNING -> QUEUED for leased jobs their worker never started; returns how many.

        The attempt is not spent and nothing else about the job changes but
        ``started_at``, which keeps the time of the lease given back: it runs
        next as if it had waited in the queue. Stale leases are skipped.
        """
        ...

    def recover_running(self) -> int:
        """At start: every RUNNING job (its supervisor died) goes back to QUEUED,
        due now, error ``interrupted``, attempt not spent. Returns how many."""
        ...

    def cancel_queued(self, job_id: int, message: str) -> bool:
        """QUEUED -> CANCELLED; False (and nothing changed) if the job is not QUEUED."""
        ...

    def retry(self, job_id: int) -> Job:
        """FAILED or CANCELLED -> QUEUED now, with a fresh attempt budget; the job after.

        The last error stays until the next attempt ends. A job that waits for
        other jobs waits again for those not DONE (or not ended, for
        ``after_end``) now.

        A job with a subject is not retried once a newer generation of its
        ``(type, subject)`` is queued, running or DONE; nor is a job while a job
        it waits for (``after``) ended FAILED, CANCELLED or SUPERSEDED (the error
        says which, and ``retry ID --dependents`` of it).

        Raises:
            NoSuchJob: no such job.
            BadInput: the job is not FAILED or CANCELLED, or a newer generation
                is queued, running or done, or a job it waits for ended badly
                (nothing changed).
        """
        ...

    def retry_with_dependents(self, job_id: int) -> tuple[Job, list[int]]:
        """:meth:`retry`, and in the same transaction the jobs CANCELLED because of it
        (``dependency_failed``) come back QUEUED, waiting for it, and so on down the
        chain; their error of that cancel is cleared. A job that also waits for another
        job that ended badly, and is not brought back with them, stays as it is; so
        does a job a plain :meth:`retry` would refuse for a newer generation of its
        subject (queued, running or DONE), and the jobs below it.
        Returns the job and the ids brought back (nearest first).

        Raises:
            NoSuchJob, BadInput: as :meth:`retry` (nothing changed).
        """
        ...

    def take_cascaded(self) -> list[int]:
        """The jobs this store ended because a job they waited for ended (CANCELLED,
        ``dependency_failed``), by any write since the last call, in the order they
        ended; each once. The caller tells their waiters, logs and counts them as any
        cancel. A write that was undone added none."""
        ...

    def set_queue(
        self, name: str, *, paused: bool | None = None, limit: int | None = None
    ) -> QueueInfo:
        """Create the queue if new and change the settings given (name and limit
        already checked); return the queue with its counts."""
        ...

    def put_schedule(self, spec: ScheduleSpec, replace: bool = True) -> tuple[Schedule, bool]:
        """Create the schedule ``spec`` names (True) or replace it (False); the spec was
        checked before (``validate_schedule``). Its history and counters stay. If it is
        new, or its timing (``cron``, ``every``, ``tz``) changed, or it was paused and
        ``spec`` is not, its next slot is the first after now; otherwise it keeps it:
        the one stored when the put commits, so a put racing a claim of the schedule's
        slot on another node waits for it and keeps the slot it moved on to.
        ``spec.paused``: as :meth:`pause_schedule`.

        Raises:
            BadInput: ``replace`` is false and the schedule exists, also when another
                node created it a moment before (nothing changed).
        """
        ...

    def remove_schedule(self, name: str) -> bool:
        """Delete a schedule and its runs (its jobs stay); False if there was none."""
        ...

    def pause_schedule(self, name: str, paused: bool) -> Schedule:
        """Pause or resume a schedule. The slots that pass while it is paused give no job
        and are not missed; on resume its next slot is the first after now.

        Raises:
            NoSuchSchedule: no schedule has this name.
        """
        ...

    def apply_schedules(self, specs: Sequence[ScheduleSpec], dry_run: bool) -> ScheduleChanges:
        """Make the set of schedules exactly ``specs`` (checked before, names distinct):
        create the new, replace the changed (as :meth:`put_schedule`; a spec is changed
        if any of its fields differs, ``paused`` included), remove the others, all in
        one write. With ``dry_run`` nothing changes: the result says what would.

        Raises:
            BadInput: two specs have the same name (nothing changed).
        """
        ...

    def fire_due(self) -> Fired:
        """Decide every slot due now (store clock) of every schedule not paused.

        For each schedule due, one write: claim its slots (a compare-and-set on its
        next slot; on a store shared by nodes the row is also taken with a lock
        others skip, so two nodes never both claim), make the job of the slot that
        fires through the same :meth:`insert` as an enqueue (its ``run_after`` the
        slot plus its jitter; the job records the schedule and the slot), record the
        run, and move the next slot on. Catch-up (``semantica.schedule_slots``): of
        the slots due, all but the latest are missed (counted, not each recorded);
        the latest fires, unless it is late and ``catch_up`` is ``none`` (missed
        too), or ``overlap`` is ``skip`` and the schedule's previous job is QUEUED or
        RUNNING (recorded ``skipped``). A slot whose job :meth:`insert` refuses
        (``BadInput``: the template's subject has no generation left) is decided
        without one, in a write of its own: recorded ``refused``, counted missed, and
        listed in ``Fired.refused``; it holds up no other schedule. A schedule keeps
        its last :data:`RUNS_KEPT` runs. A crash before the write's commit leaves the slots
        unclaimed and no job; after it, both.
        """
        ...

    def run_schedule(self, name: str) -> EnqueueResult:
        """A job now from the schedule's job template, recorded as a ``manual`` run
        (its slot: now); the schedule's slots do not move.

        Raises:
            NoSuchSchedule: no schedule has this name.
        """
        ...

    def join(self, node: NodeSpec) -> int:
        """Register this store's owner as a node (or take over its earlier registration
        with the same ``node.key``, whose RUNNING jobs go back to the queue as by
        recover_running: their supervisor is gone). Returns the node id; leases taken
        from now on carry it. Without a join, the store joins with NodeSpec() defaults
        at its first write that needs a node."""
        ...

    def heartbeat(self, detail: bytes) -> bool:
        """Renew this node's heartbeat (the database's clock) and publish ``detail``
        (opaque JSON from the supervisor: its workers and their jobs). False if the node
        was declared dead meanwhile: the caller must stop its jobs and join again."""
        ...

    def reap_dead(self, timeout: float) -> list[int]:
        """Declare dead every node whose heartbeat is older than ``timeout`` seconds by the
        database's clock, and put their RUNNING jobs back in the queue as recover_running
        does (due now, error ``interrupted``, attempt not spent); return those job ids.
        Two nodes reaping at once requeue each job once."""
        ...

    def nodes(self) -> list[NodeInfo]:
        """Every node alive, and those dead or gone within the last hour, by id."""
        ...

    def leave(self) -> None:
        """Mark this node gone (a clean stop, after its jobs were put back)."""
        ...

    def changes(self) -> ChangeFeed | None:
        """A feed of what other nodes changed, or None (a single-writer store: nothing
        changes behind the owner's back)."""
        ...

    def request_stop(self, job_id: int, error: JobError) -> bool:
        """Ask the node running ``job_id`` to stop it and end it with ``error`` (a cancel
        made on another node): the request is kept on the job until it leaves RUNNING,
        and the feed says ``stops``. False (nothing changed) if it is not RUNNING."""
        ...

    def stop_requests(self) -> list[tuple[int, JobError]]:
        """The jobs running on this node that another node asked to stop, with the error
        each is to end with (none on a single-writer store)."""
        ...

    def log_book(self) -> LogBook | None:
        """Where job logs are kept when several nodes share the store (every node reads
        every job's log), or None: the owner keeps them itself (in files)."""
        ...


class StoreUpkeep(Protocol):
    """Long store work (maintenance), on a handle of its own, meant to run in a thread.

    Each write is a short transaction. If :attr:`exclusive` is true, a write
    step holds off the store's other writers while it runs: the caller then
    keeps its own writers waiting (the maintenance gate) rather than let them
    fail as busy.
    """

    exclusive: bool

    def close(self) -> None:
        """Let go of the handle (and of the lead, if it took it)."""
        ...

    def lead(self) -> bool:
        """Take the lead of maintenance: True if no other handle on this store (another
        node's, say) holds it now; held until :meth:`close`. False: another holds it,
        and this one should do nothing."""
        ...

    def size_bytes(self) -> int:
        """Bytes the store takes on disk."""
        ...

    def delete_finished(self, before: float, batch: int = 500) -> list[int]:
        """Delete up to ``batch`` finished jobs (DONE, FAILED, CANCELLED, SUPERSEDED)
        whose ``finished_at`` is before ``before``, in one short write; return their
        ids (fewer than ``batch``: there are no more)."""
        ...

    def forget_queues(self, after: str, batch: int = 500) -> tuple[int, str | None]:
        """Look at up to ``batch`` queues named after ``after``, in name order, and
        delete those with no job left and no setting (not paused, no limit), in one
        short write. Returns how many went and the name to go on after (None: all
        looked at). A queue forgotten is as if it had never been used."""
        ...

    def existing(self, job_ids: Sequence[int]) -> set[int]:
        """Which of ``job_ids`` name a job."""
        ...

    def flush_journal(self) -> None:
        """Fold whatever the store keeps aside (a write-ahead log) into its main files."""
        ...

    def wants_compacting(self) -> bool:
        """Whether enough space is free inside the store to be worth giving back."""
        ...

    def compact_step(self) -> int:
        """Give some free space back, in one short step; how much (0: none left)."""
        ...

    def compact_fully(self) -> None:
        """Rewrite the store to give back all free space (holds the store until done)."""
        ...

    def check(self) -> str:
        """``ok``, or what an integrity check found wrong."""
        ...
