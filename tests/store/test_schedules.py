"""Schedules in a store: slots claimed once, catch-up after downtime, overlap, pause,
apply, run by hand; with a clock the tests move (every backend)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import psycopg
import pytest
from pgshared import database_for
from storekit import enqueue

from semantica.clock import FakeClock
from semantica.errors import BadInput
from semantica.models import GENERATION_MAX, JobSpec, JobState
from semantica.schedules import NoSuchSchedule, ScheduleSpec
from semantica.supervisor.store import JobStore, StoreUpkeep, open_store

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600.0


def every(name: str = "tick", seconds: float = 60.0, **fields: object) -> ScheduleSpec:
    job = fields.pop("job", JobSpec(type="T", payload={"from": name}))
    return ScheduleSpec(name=name, job=job, every=seconds, **fields)  # type: ignore[arg-type]


def _at(clock: FakeClock, when: float) -> None:
    """Move the clock to ``when`` (never back)."""
    assert when >= clock.time()
    clock.advance(when - clock.time())


def _jobs(store: JobStore, name: str) -> list[datetime | None]:
    """The slots of the jobs made by schedule ``name``, oldest first."""
    jobs = [job for job in store.list(limit=1000) if job.schedule == name]
    return [job.slot for job in reversed(jobs)]


def _finish_all(store: JobStore) -> None:
    while (lease := store.lease(worker_pid=1)) is not None:
        store.complete(lease, None)


def test_a_new_schedule_is_due_at_its_first_slot_after_now(
    store: JobStore, clock: FakeClock
) -> None:
    """put_schedule of a new name creates it; its next slot is the first after now."""
    _at(clock, 1_800_000_030.0)
    put, created = store.put_schedule(every(seconds=60))
    assert created
    assert put.next_slot == datetime.fromtimestamp(1_800_000_060.0, UTC)
    assert put.next_fire == put.next_slot  # no jitter
    assert store.next_fire() == 1_800_000_060.0
    assert [s.name for s in store.schedules()] == ["tick"]
    assert store.fire_due().fired == 0  # not due yet


def test_each_slot_gives_one_job_at_its_slot(store: JobStore, clock: FakeClock) -> None:
    """A slot due fires once: one job, due at the slot, marked with the schedule and slot;
    firing again before the next slot makes nothing."""
    _at(clock, 1_800_000_000.0)
    store.put_schedule(every(seconds=60))
    _at(clock, 1_800_000_060.5)
    fired = store.fire_due()
    assert (fired.fired, fired.skipped, fired.missed) == (1, 0, 0)
    [job] = fired.result.jobs
    assert job.schedule == "tick" and job.slot == datetime.fromtimestamp(1_800_000_060.0, UTC)
    assert job.run_after == job.slot and job.payload == {"from": "tick"}
    assert store.get(job.id).schedule == "tick"
    assert store.get(job.id).slot == job.slot
    assert store.fire_due().fired == 0
    shown = store.schedule("tick")
    assert shown.fired == 1 and shown.last_job_id == job.id
    assert shown.next_slot == datetime.fromtimestamp(1_800_000_120.0, UTC)
    [run] = shown.runs
    assert (run.outcome, run.job_id, run.state) == ("fired", job.id, JobState.QUEUED)


def test_a_store_down_three_slots_gives_one_job_with_catch_up_one(
    store: JobStore, clock: FakeClock
) -> None:
    """Three slots passed with no fire: the latest gives one job, two are missed."""
    _at(clock, 1_800_000_000.0)
    store.put_schedule(every(seconds=HOUR, catch_up="one"))
    _at(clock, 1_800_000_000.0 + 3 * HOUR + 600)
    fired = store.fire_due()
    assert (fired.fired, fired.skipped, fired.missed) == (1, 0, 2)
    assert _jobs(store, "tick") == [datetime.fromtimestamp(1_800_000_000.0 + 3 * HOUR, UTC)]
    shown = store.schedule("tick")
    assert (shown.fired, shown.missed) == (1, 2)
    assert store.fire_due().fired == 0


def test_a_store_down_three_slots_gives_none_with_catch_up_none(
    store: JobStore, clock: FakeClock
) -> None:
    """With catch_up none the latest slot, decided late, is missed too: no job."""
    _at(clock, 1_800_000_000.0)
    store.put_schedule(every(seconds=HOUR, catch_up="none"))
    _at(clock, 1_800_000_000.0 + 3 * HOUR + 600)
    fired = store.fire_due()
    assert (fired.fired, fired.skipped, fired.missed) == (0, 0, 3)
    assert _jobs(store, "tick") == []
    assert store.schedule("tick").missed == 3
    assert store.schedule("tick").runs == []
    # The next slot, on time, fires.
    _at(clock, 1_800_000_000.0 + 4 * HOUR + 1)
    assert store.fire_due().fired == 1


def test_catch_up_none_fires_a_slot_decided_on_time(store: JobStore, clock: FakeClock) -> None:
    """A slot decided within a minute of being due is not late."""
    _at(clock, 1_800_000_000.0)
    store.put_schedule(every(seconds=HOUR, catch_up="none"))
    _at(clock, 1_800_000_000.0 + HOUR + 30)
    assert store.fire_due().fired == 1


def test_a_day_of_missed_slots_is_counted_not_written(store: JobStore, clock: FakeClock) -> None:
    """A schedule every second down for a day: one job, 86,399 missed, one run row."""
    _at(clock, 1_800_000_000.0)
    store.put_schedule(every(seconds=1))
    _at(clock, 1_800_000_000.0 + 86_400 + 0.5)
    fired = store.fire_due()
    assert (fired.fired, fired.missed) == (1, 86_399)
    assert len(store.schedule("tick", runs=1000).runs) == 1


def test_overlap_skip_records_a_skip_while_the_last_job_is_live(
    store: JobStore, clock: FakeClock
) -> None:
    """overlap skip: a slot while the previous job is QUEUED or RUNNING is skipped and
    recorded; once it ended, the next slot fires."""
    _at(clock, 1_800_000_000.0)
    store.put_schedule(every(seconds=60, overlap="skip"))
    _at(clock, 1_800_000_060.0)
    assert store.fire_due().fired == 1
    _at(clock, 1_800_000_120.0)
    fired = store.fire_due()
    assert (fired.fired, fired.skipped) == (0, 1)
    lease = store.lease(worker_pid=1)  # RUNNING is live too
    assert lease is not None
    _at(clock, 1_800_000_180.0)
    assert store.fire_due().skipped == 1
    store.complete(lease, None)
    _at(clock, 1_800_000_240.0)
    assert store.fire_due().fired == 1
    shown = store.schedule("tick")
    assert [run.outcome for run in shown.runs] == ["fired", "skipped", "skipped", "fired"]
    assert (shown.fired, shown.skipped) == (2, 2)


def test_overlap_allow_fires_while_the_last_job_is_live(store: JobStore, clock: FakeClock) -> None:
    """overlap allow: every slot fires, whatever the previous job does."""
    _at(clock, 1_800_000_000.0)
    store.put_schedule(every(seconds=60, overlap="allow"))
    for n in range(1, 4):
        _at(clock, 1_800_000_000.0 + 60 * n)
        assert store.fire_due().fired == 1
    assert len(_jobs(store, "tick")) == 3


def test_paused_slots_give_nothing_and_resume_starts_after_now(
    store: JobStore, clock: FakeClock
) -> None:
    """Slots that pass while paused give no job and are not missed; on resume the next
    slot is the first after now."""
    _at(clock, 1_800_000_000.0)
    store.put_schedule(every(seconds=60))
    paused = store.pause_schedule("tick", True)
    assert paused.paused and paused.next_slot is None
    assert store.next_fire() is None
    _at(clock, 1_800_000_000.0 + 600 + 10)
    assert store.fire_due().fired == 0
    resumed = store.pause_schedule("tick", False)
    assert not resumed.paused
    assert resumed.next_slot == datetime.fromtimestamp(1_800_000_000.0 + 660, UTC)
    _at(clock, 1_800_000_000.0 + 660)
    fired = store.fire_due()
    assert (fired.fired, fired.missed) == (1, 0)
    assert store.schedule("tick").missed == 0
    with pytest.raises(NoSuchSchedule):
        store.pause_schedule("nope", True)


def test_a_re_put_keeps_the_next_slot_unless_its_timing_changed(
    store: JobStore, clock: FakeClock
) -> None:
    """Put again with the same timing: the next slot, history and counters stay; with
    another interval the next slot is the first of it after now."""
    _at(clock, 1_800_000_000.0)
    store.put_schedule(every(seconds=HOUR))
    _at(clock, 1_800_000_000.0 + HOUR)
    store.fire_due()
    _at(clock, 1_800_000_000.0 + HOUR + 1800)
    again, created = store.put_schedule(every(seconds=HOUR, job=JobSpec(type="U")))
    assert not created
    assert again.next_slot == datetime.fromtimestamp(1_800_000_000.0 + 2 * HOUR, UTC)
    assert again.fired == 1 and again.job.type == "U"
    assert len(store.schedule("tick").runs) == 1
    _finish_all(store)
    moved, _ = store.put_schedule(every(seconds=600, job=JobSpec(type="U")))
    assert moved.next_slot == datetime.fromtimestamp(1_800_000_000.0 + HOUR + 2400, UTC)
    _at(clock, 1_800_000_000.0 + 2 * HOUR)
    fired = store.fire_due()
    assert fired.result.jobs[0].type == "U"


def test_remove_a_schedule(store: JobStore, clock: FakeClock) -> None:
    """remove_schedule deletes it and its runs; its jobs stay."""
    store.put_schedule(every(seconds=60))
    _at(clock, clock.time() + 60)
    [job] = store.fire_due().result.jobs
    assert store.remove_schedule("tick")
    assert not store.remove_schedule("tick")
    assert store.schedules() == []
    with pytest.raises(NoSuchSchedule):
        store.schedule("tick")
    assert store.get(job.id).schedule == "tick"


def test_run_schedule_makes_a_job_now_without_moving_slots(
    store: JobStore, clock: FakeClock
) -> None:
    """run_schedule: a job due now, recorded manual; the next slot does not move."""
    _at(clock, 1_800_000_000.0)
    before, _ = store.put_schedule(every(seconds=HOUR))
    _at(clock, 1_800_000_100.0)
    [job] = store.run_schedule("tick").jobs
    assert job.schedule == "tick" and job.slot is None
    assert job.run_after == datetime.fromtimestamp(1_800_000_100.0, UTC)
    shown = store.schedule("tick")
    assert shown.next_slot == before.next_slot and shown.fired == 0
    [run] = shown.runs
    assert (run.outcome, run.job_id) == ("manual", job.id)
    # The manual job counts for overlap.
    _at(clock, 1_800_000_000.0 + HOUR)
    assert store.fire_due().skipped == 1
    with pytest.raises(NoSuchSchedule):
        store.run_schedule("nope")


def test_apply_schedules_creates_updates_removes_and_dry_runs(
    store: JobStore, clock: FakeClock
) -> None:
    """apply_schedules makes the set exactly the specs given; dry_run changes nothing."""
    store.put_schedule(every("keep"))
    store.put_schedule(every("change"))
    store.put_schedule(every("drop"))
    wanted = [every("keep"), every("change", seconds=120), every("new")]
    dry = store.apply_schedules(wanted, dry_run=True)
    assert (dry.created, dry.updated, dry.removed, dry.unchanged) == (
        ["new"],
        ["change"],
        ["drop"],
        ["keep"],
    )
    assert dry.dry_run
    assert [s.name for s in store.schedules()] == ["change", "drop", "keep"]
    done = store.apply_schedules(wanted, dry_run=False)
    assert msgspec.structs.replace(done, dry_run=True) == dry
    assert [s.name for s in store.schedules()] == ["change", "keep", "new"]
    assert store.schedule("change").every == 120
    again = store.apply_schedules(wanted, dry_run=False)
    assert again.unchanged == ["change", "keep", "new"]
    with pytest.raises(BadInput):
        store.apply_schedules([every("a"), every("a")], dry_run=False)


def test_history_keeps_the_newest_hundred_runs(store: JobStore, clock: FakeClock) -> None:
    """A schedule keeps a bounded history of its runs, newest first."""
    store.put_schedule(every(seconds=60, overlap="allow"))
    for _ in range(105):
        store.run_schedule("tick")
    runs = store.schedule("tick", runs=1000).runs
    assert len(runs) == 100
    assert runs[0].job_id is not None and runs[-1].job_id is not None
    assert runs[0].job_id > runs[-1].job_id


def test_a_finished_and_deleted_job_shows_no_state(
    store: JobStore, upkeep: StoreUpkeep, clock: FakeClock
) -> None:
    """A run whose job ended shows its end; once retention deleted it, no state."""
    store.put_schedule(every(seconds=60))
    [job] = store.run_schedule("tick").jobs
    _finish_all(store)
    assert store.schedule("tick").runs[0].state == JobState.DONE
    _at(clock, clock.time() + 10)
    assert upkeep.delete_finished(before=clock.time()) == [job.id]
    [run] = store.schedule("tick").runs
    assert (run.job_id, run.state) == (job.id, None)


def test_jitter_is_deterministic_and_within_bounds(
    open_store: Callable[[], JobStore], clock: FakeClock
) -> None:
    """A slot's job is due its jitter after the slot: the same on every store."""
    _at(clock, 1_800_000_000.0)
    first = open_store()
    put, _ = first.put_schedule(every(seconds=HOUR, jitter=600))
    assert put.next_slot is not None and put.next_fire is not None
    delay = (put.next_fire - put.next_slot).total_seconds()
    assert 0 <= delay < 600
    _at(clock, put.next_fire.timestamp() - 0.5)
    assert first.fire_due().fired == 0
    first.close()
    second = open_store()
    assert second.next_fire() == put.next_fire.timestamp()
    _at(clock, put.next_fire.timestamp())
    [job] = second.fire_due().result.jobs
    assert job.run_after == put.next_fire and job.slot == put.next_slot
    second.close()


