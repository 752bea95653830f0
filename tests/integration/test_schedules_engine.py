"""The supervisor fires schedules: a supervisor started after its schedule missed slots
makes exactly one catch-up job, and a schedule put while it runs fires on time."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from harness import Daemon

from semantica.clock import FakeClock
from semantica.models import JobSpec, JobState
from semantica.schedules import ScheduleSpec
from semantica.supervisor.store import JobStore, open_store


def _store(home: Path, clock: FakeClock | None = None) -> JobStore:
    home.mkdir(mode=0o700, exist_ok=True)
    return open_store(home / "semantica.db", clock, migrate=True)


def _scheduled(home: Path, name: str) -> list[tuple[int, float | None, JobState]]:
    store = _store(home)
    try:
        jobs = store.list(limit=1000)
    finally:
        store.close()
    return [
        (job.id, None if job.slot is None else job.slot.timestamp(), job.state)
        for job in jobs
        if job.schedule == name
    ]


def _clear_of_the_next_slot(every: float, margin: float = 30.0) -> float:
    """Now, once the next slot of ``every`` is more than ``margin`` away (a test that
    counts jobs must not see one more slot come due while it runs)."""
    left = every - time.time() % every
    if left < margin:
        time.sleep(left + 1)
    return time.time()


def _until(what: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_supervisor_started_after_missed_slots_fires_one_catch_up_job(
    make_daemon: Callable[..., Daemon], short_tmp: Path
) -> None:
    """A schedule every 10 minutes, put an hour ago with no supervisor since: the start
    fires one job, for the latest slot, and counts the others missed."""
    home = short_tmp / "home"
    now = _clear_of_the_next_slot(600)
    store = _store(home, FakeClock(now - 3600))
    store.put_schedule(ScheduleSpec(name="sync", job=JobSpec(type="NOOP"), every=600.0))
    store.close()
    daemon = make_daemon()
    assert daemon.home == home
    _until(lambda: any(state == JobState.DONE for _, _, state in _scheduled(home, "sync")))
    time.sleep(1.5)  # a second fire would be made by now
    daemon.stop()
    jobs = _scheduled(home, "sync")
    latest = (now // 600) * 600
    assert [(slot, state) for _, slot, state in jobs] == [(latest, JobState.DONE)]
    store = _store(home)
    try:
        schedule = store.schedule("sync")
    finally:
        store.close()
    assert (schedule.fired, schedule.skipped) == (1, 0)
    assert schedule.missed == 5  # the six slots of the hour, all but the latest
    assert schedule.next_slot is not None and schedule.next_slot.timestamp() == latest + 600
    assert '"schedule fired"' in daemon.log()


def test_catch_up_none_fires_nothing_for_slots_missed_before_the_start(
    make_daemon: Callable[..., Daemon], short_tmp: Path
) -> None:
    """The same with catch_up none: the start fires nothing; the slots are missed."""
    home = short_tmp / "home"
    now = _clear_of_the_next_slot(600)
    store = _store(home, FakeClock(now - 3600))
    spec = ScheduleSpec(name="sync", job=JobSpec(type="NOOP"), every=600.0, catch_up="none")
    store.put_schedule(spec)
    store.close()
    daemon = make_daemon()
    schedule_missed = 0

    def decided() -> bool:
        nonlocal schedule_missed
        store = _store(home)
        try:
            schedule_missed = store.schedule("sync").missed
        finally:
            store.close()
        return schedule_missed > 0

    _until(decided)
    daemon.stop()
    # The latest slot is late (missed) if it was due more than a minute before the fire.
    since_latest = now % 600
    if since_latest > 60:
        assert (schedule_missed, _scheduled(home, "sync")) == (6, [])
    elif since_latest < 45:
        assert schedule_missed == 5 and len(_scheduled(home, "sync")) == 1
