"""Schedules in a store, for any backend: the contract's schedule methods, written once.

The SQL here is plain enough for SQLite and PostgreSQL alike; a backend gives
the few things that differ (:class:`ScheduleOps`'s hooks): its parameter mark,
how a due row is claimed (PostgreSQL: ``FOR UPDATE SKIP LOCKED``) and how a
row is read before a change (PostgreSQL: ``FOR UPDATE``, so that a put waits
for a claim in progress and keeps the slot it moved on to), how it reads and
writes, and how other nodes hear of a change (the changes feed's
``schedules``).

How a slot is claimed (:meth:`ScheduleOps.fire_due`): one write per schedule
due, which reads the row (locked on PostgreSQL, skipped if another node holds
it), decides its slots (``semantica.schedule_slots``), moves ``next_slot`` on
with a compare-and-set on its old value (zero rows: someone else claimed it;
nothing is written), and only then makes the job, through the store's own
``insert``, and records the run. The claim and the job commit together or not
at all: a crash before the commit leaves the slot to be claimed again, after
it the slot is taken.

A slot whose job the store refuses to make (``BadInput``: its subject has no
generation left) is decided all the same, in a second write: recorded
``refused``, counted missed, its reason in :attr:`Fired.refused`. A schedule
that can make no job never holds up the slots of the others, nor its own next.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from semantica.clock import Clock
from semantica.errors import BadInput, NoSuchJob
from semantica.models import JobState
from semantica.schedule_slots import decide, due_at, slot_after
from semantica.schedules import (
    NoSuchSchedule,
    Schedule,
    ScheduleChanges,
    ScheduleRun,
    ScheduleSpec,
    schedule_exists,
)
from semantica.supervisor.store.contract import RUNS_KEPT
from semantica.supervisor.store.records import EnqueueResult, Fired, Prepared
from semantica.supervisor.store.rows import ts

#: The columns a Schedule is read from (see :func:`schedule_from_row`).
SCHEDULE_COLUMNS = (
    "name, spec, paused, next_slot, next_fire, created_at, updated_at, last_slot, "
    "last_job_id, fired, skipped, missed"
)
#: The most schedules one :meth:`ScheduleOps.fire_due` decides (the rest: the next call).
FIRE_BATCH = 100
_LIVE = (JobState.QUEUED.value, JobState.RUNNING.value)

_encode = msgspec.json.encode


def encode_spec(spec: ScheduleSpec) -> str:
    return _encode(spec).decode()


def decode_spec(text: str) -> ScheduleSpec:
    return msgspec.json.decode(text, type=ScheduleSpec)


def same_spec(a: ScheduleSpec, b: ScheduleSpec) -> bool:
    """Whether two specs are the same once stored (a tuple payload reads back a list)."""
    return decode_spec(encode_spec(a)) == decode_spec(encode_spec(b))


def _timing(spec: ScheduleSpec) -> tuple[str | None, float | None, str]:
    return spec.cron, spec.every, spec.tz


def schedule_from_row(row: Sequence[Any]) -> Schedule:
    """The Schedule of a row read with :data:`SCHEDULE_COLUMNS` (no runs)."""
    (name, spec, paused, next_slot, next_fire, created, updated, last_slot, last_job) = row[:9]
    fired, skipped, missed = row[9:12]
    fields = msgspec.structs.asdict(decode_spec(spec))
    fields.update(name=name, paused=bool(paused))
    return Schedule(
        **fields,
        created_at=ts(created),
        updated_at=ts(updated),
        next_slot=ts(next_slot),
        next_fire=ts(next_fire),
        last_slot=ts(last_slot),
        last_job_id=last_job,
        fired=fired,
        skipped=skipped,
        missed=missed,
    )


#: The columns a ScheduleRun is read from (see :func:`_run`), runs as ``r``, jobs as ``j``.
_RUN_COLUMNS = "r.slot, r.outcome, r.at, r.job_id, j.state"


def _run(row: Sequence[Any]) -> ScheduleRun:
    slot, outcome, at, job_id, state = row
    return ScheduleRun(
        slot=datetime.fromtimestamp(slot, UTC),
        outcome=outcome,
        at=datetime.fromtimestamp(at, UTC),
        job_id=job_id,
        state=None if state is None else JobState(state),
    )


def _job_for(spec: ScheduleSpec, due: float | None) -> Prepared:
    """The job a slot makes (due at ``due``; None: now), from the schedule's template."""
    job = spec.job
    if due is not None:
        job = msgspec.structs.replace(job, at=datetime.fromtimestamp(due, UTC), delay=None)
    return Prepared(job, _encode(job.payload).decode())