def test_a_subject_template_follows_the_generation_rules(store: JobStore, clock: FakeClock) -> None:
    """The job goes through the enqueue's insert: a subject's new generation supersedes
    the queued older one."""
    store.put_schedule(every(seconds=60, overlap="allow", job=JobSpec(type="T", subject="s")))
    _at(clock, clock.time() + 60)
    [first] = store.fire_due().result.jobs
    _at(clock, clock.time() + 60)
    fired = store.fire_due()
    assert fired.result.superseded == [first.id]
    assert store.get(first.id).state == JobState.SUPERSEDED


def _daily_at_0230(store: JobStore, clock: FakeClock, start: datetime, days: int) -> list[str]:
    """Fire a daily 02:30 Berlin schedule each hour from ``start`` for ``days``; the local
    times of its jobs' slots."""
    clock.now = start.timestamp()  # (a fresh store: its clock may start anywhere)
    job = JobSpec(type="T")
    store.put_schedule(ScheduleSpec(name="nightly", job=job, cron="30 2 * * *", tz="Europe/Berlin"))
    for _ in range(days * 24 * 4):
        _at(clock, clock.time() + 900)
        store.fire_due()
        _finish_all(store)
    return [
        slot.astimezone(BERLIN).isoformat() for slot in _jobs(store, "nightly") if slot is not None
    ]


