"""Deciding when a worker gets a job: event driven, with a timer only for real deadlines.

Idle workers wait in :meth:`Scheduler.next_lease`. Anything that may make a
job runnable (an enqueue, a retry, a job ending) calls :meth:`wake`; the
timer task sleeps until the earliest future ``run_after`` and wakes them then.
Nothing polls the store, except while it refuses leases (a full disk): then
idle workers try again less and less often, at least every ``FAULT_DELAY_MAX``,
so jobs start again within that once the fault clears.

Start times (``--delay``, ``--at``, retry backoffs) are wall-clock times,
but trio sleeps on the monotonic clock, which stands still while the machine
is suspended and ignores a clock that is set. So while a start time is
pending, the timer sleeps at most :data:`WALL_CHECK_S` at a time and looks
at the wall clock in between (not at the store): a job that came due during
a suspend, or in an hour the clock skipped, starts within that long of the
resume or the jump. With no start time pending the timer sleeps on an event
alone and never wakes.

**Leasing in the waker's commit.** An idle worker's feeder waits in
:meth:`Scheduler.next_leases`. When something makes a job startable and calls
:meth:`wake` (an enqueue, above all), the scheduler leases for the idle workers
in the step that commits the waker's writes, just before that commit
(``Committer.before_commit``; at once, if nothing is pending), with the same
statement the worker's own lease uses (``JobStore.lease_many``: the start
rules are the store's, only the moment changes): the enqueue's reply, made
before, shows the job as enqueued, and the wakes of one step lease once. The
leases go to the worker at once (``hold``: they are its unsent jobs from then
on, given back if it dies). The worker's task
stays asleep until the batch is committed (``Committer.when_settled``): so the
enqueue's task, alone, commits the job and its lease in one commit at once, and
the job is handed over right after, without a pass through the committer's task
or the worker's. If that commit fails, both are undone, the enqueue's client is
told, and the worker backs off as after any lease whose commit failed. Leasing
for them is skipped (and the idle workers woken to look themselves,
as before) while draining, while the maintenance gate is shut, and when the
store faults. A lease that finds nothing means no job may start: the other idle
workers are left asleep.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
import trio

from semantica.errors import StoreError
from semantica.supervisor.store import JobStore, Lease
from semantica.supervisor.store_retry import Backoff, retry_store

log = structlog.get_logger("semantica.scheduler")

#: While a start time is pending, the wall clock is looked at this often (awake time):
#: how late a job due during a suspend or a clock jump may start.
WALL_CHECK_S = 0.5

#: Retry delays while the store is failing.
FAULT_DELAY_MIN = 0.1
FAULT_DELAY_MAX = 5.0


class MachineState(Protocol):
    """The facts job conditions depend on (see supervisor/conditions.py)."""

    on_ac: bool
    idle: bool


class Gate(Protocol):
    """Closed while maintenance holds the store's write lock."""

    async def passage(self) -> None: ...

    @property
    def is_open(self) -> bool: ...


class Commits(Protocol):
    """What the scheduler asks of the committer (``Committer``) to lease for idle workers."""

    def when_settled(self, callback: Callable[[StoreError | None], None]) -> None:
        """Call back once the writes so far are committed (None) or failed (the error)."""

    def before_commit(self, hook: Callable[[], None]) -> bool:
        """Call ``hook`` just before the pending writes are committed; False: none."""


@dataclass(frozen=True, slots=True)
class Leased:
    """What :meth:`Scheduler.next_leases` took for a worker."""

    leases: list[Lease]
    #: Already committed (leased for it by a waker, returned once durable); else the
    #: caller waits for their commit, as after any write.
    committed: bool


class _Idle:
    """A worker waiting in :meth:`Scheduler.next_leases`, whose jobs a waker may lease."""

    __slots__ = ("committed", "count", "error", "hold", "leases", "waiting", "woken")

    def __init__(
        self,
        count: Callable[[], int],
        hold: Callable[[list[Lease]], None],
        committed: Callable[[], None] | None,
    ) -> None:
        self.count = count
        self.hold = hold
        self.committed = committed
        self.woken = trio.Event()
        self.leases: list[Lease] | None = None  # leased for it by a waker
        self.error: StoreError | None = None  # their commit failed (they are undone)
        self.waiting = True  # its task still waits (not cancelled: its worker lives)

    def settled(self, error: StoreError | None) -> None:
        self.error = error
        if error is None and self.committed is not None and self.waiting:
            self.committed()
        self.woken.set()


class _AlwaysReady:
    on_ac = True
    idle = True


