"""Chaos with schedules: a schedule firing every second while its supervisor is SIGKILLed
again and again. The invariants: never two jobs for one slot, every slot decided once
(fired or missed), and slots are missed only across the supervisor's downtime, each
such gap ending with the one catch-up job of ``--catch-up one`` on the restart."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from chaos_scenarios import MakeDaemon

from semantica.models import JobSpec, JobState
from semantica.schedules import ScheduleSpec
from semantica.supervisor.store import open_store

#: How far a slot may be from a kill and still be lost with the killed supervisor's last
#: batch (its claim and job were written, not committed), or decided by the restart.
SLACK_S = 1.5


def schedule_under_kills(
    make_daemon: MakeDaemon,
    home: Path,
    *,
    seconds: float,
    up: tuple[float, float] = (1.0, 4.0),
    down: tuple[float, float] = (0.5, 3.0),
    seed: int = 7,
) -> str:
    """A schedule every second, catch-up one, overlap allow, for about ``seconds``: the
    supervisor runs ``up`` seconds, is SIGKILLed, stays down ``down`` seconds, restarts.

    Checked at the end, from the store: one job at most per slot; fired + missed equal
    the slots from the first to the last decided; every gap between two jobs' slots lies
    within a downtime (give or take SLACK_S), and its end is a job (the catch-up); every
    job ran to DONE.
    """
    rng = random.Random(seed)
    home.mkdir(mode=0o700, exist_ok=True)
    store = open_store(home / "semantica.db", migrate=True)
    put, _ = store.put_schedule(
        ScheduleSpec(
            name="tick",
            job=JobSpec(type="CHAOS_SLEEP", payload={}),
            every=1.0,
            catch_up="one",
            overlap="allow",
        )
    )
    store.close()
    assert put.next_slot is not None
    first = put.next_slot.timestamp()
    d = make_daemon(workers=2, home=home)
    downtimes: list[tuple[float, float]] = []
    ends = time.time() + seconds
    kills = 0
    while time.time() < ends:
        time.sleep(rng.uniform(*up))
        killed = time.time()
        d.stop(signal.SIGKILL)
        kills += 1
        time.sleep(rng.uniform(*down))
        d.start()
        downtimes.append((killed, time.time()))
    time.sleep(3.0)  # the last jobs run
    d.stop()
    store = open_store(home / "semantica.db")
    try:
        schedule = store.schedule("tick")
        jobs = [job for job in store.list(limit=100_000) if job.schedule == "tick"]
    finally:
        store.close()
    slots = sorted(job.slot.timestamp() for job in jobs if job.slot is not None)
    assert len(slots) == len(set(slots)), "a slot gave two jobs"
    assert schedule.fired == len(slots) and schedule.skipped == 0
    assert schedule.last_slot is not None
    decided = round(schedule.last_slot.timestamp() - first) + 1
    assert schedule.fired + schedule.missed == decided, (schedule.fired, schedule.missed, decided)
    gaps = 0
    for before, after in zip([first - 1, *slots], slots, strict=False):
        if after - before <= 1:
            continue
        gaps += 1
        missing = (before + 1, after - 1)
        assert any(
            killed - SLACK_S <= missing[0] and missing[1] <= restarted + SLACK_S
            for killed, restarted in downtimes
        ), f"slots {missing} missed while the supervisor ran (downtimes {downtimes})"
    not_done = [job.id for job in jobs if job.state != JobState.DONE]
    assert not not_done, f"scheduled jobs not DONE: {not_done[:10]}"
    return (
        f"schedule under kills: kills={kills} slots={decided} jobs={len(slots)} "
        f"missed={schedule.missed} gaps={gaps}"
    )