def test_a_daily_schedule_across_spring_forward(store: JobStore, clock: FakeClock) -> None:
    """Europe/Berlin springs forward on 2026-03-29 (02:00 -> 03:00): the 02:30 job runs at
    03:00 that day, once a day throughout."""
    slots = _daily_at_0230(store, clock, datetime(2026, 3, 27, 12, tzinfo=BERLIN), 4)
    assert slots == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_a_daily_schedule_across_fall_back(store: JobStore, clock: FakeClock) -> None:
    """Europe/Berlin falls back on 2026-10-25 (03:00 -> 02:00): the 02:30 job runs once
    that day, at the first 02:30 (summer time)."""
    slots = _daily_at_0230(store, clock, datetime(2026, 10, 23, 12, tzinfo=BERLIN), 4)
    assert slots == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_enqueued_jobs_have_no_schedule(store: JobStore) -> None:
    """A job enqueued by hand names no schedule."""
    [job] = enqueue(store, [JobSpec(type="T")]).jobs
    assert store.get(job.id).schedule is None and store.get(job.id).slot is None


def test_a_slot_whose_job_cannot_be_made_is_refused_and_holds_up_no_other(
    store: JobStore, clock: FakeClock
) -> None:
    """A template whose job the store refuses (its subject at the largest generation
    there may be) gives its slot no job: the slot is recorded ``refused``, counted
    missed, and the next slot comes; a schedule due after it still fires."""
    _at(clock, 1_800_000_000.0)
    enqueue(store, [JobSpec(type="T", subject="top", generation=GENERATION_MAX)])
    store.put_schedule(every("bad", job=JobSpec(type="T", subject="top"), overlap="allow"))
    store.put_schedule(every("good"))
    _at(clock, 1_800_000_060.0)
    fired = store.fire_due()
    assert (fired.fired, fired.missed) == (1, 1)
    assert [(name, "generation" in why) for name, why in fired.refused] == [("bad", True)]
    assert _jobs(store, "good") == [datetime.fromtimestamp(1_800_000_060.0, UTC)]
    bad = store.schedule("bad")
    assert (bad.fired, bad.missed, bad.last_job_id) == (0, 1, None)
    assert [(run.outcome, run.job_id) for run in bad.runs] == [("refused", None)]
    assert bad.next_slot == datetime.fromtimestamp(1_800_000_120.0, UTC)
    assert store.next_fire() == 1_800_000_120.0