def _next(spec: ScheduleSpec, slot: float | None) -> tuple[float | None, float | None]:
    """A next slot and when it is due (its next_fire)."""
    return slot, None if slot is None else due_at(spec, slot)


class ScheduleOps:
    """The schedule methods of :class:`~semantica.supervisor.store.contract.JobStore`.

    A backend mixes this in beside its enqueue (``insert``, whose transaction a
    write here joins) and gives the hooks below.
    """

    clock: Clock
    #: What a backend adds to the query that takes a due schedule's row for a claim.
    _claim_lock = ""
    #: What a backend adds to the query that reads a schedule's row before it changes
    #: it (a put, a pause): the change waits for a claim in progress and sees the slot
    #: that claim moved on to, rather than write back the one it claimed.
    _change_lock = ""

    if TYPE_CHECKING:

        def insert(self, prepared: Sequence[Prepared]) -> EnqueueResult: ...

    # ------------------------------------------------------------------ backend hooks

    def _sql(self, text: str) -> str:
        """``text`` with the backend's parameter mark (written with ``?``)."""
        return text

    def _schedule_write(self) -> AbstractContextManager[Any]:
        """One write (the backend's transaction), yielding its connection."""
        raise NotImplementedError

    def _schedule_read(self) -> AbstractContextManager[Any]:
        """One read, yielding the connection, its errors typed."""
        raise NotImplementedError

    def _schedules_changed(self, conn: Any) -> None:
        """Tell the other nodes, at this write's commit, that schedules changed."""

    def _nothing_written(self) -> None:
        """Called inside a write that turned out to change nothing (a backend may undo
        it quietly, so that it costs no commit)."""

    # ------------------------------------------------------------------ reads

    def schedule(self, name: str, runs: int = 20) -> Schedule:
        with self._schedule_read() as conn:
            found = self._row(conn, name)
            rows = conn.execute(
                self._sql(
                    f"SELECT {_RUN_COLUMNS} FROM schedule_runs AS r "
                    "LEFT JOIN jobs AS j ON j.id = r.job_id WHERE r.schedule = ? "
                    "ORDER BY r.id DESC LIMIT ?"
                ),
                (name, max(0, runs)),
            ).fetchall()
        found.runs = [_run(row) for row in rows]
        return found

    def schedules(self, latest_run: bool = False) -> list[Schedule]:
        with self._schedule_read() as conn:
            rows = conn.execute(f"SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name")
            found = [schedule_from_row(row) for row in rows.fetchall()]
            if latest_run and found:
                latest = conn.execute(
                    f"SELECT r.schedule, {_RUN_COLUMNS} FROM schedule_runs AS r "
                    "LEFT JOIN jobs AS j ON j.id = r.job_id WHERE r.id IN "
                    "(SELECT max(id) FROM schedule_runs GROUP BY schedule)"
                ).fetchall()
                runs = {row[0]: _run(row[1:]) for row in latest}
                for schedule in found:
                    if schedule.name in runs:
                        schedule.runs = [runs[schedule.name]]
        return found

    def next_fire(self) -> float | None:
        with self._schedule_read() as conn:
            row = conn.execute(
                "SELECT min(next_fire) FROM schedules WHERE next_fire IS NOT NULL"
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def _row(self, conn: Any, name: str, lock: str = "") -> Schedule:
        row = conn.execute(
            self._sql(f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = ?{lock}"), (name,)
        ).fetchone()
        if row is None:
            raise NoSuchSchedule(f"no schedule {name!r}")
        return schedule_from_row(row)

    # ------------------------------------------------------------------ changes

    def put_schedule(self, spec: ScheduleSpec, replace: bool = True) -> tuple[Schedule, bool]:
        with self._schedule_write() as conn:
            put, created = self._put(conn, spec, self.clock.time(), replace)
            self._schedules_changed(conn)
        return put, created

    def _put(
        self, conn: Any, spec: ScheduleSpec, now: float, replace: bool = True
    ) -> tuple[Schedule, bool]:
        # Locked (PostgreSQL): a fire on another node may be moving next_slot on.
        old = conn.execute(
            self._sql(
                f"SELECT spec, paused, next_slot FROM schedules WHERE name = ?{self._change_lock}"
            ),
            (spec.name,),
        ).fetchone()
        if old is not None and not replace:
            raise BadInput(schedule_exists(spec.name))
        if spec.paused:
            slot = None
        elif old is None or old[1] or _timing(decode_spec(old[0])) != _timing(spec):
            slot = slot_after(spec, now)
        else:
            slot = old[2]  # the same timing: the same next slot (its jitter may change)
        next_slot, next_fire = _next(spec, slot)
        if old is None:
            row = conn.execute(
                self._sql(
                    "INSERT INTO schedules (name, spec, paused, next_slot, next_fire, "
                    f"created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    f"ON CONFLICT (name) DO NOTHING RETURNING {SCHEDULE_COLUMNS}"
                ),
                (spec.name, encode_spec(spec), spec.paused, next_slot, next_fire, now, now),
            ).fetchone()
            if row is None:  # another node created it since the read (PostgreSQL)
                if not replace:
                    raise BadInput(schedule_exists(spec.name))
                return self._put(conn, spec, now, replace)
        else:
            row = conn.execute(
                self._sql(
                    "UPDATE schedules SET spec = ?, paused = ?, next_slot = ?, next_fire = ?, "
                    f"updated_at = ? WHERE name = ? RETURNING {SCHEDULE_COLUMNS}"
                ),
                (encode_spec(spec), spec.paused, next_slot, next_fire, now, spec.name),
            ).fetchone()
        return schedule_from_row(row), old is None

    def remove_schedule(self, name: str) -> bool:
        with self._schedule_write() as conn:
            gone = self._remove(conn, name)
            if gone:
                self._schedules_changed(conn)
            else:
                self._nothing_written()
        return gone

    def _remove(self, conn: Any, name: str) -> bool:
        conn.execute(self._sql("DELETE FROM schedule_runs WHERE schedule = ?"), (name,))
        row = conn.execute(
            self._sql("DELETE FROM schedules WHERE name = ? RETURNING name"), (name,)
        ).fetchone()
        return row is not None

    def pause_schedule(self, name: str, paused: bool) -> Schedule:
        with self._schedule_write() as conn:
            now = self.clock.time()
            result = self._row(conn, name, self._change_lock)
            if result.paused == paused:
                self._nothing_written()
            else:
                spec = decode_spec(encode_spec(result))  # (the spec alone)
                spec.paused = paused
                result, _ = self._put(conn, spec, now)
                self._schedules_changed(conn)
        return result

    def apply_schedules(self, specs: Sequence[ScheduleSpec], dry_run: bool) -> ScheduleChanges:
        names = [spec.name for spec in specs]
        if len(set(names)) < len(names):
            twice = sorted({name for name in names if names.count(name) > 1})
            raise BadInput(f"a schedule is named twice: {', '.join(twice)}")
        changes = ScheduleChanges(dry_run=dry_run)
        with self._schedule_read() if dry_run else self._schedule_write() as conn:
            now = self.clock.time()
            rows = conn.execute("SELECT name, spec, paused FROM schedules").fetchall()
            stored = {}
            for name, text, paused in rows:
                spec = decode_spec(text)
                spec.paused = bool(paused)
                stored[name] = spec
            for spec in specs:
                old = stored.get(spec.name)
                if old is not None and same_spec(old, spec):
                    changes.unchanged.append(spec.name)
                    continue
                (changes.created if old is None else changes.updated).append(spec.name)
                if not dry_run:
                    self._put(conn, spec, now)
            for name in sorted(set(stored) - set(names)):
                changes.removed.append(name)
                if not dry_run:
                    self._remove(conn, name)
            if not dry_run:
                if changes.created or changes.updated or changes.removed:
                    self._schedules_changed(conn)
                else:
                    self._nothing_written()
        for found in (changes.created, changes.updated, changes.unchanged):
            found.sort()
        return changes

    # ------------------------------------------------------------------ firing

    def fire_due(self) -> Fired:
        fired = Fired()
        now = self.clock.time()
        with self._schedule_read() as conn:
            due = [
                name
                for (name,) in conn.execute(
                    self._sql(
                        "SELECT name FROM schedules WHERE next_fire IS NOT NULL "
                        "AND next_fire <= ? ORDER BY next_fire, name LIMIT ?"
                    ),
                    (now, FIRE_BATCH),
                ).fetchall()
            ]
        for name in due:
            try:
                with self._schedule_write() as conn:
                    if not self._fire(conn, name, now, fired):
                        self._nothing_written()
            except (BadInput, NoSuchJob) as exc:
                # The template makes no job now (undone, with its claim): decide the
                # slot without one, or it would be the first due at every call.
                with self._schedule_write() as conn:
                    if not self._fire(conn, name, now, fired, refused=exc.message):
                        self._nothing_written()
        return fired

    def _fire(
        self, conn: Any, name: str, now: float, fired: Fired, refused: str | None = None
    ) -> bool:
        """Decide the due slots of one schedule, in the caller's write; False if it was
        not due any more (another node claimed it, or it changed). ``refused``: the
        store refused the job of its slot (why): the slot that would fire is recorded
        ``refused`` and counted missed instead. ``fired`` counts nothing of a write
        that raises."""
        row = conn.execute(
            self._sql(
                f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = ? "
                f"AND next_fire IS NOT NULL AND next_fire <= ?{self._claim_lock}"
            ),
            (name, now),
        ).fetchone()
        if row is None:
            return False
        spec, claimed, last_job = decode_spec(row[1]), float(row[3]), row[8]
        decision = decide(spec, claimed, now)
        if decision is None:
            return False
        outcome = None if decision.slot is None else "fired"
        if outcome and spec.overlap == "skip" and last_job is not None:
            live = conn.execute(
                self._sql("SELECT state FROM jobs WHERE id = ?"), (last_job,)
            ).fetchone()
            if live is not None and live[0] in _LIVE:
                outcome = "skipped"
        if outcome == "fired" and refused is not None:
            outcome = "refused"
        missed = decision.missed + int(outcome == "refused")
        next_slot, next_fire = _next(spec, decision.next_slot)
        # The claim: moved on from the slot read, or by no one.
        won = conn.execute(
            self._sql(
                "UPDATE schedules SET next_slot = ?, next_fire = ?, "
                "last_slot = coalesce(?, last_slot), fired = fired + ?, "
                "skipped = skipped + ?, missed = missed + ? "
                "WHERE name = ? AND next_slot = ? RETURNING name"
            ),
            (
                next_slot,
                next_fire,
                decision.slot,
                int(outcome == "fired"),
                int(outcome == "skipped"),
                missed,
                name,
                claimed,
            ),
        ).fetchone()
        if won is None:
            return False
        job_id = None
        if outcome == "fired":
            assert decision.slot is not None
            # (May raise, undoing this write: nothing is counted before it.)
            job_id = self._make_job(conn, name, spec, decision.slot, now, fired.result)
            fired.fired += 1
        fired.missed += missed
        fired.skipped += int(outcome == "skipped")
        if outcome == "refused":
            assert refused is not None
            fired.refused.append((name, refused))
        if outcome is None:
            return True
        assert decision.slot is not None
        self._record_run(conn, name, decision.slot, outcome, now, job_id)
        return True

    def _make_job(
        self,
        conn: Any,
        name: str,
        spec: ScheduleSpec,
        slot: float | None,
        now: float,
        into: EnqueueResult,
    ) -> int:
        """Make the job of ``slot`` (None: a run by hand, due now) through the store's
        insert, in the caller's write; mark it as the schedule's; its id."""
        result = self.insert([_job_for(spec, None if slot is None else due_at(spec, slot))])
        job = result.jobs[0]
        if not job.deduplicated:
            conn.execute(
                self._sql("UPDATE jobs SET schedule = ?, slot = ? WHERE id = ?"),
                (name, slot, job.id),
            )
            job.schedule, job.slot = name, None if slot is None else ts(slot)
        conn.execute(
            self._sql("UPDATE schedules SET last_job_id = ? WHERE name = ?"), (job.id, name)
        )
        into.jobs += result.jobs
        into.superseded += result.superseded
        into.running_older += result.running_older
        return job.id

    def _record_run(
        self, conn: Any, name: str, slot: float, outcome: str, now: float, job_id: int | None
    ) -> None:
        conn.execute(
            self._sql(
                "INSERT INTO schedule_runs (schedule, slot, outcome, at, job_id) "
                "VALUES (?, ?, ?, ?, ?)"
            ),
            (name, slot, outcome, now, job_id),
        )
        # Keep the newest RUNS_KEPT: one past them goes (at most one a run).
        conn.execute(
            self._sql(
                "DELETE FROM schedule_runs WHERE schedule = ? AND id <= (SELECT id FROM "
                "schedule_runs WHERE schedule = ? ORDER BY id DESC LIMIT 1 OFFSET ?)"
            ),
            (name, name, RUNS_KEPT),
        )

    def run_schedule(self, name: str) -> EnqueueResult:
        result = EnqueueResult()
        with self._schedule_write() as conn:
            now = self.clock.time()
            found = self._row(conn, name)
            job_id = self._make_job(conn, name, found, None, now, result)
            self._record_run(conn, name, now, "manual", now, job_id)
        return result
