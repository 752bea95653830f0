"""The schedule timer: sleeps until the next schedule slot is due, then fires it.

One trio task (:meth:`ScheduleTimer.run`, started beside the scheduler's timer)
asks the store when the next slot is due (``next_fire``), sleeps until then
on the wall clock, and calls the lifecycle's ``fire_schedules``, which has the
store decide every slot due (claiming each with its job in one write) and
settles the jobs made as enqueued ones. Then it asks again.

* **The wall clock.** Slots are wall-clock times, and trio sleeps on the
  monotonic clock, which stands still while the machine is suspended and
  ignores a clock that is set. So the timer sleeps at most
  :data:`WALL_CHECK_S` at a time and looks at the wall clock (the store's,
  never the store itself) in between: a slot that came due during a suspend
  fires within that long of the resume (and catch-up decides what the
  suspend missed). Waiting costs no store read; with no schedule due at all
  it sleeps on an event alone.
* **Wake-ups.** :meth:`ScheduleTimer.changed` makes it look again at once: the
  lifecycle calls it when a schedule is put, removed, paused or resumed on
  this node, and the node's changes feed when another node changed one
  (``schedules``). A wake-up for nothing costs one ``next_fire`` read.
* **Faults.** A store error while asking or firing is logged and retried
  after a growing delay (``store_retry``); the timer never ends the
  supervisor. A fire that failed changed nothing (each schedule's claim is
  one write), so the retry decides the same slots.
* **Held rows.** On PostgreSQL a fire passes over a schedule whose row another
  node holds (``SKIP LOCKED``): it may decide nothing while a slot is still
  due. The timer then waits :data:`HELD_DELAY_MIN`, doubling to
  :data:`HELD_DELAY_MAX` (or until a change), before it asks again, instead
  of spinning on the store while the other node finishes; the wait starts over
  once a fire decides something.
* **Draining.** From the start of a drain it fires nothing: the slots due
  then are decided by the next supervisor (catch-up).
* **Commits.** A fire's writes join the open batch of the group commit, like
  an enqueue's; a crash before that commit loses the claim and the job
  together, and the next start decides the slot again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import structlog
import trio

from semantica.clock import Clock
from semantica.errors import SemanticaError, StoreError
from semantica.schedules import Schedule
from semantica.supervisor.store import Fired
from semantica.supervisor.store_retry import Backoff, retry_store

log = structlog.get_logger("semantica.schedules")
T = TypeVar("T")

#: How often the wall clock is looked at while a slot is pending (awake time): how
#: late a slot due during a suspend or a clock jump may fire.
WALL_CHECK_S = 1.0
#: Delays between tries while the store fails.
FAULT_DELAY_MIN, FAULT_DELAY_MAX = 0.1, 5.0
#: Delays between fires that decide nothing although a slot is due (a row held elsewhere).
HELD_DELAY_MIN, HELD_DELAY_MAX = 0.05, 1.0


def schedule_counts(schedules: Sequence[Schedule]) -> dict[str, int]:
    """Schedules by state, for views and metrics: ``active`` and ``paused``."""
    paused = sum(1 for schedule in schedules if schedule.paused)
    return {"active": len(schedules) - paused, "paused": paused}


class ScheduleTimer:
    """Fires schedule slots as they come due (see the module docstring).

    Args:
        next_fire: the store's ``next_fire`` (when the next slot is due, or None).
        fire: the lifecycle's ``fire_schedules``.
        clock: the store's wall clock.
        draining: whether the supervisor drains (then nothing fires).
        before_each: awaited before each store call (the maintenance gate).
    """

    def __init__(
        self,
        next_fire: Callable[[], float | None],
        fire: Callable[[], Fired],
        clock: Clock,
        draining: Callable[[], bool] = lambda: False,
        before_each: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._next_fire = next_fire
        self._fire = fire
        self._clock = clock
        self._draining = draining
        self._before_each = before_each
        self._changed = trio.Event()
        self._faults = Backoff(FAULT_DELAY_MIN, FAULT_DELAY_MAX)
        self._held = Backoff(HELD_DELAY_MIN, HELD_DELAY_MAX)
        #: When the timer means to fire next (store clock; None: nothing due), for views.
        self.due: float | None = None
        self.fires = 0  # calls of fire that decided something (for tests and status)

    def changed(self) -> None:
        """A schedule was put, removed, paused or resumed (here or on another node):
        look again at when the next slot is due."""
        self._changed.set()
        self._changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fire slots as they come due, for the supervisor's life."""
        task_status.started()
        while True:
            changed = self._changed  # a change from now on is not missed
            if self._draining():
                await trio.sleep_forever()
            due = await self._store_call(self._ask, "asking when the next slot is due")
            self.due = due
            if due is None:
                await changed.wait()
                continue
            if not await self._wall_sleep(due, changed):
                continue  # changed: look again
            if self._draining():
                continue
            fired = await self._store_call(self._fire_now, "firing schedule slots")
            if fired.fired or fired.skipped or fired.missed:
                self.fires += 1
                self._held.reset()
                await trio.lowlevel.checkpoint()
            else:
                # Due, yet nothing decided: another node holds the row (see the module
                # docstring). Let it finish rather than ask again at once.
                with trio.move_on_after(self._held.next()):
                    await changed.wait()

    async def _ask(self) -> float | None:
        return self._next_fire()

    async def _fire_now(self) -> Fired:
        return self._fire()

    async def _store_call(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """``call`` until it works: a store fault is retried (store_retry); any other
        error of ours (a schedule the store refuses to fire) is logged and tried again
        after the longest delay, so that one bad schedule never ends the supervisor."""

        def warn(exc: StoreError, delay: float) -> None:
            log.warning(
                f"store fault {what}; will retry", error=exc.message, retry_in_s=round(delay, 2)
            )

        while True:
            try:
                result = await retry_store(
                    call, self._faults, before_each=self._before_each, on_retry=warn
                )
            except SemanticaError as exc:
                log.error(f"failed {what}; will retry", error=exc.message)
                await trio.sleep(FAULT_DELAY_MAX)
                continue
            self._faults.reset()
            return result

    async def _wall_sleep(self, due: float, changed: trio.Event) -> bool:
        """Sleep until the wall clock reaches ``due`` (True), or ``changed`` is set (False).

        trio's clock does not count a suspend, nor a clock set forward: sleep in
        steps of at most WALL_CHECK_S and look at the wall clock after each.
        """
        while True:
            left = due - self._clock.time()
            if left <= 0:
                return True
            with trio.move_on_after(min(left, WALL_CHECK_S)):
                await changed.wait()
                return False