def test_a_create_of_a_schedule_that_exists_is_refused_and_changes_nothing(
    store: JobStore,
) -> None:
    first, created = store.put_schedule(every("nightly", 60.0), replace=False)
    assert created
    with pytest.raises(BadInput, match="a schedule named 'nightly' exists"):
        store.put_schedule(every("nightly", 3600.0), replace=False)
    assert store.schedule("nightly").every == 60.0
    assert store.schedule("nightly").next_slot == first.next_slot
    replaced, created = store.put_schedule(every("nightly", 3600.0))
    assert not created and replaced.every == 3600.0


def test_two_nodes_creating_one_name_at_once_give_one_schedule(
    backend: str, tmp_path: Path
) -> None:
    """A create on one node while another node's create of the same name is not yet
    committed: the second waits for the first, then is refused (not a store error, and
    not a silent replace)."""
    if backend != "postgresql":
        pytest.skip("one writer on SQLite")
    location = database_for(tmp_path)
    clock = FakeClock()
    first, second = (open_store(location, clock, migrate=True) for _ in range(2))
    holder = psycopg.connect(location.split(" options=")[0], options=_options(location))
    try:
        with holder.transaction():
            holder.execute(
                "INSERT INTO schedules (name, spec, paused, created_at, updated_at) "
                "VALUES ('nightly', %s, false, 0, 0)",
                (msgspec.json.encode(every("nightly", 60.0)).decode(),),
            )
            outcome: list[BaseException | None] = []

            def create() -> None:
                try:
                    second.put_schedule(every("nightly", 3600.0), replace=False)
                    outcome.append(None)
                except BaseException as exc:  # noqa: BLE001 (the test looks at it)
                    outcome.append(exc)

            racer = threading.Thread(target=create)
            racer.start()
            racer.join(0.5)
            assert racer.is_alive(), "the second create did not wait for the first"
        racer.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], BadInput), outcome
        assert first.schedule("nightly").every == 60.0
    finally:
        holder.close()
        first.close()
        second.close()