class Scheduler:
    """Hands queued jobs to idle workers, and stops doing so when draining."""

    def __init__(
        self,
        store: JobStore,
        machine: MachineState | None = None,
        gate: Gate | None = None,
        commits: Commits | None = None,
    ) -> None:
        self.store = store
        self.gate = gate
        # Without it (a scheduler alone, in tests), idle workers always lease themselves.
        self._commits = commits
        # Idle workers whose jobs a waker may lease (next_leases), longest idle first.
        self._idle: dict[int, _Idle] = {}
        self._lease_due = False  # a lease for them waits for the pending commit
        self.machine: MachineState = machine or _AlwaysReady()
        self.draining = False
        self._runnable = trio.Event()  # idle workers wait on this
        self._deadlines = trio.Event()  # the timer waits on this
        self._timer_due = -math.inf  # when the timer wakes next (store clock); inf: never
        # While the store refuses leases (a full disk): how long to wait before the next
        # try, growing across calls while the fault lasts (see _wait_woken).
        self._faults = Backoff(FAULT_DELAY_MIN, FAULT_DELAY_MAX)

    def wake(self) -> None:
        """A job may be able to start now: idle workers look again.

        (Not the timer: a job that can start now sets no deadline. A change that
        sets one calls :meth:`reschedule`; each would cost the timer a query.)
        Idle workers waiting in :meth:`next_leases` are leased for in the step
        that commits the caller's writes, or now if none is pending (see the
        module docstring): call it after a write, not inside one.
        """
        self._runnable.set()
        self._runnable = trio.Event()
        if not self._idle or self._lease_due:
            return
        if self._commits is not None and self._commits.before_commit(self._lease_at_commit):
            self._lease_due = True
        else:
            self._lease_for_idle()

    def _lease_at_commit(self) -> None:
        self._lease_due = False
        if self._idle:
            self._lease_for_idle()

    def _lease_for_idle(self) -> None:
        """Lease for the idle workers now; wake those it could not lease for to look
        themselves, unless it found that no job may start."""
        idle = self._idle
        if self._commits is not None and not self.draining and self._gate_open():
            while idle:
                pid, waiter = next(iter(idle.items()))
                try:
                    leases = self.store.lease_many(
                        pid, waiter.count(), on_ac=self.machine.on_ac, idle=self.machine.idle
                    )
                except StoreError:
                    break  # they try themselves, and back off while the fault lasts
                if not leases:
                    return  # no job may start: the others would find none either
                del idle[pid]
                waiter.leases = leases
                waiter.hold(leases)  # the worker's from now on (given back if it dies)
                self._commits.when_settled(waiter.settled)
        for waiter in idle.values():
            waiter.woken.set()
        idle.clear()

    def _gate_open(self) -> bool:
        return self.gate is None or self.gate.is_open

    def reschedule(self, at: float | None = None) -> None:
        """A job's start time was set in the future: only the timer needs to look again.

        (Waking the workers for it would make each scan the queue for nothing.)
        ``at``, the new start time (store clock), spares the timer a look when
        it already wakes no later than that.
        """
        if at is not None and at >= self._timer_due:
            return
        self._deadlines.set()
        self._deadlines = trio.Event()

    def deadline_gone(self) -> None:
        """A queued job left the queue unrun (cancelled, superseded): if the timer waits
        for a start time, it looks again, so that it does not keep checking the wall
        clock for a job that is gone. (A timer with nothing pending is left asleep.)"""
        if self._timer_due != math.inf:
            self._deadlines.set()
            self._deadlines = trio.Event()

    def stop_leasing(self) -> None:
        """From now on no job starts (a drain)."""
        self.draining = True
        self.wake()

    async def next_lease(self, worker_pid: int) -> Lease:
        """Wait until a job can start on this worker and lease it.

        Cancellation: safe; no job is leased unless this returns. While
        draining it never returns.
        """
        watch = _Watch(self)

        async def lease_one() -> Lease | None:
            return self.store.lease(worker_pid, on_ac=self.machine.on_ac, idle=self.machine.idle)

        while True:
            lease = await retry_store(
                lease_one,
                self._faults,
                before_each=watch.before_each,
                wait=lambda delay: self._wait_woken(watch.runnable, delay),
                on_retry=_warn_lease_fault,
            )
            if lease is not None:
                return lease
            await watch.runnable.wait()

    async def next_leases(
        self,
        worker_pid: int,
        count: Callable[[], int],
        hold: Callable[[list[Lease]], None],
        committed: Callable[[], None] | None = None,
    ) -> Leased:
        """Wait until a job can start on this worker and lease up to ``count()`` (at least
        one; asked at each lease, since the worker's depth may change while it waits).

        Leased in this task (as :meth:`next_lease`): ``committed`` is False, the
        caller waits for their commit. Or, while it waits, leased for it when
        something made them startable (:meth:`wake`: in the step that commits the
        waker's writes): ``hold`` gets them at once, in that step; ``committed()`` is
        called in that step too, once they are committed (the pool
        hands them over right there), and this returns after (``committed`` True);
        if that commit failed (they are undone), ``hold([])`` is called, and this
        backs off (:meth:`lease_undone`) and waits again.

        Cancellation: safe; no job is leased unless this returns or ``hold`` has it.
        While draining it never returns.
        """
        watch = _Watch(self)

        async def lease_some() -> list[Lease] | None:
            leases = self.store.lease_many(
                worker_pid, count(), on_ac=self.machine.on_ac, idle=self.machine.idle
            )
            return leases or None

        while True:
            leases = await retry_store(
                lease_some,
                self._faults,
                before_each=watch.before_each,
                wait=lambda delay: self._wait_woken(watch.runnable, delay),
                on_retry=_warn_lease_fault,
            )
            if leases is not None:
                return Leased(leases, committed=False)
            if self._commits is None or watch.runnable.is_set():
                await watch.runnable.wait()  # (at once if woken since its lease)
                continue
            waiter = self._idle[worker_pid] = _Idle(count, hold, committed)
            try:
                await waiter.woken.wait()
            finally:
                waiter.waiting = False
                if self._idle.get(worker_pid) is waiter:
                    del self._idle[worker_pid]
            if waiter.leases is None:
                continue  # woken to look itself
            if waiter.error is not None:
                hold([])  # undone with the batch (its commit was logged)
                await self.lease_undone()
                continue
            self.lease_committed()
            return Leased(waiter.leases, committed=True)

    async def lease_undone(self) -> None:
        """The commit of a lease :meth:`next_lease` returned failed (a full disk, an I/O
        error), so the lease was undone: wait before leasing again.

        The lease itself succeeds on a full disk (it is a write in the open batch);
        only its commit fails. Without this wait an idle worker would lease, fail
        and lease again at once for as long as the disk stays full.
        """
        # (Not logged: a failed commit was logged by the committer.)
        await self._wait_woken(self._runnable, self._faults.next())

    def lease_committed(self) -> None:
        """A lease was committed: the store takes writes again; the next fault waits little."""
        self._faults.reset()

    @staticmethod
    async def _wait_woken(runnable: trio.Event, delay: float) -> None:
        """The store is failing: wait ``delay`` (twice as long as the last time in a row,
        from FAULT_DELAY_MIN up to FAULT_DELAY_MAX), or until something changes. Once the
        fault clears (space is back), jobs start again within FAULT_DELAY_MAX."""
        with trio.move_on_after(delay):
            await runnable.wait()

    def lease_many(self, worker_pid: int, count: int) -> list[Lease]:
        """Up to ``count`` jobs for this worker if they may start now, without waiting.

        For a worker that just reported ends: its next leases then share the
        commit of those ends. Empty when draining, when nothing may start, and
        on a store fault (:meth:`next_lease` then waits and retries). The caller
        must have passed the gate in the same step (no checkpoint).
        """
        if self.draining or count <= 0:
            return []
        try:
            return self.store.lease_many(
                worker_pid, count, on_ac=self.machine.on_ac, idle=self.machine.idle
            )
        except StoreError:
            return []

    async def run_timer(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Wake the workers when the earliest delayed or backed-off job comes due."""
        task_status.started()
        changed = self._deadlines

        async def earliest() -> float | None:
            nonlocal changed
            changed = self._deadlines
            return self.store.next_run_after()

        async def wait_then_wake(delay: float) -> None:
            await trio.sleep(delay)
            self.wake()  # whatever came due meanwhile

        def warn(exc: StoreError, delay: float) -> None:
            log.warning("store fault in the timer; will retry", error=exc.message)

        faults = Backoff(FAULT_DELAY_MAX, FAULT_DELAY_MAX)  # a fixed delay
        while True:
            due = await retry_store(earliest, faults, wait=wait_then_wake, on_retry=warn)
            self._timer_due = math.inf if due is None else due
            if due is None:
                await changed.wait()
                continue
            await self._wall_sleep(due, changed)
            self._timer_due = -math.inf  # looking again
            if not changed.is_set():
                self.wake()

    async def _wall_sleep(self, due: float, changed: trio.Event) -> None:
        """Return when the wall clock reaches ``due`` or ``changed`` is set.

        trio's clock does not count a suspend, nor a clock set forward: sleep
        in steps of at most WALL_CHECK_S and look at the wall clock after each.
        """
        clock = self.store.clock
        while True:
            left = due - clock.time()
            if left <= 0:
                return
            with trio.move_on_after(min(left, WALL_CHECK_S)):
                await changed.wait()
                return


class _Watch:
    """What a worker looking for a lease listens to: the scheduler's wake-up event,
    taken afresh before each try (so a wake from then on is not missed), and no try
    while draining (never) or while a VACUUM holds the store (after it)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self.runnable = scheduler._runnable

    async def before_each(self) -> None:
        scheduler = self._scheduler
        self.runnable = scheduler._runnable
        if scheduler.draining:
            await trio.sleep_forever()
        if scheduler.gate is not None:
            await scheduler.gate.passage()


def _warn_lease_fault(exc: StoreError, delay: float) -> None:
    log.warning("store fault while leasing; will retry", error=exc.message, retry_in_s=delay)