@pytest.mark.parametrize("change", ["put", "apply", "pause"])
def test_a_change_racing_a_fire_on_another_node_keeps_the_moved_slot(
    backend: str, tmp_path: Path, change: str
) -> None:
    """Another node's fire holds the row and moves next_slot on; a put (or an apply)
    that keeps the timing, on this node meanwhile, waits for it and keeps the moved
    slot: writing back the slot it read before would fire that slot twice. A pause
    waits too, and pauses the schedule as it is after the fire."""
    if backend != "postgresql":
        pytest.skip("one writer on SQLite")
    location = database_for(tmp_path)
    clock = FakeClock(1_800_000_000.0)
    first, second = (open_store(location, clock, migrate=True) for _ in range(2))
    holder = psycopg.connect(location.split(" options=")[0], options=_options(location))
    slot = 1_800_000_000.0 + HOUR
    try:
        first.put_schedule(every(seconds=HOUR))
        _at(clock, slot)
        outcome: list[BaseException | None] = []

        def racing_change() -> None:
            wanted = every(seconds=HOUR, job=JobSpec(type="U"))
            try:
                if change == "put":
                    second.put_schedule(wanted)
                elif change == "apply":
                    second.apply_schedules([wanted], dry_run=False)
                else:
                    second.pause_schedule("tick", True)
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 (the test looks at it)
                outcome.append(exc)

        with holder.transaction():
            # What a fire's claim does: the row taken, next_slot moved past the slot.
            holder.execute("SELECT name FROM schedules WHERE name = 'tick' FOR UPDATE")
            holder.execute(
                "UPDATE schedules SET next_slot = %s, next_fire = %s, last_slot = %s, "
                "fired = fired + 1 WHERE name = 'tick'",
                (slot + HOUR, slot + HOUR, slot),
            )
            racer = threading.Thread(target=racing_change)
            racer.start()
            racer.join(0.5)
            assert racer.is_alive(), "the change did not wait for the fire"
        racer.join(10)
        assert outcome == [None]
        after = first.schedule("tick")
        assert after.fired == 1
        if change == "pause":
            assert after.paused and after.next_slot is None
            return
        assert after.job.type == "U"
        assert after.next_slot == datetime.fromtimestamp(slot + HOUR, UTC)
        assert first.fire_due().fired == 0  # the slot fired once, on the other node
    finally:
        holder.close()
        first.close()
        second.close()


def _options(location: str) -> str:
    """The ``options`` of a DSN made by database_for (its search path)."""
    return location.split(" options=")[1].strip("'")


def test_the_list_of_schedules_carries_each_ones_latest_run(store: JobStore) -> None:
    store.put_schedule(every("a"))
    store.put_schedule(every("b"))
    store.run_schedule("a")
    [second] = store.run_schedule("a").jobs
    plain = store.schedules()
    assert [s.name for s in plain] == ["a", "b"] and all(not s.runs for s in plain)
    a, b = store.schedules(latest_run=True)
    assert [(run.outcome, run.job_id, run.state) for run in a.runs] == [
        ("manual", second.id, JobState.QUEUED)
    ]
    assert b.runs == []
